//! `keygen --csr-out` as a user runs it: whole processes of the release `codesign-kit` binary on a
//! throwaway SoftHSM token, beside the two processes users run today (`pkcs11-tool --keypairgen`
//! then `openssl req -engine pkcs11`) and our own two calls (`keygen` then `csr`). Pairs are
//! interleaved, one key of each path per round, so that the machine's drift hits every column
//! alike; every key is deleted again untimed, so the token stays the same size.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use codesign_kit::keys::KeyAlgorithm;
use codesign_testkit::SoftHsm;

use super::args::BenchArgs;
use super::measure::{Samples, have, run_quiet, time};
use super::token::{engine_conf, engine_path, pkcs11_tool_key_type};

/// One algorithm's figures.
pub(super) struct CliRow {
    pub(super) algorithm: KeyAlgorithm,
    /// `keygen --pkcs11 ... --csr-out`: one process.
    pub(super) one_process: Samples,
    /// The token's own `C_GenerateKeyPair` inside each one-process run (its `generation_ms`):
    /// every path pays it, so it bounds how much faster any of them can be.
    pub(super) token_call: Samples,
    /// `token list` on the (empty) token: a process that starts, loads the module, finds the
    /// token and logs in, and makes nothing. With `token_call` it is the least any one process
    /// that makes a key on this token can take.
    pub(super) floor: Samples,
    /// `keygen --pkcs11` then `csr --key pkcs11:...`.
    pub(super) two_calls: Samples,
    /// `pkcs11-tool --keypairgen` then `openssl req -engine pkcs11`; `None` when a tool is missing.
    pub(super) shell: Option<Samples>,
}

impl CliRow {
    /// The reference's median over ours: how many times faster one process is.
    pub(super) fn speedup(&self, over: &Samples) -> Option<f64> {
        let (_, ours, _) = self.one_process.stats()?;
        let (_, theirs, _) = over.stats()?;
        Some(theirs / ours)
    }

    /// The least one process can take, round by round: the floor process plus that round's
    /// token generation.
    pub(super) fn least(&self) -> Samples {
        Samples(
            self.floor
                .0
                .iter()
                .zip(&self.token_call.0)
                .map(|(floor, call)| *floor + *call)
                .collect(),
        )
    }

    /// The most any one process could be faster than `over` on this token: `over`'s median
    /// over [`CliRow::least`]'s.
    pub(super) fn best_possible_speedup(&self, over: &Samples) -> Option<f64> {
        let (_, least, _) = self.least().stats()?;
        let (_, theirs, _) = over.stats()?;
        Some(theirs / least)
    }
}

/// Builds the release binary users run; its path.
fn release_binary() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?
        .to_path_buf();
    eprintln!("cli: building the release binary (cargo build --release -p codesign-kit-cli)");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
        .current_dir(&root)
        .args(["build", "--release", "--locked", "-p", "codesign-kit-cli"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/codesign-kit"))
}

pub(super) fn cli(args: &BenchArgs) -> Result<Vec<CliRow>> {
    // Under --token-dir, a directory of this run's own, removed at the end: the given one is
    // the user's (e.g. /dev/shm), and a token left there would make the next run's label
    // ambiguous.
    let scratch = match &args.token_dir {
        Some(dir) => Some(
            tempfile::Builder::new()
                .prefix("codesign-kit-bench-")
                .tempdir_in(dir)
                .with_context(|| format!("--token-dir {}", dir.display()))?,
        ),
        None => None,
    };
    let created = match &scratch {
        Some(dir) => SoftHsm::create_in(dir.path()),
        None => SoftHsm::create(),
    };
    let store = match created {
        Ok(store) => store,
        Err(why) => {
            eprintln!("cli: no figures: {why}");
            return Ok(Vec::new());
        }
    };
    let pin = "bench-user-pin";
    store
        .try_init_token("cli", "bench-so-pin", pin)
        .map_err(anyhow::Error::msg)?;
    let binary = release_binary()?;
    let module = store.module().display().to_string();
    let dir = store.dir().to_path_buf();
    let token_uri = format!("pkcs11:token=cli?module-path={module}");
    let ours = |args: &[&str]| {
        let mut command = Command::new(&binary);
        command.args(args).env("PKCS11_PIN", pin).envs(store.env());
        command
    };
    let pkcs11_tool = |args: &[&str]| {
        let mut command = Command::new("pkcs11-tool");
        command
            .args(["--module", &module, "--token-label", "cli", "--login"])
            .args(["--pin", pin])
            .args(args)
            .envs(store.env());
        command
    };
    let shell = have("pkcs11-tool") && have("openssl") && engine_path().is_some();
    let openssl_conf = engine_conf(&dir, &module)?;
    let csr = dir.join("req.csr");
    let csr_arg = csr.display().to_string();
    let subject = "CN=Example Corp,O=Example Corp,C=US";
    let algorithms: Vec<KeyAlgorithm> = if args.algorithms.is_empty() {
        vec![KeyAlgorithm::P256, KeyAlgorithm::P384]
    } else {
        args.algorithms()?
    };
    let mut rows = Vec::new();
    let mut counter = 0u32;
    for algorithm in algorithms {
        let pairs = args.iterations.unwrap_or(25);
        eprintln!("cli {algorithm}: {pairs} rounds of three paths and the floor");
        let mut row = CliRow {
            algorithm,
            one_process: Samples::default(),
            token_call: Samples::default(),
            floor: Samples::default(),
            two_calls: Samples::default(),
            shell: shell.then(Samples::default),
        };
        let alg = algorithm.cli_name();
        for _ in 0..pairs {
            counter += 1;
            // Ours, one process.
            let label = format!("one-{counter}");
            let (elapsed, out) = time(|| {
                Ok(ours(&[
                    "keygen",
                    "--alg",
                    alg,
                    "--pkcs11",
                    &token_uri,
                    "--label",
                    &label,
                    "--csr-out",
                    &csr_arg,
                    "--subject",
                    subject,
                    "--force",
                    "--json",
                ])
                .output()?)
            })?;
            if !out.status.success() {
                bail!(
                    "keygen --csr-out failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let said: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let generation_ms = said["generation_ms"]
                .as_f64()
                .context("keygen --json says no generation_ms")?;
            row.one_process.0.push(elapsed);
            row.token_call
                .0
                .push(std::time::Duration::from_secs_f64(generation_ms / 1000.0));
            std::fs::remove_file(&csr)?;
            run_quiet(&mut ours(&[
                "token",
                "delete",
                &format!("pkcs11:token=cli;object={label}?module-path={module}"),
                "--yes",
            ]))?;
            // The floor: start, load the module, log in, look (the token holds no key now).
            let (elapsed, ()) = time(|| run_quiet(&mut ours(&["token", "list", &token_uri])))?;
            row.floor.0.push(elapsed);
            // Ours, two calls.
            let label = format!("two-{counter}");
            let key_uri = format!("pkcs11:token=cli;object={label}?module-path={module}");
            let (elapsed, ()) = time(|| {
                run_quiet(&mut ours(&[
                    "keygen", "--alg", alg, "--pkcs11", &token_uri, "--label", &label,
                ]))?;
                run_quiet(&mut ours(&[
                    "csr",
                    "--key",
                    &key_uri,
                    "--subject",
                    subject,
                    "--out",
                    &csr_arg,
                ]))
            })?;
            row.two_calls.0.push(elapsed);
            std::fs::remove_file(&csr)?;
            run_quiet(&mut ours(&["token", "delete", &key_uri, "--yes"]))?;
            // pkcs11-tool, then openssl req with the key on the token.
            if let Some(samples) = row.shell.as_mut() {
                let label = format!("shell-{counter}");
                let id = format!("{counter:08x}");
                let key_type = pkcs11_tool_key_type(algorithm);
                let (elapsed, ()) = time(|| {
                    run_quiet(&mut pkcs11_tool(&[
                        "--keypairgen",
                        "--key-type",
                        &key_type,
                        "--id",
                        &id,
                        "--label",
                        &label,
                        "--usage-sign",
                    ]))?;
                    run_quiet(
                        Command::new("openssl")
                            .env("OPENSSL_CONF", &openssl_conf)
                            .envs(store.env())
                            .args(["req", "-new", "-engine", "pkcs11", "-keyform", "engine"])
                            .arg("-key")
                            .arg(format!(
                                "pkcs11:token=cli;object={label};type=private;pin-value={pin}"
                            ))
                            .args(["-subj", "/CN=Example Corp/O=Example Corp/C=US"])
                            .args(["-out", &csr_arg]),
                    )
                })?;
                if std::fs::metadata(&csr).map_or(0, |m| m.len()) == 0 {
                    bail!("openssl req wrote no CSR");
                }
                samples.0.push(elapsed);
                std::fs::remove_file(&csr)?;
                for kind in ["privkey", "pubkey"] {
                    run_quiet(&mut pkcs11_tool(&[
                        "--delete-object",
                        "--type",
                        kind,
                        "--id",
                        &id,
                    ]))?;
                }
            }
        }
        rows.push(row);
    }
    Ok(rows)
}
