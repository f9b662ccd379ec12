//! `provision`: run a plan; `demo`: the whole pipeline on embedded defaults.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use std::sync::Arc;

use codesign_kit::keys::files::InputKind;
use codesign_kit::keys::{KeysError, SoftwareKey};
use codesign_kit::pipeline::{
    DatabaseUrl, HostClaims, Journal, JournalLocation, Plan, Provisioner, ProvisionerConfig,
    RunSummary,
};

use super::order::ConnectionArgs;
use crate::UsageError;
use secrecy::SecretString;
use zeroize::Zeroizing;

/// The most workers a run may have: more than any token or CertCentral's rate limits can use.
pub const MAX_WORKERS: usize = 64;

/// `provision`'s arguments.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Continue the jobs of an earlier run from their last completed step (on a shared
    /// journal: this host's earlier run; a host's first run on the plan needs no --resume).
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// What a run of the pipeline takes (`provision`, `renew`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan (TOML; see README; `-` for standard input, with --journal).
    #[arg(long, value_name = "PLAN.toml")]
    pub(crate) plan: PathBuf,
    /// Jobs at a time at the tokens: making keys and CSRs, installing certificates (1 to 64).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=MAX_WORKERS as i64))]
    workers: u16,
    /// Jobs at a time at CertCentral: ordering, waiting for issuance, downloading (1 to 64). A
    /// job there holds no token worker.
    #[arg(long, value_name = "N", default_value_t = ProvisionerConfig::DEFAULT_API_WORKERS as u16,
          value_parser = clap::value_parser!(u16).range(1..=MAX_WORKERS as i64))]
    api_workers: u16,
    /// How long each job waits for issuance before it is left pending (e.g. 30s, 10m, 2h).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    wait: Duration,
    /// The journal: a SQLite file, or a PostgreSQL database, postgres://USER@HOST:PORT/DATABASE
    /// (in clear to this machine only; elsewhere with ?sslmode=require). Default: the plan's
    /// [journal], else PLAN.journal.sqlite beside the plan. A database's password comes from
    /// PGPASSWORD or a password file (~/.pgpass, PGPASSFILE), and is shown nowhere.
    #[arg(long, value_name = "FILE|URL")]
    journal: Option<String>,
    /// A shared journal's server certificate is checked against the CA certificates in this PEM
    /// file (else the file PGSSLROOTCERT names, else the platform's roots); for URLs with
    /// sslmode=require.
    #[arg(long, value_name = "CA.pem")]
    journal_ca: Option<PathBuf>,
    /// This host's ID on a shared (PostgreSQL) journal: the jobs whose keys it makes are its
    /// own for good (default: the machine's hostname). One process per host ID.
    #[arg(long, value_name = "NAME", value_parser = parse_host_id)]
    host_id: Option<String>,
    /// On a shared journal: how long this host's claims outlive it without a heartbeat; a host
    /// killed before making a job's key leaves that job to the others after it (e.g. 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_lease)]
    lease: Duration,
    /// Where provisioning records go (default: records/ beside the plan).
    #[arg(long, value_name = "DIR")]
    records: Option<PathBuf>,
    /// The PKCS#11 module for token URIs without module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    pub(crate) module: Option<PathBuf>,
    /// Sign each provisioning record with this key (PEM); the detached signature goes to
    /// RECORD.json.sig (verify: openssl dgst -sha256 -verify PUB.pem -signature RECORD.json.sig RECORD.json).
    #[arg(long, value_name = "KEY.pem")]
    record_key: Option<PathBuf>,
    /// The --record-key file's passphrase is in this environment variable.
    #[arg(long, value_name = "VAR", requires = "record_key")]
    record_key_passphrase_env: Option<String>,
    /// The directory of the locks that keep two runs from making keys of one label on one token
    /// at once; every process that may share tokens must use the same (default:
    /// /run/lock/codesign-kit, else /tmp/codesign-kit-locks).
    #[arg(long, value_name = "DIR")]
    lock_dir: Option<PathBuf>,
    /// Order certificates for software keys (key files, software tokens such as SoftHSM2) from a
    /// CertCentral off this machine: only for a private test CA; a publicly trusted CA refuses
    /// them. Without it such a plan is refused before anything is done.
    #[arg(long)]
    allow_software_key: bool,
    /// Print one JSON document with every job's outcome.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,
}

/// A `--host-id`: 1 to 64 letters, digits, `.`, `-` or `_`.
fn parse_host_id(text: &str) -> std::result::Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "\"{}\" is not a host ID: 1 to 64 letters, digits, '.', '-' or '_'",
            text.escape_debug()
        ))
    }
}

/// A `--lease`: a duration of 2 s to 1 h.
fn parse_lease(text: &str) -> std::result::Result<Duration, String> {
    let lease = parse_duration(text)?;
    if !(Duration::from_secs(2)..=Duration::from_secs(3600)).contains(&lease) {
        return Err(format!("\"{text}\": a lease lasts from 2s to 1h"));
    }
    Ok(lease)
}

/// The machine's hostname, as a host ID (letters outside the rule replaced by `-`).
fn default_host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let cleaned: String = name
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "localhost".to_string()
    } else {
        cleaned
    }
}

/// Parses `30s`, `10m`, `2h`, `1d` or plain seconds (at most 366 days).
pub(crate) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("\"{text}\" is not a duration; write e.g. 30s, 10m, 2h"))?;
    let unit_seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => return Err(format!("unknown unit \"{other}\"; use s, m, h or d")),
    };
    let seconds = n
        .checked_mul(unit_seconds)
        .filter(|s| *s <= 366 * 86400)
        .ok_or_else(|| format!("\"{text}\" is longer than 366 days"))?;
    Ok(Duration::from_secs(seconds))
}

/// The progress display for this output: a bar on a terminal, plain lines otherwise.
pub(crate) fn observer(total: u64) -> super::progress::Progress {
    super::progress::Progress::new(total)
}

fn print_summary(summary: &RunSummary) {
    let elsewhere = if summary.elsewhere.is_empty() {
        String::new()
    } else {
        format!(", {} another host's", summary.elsewhere.len())
    };
    println!(
        "{} job(s): {} done, {} pending, {} failed{elsewhere}",
        summary.total(),
        summary.done,
        summary.pending.len(),
        summary.failed.len()
    );
    for o in summary
        .pending
        .iter()
        .chain(&summary.failed)
        .chain(&summary.elsewhere)
    {
        println!(
            "  {:<24} {:<8} after {:<22} {}",
            o.job_id,
            o.state.as_str(),
            o.step.as_str(),
            o.note.as_deref().unwrap_or("")
        );
    }
}

/// What a run finds of its journal before it starts, for the command's rule.
pub(crate) struct JournalFound {
    /// The journal holds jobs (a SQLite file: exists).
    pub(crate) holds_jobs: bool,
    /// This host worked on them in an earlier run (so this run resumes it). On a shared journal
    /// a host that joins the plan for the first time has not, however many jobs others made.
    pub(crate) earlier_run_here: bool,
}

/// A run's plan, journal and provisioner, everything checked before the journal exists.
pub(crate) struct Prepared {
    pub(crate) plan: Plan,
    pub(crate) journal_existed: bool,
    pub(crate) provisioner: Provisioner,
}

/// Checks a run's arguments and sets it up. `journal_rule` says what an existing (or missing)
/// journal means for this command.
pub(crate) fn prepare(
    args: &RunArgs,
    journal_rule: impl FnOnce(&JournalLocation, &JournalFound) -> Result<()>,
) -> Result<Prepared> {
    // Everything that can be checked is checked before the journal exists, so a refused run
    // leaves nothing behind and the corrected run starts afresh.
    let from_stdin = super::io::is_stdio(&args.plan);
    let plan = if from_stdin {
        let text = super::io::read_text_arg(&args.plan, InputKind::Plan)?;
        let here = std::env::current_dir().context("cannot read the working directory")?;
        Plan::parse(&text, &here, Path::new("standard input"))?
    } else {
        Plan::load(&args.plan)?
    };
    let base = if from_stdin {
        Path::new(".")
    } else {
        args.plan.parent().unwrap_or(Path::new("."))
    };
    // --journal, else the plan's [journal], else a file beside the plan.
    let location = match (&args.journal, &plan.journal) {
        (Some(text), _) => journal_location(text, args.journal_ca.as_deref())?,
        (None, Some(named)) => match (&args.journal_ca, &named.ca) {
            (Some(ca), _) => resolve_journal(named.location.clone(), Some(ca), "--journal-ca")?,
            (None, ca) => resolve_journal(named.location.clone(), ca.as_deref(), "journal.ca")?,
        },
        (None, None) if from_stdin => {
            return Err(UsageError(
                "--plan - reads the plan from standard input; name its journal with --journal FILE (or [journal] in the plan)"
                    .to_string(),
            )
            .into());
        }
        (None, None) => resolve_journal(
            JournalLocation::File(args.plan.with_extension("journal.sqlite")),
            args.journal_ca.as_deref(),
            "--journal-ca",
        )?,
    };
    // A database journal is reached (and its schema brought up to date) before the rule is
    // judged, since whether it holds jobs is in it; a file's existence is judged before the file
    // is made.
    let plan_name = args.plan.file_name().map_or_else(
        || "standard input".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let host = HostClaims {
        host_id: args.host_id.clone().unwrap_or_else(default_host_id),
        lease: args.lease,
    };
    let (journal, journal_existed) = match &location {
        JournalLocation::File(path) => {
            let existed = path.exists();
            journal_rule(
                &location,
                &JournalFound {
                    holds_jobs: existed,
                    earlier_run_here: existed,
                },
            )?;
            (None, existed)
        }
        JournalLocation::Postgres(_) => {
            let journal = Journal::open_location(&location, &plan_name, &host)?;
            let found = JournalFound {
                holds_jobs: journal.job_count()? > 0,
                earlier_run_here: journal.worked_here()?,
            };
            journal_rule(&location, &found)?;
            let working = journal.other_live_hosts()?;
            if found.holds_jobs && !found.earlier_run_here {
                eprintln!(
                    "{location}: joining the plan{}",
                    if working.is_empty() {
                        " (no other host works on it now)".to_string()
                    } else {
                        format!("; hosts working on it now: {}", working.join(", "))
                    }
                );
            }
            (Some(journal), found.holds_jobs)
        }
    };
    let client = args.connection.client()?;
    let record_signer = match &args.record_key {
        Some(path) => {
            let passphrase =
                super::keys::passphrase_from_env(args.record_key_passphrase_env.as_deref())?;
            let pem = Zeroizing::new(super::io::read_arg(path, InputKind::PrivateKey)?);
            let key = SoftwareKey::from_pem(&pem, passphrase.as_ref(), path).map_err(|e| match e {
                KeysError::PassphraseRequired { .. } => anyhow::anyhow!(
                    "--record-key: {e}; give its passphrase with --record-key-passphrase-env VAR"
                ),
                other => anyhow::Error::new(other).context("--record-key"),
            })?;
            Some(Arc::new(key))
        }
        None => None,
    };
    let config = ProvisionerConfig {
        workers: usize::from(args.workers),
        api_workers: usize::from(args.api_workers),
        wait: args.wait,
        module: super::sources::default_module(args.module.as_deref()),
        record_signer,
        lock_dir: args
            .lock_dir
            .clone()
            .unwrap_or_else(ProvisionerConfig::default_lock_dir),
        pin_source: Arc::new(super::sources::EnvOrPrompt),
        allow_software_keys: args.allow_software_key,
        ..ProvisionerConfig::new(args.records.clone().unwrap_or_else(|| base.join("records")))
    };
    let journal = match journal {
        Some(journal) => journal,
        None => Journal::open_location(&location, &plan_name, &host)?,
    };
    let provisioner = Provisioner::new(journal, client, config)?;
    Ok(Prepared {
        plan,
        journal_existed,
        provisioner,
    })
}

/// `--json`'s document of a run: the counts, then every job of the run (done ones too) with its
/// key, order, certificate and files, in job ID order.
fn run_document(provisioner: &Provisioner, summary: &RunSummary) -> Result<serde_json::Value> {
    let mut ids: Vec<&str> = summary
        .done_jobs
        .iter()
        .map(String::as_str)
        .chain(summary.pending.iter().map(|o| o.job_id.as_str()))
        .chain(summary.failed.iter().map(|o| o.job_id.as_str()))
        .chain(summary.elsewhere.iter().map(|o| o.job_id.as_str()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        match provisioner.job_report(id)? {
            Some(mut report) => {
                report.held_by = summary
                    .elsewhere
                    .iter()
                    .find(|o| o.job_id == id)
                    .and_then(|o| o.held_by.clone());
                jobs.push(serde_json::to_value(report)?);
            }
            None => {
                // A job refused before its row existed, or left to a host that has its token:
                // its outcome is all there is.
                if let Some(o) = summary
                    .failed
                    .iter()
                    .chain(&summary.elsewhere)
                    .find(|o| o.job_id == id)
                {
                    jobs.push(serde_json::to_value(o)?);
                }
            }
        }
    }
    Ok(serde_json::json!({
        "total": summary.total(),
        "done": summary.done,
        "pending": summary.pending.len(),
        "failed": summary.failed.len(),
        "elsewhere": summary.elsewhere.len(),
        "token_keys_made": summary.token_keys_made,
        "key_generation_us": summary.key_generation_us,
        "jobs": jobs,
    }))
}

/// Ends a run: a refusal before any job removes the journal this run made and left empty; the
/// summary is printed; failed jobs make the run fail.
pub(crate) fn finish(
    prepared: Prepared,
    result: Result<RunSummary, codesign_kit::pipeline::PipelineError>,
    json: bool,
    again: &str,
) -> Result<RunSummary> {
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            // Refused before any job (a token missing, no PIN): a journal this run made and left
            // empty is removed.
            if !prepared.journal_existed
                && let Some(journal) = prepared.provisioner.into_journal()
                && let Err(left) = journal.discard_if_empty()
            {
                eprintln!("warning: the empty journal of this refused run is left behind: {left}");
            }
            return Err(e.into());
        }
    };
    if json {
        super::io::print_json(&run_document(&prepared.provisioner, &summary)?)?;
    } else {
        print_summary(&summary);
    }
    if !summary.failed.is_empty() {
        bail!("some jobs failed; fix the cause and {again}");
    }
    if !summary.pending.is_empty() {
        // Not a failure, and not done: "try again later" (EX_TEMPFAIL), so that a script does not
        // take a pending run for a finished one.
        eprintln!(
            "{} job(s) wait for CertCentral (approval, validation or issuance); {again} later (exit status {})",
            summary.pending.len(),
            crate::exit::PENDING
        );
        return Err(crate::QuietExit(crate::exit::PENDING).into());
    }
    Ok(summary)
}

/// `provision`: every job of a plan, journaled, resumable.
pub fn provision(args: ProvisionArgs) -> Result<()> {
    let resume = args.resume;
    let prepared = prepare(&args.run, |journal, found| {
        // Only this host's own earlier run needs --resume: a host that joins a shared plan
        // others work on (or worked on) starts its own first run.
        if found.earlier_run_here && !resume {
            bail!(
                "{journal}: a journal of an earlier run exists; pass --resume to continue it (or remove it to start over)"
            );
        }
        Ok(())
    })?;
    let observer = observer(prepared.plan.len());
    let result = prepared.provisioner.run(&prepared.plan, &observer);
    observer.end(result.as_ref().ok());
    finish(prepared, result, args.run.json, "run again with --resume").map(|_| ())
}

/// A `--journal` argument: a file, or a database (its TLS roots from `--journal-ca`, else the
/// file `PGSSLROOTCERT` names, else the platform's).
pub(crate) fn journal_location(text: &str, ca: Option<&Path>) -> Result<JournalLocation> {
    let location = JournalLocation::parse(text).map_err(|e| UsageError(e.to_string()))?;
    if let JournalLocation::Postgres(url) = &location
        && url.has_password()
    {
        eprintln!(
            "warning: the --journal URL holds a password, which other users of this machine can read in the process list; give it in PGPASSWORD or a password file (~/.pgpass, PGPASSFILE) instead"
        );
    }
    resolve_journal(location, ca, "--journal-ca")
}

/// A journal made ready to open: a database's TLS roots (`ca`, else `PGSSLROOTCERT`) and, when
/// its URL has none, its password (`PGPASSWORD`, else the password file: `PGPASSFILE` or
/// `~/.pgpass`, as libpq reads it). `ca_from` names where `ca` was given, for messages.
pub(crate) fn resolve_journal(
    location: JournalLocation,
    ca: Option<&Path>,
    ca_from: &str,
) -> Result<JournalLocation> {
    let JournalLocation::Postgres(url) = location else {
        if ca.is_some() {
            return Err(UsageError(format!(
                "{ca_from} is for a PostgreSQL journal (postgres://...?sslmode=require)"
            ))
            .into());
        }
        return Ok(location);
    };
    if ca.is_some() && !url.uses_tls() {
        return Err(UsageError(format!(
            "{ca_from}: {url} connects without TLS; add sslmode=require to the URL"
        ))
        .into());
    }
    let ca = ca.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("PGSSLROOTCERT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let url = match ca {
        Some(path) if url.uses_tls() => {
            let pem = super::io::read_arg(&path, InputKind::Certificates)?;
            url.trusting(&pem)
                .with_context(|| format!("{ca_from} {}", super::io::shown_path(&path)))?
        }
        _ => url,
    };
    Ok(JournalLocation::Postgres(with_password(url)?))
}

/// `url` with the password libpq would use when it has none of its own: `PGPASSWORD`, else the
/// first matching line of the password file (`PGPASSFILE`, else `~/.pgpass`). A password file
/// that others may read is skipped with a warning, as libpq does.
fn with_password(url: DatabaseUrl) -> Result<DatabaseUrl> {
    if url.has_password() {
        return Ok(url);
    }
    if let Some(password) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        let password = password
            .into_string()
            .map_err(|_| anyhow::anyhow!("PGPASSWORD is not UTF-8 text"))?;
        return Ok(url.with_password(SecretString::from(password)));
    }
    let passfile = match std::env::var_os("PGPASSFILE").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(".pgpass"),
            None => return Ok(url),
        },
    };
    let Ok(meta) = std::fs::metadata(&passfile) else {
        return Ok(url);
    };
    if !meta.is_file() {
        eprintln!(
            "warning: password file {} is not a plain file; it is not read",
            passfile.display()
        );
        return Ok(url);
    }
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "warning: password file {} has group or world access; it is not read (chmod 0600 it, as libpq asks)",
            passfile.display()
        );
        return Ok(url);
    }
    let contents = Zeroizing::new(super::io::read_text_arg(
        &passfile,
        InputKind::PasswordFile,
    )?);
    Ok(match url.password_in_passfile(&contents) {
        Some(password) => url.with_password(password),
        None => url,
    })
}

/// `jobs`' arguments.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The journal: a SQLite file, or a PostgreSQL database URL (postgres://...).
    #[arg(long, value_name = "FILE|URL")]
    journal: String,
    /// The CA certificates a TLS journal's server is checked against (else PGSSLROOTCERT).
    #[arg(long, value_name = "CA.pem")]
    journal_ca: Option<PathBuf>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

/// `jobs`: every job of a journal with its host, step and state, order and certificate; on a
/// shared journal, as every host sees it.
pub fn jobs(args: JobsArgs) -> Result<()> {
    let location = journal_location(&args.journal, args.journal_ca.as_deref())?;
    if let JournalLocation::File(path) = &location
        && !path.exists()
    {
        bail!("--journal {}: no such journal", path.display());
    }
    let journal = Journal::view(&location)?;
    let jobs = journal.status()?;
    let mut by_host: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for job in &jobs {
        let entry = by_host
            .entry(job.host.clone().unwrap_or_else(|| "-".to_string()))
            .or_default();
        entry.1 += 1;
        if job.state == codesign_kit::pipeline::JobState::Done {
            entry.0 += 1;
        }
    }
    if args.json {
        let hosts: Vec<serde_json::Value> = by_host
            .iter()
            .map(|(host, (done, total))| serde_json::json!({"host": host, "done": done, "jobs": total}))
            .collect();
        return super::io::print_json(&serde_json::json!({
            "journal": journal.describe(),
            "jobs": jobs,
            "hosts": hosts,
        }));
    }
    println!("{}: {} job(s)", journal.describe(), jobs.len());
    for (host, (done, total)) in &by_host {
        println!("  host {host}: {done} of {total} done");
    }
    let shown = |t: &str| codesign_kit::keys::text::escape_unsafe(t, false);
    for job in &jobs {
        println!(
            "  {:<24} {:<8} {:<22} host {:<16} order {:<10} certificate {:<10} {}",
            shown(&job.job_id),
            job.state.as_str(),
            job.step.as_str(),
            job.host.as_deref().unwrap_or("-"),
            job.order_id.map_or("-".to_string(), |o| o.to_string()),
            job.certificate_id
                .map_or("-".to_string(), |c| c.to_string()),
            job.note.as_deref().map(shown).unwrap_or_default()
        );
    }
    Ok(())
}
