//! `provision`: run a plan; `demo`: the whole pipeline on embedded defaults.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use std::sync::Arc;

use codesign_kit::keys::SoftwareKey;
use codesign_kit::order::{ApiKey, BaseUrl, Client, ClientConfig};
use codesign_kit::pipeline::{
    JobOutcome, JobState, Journal, Observer, Plan, PrintObserver, Provisioner, ProvisionerConfig,
    RunSummary, Step,
};
use secrecy::SecretString;
use std::io::IsTerminal;

use super::order::ConnectionArgs;

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// The plan (TOML; see README).
    #[arg(long, value_name = "PLAN.toml")]
    plan: PathBuf,
    /// Continue the jobs of an earlier run from their last completed step.
    #[arg(long)]
    resume: bool,
    /// Jobs at a time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    workers: usize,
    /// How long each job waits for issuance before it is left pending (e.g. 30s, 10m, 2h).
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    wait: String,
    /// The journal (default: PLAN.journal.sqlite beside the plan).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Where provisioning records go (default: records/ beside the plan).
    #[arg(long, value_name = "DIR")]
    records: Option<PathBuf>,
    /// The PKCS#11 module for token URIs without module-path (else PKCS11_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
    /// Sign each provisioning record with this key (PEM); the detached signature goes to
    /// RECORD.json.sig (verify: openssl dgst -sha256 -verify PUB.pem -signature RECORD.json.sig RECORD.json).
    #[arg(long, value_name = "KEY.pem")]
    record_key: Option<PathBuf>,
    /// Print one JSON document with every job's outcome.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// Parses `30s`, `10m`, `2h`, `1d` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("--wait {text}: write e.g. 30s, 10m, 2h"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        other => bail!("--wait {text}: unknown unit {other}; use s, m, h or d"),
    };
    Ok(Duration::from_secs(seconds))
}

/// A progress bar on a terminal: one tick per finished job, the latest step as its message.
struct BarObserver(indicatif::ProgressBar);

impl Observer for BarObserver {
    fn step(&self, job_id: &str, step: Step, _detail: &str) {
        self.0.set_message(format!("{job_id}: {}", step.as_str()));
    }
    fn finished(&self, outcome: &JobOutcome) {
        if outcome.state != JobState::Done {
            self.0.println(format!(
                "{}: {:?} after {} {}",
                outcome.job_id,
                outcome.state,
                outcome.step.as_str(),
                outcome.note.as_deref().unwrap_or("")
            ));
        }
        self.0.inc(1);
    }
}

/// The observer for this output: a bar on a terminal, plain lines otherwise.
fn observer(total: u64) -> Box<dyn Observer> {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} jobs  {elapsed_precise}  {msg}",
            )
            .expect("a valid template"),
        );
        Box::new(BarObserver(bar))
    } else {
        Box::new(PrintObserver)
    }
}

fn print_summary(summary: &RunSummary) {
    println!(
        "{} job(s): {} done, {} pending, {} failed",
        summary.total(),
        summary.done,
        summary.pending.len(),
        summary.failed.len()
    );
    for o in summary.pending.iter().chain(&summary.failed) {
        println!(
            "  {:<24} {:<8} after {:<22} {}",
            o.job_id,
            format!("{:?}", o.state).to_lowercase(),
            o.step.as_str(),
            o.note.as_deref().unwrap_or("")
        );
    }
}

pub fn provision(args: ProvisionArgs) -> Result<()> {
    let plan = Plan::load(&args.plan)?;
    let base = args.plan.parent().unwrap_or(Path::new("."));
    let journal_path = args
        .journal
        .clone()
        .unwrap_or_else(|| args.plan.with_extension("journal.sqlite"));
    if journal_path.exists() && !args.resume {
        bail!(
            "{}: a journal of an earlier run exists; pass --resume to continue it (or remove it to start over)",
            journal_path.display()
        );
    }
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let journal = Journal::open(&journal_path)?;
    let client = args.connection.client()?;
    let config = ProvisionerConfig {
        workers: args.workers,
        wait: parse_duration(&args.wait)?,
        records_dir: args.records.clone().unwrap_or_else(|| base.join("records")),
        module: args.module.clone(),
        record_signer: match &args.record_key {
            Some(path) => Some(Arc::new(
                SoftwareKey::read_pem_file(path, None)
                    .with_context(|| format!("--record-key {}", path.display()))?,
            )),
            None => None,
        },
    };
    let provisioner = Provisioner::new(journal, client, config)?;
    let observer = observer(plan.len());
    let summary = provisioner.run(&plan, observer.as_ref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    if !summary.failed.is_empty() {
        bail!("some jobs failed; fix the cause and run again with --resume");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files (plan, journal, records, keys) in this directory.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

pub fn demo(args: DemoArgs) -> Result<()> {
    let temp = tempfile::tempdir().context("cannot make a temporary directory")?;
    let dir = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("{}", d.display()))?;
            d.clone()
        }
        None => temp.path().to_path_buf(),
    };
    // A throwaway SoftHSM token when SoftHSM is installed; else a software key.
    let softhsm = Path::new(SOFTHSM_MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    let key_section = if softhsm {
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens)?;
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
        // SAFETY: set before any thread of this process reads the environment or loads a module.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
        let pin = codesign_kit::order::generate_alternative_order_id();
        let pin_file = dir.join("user.pin");
        codesign_kit::keys::files::write_atomically(
            &pin_file,
            pin.as_bytes(),
            0o600,
            codesign_kit::keys::files::Overwrite::Replace,
        )?;
        let so_pin = codesign_kit::order::generate_alternative_order_id();
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                "codesign-demo",
                "--so-pin",
                &so_pin,
                "--pin",
                &pin,
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .context("cannot run softhsm2-util")?;
        if !out.status.success() {
            bail!(
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        println!(
            "key store: a throwaway SoftHSM token \"codesign-demo\" in {}",
            tokens.display()
        );
        format!(
            "token = \"pkcs11:token=codesign-demo?module-path={SOFTHSM_MODULE}&pin-source=file:{}\"",
            pin_file.display()
        )
    } else {
        println!(
            "key store: SoftHSM2 is not installed, so a software key (apt-get install softhsm2 for a token)"
        );
        "directory = \"keys\"".to_string()
    };
    let api_key = codesign_kit::order::generate_alternative_order_id();
    let emulator = certcentral_emulator::Emulator::start(
        certcentral_emulator::EmulatorConfig::new(api_key.clone()),
        "127.0.0.1:0".parse().expect("a loopback address"),
    )?;
    println!("CertCentral: the local emulator at {}", emulator.api_base());
    std::fs::write(
        dir.join("order-body.json"),
        r#"{
  "certificate": { "signature_hash": "sha256" },
  "cs_provisioning_method": "email",
  "order_validity": { "years": 1 },
  "skip_approval": true,
  "organization": { "id": 123456 },
  "comments": "codesign-kit demo"
}
"#,
    )?;
    let plan_path = dir.join("plan.toml");
    std::fs::write(
        &plan_path,
        format!(
            "[order]\nproduct = \"code_signing_ev\"\nbody = \"order-body.json\"\n\n[[keys]]\nalgorithm = \"rsa3072\"\n{key_section}\nlabel = \"demo-ev-signer\"\nsubject = \"CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US\"\n"
        ),
    )?;
    let plan = Plan::load(&plan_path)?;
    let journal = Journal::open(&dir.join("plan.journal.sqlite"))?;
    let client = Client::new(ClientConfig::new(
        BaseUrl::parse(&emulator.api_base())?,
        ApiKey::new(SecretString::from(api_key))?,
    ))?;
    let provisioner = Provisioner::new(
        journal,
        client,
        ProvisionerConfig {
            workers: 1,
            wait: Duration::from_secs(60),
            records_dir: dir.join("records"),
            module: None,
            record_signer: None,
        },
    )?;
    let summary = provisioner.run(&plan, &PrintObserver)?;
    if summary.done != 1 {
        let reasons: Vec<String> = summary
            .pending
            .iter()
            .chain(&summary.failed)
            .map(|o| {
                format!(
                    "{:?} after {}: {}",
                    o.state,
                    o.step.as_str(),
                    o.note.as_deref().unwrap_or("")
                )
            })
            .collect();
        bail!("the demo job did not finish: {}", reasons.join("; "));
    }
    let job = provisioner
        .journal()
        .load("demo-ev-signer")?
        .context("the demo job is in the journal")?;
    let record_path = dir.join("records").join("demo-ev-signer.json");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&record_path)?)?;
    // Check, independently of the pipeline's own check, that the key and certificate match.
    if softhsm {
        use codesign_kit::keys::KeySigner;
        let uri: codesign_kit::keys::pkcs11::Pkcs11Uri = format!(
            "pkcs11:token=codesign-demo?module-path={SOFTHSM_MODULE}&pin-source=file:{}",
            dir.join("user.pin").display()
        )
        .parse()?;
        let token = codesign_kit::keys::pkcs11::Module::resolve(&uri, None)?.find_token(&uri)?;
        let session = token.login(&codesign_kit::keys::pkcs11::Pin::resolve(
            &uri,
            &token.description(),
        )?)?;
        let key = session.find_key(None, Some("demo-ev-signer"))?;
        let cert = session
            .certificate_for(&key)?
            .context("no certificate beside the key on the token")?;
        let facts =
            codesign_kit::keys::spki::certificate_facts(&cert).map_err(anyhow::Error::msg)?;
        if facts.subject_public_key_info != key.subject_public_key_info() {
            bail!("the certificate on the token does not match its key");
        }
        println!(
            "verified: the certificate on the token carries the public key of {}",
            record["key"]["uri"].as_str().unwrap_or("")
        );
    }
    println!("order ID: {}", job.order_id.unwrap_or_default());
    println!(
        "certificate subject: {}",
        record["certificate"]["subject"].as_str().unwrap_or("")
    );
    println!(
        "certificate serial: {}",
        record["certificate"]["serial"].as_str().unwrap_or("")
    );
    println!("provisioning record: {}", record_path.display());
    if args.keep.is_none() {
        println!("(the demo's files are removed; pass --keep DIR to keep them)");
    }
    emulator.stop();
    Ok(())
}
