//! A batch against CertCentral's request limits: the emulator with its limits on (the documented
//! two rolling windows) and about 150 ms per answer, as over the internet. The figure that counts
//! is the run's wall time against the least time the two windows allow for the requests the run
//! made: the client's limiter should use the windows fully and meet no 429.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use certcentral_emulator::{Emulator, EmulatorConfig};
use secrecy::SecretString;

use super::args::BenchArgs;
use super::batch::{BODY, Quiet};

/// The API-bound row.
pub(super) struct ApiBound {
    pub(super) jobs: usize,
    pub(super) workers: usize,
    pub(super) requests: u64,
    pub(super) refused: u64,
    pub(super) failed: usize,
    pub(super) wall: Duration,
    pub(super) least: Duration,
}

/// The least time in which `requests` requests can be answered under windows of
/// `(count, length)`: request `n` goes at the earliest when every window's `count`-th request
/// before it is a window's length old; the last answer comes one latency later.
pub(super) fn least_time(
    requests: u64,
    windows: &[(u64, Duration)],
    latency: Duration,
) -> Duration {
    if requests == 0 {
        return Duration::ZERO;
    }
    let mut sent: Vec<Duration> = Vec::with_capacity(requests as usize);
    for n in 0..requests as usize {
        let mut at = Duration::ZERO;
        for (count, length) in windows {
            let count = *count as usize;
            if n >= count {
                at = at.max(sent[n - count] + *length);
            }
        }
        sent.push(at);
    }
    sent[sent.len() - 1] + latency
}

const LATENCY: Duration = Duration::from_millis(140);
const JITTER: Duration = Duration::from_millis(20);

/// The emulator as CertCentral is over the internet: its rate limits on, about 150 ms per answer,
/// orders issued at the first poll.
fn limited_emulator(key: &str) -> Result<Emulator> {
    let mut config = EmulatorConfig::new(key);
    config.settings.polls_until_issued = 0;
    config.settings.rate_limits = true;
    config.settings.latency = LATENCY;
    config.settings.latency_jitter = JITTER;
    Ok(Emulator::start(
        config,
        "127.0.0.1:0".parse().expect("loopback"),
    )?)
}

pub(super) fn api_bound(args: &BenchArgs) -> Result<ApiBound> {
    use codesign_kit::order::{ApiKey, BaseUrl, Client, ClientConfig};
    use codesign_kit::pipeline::{Journal, Plan, Provisioner, ProvisionerConfig};
    let key = "bench-limits-key";
    let emulator = limited_emulator(key)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("body.json"), BODY)?;
    let jobs = args.limit_jobs;
    let plan_path = dir.path().join("plan.toml");
    std::fs::write(
        &plan_path,
        format!(
            "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n[[keys]]\ncount = {jobs}\nalgorithm = \"p256\"\ndirectory = \"keys\"\nlabel = \"api-{{n}}\"\nsubject = \"CN=Example Corp,C=US\"\n"
        ),
    )?;
    let plan = Plan::load(&plan_path)?;
    // CertCentral's limits, as the client keeps them by default.
    let client = Client::new(ClientConfig::new(
        BaseUrl::parse(&emulator.api_base())?,
        ApiKey::new(SecretString::from(key))?,
    ))?;
    let workers = 32;
    let provisioner = Provisioner::new(
        Journal::open(&plan_path.with_extension("journal.sqlite"))?,
        client,
        ProvisionerConfig {
            workers,
            wait: Duration::from_secs(120),
            ..ProvisionerConfig::new(dir.path().join("records"))
        },
    )?;
    eprintln!(
        "limits: {jobs} software-key jobs, {workers} workers, CertCentral's windows, ~150 ms per answer"
    );
    let start = Instant::now();
    let summary = provisioner.run(&plan, &Quiet)?;
    let wall = start.elapsed();
    let requests = emulator.requests_seen_total();
    let refused = emulator.rate_limited_count();
    emulator.stop();
    if summary.done as usize + summary.failed.len() + summary.pending.len() != jobs {
        bail!("the limits bench lost jobs: {summary:?}");
    }
    let windows = [
        (100, Duration::from_secs(5)),
        (1000, Duration::from_secs(180)),
    ];
    Ok(ApiBound {
        jobs,
        workers,
        requests,
        refused,
        failed: summary.failed.len() + summary.pending.len(),
        wall,
        least: least_time(requests, &windows, LATENCY + JITTER / 2),
    })
}

/// The token-bound row.
pub(super) struct TokenBound {
    pub(super) jobs: usize,
    pub(super) done: u64,
    pub(super) requests: u64,
    pub(super) refused: u64,
    pub(super) wall: Duration,
    /// The token's own key generation time, summed over the run's keys.
    pub(super) token: Duration,
    /// The least time the windows allow for the run's requests.
    pub(super) api: Duration,
}

/// RSA-3072 jobs on a SoftHSM token with 2 workers, through `provision` (its own process, so
/// that SoftHSM's configuration is its own), against the emulator with its limits on and ~150 ms
/// answers: the run should take little more than the larger of the token's own generation time
/// and the API's least time, since a job waiting on the API holds no other job's key generation.
pub(super) fn token_bound(args: &BenchArgs) -> Result<Option<TokenBound>> {
    let hsm = match codesign_testkit::SoftHsm::create() {
        Ok(hsm) => hsm,
        Err(why) => {
            eprintln!("limits: no token-bound figure: {why}");
            return Ok(None);
        }
    };
    let pin = "bound-user-pin";
    hsm.try_init_token("bound", "bound-so-pin", pin)
        .map_err(anyhow::Error::msg)?;
    let key = "bench-token-bound-key";
    let emulator = limited_emulator(key)?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("body.json"), BODY)?;
    let jobs = args.token_bound_jobs;
    let plan_path = dir.path().join("plan.toml");
    std::fs::write(
        &plan_path,
        format!(
            "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n[[keys]]\ncount = {jobs}\nalgorithm = \"rsa3072\"\ntoken = \"{}\"\nlabel = \"bound-{{n}}\"\nsubject = \"CN=Example Corp,C=US\"\n",
            hsm.uri("bound", "")
        ),
    )?;
    eprintln!(
        "limits: {jobs} RSA-3072 jobs on SoftHSM, 2 workers, CertCentral's windows, ~150 ms per answer"
    );
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .args(["provision", "--plan"])
        .arg(&plan_path)
        .args(["--workers", "2", "--wait", "120s", "--json", "--lock-dir"])
        .arg(dir.path().join("locks"))
        .env("DIGICERT_API_KEY", key)
        .env("CERTCENTRAL_BASE_URL", emulator.api_base())
        .env("PKCS11_PIN", pin);
    for (k, v) in hsm.env() {
        command.env(k, v);
    }
    let start = Instant::now();
    let out = command.output()?;
    let wall = start.elapsed();
    if !out.status.success() {
        bail!(
            "the token-bound provision failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let requests = emulator.requests_seen_total();
    let refused = emulator.rate_limited_count();
    emulator.stop();
    let windows = [
        (100, Duration::from_secs(5)),
        (1000, Duration::from_secs(180)),
    ];
    Ok(Some(TokenBound {
        jobs,
        done: summary["done"].as_u64().unwrap_or(0),
        requests,
        refused,
        wall,
        token: Duration::from_micros(summary["key_generation_us"].as_u64().unwrap_or(0)),
        api: least_time(requests, &windows, LATENCY + JITTER / 2),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_time_fills_both_windows() {
        let windows = [
            (100, Duration::from_secs(5)),
            (1000, Duration::from_secs(180)),
        ];
        let none = Duration::ZERO;
        assert_eq!(least_time(100, &windows, none), Duration::ZERO);
        assert_eq!(least_time(101, &windows, none), Duration::from_secs(5));
        assert_eq!(least_time(1000, &windows, none), Duration::from_secs(45));
        assert_eq!(least_time(1001, &windows, none), Duration::from_secs(180));
        assert_eq!(least_time(3000, &windows, none), Duration::from_secs(405));
    }
}
