//! After issuance: `renew` (new keys and certificates for what ends within a window), `revoke`
//! (a certificate or an order, and optionally the key on its token) and `expiring` (what ends
//! within a window, from a journal and from CertCentral).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use codesign_kit::order::{CertificateId, OrderId, Revocation, RevokeTarget};
use codesign_kit::pipeline::Journal;
use codesign_kit::pipeline::expiry::{self, Expiry};

use super::order::{ConnectionArgs, runtime};
use crate::{QuietExit, UsageError, exit};

/// `revoke`'s arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["order", "certificate"])))]
pub struct RevokeArgs {
    /// Revoke every certificate of this order.
    #[arg(long, value_name = "ORDER_ID")]
    order: Option<OrderId>,
    /// Revoke this certificate alone (the order stays, and may be reissued).
    #[arg(long, value_name = "CERTIFICATE_ID")]
    certificate: Option<CertificateId>,
    /// Why, for the administrator who approves it (and CertCentral's records).
    #[arg(long, value_name = "TEXT")]
    comment: String,
    /// Revoke at once, without an administrator's approval (the API key must be an
    /// administrator's).
    #[arg(long)]
    skip_approval: bool,
    /// Then destroy this key on its token, with its public key and certificates (a key URI with
    /// id= or object=). Asked to confirm by typing the key's label, unless --yes.
    #[arg(long, value_name = "URI")]
    destroy_key: Option<String>,
    /// Destroy the key without asking.
    #[arg(long, requires = "destroy_key")]
    yes: bool,
    /// The PKCS#11 module when the URI has no module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `revoke`: checks everything first (the API key, the key to destroy: its token, login and
/// the key itself, and the confirmation), then revokes, then destroys the key.
pub fn revoke(args: RevokeArgs) -> Result<()> {
    let target = match (args.order, args.certificate) {
        (Some(order), None) => RevokeTarget::Order(order),
        (None, Some(certificate)) => RevokeTarget::Certificate(certificate),
        _ => return Err(UsageError("give --order or --certificate".to_string()).into()),
    };
    if args.comment.trim().is_empty() {
        return Err(UsageError("--comment: say why the certificate is revoked".to_string()).into());
    }
    let client = args.connection.client()?;
    // The key to destroy is found, and the destruction confirmed, before anything is revoked.
    let doomed = match &args.destroy_key {
        Some(uri) => {
            let (uri, token, session) = super::token::key_session(uri, args.module.as_deref())?;
            let key = session
                .find_key(uri.id.as_deref(), uri.object.as_deref())
                .context("--destroy-key")?;
            let label = key.label().to_string();
            drop(key);
            if !args.yes {
                confirm(&label, &token.description())?;
            }
            Some((session, uri))
        }
        None => None,
    };
    let revocation =
        runtime()?.block_on(client.revoke(target, &args.comment, args.skip_approval))?;
    let said = match &revocation {
        Revocation::Revoked => format!("{target} revoked"),
        Revocation::AlreadyRevoked => format!("{target} was revoked already"),
        Revocation::Requested(request) => format!(
            "{target}: revocation request {} waits for an administrator's approval (approve it in CertCentral, or `PUT /request/{}/status`)",
            request.id, request.id
        ),
    };
    let mut destroyed = None;
    if let Some((session, uri)) = doomed {
        let key = session
            .find_key(uri.id.as_deref(), uri.object.as_deref())
            .context("--destroy-key: the key is gone since it was checked")?;
        let count = session.destroy_key(key).context("--destroy-key")?;
        destroyed = Some((uri.to_string(), count));
    }
    if args.json {
        let status = match &revocation {
            Revocation::Revoked => "revoked",
            Revocation::AlreadyRevoked => "already_revoked",
            Revocation::Requested(_) => "requested",
        };
        let mut doc = serde_json::json!({ "target": target.to_string(), "status": status });
        if let Revocation::Requested(request) = &revocation {
            doc["request_id"] = serde_json::json!(request.id.0);
        }
        if let Some((uri, count)) = &destroyed {
            doc["destroyed"] = serde_json::json!({ "key": uri, "objects": count });
        }
        super::io::print_json(&doc)?;
    } else {
        println!("{said}");
        if let Some((uri, count)) = destroyed {
            println!("destroyed {uri}: {count} object(s) (key, public key, certificates)");
        }
    }
    Ok(())
}

/// Asks for the key's label on a terminal; refuses without one.
fn confirm(label: &str, token: &str) -> Result<()> {
    super::io::confirm_on_terminal(
        &format!("--destroy-key: destroying key \"{label}\" on {token} cannot be undone"),
        &format!(
            "destroy key \"{label}\" on {token} after the revocation? type its label to confirm: "
        ),
        label,
        "nothing was revoked or destroyed",
    )
}

/// `expiring`'s arguments.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).multiple(true).args(["journal", "records", "certcentral"])))]
pub struct ExpiringArgs {
    /// The certificates of this journal's done jobs: a SQLite file, or a PostgreSQL database
    /// URL (postgres://..., shared by several hosts).
    #[arg(long, value_name = "FILE|URL")]
    journal: Option<String>,
    /// The CA certificates a TLS journal's server is checked against (else PGSSLROOTCERT).
    #[arg(long, value_name = "CA.pem", requires = "journal")]
    journal_ca: Option<PathBuf>,
    /// The certificates the provisioning records in this directory describe.
    #[arg(long, value_name = "DIR")]
    records: Option<PathBuf>,
    /// The account's issued orders, as CertCentral lists them.
    #[arg(long)]
    certcentral: bool,
    /// The window (e.g. 30d, 12h).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = super::provision::parse_duration)]
    within: Duration,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// `expiring`: exits 0 when nothing ends within the window, [`exit::EXPIRING`] when something
/// does (or has ended), 1 on an error.
pub fn expiring(args: ExpiringArgs) -> Result<()> {
    let days = i64::try_from(args.within.as_secs() / 86_400).unwrap_or(i64::MAX);
    let mut all: Vec<Expiry> = Vec::new();
    if let Some(journal) = &args.journal {
        all.extend(journal_expiries(journal, args.journal_ca.as_deref())?);
    }
    if let Some(dir) = &args.records {
        all.extend(
            expiry::from_records(dir, unix_now())
                .with_context(|| format!("--records {}", dir.display()))?,
        );
    }
    if args.certcentral {
        let client = args.connection.client()?;
        all.extend(runtime()?.block_on(expiry::from_certcentral(&client))?);
    }
    all.sort_by_key(|e| e.days_left);
    let inside = expiry::inside(&all, days);
    if args.json {
        let doc = serde_json::json!({ "within_days": days, "expiring": inside, "seen": all.len() });
        super::io::print_json(&doc)?;
    } else if inside.is_empty() {
        println!(
            "nothing ends within {days} days ({} certificate(s) seen)",
            all.len()
        );
    } else {
        for e in &inside {
            let what = match (&e.job_id, e.order_id) {
                (Some(job), Some(order)) => format!("{job} (order {order})"),
                (Some(job), None) => job.clone(),
                (None, Some(order)) => format!("order {order}"),
                (None, None) => "?".to_string(),
            };
            let when = if e.days_left < 0 {
                format!("ended {} day(s) ago", -e.days_left)
            } else {
                format!("{} day(s) left", e.days_left)
            };
            println!("{what}: valid till {}, {when}", e.valid_till);
        }
    }
    if inside.is_empty() {
        Ok(())
    } else {
        Err(QuietExit(exit::EXPIRING).into())
    }
}

fn journal_expiries(text: &str, ca: Option<&Path>) -> Result<Vec<Expiry>> {
    let location = super::provision::journal_location(text, ca)?;
    if let codesign_kit::pipeline::JournalLocation::File(path) = &location
        && !path.is_file()
    {
        return Err(anyhow::anyhow!(
            "--journal {}: no such journal",
            path.display()
        ));
    }
    let journal = Journal::view(&location).with_context(|| format!("--journal {location}"))?;
    Ok(expiry::from_journal(&journal, unix_now())?)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `renew`'s arguments.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// Renew the certificates that end within this window (e.g. 30d; at most 366d).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = super::provision::parse_duration)]
    within: Duration,
    /// Renew only this job (repeat for several); default: every job of the journal.
    #[arg(long = "job", value_name = "JOB_ID")]
    jobs: Vec<String>,
    /// Once a renewal's certificate is installed, destroy the key it replaces (with its public
    /// key, certificate and chain file): the old certificate can sign nothing after that.
    #[arg(long)]
    retire_old: bool,
    #[command(flatten)]
    run: super::provision::RunArgs,
}

/// `renew`: for each done job of the plan's journal whose certificate ends within the window, a
/// renewal job (a new key beside the old one, an order carrying `renewal_of_order_id`, the
/// certificate installed, a record linking old and new), run like `provision` and resumed the
/// same way: running `renew` again after a kill finishes the renewals begun.
pub fn renew(args: RenewArgs) -> Result<()> {
    let days = i64::try_from(args.within.as_secs() / 86_400).unwrap_or(i64::MAX);
    let prepared = super::provision::prepare(&args.run, |journal, found| {
        if !found.holds_jobs {
            anyhow::bail!(
                "{journal}: no journal; renew works on the journal of a provisioned plan"
            );
        }
        Ok(())
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let selection = codesign_kit::pipeline::renew::select(
        prepared.provisioner.journal(),
        days,
        now,
        &args.jobs,
    )?;
    for (job_id, why) in &selection.skipped {
        eprintln!("warning: {job_id} is not renewed: {why}");
    }
    if selection.jobs.is_empty() {
        if args.retire_old {
            retire_old(prepared.provisioner.journal(), args.run.module.as_deref())?;
        }
        if args.run.json {
            println!(
                "{}",
                serde_json::json!({ "renewals": 0, "within_days": days })
            );
        } else {
            println!("nothing to renew: no certificate ends within {days} days");
        }
        return Ok(());
    }
    for job in &selection.jobs {
        if let Some(renewal) = &job.renewal_of {
            eprintln!(
                "{}: renews {} (order {})",
                job.job_id, renewal.job_id, renewal.order_id
            );
        }
    }
    let template = codesign_kit::pipeline::OrderTemplate {
        product: prepared.plan.product.clone(),
        request: prepared.plan.request.clone(),
    };
    let observer = super::provision::observer(selection.jobs.len() as u64);
    let result = prepared
        .provisioner
        .run_jobs(selection.jobs.into_iter(), &template, &observer);
    observer.end(result.as_ref().ok());
    if args.retire_old && result.is_ok() {
        retire_old(prepared.provisioner.journal(), args.run.module.as_deref())?;
    }
    super::provision::finish(prepared, result, args.run.json, "run renew again").map(|_| ())
}

/// Destroys the keys that done renewals replaced, once each (a key already gone is passed
/// over), logging in once per token, and notes it on the old job.
fn retire_old(journal: &Journal, module: Option<&Path>) -> Result<()> {
    use codesign_kit::pipeline::{JobState, KeyLocation};
    let mut sessions: std::collections::HashMap<String, codesign_kit::keys::pkcs11::TokenSession> =
        std::collections::HashMap::new();
    for job_id in journal.done()? {
        let Some(new) = journal.load(&job_id)? else {
            continue;
        };
        let Some(renewal) = &new.spec.renewal_of else {
            continue;
        };
        let Some(mut old) = journal.load(&renewal.job_id)? else {
            continue;
        };
        if old.state != JobState::Done {
            continue;
        }
        let retired = match &old.spec.location {
            KeyLocation::Token { uri } => {
                let token_uri: &codesign_kit::keys::pkcs11::Pkcs11Uri = uri;
                let key = token_uri.to_uri_string(false);
                if !sessions.contains_key(&key) {
                    let token = super::token::find_token(token_uri, module)?;
                    let pin = codesign_kit::keys::pkcs11::Pin::resolve(
                        token_uri,
                        &token.description(),
                        &super::sources::EnvOrPrompt,
                    )?;
                    sessions.insert(key.clone(), token.login(&pin)?);
                }
                let session = &sessions[&key];
                match session.find_key(Some(&old.key_id), None) {
                    Ok(found) => {
                        let count = session.destroy_key(found)?;
                        Some(format!(
                            "{count} object(s) on {}",
                            session.token().description()
                        ))
                    }
                    Err(codesign_kit::keys::KeysError::KeyNotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                }
            }
            KeyLocation::File { path } => {
                let chain = path.with_file_name(format!("{}.chain.pem", old.spec.label));
                if path.exists() {
                    std::fs::remove_file(path)
                        .with_context(|| format!("cannot remove {}", path.display()))?;
                    match std::fs::remove_file(&chain) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(anyhow::Error::new(e)
                                .context(format!("cannot remove {}", chain.display())));
                        }
                        _ => {}
                    }
                    Some(format!("{} and its chain file", path.display()))
                } else {
                    None
                }
            }
        };
        if let Some(what) = retired {
            eprintln!(
                "{}: retired (renewed by {job_id}): destroyed {what}",
                old.spec.job_id
            );
            old.note = Some(format!(
                "retired: its key was destroyed after {job_id} was installed"
            ));
            journal.save(&old, "retired")?;
        }
    }
    Ok(())
}

/// `reissue`'s arguments.
#[derive(Debug, Args)]
pub struct ReissueArgs {
    /// The job whose key is replaced: its order is reissued for a new key.
    #[arg(long = "job", value_name = "JOB_ID")]
    job: String,
    #[command(flatten)]
    run: super::provision::RunArgs,
}

/// `reissue`: a new key beside the job's (the next generation's name), its CSR, the job's order
/// reissued for it (exactly once), the new certificate installed beside the new key, a record
/// naming the job and order reissued. Journaled like `provision`: run it again after a kill.
pub fn reissue(args: ReissueArgs) -> Result<()> {
    let prepared = super::provision::prepare(&args.run, |journal, found| {
        if !found.holds_jobs {
            anyhow::bail!(
                "{journal}: no journal; reissue works on the journal of a provisioned plan"
            );
        }
        Ok(())
    })?;
    let job =
        codesign_kit::pipeline::renew::reissue_job(prepared.provisioner.journal(), &args.job)?;
    eprintln!(
        "{}: a new key for {}, its order {} reissued",
        job.job_id,
        args.job,
        job.reissue_of.as_ref().map_or(0, |r| r.order_id)
    );
    let template = codesign_kit::pipeline::OrderTemplate {
        product: prepared.plan.product.clone(),
        request: prepared.plan.request.clone(),
    };
    let observer = super::provision::observer(1);
    let result = prepared
        .provisioner
        .run_jobs(std::iter::once(job), &template, &observer);
    observer.end(result.as_ref().ok());
    super::provision::finish(prepared, result, args.run.json, "run reissue again").map(|_| ())
}
