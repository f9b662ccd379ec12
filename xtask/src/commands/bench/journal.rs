//! The shared journal: what a job's journal writes cost in PostgreSQL against SQLite, and the
//! throughput of two host processes against one on a token-bound plan through one database.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use codesign_kit::pipeline::{
    DatabaseUrl, HostClaims, JobSpec, JobState, Journal, KeyLocation, Step,
};
use codesign_testkit::{Postgres, SoftHsm};

use super::args::BenchArgs;
use super::batch::BODY;

/// Per-job journal cost of one backend.
pub(super) struct JournalCost {
    pub(super) backend: &'static str,
    /// Median ms per job over the rounds.
    pub(super) per_job_ms: f64,
}

/// Two hosts against one.
pub(super) struct Hosts {
    pub(super) jobs: usize,
    pub(super) one_host: Duration,
    pub(super) two_hosts: Duration,
    pub(super) refused: u64,
}

fn spec(n: usize) -> JobSpec {
    JobSpec {
        job_id: format!("bench-{n:06}"),
        algorithm: codesign_kit::keys::KeyAlgorithm::P256,
        subject: "CN=Example Corp,C=US".parse().expect("a subject"),
        location: KeyLocation::File {
            path: format!("bench-{n:06}.pem").into(),
        },
        label: format!("bench-{n:06}"),
        renewal_of: None,
        reissue_of: None,
    }
}

/// The journal writes and reads of one job as the pipeline makes them: its row, each step's
/// begin (where the pipeline journals one) and end, its step times for the record.
fn one_job(journal: &Journal, n: usize) -> Result<()> {
    let mut row = journal.ensure(&spec(n))?;
    let steps = [
        (Step::KeyGenerated, true),
        (Step::CsrBuilt, false),
        (Step::OrderValidated, false),
        (Step::OrderSubmitted, true),
        (Step::OrderIssued, false),
        (Step::ChainDownloaded, false),
        (Step::CertificateInstalled, true),
        (Step::Done, true),
    ];
    for (step, begins) in steps {
        if begins {
            journal.begin(&row.spec.job_id, step, "bench")?;
        }
        row.step = step;
        if step == Step::Done {
            row.state = JobState::Done;
            journal.step_times(&row.spec.job_id)?;
        }
        journal.save(&row, "bench")?;
    }
    Ok(())
}

fn cost(journal: &Journal, jobs: usize, rounds: usize, offset: usize) -> Result<f64> {
    let mut per_job = Vec::new();
    for round in 0..rounds {
        let start = Instant::now();
        for n in 0..jobs {
            one_job(journal, offset + round * jobs + n)?;
        }
        per_job.push(start.elapsed().as_secs_f64() * 1000.0 / jobs as f64);
    }
    per_job.sort_by(f64::total_cmp);
    Ok(per_job[per_job.len() / 2])
}

/// SQLite and PostgreSQL, rounds interleaved; `None` without a PostgreSQL server.
pub(super) fn journal_cost(args: &BenchArgs) -> Result<Option<Vec<JournalCost>>> {
    let pg = match Postgres::start() {
        Ok(pg) => pg,
        Err(why) => {
            eprintln!("journal: no figures: {why}");
            return Ok(None);
        }
    };
    let url: DatabaseUrl = pg.create_database("bench").parse()?;
    let host = HostClaims {
        host_id: "bench".to_string(),
        lease: Duration::from_secs(30),
    };
    let dir = tempfile::tempdir()?;
    let sqlite = Journal::open(&dir.path().join("bench.journal.sqlite"))?;
    let postgres = Journal::connect(&url, "bench.toml", &host)?;
    let jobs = args.journal_jobs;
    eprintln!("journal: {jobs} jobs a round, 3 rounds each, SQLite and PostgreSQL alternating");
    let (mut lite, mut pgs) = (Vec::new(), Vec::new());
    for round in 0..3 {
        lite.push(cost(&sqlite, jobs, 1, round * jobs)?);
        pgs.push(cost(&postgres, jobs, 1, round * jobs)?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(Some(vec![
        JournalCost {
            backend: "SQLite (file, WAL, group flush)",
            per_job_ms: median(lite),
        },
        JournalCost {
            backend: "PostgreSQL 15 (loopback TCP, synchronous commit for keys, orders, stops)",
            per_job_ms: median(pgs),
        },
    ]))
}

/// RSA-3072 jobs on SoftHSM (2 workers a host), CertCentral's windows on: one host process
/// against two (each its own SoftHSM store, the same token label), one database.
pub(super) fn two_hosts(args: &BenchArgs) -> Result<Option<Hosts>> {
    let pg = match Postgres::start() {
        Ok(pg) => pg,
        Err(why) => {
            eprintln!("journal: no two-host figures: {why}");
            return Ok(None);
        }
    };
    let jobs = args.hosts_jobs;
    let key = "bench-hosts-key";
    let mut config = certcentral_emulator::EmulatorConfig::new(key);
    config.settings.polls_until_issued = 0;
    config.settings.rate_limits = true;
    let emulator =
        certcentral_emulator::Emulator::start(config, "127.0.0.1:0".parse().expect("loopback"))?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("body.json"), BODY)?;
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n[[keys]]\ncount = {jobs}\nalgorithm = \"rsa3072\"\ntoken = \"pkcs11:token=fleet\"\nlabel = \"fleet-{{n}}\"\nsubject = \"CN=Example Corp,C=US\"\n"
        ),
    )?;
    let pin = "fleet-user-pin";
    let run = |database: &str, hosts: &[&str]| -> Result<Duration> {
        let url = pg.create_database(database);
        let mut children = Vec::new();
        let mut stores = Vec::new();
        let start = Instant::now();
        for host in hosts {
            let hsm = SoftHsm::create().map_err(anyhow::Error::msg)?;
            hsm.try_init_token("fleet", "fleet-so-pin", pin)
                .map_err(anyhow::Error::msg)?;
            let mut command = std::process::Command::new(std::env::current_exe()?);
            command
                .args(["provision", "--plan"])
                .arg(&plan)
                .args(["--journal", &url, "--host-id", host])
                .args(["--workers", "2", "--wait", "120s", "--records"])
                .arg(dir.path().join(format!("records-{database}-{host}")))
                .arg("--lock-dir")
                .arg(dir.path().join(format!("locks-{database}-{host}")))
                .env("DIGICERT_API_KEY", key)
                .env("CERTCENTRAL_BASE_URL", emulator.api_base())
                .env("PKCS11_PIN", pin)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            for (k, v) in hsm.env() {
                command.env(k, v);
            }
            children.push(command.spawn()?);
            stores.push(hsm);
        }
        for child in children {
            let out = child.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "a host's provision failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                );
            }
        }
        let elapsed = start.elapsed();
        let done = pg.psql(database, "SELECT COUNT(*) FROM jobs WHERE state = 'done'");
        if done != jobs.to_string() {
            bail!("{database}: {done} of {jobs} jobs done");
        }
        Ok(elapsed)
    };
    eprintln!(
        "journal: {jobs} RSA-3072 jobs on SoftHSM, 2 workers a host, CertCentral's windows; one host, then two, then one, then two"
    );
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for round in 0..2 {
        one.push(run(&format!("one{round}"), &["a"])?);
        two.push(run(&format!("two{round}"), &["a", "b"])?);
    }
    let refused = emulator.rate_limited_count();
    emulator.stop();
    Ok(Some(Hosts {
        jobs,
        one_host: one.into_iter().min().unwrap_or_default(),
        two_hosts: two.into_iter().min().unwrap_or_default(),
        refused,
    }))
}
