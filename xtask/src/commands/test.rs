//! `test`: the one test command of a fresh machine.
//!
//! 0. Checks that the disk can hold the build (about 8 GiB free), by name, before it starts.
//! 1. Makes sure the external tools the tests use as independent judges are installed (installing
//!    the Debian packages when running as root, else stopping with the exact command to run).
//! 2. `cargo fmt --check`, `cargo clippy --all-targets -D warnings`.
//! 3. Brings up the module suite's shared tokens (opencryptoki, tpm2-pkcs11; see [`super::tokens`]),
//!    saying by name which modules run and which do not.
//! 4. Builds the PKCS#11 shim module some tests load (`crates/p11shim`).
//! 5. Every test: `cargo nextest run` when nextest is installed (plus the doc tests, which nextest
//!    does not run), else `cargo test`. All in the dev profile, so the workspace builds once.
//! 6. Takes the shared tokens down again and repeats which modules did not run.

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and clippy (tests only).
    #[arg(long)]
    no_lint: bool,
    /// Extra arguments passed to the test runner (e.g. a test name filter).
    #[arg(last = true)]
    runner_args: Vec<String>,
}

/// External programs the tests need, with the Debian package that provides each.
const REQUIRED_TOOLS: &[(&str, &str)] = &[
    ("openssl", "openssl"),
    ("softhsm2-util", "softhsm2"),
    ("pkcs11-tool", "opensc"),
    ("osslsigncode", "osslsigncode"),
    ("jq", "jq"),
    ("curl", "curl"),
];

/// Libraries the tests load, by a file each leaves: (shell glob, Debian package).
const REQUIRED_FILES: &[(&str, &str)] =
    &[("/usr/lib/*/engines-3/pkcs11.so", "libengine-pkcs11-openssl")];

fn have_file(glob: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("ls {glob} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn ensure_tools() -> Result<()> {
    let missing: Vec<&str> = REQUIRED_TOOLS
        .iter()
        .filter(|(program, _)| !have(program))
        .chain(REQUIRED_FILES.iter().filter(|(glob, _)| !have_file(glob)))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", missing.join(" "));
    if !(is_root() && have("apt-get")) {
        bail!(
            "the tests need the Debian packages {}; install them with: sudo apt-get update && sudo {install}",
            missing.join(", ")
        );
    }
    eprintln!("==> installing {}", missing.join(", "));
    run_step("apt-get update", Command::new("apt-get").arg("update"))?;
    run_step(
        &install,
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(&missing),
    )
}

/// As root, installs the packages of the module suite's shared tokens when one is missing; else
/// leaves them to [`super::tokens::SuiteTokens::up`], which reports a missing module as not run.
fn ensure_module_packages() {
    if !(is_root() && have("apt-get") && have("dpkg-query")) {
        return;
    }
    let missing: Vec<&str> = super::tokens::PACKAGES
        .iter()
        .copied()
        .filter(|package| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let install = format!("apt-get install -y {}", missing.join(" "));
    if let Err(e) = run_step(
        &install,
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    ) {
        eprintln!("warning: {e}");
    }
}

/// The test binaries that need a PostgreSQL server (their tests sit in `mod postgres`).
const POSTGRES_TEST_BINARIES: &[&str] = &["postgres_journal", "postgres_cli"];

/// Why the PostgreSQL tests cannot run here, if they cannot: as root, a missing server is
/// installed first (Debian `postgresql`).
fn postgres_missing() -> Option<String> {
    if codesign_testkit::postgres_bin_dir().is_some() {
        return None;
    }
    if is_root() && have("apt-get") {
        if let Err(e) = run_step(
            "apt-get install -y postgresql",
            Command::new("apt-get")
                .args(["install", "-y", "postgresql"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        ) {
            eprintln!("warning: {e}");
        }
        if codesign_testkit::postgres_bin_dir().is_some() {
            return None;
        }
    }
    Some("PostgreSQL is not installed (apt-get install -y postgresql)".to_string())
}

fn report_postgres(missing: Option<&String>) {
    match missing {
        None => eprintln!(
            "==> PostgreSQL tests run ({})",
            POSTGRES_TEST_BINARIES.join(", ")
        ),
        Some(why) => eprintln!(
            "==> PostgreSQL tests NOT RUN ({}): {why}",
            POSTGRES_TEST_BINARIES.join(", ")
        ),
    }
}

fn run_step(name: &str, command: &mut Command) -> Result<()> {
    eprintln!("==> {name}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{name}`"))?;
    if !status.success() {
        bail!("`{name}` failed ({status})");
    }
    Ok(())
}

/// What a clean build and test run of the workspace writes under `target/` (about 5 GiB with
/// `CARGO_INCREMENTAL=0`, as `.ci/run` sets it), with room to spare for the tests' tokens,
/// databases and temporary files.
const DISK_NEEDED_BYTES: u64 = 8 << 30;

/// Bytes free on the file system that holds `dir`, from `df` (POSIX output, 1024-byte blocks).
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let output = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Stops before the build when the disk cannot hold it: a compiler that runs out of space
/// half-way fails with an LLVM I/O error that names no cause. Under CI that is an error; on a
/// developer's machine, whose `target/` may already hold most of the build, a warning.
fn ensure_disk_space(target_dir: &std::path::Path) -> Result<()> {
    let Some(free) = free_bytes(target_dir) else {
        return Ok(());
    };
    if free >= DISK_NEEDED_BYTES {
        return Ok(());
    }
    let message = format!(
        "{} has {:.1} GiB free; a clean build and test run needs about {} GiB (free some, e.g. `cargo clean`)",
        target_dir.display(),
        free as f64 / f64::from(1u32 << 30),
        DISK_NEEDED_BYTES >> 30
    );
    if std::env::var_os("CI").is_some() {
        bail!("{message}");
    }
    eprintln!("warning: {message}");
    Ok(())
}

pub fn run(args: TestArgs) -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask sits in the workspace")?
        .to_path_buf();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .filter(|dir| dir.exists())
        .unwrap_or_else(|| root.clone());
    ensure_disk_space(&target_dir)?;
    ensure_tools()?;
    if !args.no_lint {
        run_step(
            "cargo fmt --all -- --check",
            cargo().args(["fmt", "--all", "--", "--check"]),
        )?;
        run_step(
            "cargo clippy --workspace --all-targets --locked -- -D warnings",
            cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]),
        )?;
    }
    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ensure_module_packages();
    let postgres = postgres_missing();
    if let (Some(why), true) = (&postgres, std::env::var_os("CI").is_some()) {
        bail!("under CI the PostgreSQL tests must run: {why}");
    }
    let tokens = super::tokens::SuiteTokens::up(&root)?;
    tokens.report();
    report_postgres(postgres.as_ref());
    let result = run_tests(&args, nextest, &tokens, postgres.is_none());
    tokens.report();
    report_postgres(postgres.as_ref());
    drop(tokens);
    result?;
    eprintln!("==> all checks passed");
    Ok(())
}

fn run_tests(
    args: &TestArgs,
    nextest: bool,
    tokens: &super::tokens::SuiteTokens,
    with_postgres: bool,
) -> Result<()> {
    let with_env = |mut command: Command| {
        command.envs(tokens.env.iter().map(|(k, v)| (k, v)));
        command
    };
    // The shim module the crash and hostile-token tests load: a test build does not make its
    // shared library.
    run_step(
        "cargo build --package codesign-p11shim --locked",
        cargo().args(["build", "--package", "codesign-p11shim", "--locked"]),
    )?;
    if nextest {
        // Doc tests first: nextest does not run them, and its summary should close the output.
        run_step(
            "cargo test --workspace --doc --locked",
            cargo().args(["test", "--workspace", "--doc", "--locked"]),
        )?;
        let mut command = with_env(cargo());
        command.args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ]);
        let mut filters: Vec<String> = tokens.nextest_filter().into_iter().collect();
        if !with_postgres {
            let binaries: Vec<String> = POSTGRES_TEST_BINARIES
                .iter()
                .map(|b| format!("binary({b})"))
                .collect();
            filters.push(format!("not ({})", binaries.join(" or ")));
        }
        if !filters.is_empty() {
            command.args(["-E", &filters.join(" and ")]);
        }
        run_step(
            "cargo nextest run --workspace --locked",
            command.args(&args.runner_args),
        )
    } else {
        let mut command = with_env(cargo());
        command
            .args(["test", "--workspace", "--locked", "--no-fail-fast"])
            .args(&args.runner_args);
        let mut skips = tokens.libtest_skips();
        if !with_postgres {
            skips.extend(["--skip".to_string(), "postgres::".to_string()]);
        }
        if !skips.is_empty() {
            if !args.runner_args.iter().any(|a| a == "--") {
                command.arg("--");
            }
            command.args(skips);
        }
        run_step("cargo test --workspace --locked", &mut command)
    }
}
