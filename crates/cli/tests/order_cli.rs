//! `order`, `status`, `download` against the emulator over loopback, as a user runs them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::Path;
use std::process::{Command, Output};

use certcentral_emulator::{Emulator, EmulatorConfig, Route, Settings};
use codesign_testkit::{fixture, openssl};

const KEY: &str = "cli-key-RECOGNIZABLE-5d1e";

fn emulator() -> Emulator {
    let mut config = EmulatorConfig::new(KEY);
    config.settings = Settings {
        polls_until_issued: 1,
        ..Settings::default()
    };
    Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn cli(emu: &Emulator, key: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command
        .args(args)
        .env("CERTCENTRAL_BASE_URL", emu.api_base())
        .env_remove("DIGICERT_API_KEY");
    if let Some(key) = key {
        command.env("DIGICERT_API_KEY", key);
    }
    command.output().expect("run the CLI")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_exit(o: &Output, code: i32) {
    let (out, err) = text(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !out.contains(KEY) && !err.contains(KEY),
        "the API key was printed"
    );
}

fn body_file(dir: &Path, body: &str) -> String {
    let path = dir.join("body.json");
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

const EMAIL_BODY: &str = r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
  "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#;

#[test]
fn dry_run_prints_the_validated_body_and_sends_nothing() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let body = body_file(dir.path(), EMAIL_BODY);
    let csr = fixture("openssl-p384.csr");
    let out = cli(
        &emu,
        None,
        &[
            "order",
            "--product",
            "code-signing-ev",
            "--request",
            &body,
            "--csr",
            csr.to_str().unwrap(),
            "--dry-run",
        ],
    );
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["sent"], false);
    assert_eq!(doc["product"], "code_signing_ev");
    assert!(
        doc["body"]["certificate"]["csr"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE REQUEST")
    );
    // Derived from the product and the CSR: 40 hex digits, the same on every run of this order.
    let derived = doc["body"]["alternative_order_id"].as_str().unwrap();
    assert_eq!(derived.len(), 40, "{derived}");
    assert!(derived.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(doc["alternative_order_id"], derived);
    assert_eq!(emu.order_count(), 0);
    assert!(emu.last_request_body(Route::CreateOrder).is_none());
}

#[test]
fn a_validation_failure_exits_1_naming_every_path_and_sends_nothing() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let body = body_file(
        dir.path(),
        r#"{"certificate": {"signature_hash": "sha1"}, "cs_provisioning_method": "email",
            "order_validity": {"years": 7}, "organization": {"id": 123456}, "payment_method": "cash"}"#,
    );
    let out = cli(
        &emu,
        Some(KEY),
        &["order", "--product", "code-signing-ev", "--request", &body],
    );
    assert_exit(&out, 1);
    let (_, err) = text(&out);
    for path in [
        "certificate.signature_hash",
        "order_validity.years",
        "payment_method",
        "certificate.csr",
    ] {
        assert!(err.contains(path), "{path}: {err}");
    }
    assert!(err.contains("nothing was sent"));
    // A weak CSR is refused by the keys crate's inspection, wired in by the root crate.
    let body = body_file(dir.path(), EMAIL_BODY);
    let weak = fixture("openssl-rsa2048.csr");
    let out = cli(
        &emu,
        Some(KEY),
        &[
            "order",
            "--product",
            "code-signing-ev",
            "--request",
            &body,
            "--csr",
            weak.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 1);
    assert!(
        text(&out)
            .1
            .contains("certificate.csr: code signing keys must be RSA-3072 or larger"),
        "{}",
        text(&out).1
    );
    // The server saw nothing at all from these runs of a client that validates before it sends:
    // no order, no lookup by alternative ID, no request of any kind.
    let seen = || emu.requests_seen_total();
    assert_eq!(seen(), 0, "a refused order reached the server");
    assert_eq!(emu.order_count(), 0);
    // Unknown product: a usage error.
    let out = cli(
        &emu,
        Some(KEY),
        &["order", "--product", "ssl", "--request", &body],
    );
    assert_exit(&out, 2);
    assert_eq!(seen(), 0);
    // The same observation sees a valid order: its lookup and its POST.
    let strong = fixture("openssl-p384.csr");
    let out = cli(
        &emu,
        Some(KEY),
        &[
            "order",
            "--product",
            "code_signing_ev",
            "--request",
            &body,
            "--csr",
            strong.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(emu.requests_seen(Route::CreateOrder), 1);
    assert!(seen() >= 2, "the lookup and the order");
}

#[test]
fn token_orders_show_their_hardware_init_code_and_api_product_names_work() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let body = body_file(
        dir.path(),
        r#"{"certificate": {"server_platform": {"id": 52}, "signature_hash": "sha256"},
            "cs_provisioning_method": "client_app", "order_validity": {"years": 1},
            "skip_approval": true, "organization": {"id": 123456}}"#,
    );
    // The API's own product name; the kebab-case one stays an alias (used elsewhere).
    let out = cli(
        &emu,
        Some(KEY),
        &[
            "order",
            "--product",
            "code_signing",
            "--request",
            &body,
            "--json",
        ],
    );
    assert_exit(&out, 0);
    let placed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let order_id = placed["order_id"].as_u64().unwrap().to_string();
    let out = cli(&emu, Some(KEY), &["status", &order_id, "--json"]);
    assert_exit(&out, 0);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["cs_provisioning_method"], "client_app");
    assert_eq!(info["product"]["name_id"], "code_signing");
    let code = info["hardware_init_code"].as_str().unwrap().to_string();
    assert!(!code.is_empty());
    let out = cli(&emu, Some(KEY), &["status", &order_id]);
    assert_exit(&out, 0);
    assert!(
        text(&out).0.contains(&format!(
            "hardware init code: {code} (for DigiCert Hardware Certificate Installer)"
        )),
        "{}",
        text(&out).0
    );
}

#[test]
fn order_status_and_download_follow_an_order_to_its_chain() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let body = body_file(dir.path(), EMAIL_BODY);
    let csr = fixture("openssl-rsa3072.csr");
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let out = cli(
        &emu,
        None,
        &[
            "order",
            "--product",
            "code-signing-ev",
            "--request",
            &body,
            "--csr",
            csr.to_str().unwrap(),
            "--json",
            "--api-key-file",
            key_file.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 0);
    let placed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let order_id = placed["order_id"].as_u64().unwrap().to_string();
    let cert_id = placed["certificate_id"].as_u64().unwrap().to_string();
    assert_eq!(placed["recovered"], false);
    assert_eq!(placed["requests"][0]["status"], "approved");

    let out = cli(&emu, Some(KEY), &["status", &order_id, "--json"]);
    assert_exit(&out, 0);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["status"], "issued");
    // The fields as CertCentral names them: provisioning, ISO 8601 dates, validity.
    assert_eq!(info["cs_provisioning_method"], "email");
    let created = info["date_created"].as_str().unwrap();
    assert!(
        created.len() == 25 && created.as_bytes()[10] == b'T' && created.ends_with("+00:00"),
        "{created}"
    );
    let days = info["certificate"]["days_remaining"].as_i64().unwrap();
    assert!((364..=459).contains(&days), "{days}");
    assert!(info["certificate"]["valid_till"].as_str().unwrap().len() == 10);
    let out = cli(&emu, Some(KEY), &["status", &order_id]);
    assert_exit(&out, 0);
    let shown = text(&out).0;
    assert!(
        shown.contains(&format!("certificate ID: {cert_id}")),
        "{shown}"
    );
    assert!(shown.contains("provisioning method: email"), "{shown}");
    assert!(shown.contains(&format!("{days} days left")), "{shown}");

    let chain = dir.path().join("chain.pem");
    let out = cli(
        &emu,
        Some(KEY),
        &["download", &cert_id, "--out", chain.to_str().unwrap()],
    );
    assert_exit(&out, 0);
    assert!(text(&out).0.contains("2 CA certificate(s)"));
    let pem = std::fs::read_to_string(&chain).unwrap();
    let blocks: Vec<&str> = pem.split_inclusive("-----END CERTIFICATE-----\n").collect();
    let root = dir.path().join("root.pem");
    let inter = dir.path().join("inter.pem");
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&leaf, blocks[0]).unwrap();
    std::fs::write(&inter, blocks[1]).unwrap();
    std::fs::write(&root, blocks[2]).unwrap();
    let verified = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().unwrap(),
        "-untrusted",
        inter.to_str().unwrap(),
        leaf.to_str().unwrap(),
    ]);
    assert!(verified.status.success());
    let by_order = dir.path().join("by-order.p7b");
    let out = cli(
        &emu,
        Some(KEY),
        &[
            "download",
            &order_id,
            "--by-order",
            "--format",
            "p7b",
            "--out",
            by_order.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 0);
    assert!(
        std::fs::read_to_string(&by_order)
            .unwrap()
            .starts_with("-----BEGIN PKCS7-----")
    );

    // Unknown order: exit 1 with the API's code; a wrong key: exit 1, key not printed.
    let out = cli(&emu, Some(KEY), &["status", "4242"]);
    assert_exit(&out, 1);
    assert!(text(&out).1.contains("not_found|order"), "{}", text(&out).1);
    let out = cli(&emu, Some("wrong-key-RECOGNIZABLE"), &["status", &order_id]);
    assert_exit(&out, 1);
    let (out_text, err_text) = text(&out);
    assert!(
        err_text.contains("HTTP 401")
            && !err_text.contains("wrong-key-RECOGNIZABLE")
            && !out_text.contains("wrong-key-RECOGNIZABLE"),
        "{err_text}"
    );
    let out = cli(&emu, None, &["status", &order_id]);
    assert_exit(&out, 1);
    assert!(text(&out).1.contains("DIGICERT_API_KEY"));
}

#[test]
fn orders_are_listed_and_the_expiring_report_counts_them() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let csr = fixture("openssl-rsa3072.csr");
    let place = |days: u32, alt: &str| {
        let body = body_file(
            dir.path(),
            &format!(
                r#"{{"certificate": {{"signature_hash": "sha256"}}, "cs_provisioning_method": "email",
                   "order_validity": {{"days": {days}}}, "skip_approval": true,
                   "organization": {{"id": 123456}}, "alternative_order_id": "{alt}"}}"#
            ),
        );
        let out = cli(
            &emu,
            Some(KEY),
            &[
                "order",
                "--product",
                "code_signing_ev",
                "--request",
                &body,
                "--csr",
                csr.to_str().unwrap(),
                "--json",
            ],
        );
        assert_exit(&out, 0);
        let placed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = placed["order_id"].as_u64().unwrap().to_string();
        // Followed to issuance.
        for _ in 0..3 {
            assert_exit(&cli(&emu, Some(KEY), &["status", &id]), 0);
        }
        id
    };
    let soon = place(20, "soon1");
    let later = place(300, "later1");
    let list = |args: &[&str]| {
        let mut full = vec!["orders", "list", "--json"];
        full.extend_from_slice(args);
        let out = cli(&emu, Some(KEY), &full);
        assert_exit(&out, 0);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids: Vec<String> = doc["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].to_string())
            .collect();
        (ids, doc)
    };
    let (ids, doc) = list(&[]);
    assert_eq!(ids, [soon.clone(), later.clone()]);
    assert_eq!(doc["total"], 2);
    assert_eq!(doc["orders"][0]["status"], "issued");
    assert_eq!(doc["orders"][0]["product"]["name_id"], "code_signing_ev");
    let days = doc["orders"][0]["certificate"]["days_remaining"]
        .as_i64()
        .unwrap();
    assert!((18..=20).contains(&days), "{days}");
    let (ids, _) = list(&["--sort=-id"]);
    assert_eq!(ids, [later.clone(), soon.clone()]);
    let (ids, _) = list(&["--sort", "valid_till", "--limit", "1"]);
    assert_eq!(ids, std::slice::from_ref(&soon));
    let (ids, _) = list(&["--status", "pending"]);
    assert!(ids.is_empty());
    let (ids, doc) = list(&["--all"]);
    assert_eq!(ids.len(), 2);
    assert_eq!(doc["total"], 2);
    let out = cli(&emu, Some(KEY), &["orders", "list", "--sort", "color"]);
    assert_exit(&out, 1);
    assert!(text(&out).1.contains("color"), "{}", text(&out).1);
    let out = cli(&emu, Some(KEY), &["orders", "list"]);
    assert_exit(&out, 0);
    assert!(text(&out).0.contains("2 of 2 order(s)"), "{}", text(&out).0);

    let out = cli(&emu, Some(KEY), &["orders", "expiring", "--json"]);
    assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |days: i64| {
        report["expiring_orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["days_expiring"] == days)
            .map(|b| b["order_count"].as_u64().unwrap())
            .unwrap()
    };
    assert_eq!((count(30), count(60), count(90), count(-7)), (1, 0, 0, 0));
    let out = cli(&emu, Some(KEY), &["orders", "expiring"]);
    assert_exit(&out, 0);
    assert!(
        text(&out).0.contains("1  expire in 0-30 days"),
        "{}",
        text(&out).0
    );
}

#[test]
fn client_limits_are_dropped_only_for_a_certcentral_on_this_machine() {
    let emu = emulator();
    // Not this machine (a documentation address, never contacted): refused as a usage error.
    let out = cli(
        &emu,
        Some(KEY),
        &[
            "status",
            "1",
            "--no-request-limits",
            "--base-url",
            "https://192.0.2.10/services/v2",
        ],
    );
    assert_exit(&out, 2);
    assert!(
        text(&out)
            .1
            .contains("--no-request-limits is only for a CertCentral on this machine"),
        "{}",
        text(&out).1
    );
    // The emulator on loopback: taken.
    let out = cli(&emu, Some(KEY), &["orders", "list", "--no-request-limits"]);
    assert_exit(&out, 0);
}

/// `download --by-order --wait`: an order that is still not issued when the time is up exits 75
/// and writes nothing; once CertCentral issues it, the same command waits for it and writes the
/// chain.
#[test]
fn download_waits_for_issuance_and_says_pending_with_75() {
    let emu = emulator();
    emu.set_settings(Settings {
        polls_until_issued: 1_000,
        ..Settings::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let body = body_file(dir.path(), EMAIL_BODY);
    let csr = fixture("openssl-p384.csr");
    let out = cli(
        &emu,
        Some(KEY),
        &[
            "order",
            "--product",
            "code-signing-ev",
            "--request",
            &body,
            "--csr",
            csr.to_str().unwrap(),
            "--json",
        ],
    );
    assert_exit(&out, 0);
    let placed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let order_id = placed["order_id"].as_u64().unwrap().to_string();
    let chain = dir.path().join("chain.pem");
    let chain_arg = chain.to_str().unwrap();
    let download = |wait: &str| {
        cli(
            &emu,
            Some(KEY),
            &[
                "download",
                &order_id,
                "--by-order",
                "--wait",
                wait,
                "--out",
                chain_arg,
            ],
        )
    };
    let out = download("1s");
    assert_exit(&out, 75);
    assert!(text(&out).1.contains("still pending"), "{:?}", text(&out));
    assert!(!chain.exists(), "nothing written");

    emu.set_settings(Settings {
        polls_until_issued: 2,
        ..Settings::default()
    });
    let out = download("30s");
    assert_exit(&out, 0);
    let written = std::fs::read_to_string(&chain).unwrap();
    assert_eq!(written.matches("BEGIN CERTIFICATE").count(), 3, "{written}");
    // Without --by-order, --wait is a usage error.
    let out = cli(
        &emu,
        Some(KEY),
        &["download", "1", "--wait", "1s", "--out", "-"],
    );
    assert_exit(&out, 2);
}
