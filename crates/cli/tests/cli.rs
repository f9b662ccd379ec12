//! The CLI contract of `keygen`, `csr` and `inspect`, run as a user runs it, with OpenSSL judging
//! the files it writes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use codesign_testkit::{
    fixture, flip_last_signature_byte, openssl, openssl_csr_signature_ok, openssl_csr_text,
    pem_to_der,
};

const SUBJECT: &str = "CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US";

fn cli(args: &[&str]) -> Output {
    cli_with_env(args, &[])
}

fn cli_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run the CLI")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn keygen_then_csr_for_every_algorithm_passes_openssl() {
    let expected = [
        (
            "rsa3072",
            "Public-Key: (3072 bit)",
            "sha256WithRSAEncryption",
        ),
        (
            "rsa4096",
            "Public-Key: (4096 bit)",
            "sha256WithRSAEncryption",
        ),
        ("p256", "NIST CURVE: P-256", "ecdsa-with-SHA256"),
        ("p384", "NIST CURVE: P-384", "ecdsa-with-SHA384"),
    ];
    for (alg, size, sigalg) in expected {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let csr = dir.path().join("r.csr");
        let out = cli(&["keygen", "--alg", alg, "--out", p(&key)]);
        assert_exit(&out, 0);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{alg}");
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n") && !pem.contains('\r'));

        let out = cli(&[
            "csr",
            "--key",
            p(&key),
            "--subject",
            SUBJECT,
            "--out",
            p(&csr),
        ]);
        assert_exit(&out, 0);
        openssl_csr_signature_ok(&csr, false).unwrap_or_else(|s| panic!("{alg}: {s}"));
        let text = openssl_csr_text(&csr);
        assert!(text.contains(size), "{alg}: {text}");
        assert!(
            text.contains(&format!("Signature Algorithm: {sigalg}")),
            "{alg}: {text}"
        );
        assert!(
            text.contains(
                "Subject: CN = Example Corp, O = Example Corp, L = Richmond, ST = Virginia, C = US"
            ),
            "{alg}: {text}"
        );
        let read = openssl(&["pkey", "-in", p(&key), "-noout"]);
        assert!(
            read.status.success(),
            "{alg}: openssl pkey cannot read the key"
        );

        // And our own inspect accepts it.
        let out = cli(&["inspect", p(&csr)]);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("policy:     ok"), "{}", stdout(&out));
    }
}

#[test]
fn keygen_refuses_weak_and_unknown_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let out = cli(&["keygen", "--alg", "rsa2048", "--out", p(&key)]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains(
            "code signing keys must be RSA-3072 or larger, or ECC P-256/P-384; this key is RSA-2048"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!key.exists(), "no key file after a refusal");
    let out = cli(&["keygen", "--alg", "p521", "--out", p(&key)]);
    assert_exit(&out, 1);
    let out = cli(&["keygen", "--alg", "blowfish", "--out", p(&key)]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("rsa3072, rsa4096, p256, p384"));
    let out = cli(&["keygen", "--out", p(&key)]);
    assert_exit(&out, 2);
}

#[test]
fn keygen_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    assert_exit(&cli(&["keygen", "--alg", "p256", "--out", p(&key)]), 0);
    let first = std::fs::read(&key).unwrap();
    let out = cli(&["keygen", "--alg", "p256", "--out", p(&key)]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&key).unwrap(), first);
    assert_exit(
        &cli(&["keygen", "--alg", "p256", "--out", p(&key), "--force"]),
        0,
    );
    assert_ne!(std::fs::read(&key).unwrap(), first);
    let entries = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 1, "no temporary files left behind");
}

#[test]
fn encrypted_keys_take_their_passphrase_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let csr = dir.path().join("r.csr");
    let env = [("KEY_PASS", "pass-phrase-42")];
    let out = cli_with_env(
        &[
            "keygen",
            "--alg",
            "p384",
            "--out",
            p(&key),
            "--passphrase-env",
            "KEY_PASS",
        ],
        &env,
    );
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains("pass-phrase-42") && !stderr(&out).contains("pass-phrase-42"));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    );

    let out = cli(&[
        "csr",
        "--key",
        p(&key),
        "--subject",
        SUBJECT,
        "--out",
        p(&csr),
    ]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains(
            "encrypted and no passphrase was given; give its passphrase with --passphrase-env"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!csr.exists());

    let out = cli_with_env(
        &[
            "csr",
            "--key",
            p(&key),
            "--subject",
            SUBJECT,
            "--out",
            p(&csr),
            "--passphrase-env",
            "KEY_PASS",
        ],
        &[("KEY_PASS", "wrong")],
    );
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("does not decrypt"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("wrong\n"));

    let out = cli_with_env(
        &[
            "csr",
            "--key",
            p(&key),
            "--subject",
            SUBJECT,
            "--out",
            p(&csr),
            "--passphrase-env",
            "KEY_PASS",
        ],
        &env,
    );
    assert_exit(&out, 0);
    openssl_csr_signature_ok(&csr, false).unwrap();

    let out = cli(&[
        "keygen",
        "--alg",
        "p256",
        "--out",
        p(&dir.path().join("x.pem")),
        "--passphrase-env",
        "UNSET_VAR_FOR_TEST",
    ]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("UNSET_VAR_FOR_TEST is not set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn csr_refuses_bad_subjects_and_weak_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let csr = dir.path().join("r.csr");
    assert_exit(&cli(&["keygen", "--alg", "p256", "--out", p(&key)]), 0);
    let out = cli(&[
        "csr",
        "--key",
        p(&key),
        "--subject",
        "CN=x,XX=y",
        "--out",
        p(&csr),
    ]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("unknown attribute \"XX\""),
        "{}",
        stderr(&out)
    );
    let out = cli(&[
        "csr",
        "--key",
        p(&key),
        "--subject",
        "CN=x,C=USA",
        "--out",
        p(&csr),
    ]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("two-letter"), "{}", stderr(&out));
    assert!(!csr.exists());

    let weak = fixture("openssl-rsa2048.key");
    let out = cli(&[
        "csr",
        "--key",
        p(&weak),
        "--subject",
        SUBJECT,
        "--out",
        p(&csr),
    ]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("this key is RSA-2048"),
        "{}",
        stderr(&out)
    );
    assert!(!csr.exists());

    // DER output is what OpenSSL reads as DER.
    let out = cli(&[
        "csr",
        "--key",
        p(&key),
        "--subject",
        SUBJECT,
        "--out",
        p(&csr),
        "--format",
        "der",
    ]);
    assert_exit(&out, 0);
    openssl_csr_signature_ok(&csr, true).unwrap();
}

#[test]
fn inspect_accepts_and_refuses_openssl_csrs() {
    for name in [
        "openssl-rsa3072.csr",
        "openssl-p384.csr",
        "openssl-p384.der",
    ] {
        let out = cli(&["inspect", p(&fixture(name))]);
        assert_exit(&out, 0);
    }
    for (name, found) in [
        ("openssl-rsa2048.csr", "RSA-2048"),
        ("openssl-p521.csr", "ECC P-521"),
    ] {
        let out = cli(&["inspect", p(&fixture(name))]);
        assert_exit(&out, 1);
        let rule = format!(
            "code signing keys must be RSA-3072 or larger, or ECC P-256/P-384; this key is {found}"
        );
        assert!(stderr(&out).contains(&rule), "{name}: {}", stderr(&out));
    }
}

#[test]
fn inspect_json_has_the_documented_fields() {
    let out = cli(&["inspect", p(&fixture("openssl-rsa3072.csr")), "--json"]);
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["algorithm"], "RSA");
    assert_eq!(doc["key_bits"], 3072);
    assert_eq!(doc["subject"], SUBJECT);
    assert_eq!(doc["signature_valid"], true);
    assert_eq!(doc["policy"]["ok"], true);
    assert_eq!(doc["policy"]["reasons"], serde_json::json!([]));

    let out = cli(&["inspect", p(&fixture("openssl-p521.csr")), "--json"]);
    assert_exit(&out, 1);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["curve"], "P-521");
    assert_eq!(doc["policy"]["ok"], false);
    assert!(
        doc["policy"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("P-521")
    );
}

#[test]
fn inspect_reports_a_broken_signature_and_garbage_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let der = pem_to_der(&std::fs::read_to_string(fixture("openssl-rsa3072.csr")).unwrap());
    let bad = dir.path().join("bad.der");
    std::fs::write(&bad, flip_last_signature_byte(&der)).unwrap();
    let out = cli(&["inspect", p(&bad)]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("signature does not verify"),
        "{}",
        stderr(&out)
    );
    let out = cli(&["inspect", p(&bad), "--json"]);
    assert_exit(&out, 1);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["signature_valid"], false);

    // Random bytes, a truncated PEM, an empty file, a missing file.
    let random = dir.path().join("random.bin");
    let bytes: Vec<u8> = (0u32..512)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&random, bytes).unwrap();
    let pem = std::fs::read_to_string(fixture("openssl-p384.csr")).unwrap();
    let truncated = dir.path().join("truncated.csr");
    std::fs::write(&truncated, &pem[..pem.len() / 2]).unwrap();
    let empty = dir.path().join("empty.csr");
    std::fs::write(&empty, "").unwrap();
    for (path, says) in [
        (&random, "not a readable PKCS#10 CSR"),
        (&truncated, "truncated or malformed"),
        (&empty, "empty"),
        (&dir.path().join("missing.csr"), "cannot read"),
    ] {
        let out = cli(&["inspect", p(path)]);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains(says),
            "{}: {}",
            path.display(),
            stderr(&out)
        );
    }
}

/// Output to a pipe whose reader is gone (`doctor --json | head`, `inspect | head`) ends the
/// process as it ends `cat`, by SIGPIPE, without a panic.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [vec!["inspect", "--json"], vec!["--help"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
        command.args(&args);
        if args[0] == "inspect" {
            command.arg(codesign_testkit::fixture("openssl-p384.csr"));
        }
        let out = command
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            out.status.signal() == Some(13) || out.status.success(),
            "{args:?}: {:?} {stderr}",
            out.status
        );
    }
}

/// `--version` names the version, the crate and the commit built.
#[test]
fn the_version_names_the_crate_and_the_commit() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codesign-kit"))
        .arg("--version")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        said.starts_with(&format!(
            "codesign-kit {} (codesign-kit-cli, commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{said}"
    );
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(codesign_testkit::workspace_root())
        .output()
        .unwrap();
    if head.status.success() {
        let commit = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert!(
            said.contains(&format!("commit {commit})")),
            "{said} vs {commit}"
        );
    }
}

/// Logs: warnings only by default; `-vv` adds the details; `-q` keeps errors alone; with
/// `--log-format json` every log line is one JSON object with its level; `RUST_LOG` decides when
/// set.
#[test]
fn log_levels_and_the_json_format() {
    let emu = certcentral_emulator::Emulator::start(
        certcentral_emulator::EmulatorConfig::new("log-test-key"),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let status = |flags: &[&str], rust_log: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
        command
            .args(flags)
            .args(["status", "1"])
            .env("DIGICERT_API_KEY", "log-test-key")
            .env("CERTCENTRAL_BASE_URL", emu.api_base())
            .env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        command.output().unwrap()
    };
    let log_lines = |o: &Output| -> Vec<String> {
        stderr(o)
            .lines()
            .filter(|l| !l.starts_with("error:"))
            .map(str::to_string)
            .collect()
    };
    // No order 1: each run ends with its error, exit 1.
    let quiet = status(&[], None);
    assert_exit(&quiet, 1);
    assert!(log_lines(&quiet).is_empty(), "{}", stderr(&quiet));
    let detailed = status(&["-vv", "--log-format", "json"], None);
    assert_exit(&detailed, 1);
    let lines = log_lines(&detailed);
    assert!(
        !lines.is_empty(),
        "-vv logs the connection: {}",
        stderr(&detailed)
    );
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
    }
    let quieted = status(&["-q"], None);
    assert_exit(&quieted, 1);
    assert!(log_lines(&quieted).is_empty(), "{}", stderr(&quieted));
    let errors_only = status(&["-q"], Some("debug"));
    assert!(
        !log_lines(&errors_only).is_empty(),
        "RUST_LOG decides when set"
    );
    let conflict = status(&["-v", "-q"], None);
    assert_exit(&conflict, 2);
}

/// Completions and the man page come from the same definitions the binary parses with: every
/// command is in them.
#[test]
fn completions_and_the_man_page_cover_every_command() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = cli(&["completions", shell]);
        assert_exit(&out, 0);
        let script = stdout(&out);
        for command in [
            "provision",
            "renew",
            "reissue",
            "revoke",
            "expiring",
            "token",
            "pubkey",
        ] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
    }
    let man = cli(&["man"]);
    assert_exit(&man, 0);
    let page = stdout(&man);
    assert!(page.contains(".TH codesign-kit 1"), "{page}");
    for command in ["provision", "renew", "expiring", "doctor"] {
        assert!(page.contains(command), "man: no {command}");
    }
    assert_exit(&cli(&["completions", "tcsh"]), 2);
}

/// `--journal-ca` is for a TLS database journal: given with a file journal, or with a database
/// URL that connects in clear, it is a usage error before anything is opened or read.
#[test]
fn a_journal_ca_without_a_tls_database_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("never-read.pem");
    for journal in [
        dir.path().join("plan.journal.sqlite").display().to_string(),
        "postgres://journal@127.0.0.1:1/plans".to_string(),
    ] {
        let out = cli(&["jobs", "--journal", &journal, "--journal-ca", p(&ca)]);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("--journal-ca"), "{}", stderr(&out));
    }
    assert!(
        !dir.path().join("plan.journal.sqlite").exists(),
        "nothing made"
    );
}
