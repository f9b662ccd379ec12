//! `fuzz`: run the cargo-fuzz targets of `fuzz/` (libFuzzer) on this stable toolchain.
//!
//! Each target starts from its seed corpus `fuzz/corpus/TARGET/` (read only) and writes what it
//! learns to `target/fuzz-corpus/TARGET/`. A crash leaves its input in `fuzz/artifacts/TARGET/`:
//! fix it, then move the input to `fuzz/regressions/TARGET/`, where `tests/fuzz_regressions.rs` runs
//! it in CI.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

/// The targets, in the order they run.
pub const TARGETS: [&str; 7] = [
    "csr_inspect",
    "dn_parse",
    "pkcs11_uri",
    "ec_point_signature",
    "certcentral_responses",
    "chain_split",
    "plan_toml",
];

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// One target (default: all, one after another).
    target: Option<String>,
    /// Seconds per target.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    time: u64,
    /// Stop a target after this many executions (libFuzzer -runs).
    #[arg(long, value_name = "N")]
    runs: Option<u64>,
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let have_fuzz = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_fuzz {
        bail!("cargo-fuzz is not installed: cargo install cargo-fuzz --locked");
    }
    let targets: Vec<&str> = match &args.target {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!("no fuzz target {t}; the targets are {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?;
    let mut report = Vec::new();
    for target in targets {
        let scratch = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&scratch)?;
        let seeds = root.join("fuzz/corpus").join(target);
        let mut libfuzzer = vec![
            format!("-max_total_time={}", args.time),
            "-print_final_stats=1".to_string(),
            "-max_len=4096".to_string(),
        ];
        if let Some(runs) = args.runs {
            libfuzzer.push(format!("-runs={runs}"));
        }
        eprintln!("==> fuzzing {target} for {} s", args.time);
        // The sanitizer is off: it needs a nightly toolchain, and this machine has one stable one.
        let output = cargo()
            .current_dir(root.join("fuzz"))
            .args(["fuzz", "run", "--sanitizer", "none", target])
            .arg(&scratch)
            .arg(&seeds)
            .arg("--")
            .args(&libfuzzer)
            .output()
            .with_context(|| format!("cannot run cargo fuzz for {target}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let executions = stderr
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map(|n| n.trim().to_string())
            .unwrap_or_else(|| "?".to_string());
        if !output.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{target} found a crash after {executions} executions:\n{}",
                tail.join("\n")
            );
        }
        eprintln!("{target}: {executions} executions, no crash");
        report.push((target, executions));
    }
    println!("target                  executions without a crash");
    for (target, executions) in report {
        println!("{target:<23} {executions}");
    }
    Ok(())
}
