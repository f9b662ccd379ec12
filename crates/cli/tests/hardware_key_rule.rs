//! The hardware-key rule: a CSR for a software key (a key file, a software token such as SoftHSM2)
//! is never sent to a CertCentral off this machine unless the user says `--allow-software-key`;
//! against the local emulator software keys are fine, with a notice. The remote URL of these
//! tests is never contacted: every refusal comes before the network (and the tests would fail, not
//! hang, if one did not).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::Path;
use std::process::{Command, Output};

use certcentral_emulator::{Emulator, EmulatorConfig, Settings};
use codesign_testkit::{SoftHsm, USER_PIN};

const API_KEY: &str = "hardware-rule-key-41f7";
/// Not this machine: a documentation address (RFC 5737) nothing answers on.
const REMOTE: &str = "https://192.0.2.10/services/v2";
const SUBJECT: &str = "CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US";
const EMAIL_BODY: &str = r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
  "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#;

fn cli(base_url: &str, hsm: Option<&SoftHsm>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command
        .args(args)
        .env("DIGICERT_API_KEY", API_KEY)
        .env("CERTCENTRAL_BASE_URL", base_url)
        .env("PKCS11_PIN", USER_PIN);
    if let Some(hsm) = hsm {
        for (k, v) in hsm.env() {
            command.env(k, v);
        }
    }
    command.output().expect("run the CLI")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn assert_refused_by_the_rule(o: &Output) {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    let err = stderr(o);
    assert!(err.contains("FIPS 140-2 Level 2"), "{err}");
    assert!(err.contains("--allow-software-key"), "{err}");
    assert!(err.contains("192.0.2.10"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A software key and its CSR in `dir`.
fn software_key_csr(dir: &Path) -> (String, String) {
    let key = dir.join("k.pem");
    let csr = dir.join("k.csr");
    let out = cli(REMOTE, None, &["keygen", "--alg", "p256", "--out", p(&key)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = cli(
        REMOTE,
        None,
        &[
            "csr",
            "--key",
            p(&key),
            "--subject",
            SUBJECT,
            "--out",
            p(&csr),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    (p(&key).to_string(), p(&csr).to_string())
}

#[test]
fn order_refuses_a_software_key_for_a_remote_certcentral() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, EMAIL_BODY).unwrap();
    let (key, csr) = software_key_csr(dir.path());
    let order = |extra: &[&str]| {
        let mut args = vec![
            "order",
            "--product",
            "code-signing",
            "--request",
            p(&body),
            "--csr",
            &csr,
        ];
        args.extend_from_slice(extra);
        cli(REMOTE, None, &args)
    };
    // The key not shown, shown as a file, and a dry run: all refused by the rule.
    assert_refused_by_the_rule(&order(&[]));
    assert_refused_by_the_rule(&order(&["--key", &key]));
    assert_refused_by_the_rule(&order(&["--key", &key, "--dry-run"]));
    // With the user's leave, a dry run goes through (and says what it allows).
    let out = order(&["--key", &key, "--dry-run", "--allow-software-key"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("only a private CA"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn order_refuses_a_software_token_key_and_checks_it_is_the_csrs() {
    let hsm = SoftHsm::new();
    hsm.init_token("soft");
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, EMAIL_BODY).unwrap();
    for label in ["a", "b"] {
        let out = cli(
            REMOTE,
            Some(&hsm),
            &[
                "keygen",
                "--alg",
                "p256",
                "--pkcs11",
                &hsm.uri("soft", ""),
                "--label",
                label,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let csr = dir.path().join("a.csr");
    let out = cli(
        REMOTE,
        Some(&hsm),
        &[
            "csr",
            "--key",
            &hsm.uri("soft", ";object=a"),
            "--subject",
            SUBJECT,
            "--out",
            p(&csr),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let order = |key_label: &str| {
        cli(
            REMOTE,
            Some(&hsm),
            &[
                "order",
                "--product",
                "code-signing",
                "--request",
                p(&body),
                "--csr",
                p(&csr),
                "--key",
                &hsm.uri("soft", &format!(";object={key_label}")),
                "--dry-run",
            ],
        )
    };
    let out = order("a");
    assert_refused_by_the_rule(&out);
    assert!(
        stderr(&out).contains("software token (SoftHSM2)"),
        "{}",
        stderr(&out)
    );
    // Another key than the CSR's is caught before the rule is even asked.
    let out = order("b");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not the public key of b"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn provision_refuses_software_keys_for_a_remote_certcentral_before_anything() {
    let hsm = SoftHsm::new();
    hsm.init_token("plan-soft");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body.json"), EMAIL_BODY).unwrap();
    for group in [
        format!(
            "[[keys]]\nalgorithm = \"p256\"\ntoken = \"{}\"\nlabel = \"t1\"\nsubject = \"{SUBJECT}\"\n",
            hsm.uri("plan-soft", "")
        ),
        format!(
            "[[keys]]\nalgorithm = \"p256\"\ndirectory = \"keys\"\nlabel = \"f1\"\nsubject = \"{SUBJECT}\"\n"
        ),
    ] {
        let plan = dir.path().join("plan.toml");
        std::fs::write(
            &plan,
            format!("[order]\nproduct = \"code_signing\"\nbody = \"body.json\"\n\n{group}"),
        )
        .unwrap();
        let out = cli(REMOTE, Some(&hsm), &["provision", "--plan", p(&plan)]);
        assert_refused_by_the_rule(&out);
        // Nothing was done: no key on the token, no key file, no journal, no records.
        assert_eq!(hsm.object_count("plan-soft"), 0);
        assert!(!dir.path().join("keys").join("f1.pem").exists());
        assert!(!plan.with_extension("journal.sqlite").exists(), "{group}");
        assert!(!dir.path().join("records").exists());
    }
}

#[test]
fn the_local_emulator_takes_software_keys_with_a_notice() {
    let mut config = EmulatorConfig::new(API_KEY);
    config.settings = Settings {
        polls_until_issued: 1,
        ..Settings::default()
    };
    let emu = Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, EMAIL_BODY).unwrap();
    let (key, csr) = software_key_csr(dir.path());
    let out = cli(
        &emu.api_base(),
        None,
        &[
            "order",
            "--product",
            "code-signing",
            "--request",
            p(&body),
            "--csr",
            &csr,
            "--key",
            &key,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("notice: the CSR's key is in a key file"),
        "{}",
        stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("placed order"));
}
