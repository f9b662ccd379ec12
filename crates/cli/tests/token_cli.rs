//! The token commands against a real SoftHSM2, with OpenSC's pkcs11-tool and OpenSSL as judges:
//! what SoftHSM2 alone can show. What every module must do is in `module_suite.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::Path;
use std::process::{Command, Output};

use codesign_testkit::{SoftHsm, USER_PIN, openssl_csr_signature_ok};

const SUBJECT: &str = "CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US";

fn cli(hsm: &SoftHsm, args: &[&str], pin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command.args(args).env("PKCS11_PIN", pin);
    for (k, v) in hsm.env() {
        command.env(k, v);
    }
    command.output().expect("run the CLI")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn bad_requests_leave_the_token_untouched() {
    let hsm = SoftHsm::new();
    hsm.init_token("safe-token");
    let uri = hsm.uri("safe-token", "");
    assert_exit(
        &cli(
            &hsm,
            &[
                "keygen", "--alg", "p256", "--pkcs11", &uri, "--label", "taken",
            ],
            USER_PIN,
        ),
        0,
    );
    let before = hsm.object_count("safe-token");
    assert_eq!(before, 2);

    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--pkcs11".into(), hsm.uri("no-such-token", "")],
            "no token has label \"no-such-token\"; tokens present: token \"safe-token\"",
        ),
        (
            vec![
                "--pkcs11".into(),
                "pkcs11:token=safe-token?module-path=/etc/hostname".into(),
            ],
            "/etc/hostname: not a usable PKCS#11 module",
        ),
        (
            vec![
                "--pkcs11".into(),
                "pkcs11:token=safe-token".into(),
                "--module".into(),
                "/bin/true".into(),
            ],
            "/bin/true: not a usable PKCS#11 module",
        ),
        (
            vec![
                "--pkcs11".into(),
                uri.clone(),
                "--label".into(),
                "taken".into(),
            ],
            "an object with label \"taken\" already exists",
        ),
        (
            vec![
                "--pkcs11".into(),
                format!("pkcs11:slot-id=0?module-path={}", hsm.module().display()),
            ],
            "name the token with token=<label> or serial=<serial>",
        ),
    ];
    for (args, says) in cases {
        let mut full = vec!["keygen", "--alg", "p256"];
        full.extend(args.iter().map(String::as_str));
        let out = cli(&hsm, &full, USER_PIN);
        assert_exit(&out, 1);
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let out = cli(
        &hsm,
        &["keygen", "--alg", "rsa2048", "--pkcs11", &uri],
        USER_PIN,
    );
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("this key is RSA-2048"),
        "{}",
        stderr(&out)
    );
    let out = cli(
        &hsm,
        &["keygen", "--alg", "p256", "--pkcs11", "token=safe-token"],
        USER_PIN,
    );
    assert_exit(&out, 2);
    assert_eq!(hsm.object_count("safe-token"), before);
}

#[test]
fn doctor_reports_what_the_token_offers() {
    let hsm = SoftHsm::new();
    hsm.init_token("doctor-token");
    let out = cli(
        &hsm,
        &["doctor", "--pkcs11", &hsm.uri("doctor-token", ""), "--json"],
        "unused",
    );
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["token"]["label"], "doctor-token");
    assert_eq!(doc["token"]["model"], "SoftHSM v2");
    assert_eq!(doc["user_pin_locked"], false);
    let verdicts = doc["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 4);
    for v in verdicts {
        assert_eq!(v["can_generate"], true, "{v}");
        assert_eq!(v["can_sign"], true, "{v}");
    }
    let mechanisms = doc["mechanisms"].as_array().unwrap();
    let rsa = mechanisms
        .iter()
        .find(|m| m["name"] == "CKM_RSA_PKCS_KEY_PAIR_GEN")
        .unwrap();
    assert_eq!(rsa["offered"], true);
    assert!(rsa["max_key_size"].as_u64().unwrap() >= 4096);
    // SoftHSM 2.6 hashes nothing for ECDSA itself: the verdict says it signs with CKM_ECDSA.
    assert!(
        verdicts[2]["detail"]
            .as_str()
            .unwrap()
            .contains("CKM_ECDSA")
    );

    let out = cli(
        &hsm,
        &["doctor", "--pkcs11", &hsm.uri("doctor-token", "")],
        "unused",
    );
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("RSA-3072   OK"));
}

#[test]
fn keys_that_always_authenticate_get_a_login_before_each_signature() {
    let hsm = SoftHsm::new();
    hsm.init_token("aa-token");
    // pkcs11-tool makes the key: CKA_ALWAYS_AUTHENTICATE, as some eTokens mark their keys.
    hsm.pkcs11_tool(
        "aa-token",
        &[
            "--keypairgen",
            "--key-type",
            "rsa:3072",
            "--always-auth",
            "--id",
            "77",
            "--label",
            "aa",
            "--usage-sign",
        ],
    );
    assert!(hsm.list_objects("aa-token").contains("always authenticate"));
    let log = hsm.dir().join("spy.log");
    let csr = hsm.dir().join("aa.csr");
    let uri = format!(
        "pkcs11:token=aa-token;id=%77?module-path={}",
        SoftHsm::spy_module().display()
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command
        .args(["csr", "--key", &uri, "--subject", SUBJECT, "--out", p(&csr)])
        .env("PKCS11_PIN", USER_PIN)
        .env("PKCS11SPY", hsm.module())
        .env("PKCS11SPY_OUTPUT", &log);
    for (k, v) in hsm.env() {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert_exit(&out, 0);
    openssl_csr_signature_ok(&csr, false).unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    let user = log.matches("userType = CKU_USER").count();
    let context = log.matches("userType = CKU_CONTEXT_SPECIFIC").count();
    assert_eq!((user, context), (1, 1), "{log}");
}

/// `keygen --csr-out`: the CSR file is checked before the token is touched (an existing file
/// without --force, a --subject that is not a DN), so a refused run leaves no key; `--subject`
/// without `--csr-out`, and `--force` for a token key alone, are usage errors.
#[test]
fn keygen_with_a_csr_checks_the_csr_file_before_the_token() {
    let hsm = SoftHsm::new();
    hsm.init_token("csr-out");
    let uri = hsm.uri("csr-out", "");
    let dir = tempfile::tempdir().unwrap();
    let taken = dir.path().join("taken.csr");
    std::fs::write(&taken, "keep me").unwrap();
    let keygen = |extra: &[&str]| {
        let mut args = vec!["keygen", "--alg", "p256", "--pkcs11", &uri, "--label", "k"];
        args.extend_from_slice(extra);
        cli(&hsm, &args, USER_PIN)
    };
    let refused = keygen(&["--csr-out", p(&taken), "--subject", SUBJECT]);
    assert_exit(&refused, 1);
    assert!(stderr(&refused).contains("exists"), "{}", stderr(&refused));
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep me");
    let bad_dn = keygen(&["--csr-out", p(&dir.path().join("n.csr")), "--subject", "CN"]);
    assert_exit(&bad_dn, 1);
    assert!(stderr(&bad_dn).contains("--subject"), "{}", stderr(&bad_dn));
    assert_exit(&keygen(&["--subject", SUBJECT]), 2);
    assert_exit(&keygen(&["--force"]), 2);
    assert_eq!(hsm.object_count("csr-out"), 0, "no key was made");

    let made = keygen(&["--csr-out", p(&taken), "--subject", SUBJECT, "--force"]);
    assert_exit(&made, 0);
    openssl_csr_signature_ok(&taken, false).unwrap();
    assert_eq!(hsm.object_count("csr-out"), 2);
}
