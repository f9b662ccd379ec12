//! The token commands against a real SoftHSM2, with OpenSC's pkcs11-tool and OpenSSL as judges.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::Path;
use std::process::{Command, Output};

use codesign_testkit::{SoftHsm, USER_PIN, openssl, openssl_csr_signature_ok, openssl_csr_text};

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

/// The block of `pkcs11-tool -O` output describing the object of `class` labelled `label`.
fn object_block(listing: &str, class: &str, label: &str) -> String {
    let mut blocks: Vec<String> = Vec::new();
    for line in listing.lines() {
        if !line.starts_with(' ') {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    blocks
        .into_iter()
        .find(|b| b.starts_with(class) && b.contains(&format!("label:      {label}\n")))
        .unwrap_or_else(|| panic!("no {class} labelled {label} in:\n{listing}"))
}

/// The DER SubjectPublicKeyInfo in a CSR, read by OpenSSL.
fn csr_public_key_der(csr: &Path) -> Vec<u8> {
    let pem = openssl(&["req", "-in", p(csr), "-pubkey", "-noout"]);
    assert!(pem.status.success());
    let dir = csr.parent().unwrap();
    let pem_path = dir.join("csr-pub.pem");
    std::fs::write(&pem_path, &pem.stdout).unwrap();
    let der = openssl(&["pkey", "-pubin", "-in", p(&pem_path), "-outform", "DER"]);
    assert!(der.status.success());
    der.stdout
}

#[test]
fn keygen_and_csr_on_the_token_for_every_algorithm() {
    let hsm = SoftHsm::new();
    hsm.init_token("cs-token");
    let cases = [
        (
            "rsa3072",
            "Public-Key: (3072 bit)",
            "sha256WithRSAEncryption",
            "RSA 3072 bits",
        ),
        (
            "rsa4096",
            "Public-Key: (4096 bit)",
            "sha256WithRSAEncryption",
            "RSA 4096 bits",
        ),
        (
            "p256",
            "NIST CURVE: P-256",
            "ecdsa-with-SHA256",
            "EC_POINT 256 bits",
        ),
        (
            "p384",
            "NIST CURVE: P-384",
            "ecdsa-with-SHA384",
            "EC_POINT 384 bits",
        ),
    ];
    for (alg, size, sigalg, tool_size) in cases {
        let label = format!("key-{alg}");
        let out = cli(
            &hsm,
            &[
                "keygen",
                "--alg",
                alg,
                "--pkcs11",
                &hsm.uri("cs-token", ""),
                "--label",
                &label,
                "--json",
            ],
            USER_PIN,
        );
        assert_exit(&out, 0);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for flag in [
            "sensitive",
            "always_sensitive",
            "never_extractable",
            "local",
        ] {
            assert_eq!(doc["audit"][flag], true, "{alg}: {flag}");
        }
        assert_eq!(doc["audit"]["extractable"], false);
        let generation_ms = doc["generation_ms"]
            .as_f64()
            .expect("generation_ms is a number");
        assert!(generation_ms > 0.0, "{alg}: generation_ms {generation_ms}");

        let csr = hsm.dir().join(format!("{alg}.csr"));
        let key_uri = hsm.uri("cs-token", &format!(";object={label}"));
        let out = cli(
            &hsm,
            &[
                "csr",
                "--key",
                &key_uri,
                "--subject",
                SUBJECT,
                "--out",
                p(&csr),
            ],
            USER_PIN,
        );
        assert_exit(&out, 0);
        openssl_csr_signature_ok(&csr, false).unwrap_or_else(|s| panic!("{alg}: {s}"));
        let text = openssl_csr_text(&csr);
        assert!(text.contains(size), "{alg}: {text}");
        assert!(
            text.contains(&format!("Signature Algorithm: {sigalg}")),
            "{alg}"
        );

        // pkcs11-tool, an independent judge, on the private key's protection...
        let listing = hsm.list_objects("cs-token");
        let private = object_block(&listing, "Private Key Object", &label);
        assert!(
            private.contains("Access:     sensitive, always sensitive, never extractable, local"),
            "{alg}: {private}"
        );
        assert!(private.contains("Usage:      sign\n"), "{alg}: {private}");
        let public = object_block(&listing, "Public Key Object", &label);
        assert!(public.contains(tool_size), "{alg}: {public}");
        let id = doc["id"].as_str().unwrap();
        assert!(
            private.contains(&format!("ID:         {id}")),
            "{alg}: {private}"
        );

        // ...and on the public key: the one pkcs11-tool reads is the CSR's.
        let csr_spki = csr_public_key_der(&csr);
        if alg.starts_with("rsa") {
            let pub_der = hsm.dir().join(format!("{alg}-pub.der"));
            hsm.pkcs11_tool(
                "cs-token",
                &[
                    "--read-object",
                    "--type",
                    "pubkey",
                    "--id",
                    id,
                    "-o",
                    p(&pub_der),
                ],
            );
            assert_eq!(std::fs::read(&pub_der).unwrap(), csr_spki, "{alg}");
        } else {
            // pkcs11-tool 0.23 cannot export P-384 public keys ("cannot create EVP_PKEY"), so
            // compare the EC_POINT it lists (DER OCTET STRING) with the point ending the CSR's SPKI.
            let listed = public
                .lines()
                .find_map(|l| l.trim().strip_prefix("EC_POINT:"))
                .unwrap_or_else(|| panic!("{alg}: no EC_POINT in {public}"))
                .trim()
                .to_string();
            let point_len = if alg == "p256" { 65 } else { 97 };
            let point: String = csr_spki[csr_spki.len() - point_len..]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(listed, format!("04{point_len:02x}{point}"), "{alg}");
        }
    }
    assert_eq!(hsm.object_count("cs-token"), 8);
}

#[test]
fn a_wrong_pin_is_tried_exactly_once() {
    let hsm = SoftHsm::new();
    hsm.init_token("pin-token");
    let before = hsm.object_count("pin-token");
    // Load OpenSC's spy as the module: it logs every call to the real SoftHSM module.
    let log = hsm.dir().join("spy.log");
    let spy = SoftHsm::spy_module();
    let uri = format!("pkcs11:token=pin-token?module-path={}", spy.display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command
        .args([
            "keygen",
            "--alg",
            "p256",
            "--pkcs11",
            &uri,
            "--label",
            "never-made",
        ])
        .env("PKCS11_PIN", "0000-wrong")
        .env("PKCS11SPY", hsm.module())
        .env("PKCS11SPY_OUTPUT", &log);
    for (k, v) in hsm.env() {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("the PIN is incorrect"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("0000-wrong"));
    let log = std::fs::read_to_string(&log).expect("the spy wrote its log");
    let logins = log.lines().filter(|l| l.contains("C_Login")).count();
    assert_eq!(logins, 1, "exactly one login attempt:\n{log}");
    assert!(log.contains("CKR_PIN_INCORRECT"), "{log}");
    assert!(
        !log.contains("C_GenerateKeyPair"),
        "nothing generated after a failed login"
    );
    assert_eq!(hsm.object_count("pin-token"), before);
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
            "no token matches the token with label \"no-such-token\"; tokens present: token \"safe-token\"",
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
