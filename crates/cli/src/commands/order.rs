//! `order`, `status`, `download`: CertCentral.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use codesign_kit::KeysCsrCheck;
use codesign_kit::keys::files::{InputKind, PUBLIC_FILE_MODE};
use codesign_kit::order::model::CertificateDetails;
use codesign_kit::order::{
    ApiKey, BaseUrl, CertificateId, Chain, Client, ClientConfig, DownloadFormat, OrderId,
    OrderRequest, Product, ValidatedOrder,
};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::io::{Output, at_most_one_stdin, overwrite, read_arg, read_text_arg, shown_path};
use crate::UsageError;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Region {
    /// https://www.digicert.com/services/v2
    Us,
    /// https://certcentral.digicert.eu/services/v2
    Eu,
}

/// Where CertCentral is and the API key.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Read the API key from this file (first line; `-` for standard input) instead of
    /// DIGICERT_API_KEY.
    #[arg(long, value_name = "FILE", global = true)]
    api_key_file: Option<PathBuf>,
    /// The API base URL (https, or http to a loopback address); else --region, else
    /// CERTCENTRAL_BASE_URL, else the US instance.
    #[arg(long, value_name = "URL", global = true, conflicts_with = "region")]
    base_url: Option<String>,
    /// The CertCentral instance.
    #[arg(long, value_enum, global = true)]
    region: Option<Region>,
    /// Keep no request limits of the client's own: only for a CertCentral on this machine that
    /// enforces none (the emulator with --no-rate-limits); refused for any other.
    #[arg(long, global = true)]
    no_request_limits: bool,
}

impl ConnectionArgs {
    fn base_url(&self) -> Result<BaseUrl> {
        if let Some(url) = &self.base_url {
            return BaseUrl::parse(url).context("--base-url");
        }
        match self.region {
            Some(Region::Us) => return Ok(BaseUrl::us()),
            Some(Region::Eu) => return Ok(BaseUrl::eu()),
            None => {}
        }
        match std::env::var("CERTCENTRAL_BASE_URL") {
            Ok(url) if !url.is_empty() => BaseUrl::parse(&url).context("CERTCENTRAL_BASE_URL"),
            _ => Ok(BaseUrl::us()),
        }
    }

    fn api_key(&self) -> Result<ApiKey> {
        let key = match &self.api_key_file {
            Some(path) => {
                let bytes =
                    Zeroizing::new(read_arg(path, InputKind::ApiKey).context("--api-key-file")?);
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    anyhow::anyhow!("--api-key-file {}: not UTF-8 text", shown_path(path))
                })?;
                let first = text.lines().next().unwrap_or("").trim().to_string();
                if first.is_empty() {
                    bail!("--api-key-file {}: the file is empty", shown_path(path));
                }
                first
            }
            None => match std::env::var("DIGICERT_API_KEY") {
                Ok(key) if !key.is_empty() => key,
                _ => bail!(
                    "no CertCentral API key: set DIGICERT_API_KEY or pass --api-key-file FILE"
                ),
            },
        };
        Ok(ApiKey::new(SecretString::from(key))?)
    }

    pub(crate) fn client(&self) -> Result<Client> {
        let base_url = self.base_url()?;
        let mut config = ClientConfig::new(base_url.clone(), self.api_key()?);
        if self.no_request_limits {
            if !base_url.is_loopback() {
                return Err(UsageError(format!(
                    "--no-request-limits is only for a CertCentral on this machine; {} is not (CertCentral answers 429 beyond 1000 requests per 3 minutes and 100 per 5 seconds)",
                    base_url.as_str()
                ))
                .into());
            }
            config.rate_limits = codesign_kit::order::RateLimits::none();
        }
        Ok(Client::new(config)?)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProductArg {
    /// OV code signing (the API's `code_signing`; `code-signing` also works).
    #[value(name = "code_signing", alias = "code-signing")]
    CodeSigning,
    /// EV code signing (the API's `code_signing_ev`; `code-signing-ev` also works).
    #[value(name = "code_signing_ev", alias = "code-signing-ev")]
    CodeSigningEv,
}

/// `order`'s arguments.
#[derive(Debug, Args)]
pub struct OrderArgs {
    /// The product.
    #[arg(long, value_enum)]
    product: ProductArg,
    /// The request body, JSON, as the CertCentral API page documents it (`-` for standard input).
    #[arg(long, value_name = "BODY.json")]
    request: PathBuf,
    /// Put this CSR (PEM) into certificate.csr (`-` for standard input).
    #[arg(long, value_name = "REQ.csr")]
    csr: Option<PathBuf>,
    /// The order's alternative order ID (letters and digits, at most 64). Without it, and without
    /// one in the body, it is derived from the product and the CSR (or the body), so running the
    /// same order again finds the first one instead of buying a second certificate.
    #[arg(long, value_name = "ID")]
    alternative_order_id: Option<String>,
    /// The key the CSR belongs to: a token key's URI (its public key is checked against the
    /// CSR's, so the hardware-key rule can be checked before anything is sent) or a key file.
    /// Needed to send a CSR to a CertCentral off this machine.
    #[arg(long, value_name = "URI|KEY.pem")]
    key: Option<String>,
    /// The PKCS#11 module, when --key's URI has no module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH", requires = "key")]
    module: Option<PathBuf>,
    /// Send the CSR of a software key (a key file, a software token) to a CertCentral off this
    /// machine: only for a private test CA; a publicly trusted CA refuses such keys.
    #[arg(long)]
    allow_software_key: bool,
    /// Validate and print the body that would be sent; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `status`'s arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The order ID.
    order_id: OrderId,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Leaf, intermediate, root (PEM).
    PemAll,
    /// Leaf and intermediate (PEM).
    PemNoroot,
    /// The leaf alone (PEM).
    PemNointermediate,
    /// PKCS#7 bundle.
    P7b,
}

/// `download`'s arguments.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The certificate ID (or, with --by-order, the order ID).
    id: u64,
    /// Write the certificate(s) here (`-` for standard output); an existing file is replaced only
    /// with --force.
    #[arg(long, value_name = "CHAIN.pem")]
    out: PathBuf,
    /// Replace the file if it exists (never anything but a regular file).
    #[arg(long)]
    force: bool,
    /// The format.
    #[arg(long, value_enum, default_value = "pem-all")]
    format: FormatArg,
    /// The ID is an order ID: download the order's active certificate.
    #[arg(long)]
    by_order: bool,
    /// With --by-order: wait this long (e.g. 30s, 10m) for the order to be issued first; an
    /// order still waiting then exits 75 (try again later), nothing written.
    #[arg(long, value_name = "DURATION", requires = "by_order", value_parser = super::provision::parse_duration)]
    wait: Option<std::time::Duration>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn read_request(path: &Path, csr: Option<&Path>) -> Result<OrderRequest> {
    at_most_one_stdin(&[("--request", Some(path)), ("--csr", csr)])?;
    let text = read_text_arg(path, InputKind::OrderBody).context("--request")?;
    let mut request = OrderRequest::from_json(&text)
        .map_err(|e| anyhow::anyhow!("--request {}: {e}", shown_path(path)))?;
    if let Some(csr_path) = csr {
        let pem = read_text_arg(csr_path, InputKind::Csr).context("--csr")?;
        let certificate = request
            .certificate
            .get_or_insert_with(CertificateDetails::default);
        if certificate.csr.is_some() {
            eprintln!(
                "warning: --csr {} replaces the certificate.csr of the request body",
                shown_path(csr_path)
            );
        }
        certificate.csr = Some(pem);
    }
    Ok(request)
}

/// `order`: the body validated against the API's rules, then placed exactly once (or, with
/// `--dry-run`, printed and not sent).
pub fn order(args: OrderArgs) -> Result<()> {
    let product = match args.product {
        ProductArg::CodeSigning => Product::CodeSigning,
        ProductArg::CodeSigningEv => Product::CodeSigningEv,
    };
    let mut request = read_request(&args.request, args.csr.as_deref())?;
    match (&args.alternative_order_id, &request.alternative_order_id) {
        (Some(given), Some(in_body)) if given != in_body => {
            return Err(UsageError(format!(
                "--alternative-order-id {given} differs from the body's alternative_order_id {in_body}; give one"
            ))
            .into());
        }
        (Some(given), _) => request.alternative_order_id = Some(given.clone()),
        (None, Some(_)) => {}
        (None, None) => {
            request.alternative_order_id = Some(codesign_kit::order::derive_alternative_order_id(
                &product, &request,
            ));
        }
    }
    let order = match ValidatedOrder::new(product, request, Some(&KeysCsrCheck)) {
        Ok(order) => order,
        Err(errors) => {
            let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            bail!(
                "the order breaks {} rule(s) of the CertCentral API; nothing was sent:\n{}",
                lines.len(),
                lines.join("\n")
            );
        }
    };
    for warning in order.warnings() {
        eprintln!("warning: {warning}");
    }
    check_key_storage(&args, &order)?;
    if args.dry_run {
        let doc = serde_json::json!({
            "product": order.product().as_str(),
            "alternative_order_id": order.alternative_order_id(),
            "body": order.request().to_json(),
            "sent": false,
        });
        super::io::print_json(&doc)?;
        return Ok(());
    }
    let client = args.connection.client()?;
    let placed = runtime()?.block_on(client.place_order(&order))?;
    if args.json {
        let doc = serde_json::json!({
            "order_id": placed.order_id,
            "certificate_id": placed.certificate_id,
            "alternative_order_id": placed.alternative_order_id,
            "requests": placed.requests.iter().map(|r| serde_json::json!({"id": r.id, "status": r.status.to_string()})).collect::<Vec<_>>(),
            "recovered": placed.recovered,
        });
        super::io::print_json(&doc)?;
    } else {
        println!(
            "{} order {} (alternative order ID {})",
            if placed.recovered {
                "found existing"
            } else {
                "placed"
            },
            placed.order_id,
            placed.alternative_order_id
        );
        for r in &placed.requests {
            println!("request {}: {}", r.id, r.status);
        }
        if let Some(cert) = placed.certificate_id {
            println!(
                "certificate ID {cert} (approved; follow it with `cargo xtask status {}`)",
                placed.order_id
            );
        }
    }
    Ok(())
}

/// The hardware-key rule, before anything is sent: a CSR goes to a CertCentral off this machine
/// only for a key shown (`--key`) to be on a token that is not a known software one, unless
/// `--allow-software-key`. Orders without a CSR have DigiCert make the key on its own token.
fn check_key_storage(args: &OrderArgs, order: &ValidatedOrder) -> Result<()> {
    use codesign_kit::keys::storage::{HARDWARE_KEY_RULE, KeyStorage};
    let Some(csr_pem) = order
        .request()
        .certificate
        .as_ref()
        .and_then(|c| c.csr.as_deref())
    else {
        return Ok(());
    };
    let url = args.connection.base_url()?;
    let storage = match &args.key {
        None => None,
        Some(key) if key.starts_with("pkcs11:") => {
            let spki = codesign_kit::keys::csr::inspect(csr_pem.as_bytes())
                .context("the order's CSR")?
                .subject_public_key_info;
            Some(super::token::storage_of_csr_key(
                key,
                args.module.as_deref(),
                &spki,
            )?)
        }
        Some(_) => Some(KeyStorage::File),
    };
    let remote = !url.is_loopback();
    match storage {
        Some(KeyStorage::Token) => Ok(()),
        Some(software) if remote && !args.allow_software_key => bail!(
            "the CSR's key is in {software} and {} is not a local CertCentral; {HARDWARE_KEY_RULE}. Nothing was sent. Use a key on a certified HSM or eToken, or pass --allow-software-key if this CA is a private test CA",
            url.as_str()
        ),
        None if remote && !args.allow_software_key => bail!(
            "the order carries a CSR for a key this command has not seen, and {} is not a local CertCentral: name the key with --key pkcs11:... (its public key is checked against the CSR's) so the hardware-key rule can be checked ({HARDWARE_KEY_RULE}), or pass --allow-software-key if this CA is a private test CA. Nothing was sent",
            url.as_str()
        ),
        Some(software) if remote => {
            eprintln!(
                "warning: the CSR's key is in {software}; ordering from {} as --allow-software-key says: only a private CA may issue for it",
                url.as_str()
            );
            Ok(())
        }
        None if remote => {
            eprintln!(
                "warning: the CSR's key was not shown with --key; ordering from {} as --allow-software-key says",
                url.as_str()
            );
            Ok(())
        }
        Some(software) => {
            eprintln!(
                "notice: the CSR's key is in {software}: fine for the local CertCentral at {}, refused by a publicly trusted CA",
                url.as_str()
            );
            Ok(())
        }
        None => Ok(()),
    }
}

/// `status`: an order's status, requests and certificate.
pub fn status(args: StatusArgs) -> Result<()> {
    let client = args.connection.client()?;
    let info = runtime()?.block_on(client.order_info(args.order_id))?;
    if args.json {
        super::io::print_json(&info)?;
        return Ok(());
    }
    // What CertCentral says is shown escaped: it is text from outside.
    let shown = |text: &str| codesign_kit::keys::text::escape_unsafe(text, false);
    println!("order {}: {}", info.id, shown(&info.status.to_string()));
    if let Some(product) = &info.product {
        println!("product: {}", shown(&product.name_id));
    }
    if let Some(created) = &info.date_created {
        println!("placed: {}", shown(created));
    }
    if let Some(alt) = &info.alternative_order_id {
        println!("alternative order ID: {}", shown(alt));
    }
    if let Some(method) = &info.cs_provisioning_method {
        println!("provisioning method: {}", shown(method));
    }
    if let Some(code) = &info.hardware_init_code {
        println!(
            "hardware init code: {} (for DigiCert Hardware Certificate Installer)",
            shown(code)
        );
    }
    for r in &info.requests {
        println!("request {}: {}", r.id, shown(&r.status.to_string()));
    }
    if let Some(renewed) = info.renewal_of_order_id {
        println!("renews order {renewed}");
    }
    if let Some(by) = info.renewed_order_id {
        println!("renewed by order {by}");
    }
    match info.certificate_id() {
        Some(cert) => println!("certificate ID: {cert}"),
        None => println!("certificate ID: none yet"),
    }
    if let Some(cert) = &info.certificate {
        if let (Some(from), Some(till)) = (&cert.valid_from, &cert.valid_till) {
            let left = cert
                .days_remaining
                .map_or(String::new(), |d| format!(", {d} days left"));
            println!("valid: {} to {}{left}", shown(from), shown(till));
        }
        if let Some(serial) = &cert.serial_number {
            println!("serial number: {}", shown(serial));
        }
    }
    if let Some(till) = &info.order_valid_till {
        println!("order valid till: {}", shown(till));
    }
    Ok(())
}

/// `download`: a certificate or chain, written where `--out` says.
pub fn download(args: DownloadArgs) -> Result<()> {
    let format = match args.format {
        FormatArg::PemAll => DownloadFormat::PemAll,
        FormatArg::PemNoroot => DownloadFormat::PemNoRoot,
        FormatArg::PemNointermediate => DownloadFormat::PemNoIntermediate,
        FormatArg::P7b => DownloadFormat::P7b,
    };
    let output = Output::new("--out", &args.out, &[])?;
    if output.is_stdout() && args.json {
        return Err(UsageError(
            "--out - writes the certificate to standard output; --json cannot share it".to_string(),
        )
        .into());
    }
    output.check(overwrite(args.force))?;
    let client = args.connection.client()?;
    let runtime = runtime()?;
    let bytes = if let Some(wait) = args.wait {
        let issued = match runtime.block_on(client.wait_for_issuance(OrderId(args.id), wait)) {
            Ok(certificate) => certificate,
            Err(codesign_kit::order::CertCentralError::StillPending {
                status,
                waited_secs,
                ..
            }) => {
                eprintln!(
                    "order {} is still {status} after {waited_secs} s; nothing was written; run again later (exit status {})",
                    args.id,
                    crate::exit::PENDING
                );
                return Err(crate::QuietExit(crate::exit::PENDING).into());
            }
            Err(e) => return Err(e.into()),
        };
        runtime.block_on(client.download(issued, format))?
    } else if args.by_order {
        runtime.block_on(client.download_by_order(OrderId(args.id), format))?
    } else {
        runtime.block_on(client.download(CertificateId(args.id), format))?
    };
    let leaf_fingerprint = if format == DownloadFormat::P7b {
        None
    } else {
        let chain = Chain::from_pem(&bytes)?;
        Some((
            codesign_kit::keys::spki::sha256_hex(&chain.leaf),
            chain.cas.len(),
        ))
    };
    output.write(&bytes, PUBLIC_FILE_MODE, overwrite(args.force))?;
    if args.json {
        let doc = serde_json::json!({
            "path": args.out,
            "format": format.as_str(),
            "leaf_sha256": leaf_fingerprint.as_ref().map(|f| f.0.clone()),
            "ca_certificates": leaf_fingerprint.as_ref().map(|f| f.1),
        });
        super::io::print_json(&doc)?;
    } else {
        let report = match leaf_fingerprint {
            Some((fingerprint, cas)) => format!(
                "wrote {} to {}: leaf SHA-256 {fingerprint}, {cas} CA certificate(s)",
                format.as_str(),
                output.describe()
            ),
            None => format!("wrote {} to {}", format.as_str(), output.describe()),
        };
        if output.is_stdout() {
            eprintln!("{report}");
        } else {
            println!("{report}");
        }
    }
    Ok(())
}
