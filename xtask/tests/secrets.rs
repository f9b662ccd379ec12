//! Secret hygiene of the xtask binary's own commands, at the most verbose logging
//! (`RUST_LOG=trace`): `emulator` as a process serving the CLI with the right and a wrong API key
//! (its output and its state file), `demo` (its token PIN, kept in the demo's directory) and
//! `bench` (the PINs and API key it uses). No secret may appear in any form it could leak in
//! (as is, hex, base64, `Debug` bytes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use codesign_testkit::{find_secret, fixture};

const API_KEY: &str = "APIKEY-SECRET-EMULATOR-9b31";
const WRONG_API_KEY: &str = "APIKEY-SECRET-WRONG-EMULATOR-2c7d";

fn xtask() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .env("RUST_LOG", "trace")
        .env_remove("DIGICERT_API_KEY");
    command
}

fn assert_secret_free(what: &str, bytes: &[u8], secrets: &[&str]) {
    for secret in secrets {
        if let Some(form) = find_secret(bytes, secret) {
            panic!(
                "{what} holds {secret} ({form}):\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

fn assert_output_secret_free(what: &str, output: &Output, secrets: &[&str]) {
    assert_secret_free(&format!("{what}: stdout"), &output.stdout, secrets);
    assert_secret_free(&format!("{what}: stderr"), &output.stderr, secrets);
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn the_emulator_process_prints_and_keeps_no_api_key() {
    let work = tempfile::tempdir().unwrap();
    let state_file = work.path().join("emulator-state.json");
    let mut emulator = xtask()
        .args(["emulator", "--listen", "127.0.0.1:0", "--no-rate-limits"])
        .arg("--state-file")
        .arg(&state_file)
        .env("DIGICERT_API_KEY", API_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(emulator.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let base = first
        .split("base URL: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no base URL in {first:?}"))
        .trim()
        .to_string();
    std::fs::write(
        work.path().join("body.json"),
        r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
            "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#,
    )
    .unwrap();
    for (key, code) in [(API_KEY, 0), (WRONG_API_KEY, 1)] {
        let output = xtask()
            .args(["order", "--product", "code_signing_ev", "--request"])
            .arg(work.path().join("body.json"))
            .arg("--csr")
            .arg(fixture("openssl-p384.csr"))
            .env("CERTCENTRAL_BASE_URL", &base)
            .env("DIGICERT_API_KEY", key)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_output_secret_free("order", &output, &[API_KEY, WRONG_API_KEY]);
    }
    emulator.kill().unwrap();
    let mut printed = first.into_bytes();
    stdout.read_to_end(&mut printed).unwrap();
    let mut errors = Vec::new();
    emulator
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut errors)
        .unwrap();
    emulator.wait().unwrap();
    assert_secret_free("emulator: stdout", &printed, &[API_KEY, WRONG_API_KEY]);
    assert_secret_free("emulator: stderr", &errors, &[API_KEY, WRONG_API_KEY]);
    let state = std::fs::read(&state_file).expect("the emulator kept its state");
    assert!(
        String::from_utf8_lossy(&state).contains("orders"),
        "the state file holds the order"
    );
    assert_secret_free(
        "the emulator's state file",
        &state,
        &[API_KEY, WRONG_API_KEY],
    );
}

#[test]
fn the_demo_prints_and_writes_no_token_pin() {
    let kept = tempfile::tempdir().unwrap();
    let output = xtask()
        .args(["demo", "--keep"])
        .arg(kept.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pin_file = kept.path().join("user.pin");
    let pin = std::fs::read_to_string(&pin_file).expect("the demo keeps its PIN file");
    assert!(pin.len() >= 16, "a real PIN was made: {pin:?}");
    assert_output_secret_free("demo", &output, &[&pin]);
    let mut files = Vec::new();
    files_under(kept.path(), &mut files);
    assert!(files.len() > 3, "the demo's files were scanned: {files:?}");
    for file in files.iter().filter(|f| **f != pin_file) {
        assert_secret_free(
            &file.display().to_string(),
            &std::fs::read(file).unwrap(),
            &[&pin],
        );
    }
}

#[test]
fn the_benchmarks_print_no_pin_or_api_key() {
    let output = xtask()
        .args(["bench", "--only", "token,batch", "--iterations", "2"])
        .args([
            "--algorithms",
            "p256",
            "--batch-jobs",
            "5",
            "--batch-rounds",
            "1",
        ])
        .args(["--memory-jobs", "10"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("keys/s"),
        "the benchmarks ran"
    );
    assert_output_secret_free(
        "bench",
        &output,
        &["bench-user-pin", "bench-so-pin", "bench-batch-key"],
    );
}
