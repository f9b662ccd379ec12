//! `orders list` and `orders expiring`: what the CertCentral account holds, as the portal lists it.

use anyhow::Result;
use clap::{Args, Subcommand};
use codesign_kit::keys::text::escape_unsafe;
use codesign_kit::order::OrderQuery;

use super::order::{ConnectionArgs, runtime};

/// `orders`' subcommands.
#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// The account's orders: filtered, sorted, paged (every page with --all).
    List(ListArgs),
    /// How many orders expire in 0-30, 30-60 and 60-90 days, and expired in the last 7.
    Expiring(ExpiringArgs),
}

/// `orders list`'s arguments.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only orders of this status: pending, issued, rejected, revoked, waiting_pickup,
    /// reissue_pending, canceled (issued also matches expired orders).
    #[arg(long)]
    status: Option<String>,
    /// Only this product: code_signing or code_signing_ev.
    #[arg(long)]
    product: Option<String>,
    /// Only this organization.
    #[arg(long, value_name = "ID")]
    organization: Option<u64>,
    /// Sort: fields with - first for descending, commas between (e.g. --sort=-date_created,id).
    #[arg(long)]
    sort: Option<String>,
    /// Skip this many orders.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// At most this many orders (1-1000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: Option<u64>,
    /// Every page, not only the first.
    #[arg(long, conflicts_with_all = ["offset", "limit"])]
    all: bool,
    /// Print one JSON document (the orders as CertCentral names their fields).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `orders expiring`'s arguments.
#[derive(Debug, Args)]
pub struct ExpiringArgs {
    /// Count certificates too (CertCentral's include_expiring_certs).
    #[arg(long)]
    include_certificates: bool,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Runs an `orders` subcommand.
///
/// # Errors
/// What stopped it.
pub fn run(command: OrdersCommand) -> Result<()> {
    match command {
        OrdersCommand::List(args) => list(args),
        OrdersCommand::Expiring(args) => expiring(args),
    }
}

fn list(args: ListArgs) -> Result<()> {
    let client = args.connection.client()?;
    let query = OrderQuery {
        status: args.status.clone(),
        product: args.product.clone(),
        organization_id: args.organization,
        certificate_id: None,
        sort: args.sort.clone(),
        offset: args.offset,
        limit: args.limit,
    };
    let runtime = runtime()?;
    let (orders, total) = if args.all {
        let all = runtime.block_on(client.list_all_orders(&query))?;
        let total = all.len() as u64;
        (all, total)
    } else {
        let page = runtime.block_on(client.list_orders(&query))?;
        (page.orders, page.page.total)
    };
    if args.json {
        let doc = serde_json::json!({ "orders": orders, "total": total });
        super::io::print_json(&doc)?;
        return Ok(());
    }
    let shown = |text: &str| escape_unsafe(text, false);
    println!(
        "{:<10} {:<16} {:<16} {:<12} {:>5}  COMMON NAME",
        "ORDER", "STATUS", "PRODUCT", "VALID TILL", "DAYS"
    );
    for order in &orders {
        let cert = order.certificate.clone().unwrap_or_default();
        println!(
            "{:<10} {:<16} {:<16} {:<12} {:>5}  {}",
            order.id,
            shown(&order.status.to_string()),
            shown(order.product.as_ref().map_or("", |p| p.name_id.as_str())),
            shown(cert.valid_till.as_deref().unwrap_or("-")),
            cert.days_remaining
                .map_or("-".to_string(), |d| d.to_string()),
            shown(cert.common_name.as_deref().unwrap_or("")),
        );
    }
    println!("{} of {total} order(s)", orders.len());
    Ok(())
}

fn expiring(args: ExpiringArgs) -> Result<()> {
    let client = args.connection.client()?;
    let report = runtime()?.block_on(client.expiring_orders(args.include_certificates))?;
    if args.json {
        super::io::print_json(&report)?;
        return Ok(());
    }
    for bucket in &report.expiring_orders {
        let when = match bucket.days_expiring {
            90 => "expire in 60-90 days".to_string(),
            60 => "expire in 30-60 days".to_string(),
            30 => "expire in 0-30 days".to_string(),
            -7 => "expired in the last 7 days".to_string(),
            other => format!("bucket {other} days"),
        };
        println!("{:>6}  {when}", bucket.order_count);
    }
    Ok(())
}
