//! Samples and their statistics, timing, running reference tools quietly, report rows.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use codesign_kit::keys::KeyAlgorithm;

/// Timings of one path.
#[derive(Debug, Clone, Default)]
pub(super) struct Samples(pub(super) Vec<Duration>);

impl Samples {
    pub(super) fn stats(&self) -> Option<(f64, f64, f64)> {
        if self.0.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        let median = ms[ms.len() / 2];
        let p90 = ms[((ms.len() as f64 * 0.9).ceil() as usize)
            .saturating_sub(1)
            .min(ms.len() - 1)];
        Some((mean, median, p90))
    }
}

pub(super) fn time<T>(f: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let start = Instant::now();
    let value = f()?;
    Ok((start.elapsed(), value))
}

pub(super) fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn run_quiet(command: &mut Command) -> Result<()> {
    let out = command.output().context("cannot start a reference tool")?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            command,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub(super) fn openssl_genpkey_args(alg: KeyAlgorithm) -> Vec<String> {
    let mut args: Vec<String> = vec!["genpkey".into()];
    match alg.rsa_bits() {
        Some(bits) => args.extend([
            "-algorithm".into(),
            "RSA".into(),
            "-pkeyopt".into(),
            format!("rsa_keygen_bits:{bits}"),
        ]),
        None => args.extend([
            "-algorithm".into(),
            "EC".into(),
            "-pkeyopt".into(),
            format!(
                "ec_paramgen_curve:{}",
                if alg == KeyAlgorithm::P256 {
                    "P-256"
                } else {
                    "P-384"
                }
            ),
        ]),
    }
    args.extend(["-out".into(), "/dev/null".into()]);
    args
}

pub(super) struct Row {
    pub(super) section: &'static str,
    pub(super) algorithm: KeyAlgorithm,
    pub(super) ours: Samples,
    /// On the token: the `C_GenerateKeyPair` call inside each of our keys, in the same order as
    /// `ours`. Paired key by key, it gives our overhead without the spread of key generation.
    pub(super) token_call: Option<Samples>,
    pub(super) references: Vec<(&'static str, Option<Samples>)>,
}

/// Our overhead over the token's own key generation, paired key by key: the mean of (our whole
/// path - its `C_GenerateKeyPair` call) in ms, and the sum of our times over the sum of the calls'.
pub(super) fn paired_overhead(ours: &Samples, token_call: &Samples) -> Option<(f64, f64)> {
    if ours.0.is_empty() || ours.0.len() != token_call.0.len() {
        return None;
    }
    let whole: Duration = ours.0.iter().sum();
    let calls: Duration = token_call.0.iter().sum();
    if calls.is_zero() {
        return None;
    }
    let overhead_ms = (whole.as_secs_f64() - calls.as_secs_f64()) * 1000.0 / ours.0.len() as f64;
    Some((overhead_ms, whole.as_secs_f64() / calls.as_secs_f64()))
}

pub(super) fn fmt_stats(s: &Option<Samples>) -> String {
    match s.as_ref().and_then(Samples::stats) {
        Some((mean, median, p90)) => format!("{mean:>9.2} {median:>9.2} {p90:>9.2}"),
        None => format!("{:>29}", "tool missing"),
    }
}
