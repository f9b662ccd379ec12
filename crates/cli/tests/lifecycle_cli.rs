//! `expiring` and `revoke` against the emulator, on keys a `provision` run made: exit statuses,
//! JSON, the revocation seen by `openssl verify -crl_check`, and a key destroyed only when asked
//! and confirmed, after everything was checked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use certcentral_emulator::{Emulator, EmulatorConfig, Settings};
use codesign_kit::pipeline::Journal;
use codesign_testkit::{SoftHsm, USER_PIN, openssl};

const KEY: &str = "lifecycle-cli-key-3e91";

fn cli(hsm: &SoftHsm, emu: &Emulator, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command
        .args(args)
        .env("DIGICERT_API_KEY", KEY)
        .env("CERTCENTRAL_BASE_URL", emu.api_base())
        .env("PKCS11_PIN", USER_PIN)
        .stdin(std::process::Stdio::null());
    for (k, v) in hsm.env() {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A plan of `count` P-256 jobs on the token `token`, provisioned; the journal's path.
fn provision(hsm: &SoftHsm, emu: &Emulator, dir: &Path, token: &str, count: u32) -> PathBuf {
    std::fs::write(
        dir.join("body.json"),
        r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
            "order_validity": {"days": 459}, "skip_approval": true, "organization": {"id": 123456}}"#,
    )
    .unwrap();
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n[[keys]]\ncount = {count}\nalgorithm = \"p256\"\n\
             token = \"{}\"\nlabel = \"life-{{n}}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n",
            hsm.uri(token, "")
        ),
    )
    .unwrap();
    let out = cli(
        hsm,
        emu,
        &[
            "provision",
            "--plan",
            plan.to_str().unwrap(),
            "--wait",
            "20s",
            "--lock-dir",
            dir.join("locks").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    plan.with_extension("journal.sqlite")
}

fn emulator() -> Emulator {
    let mut config = EmulatorConfig::new(KEY);
    config.settings = Settings {
        polls_until_issued: 0,
        rate_limits: false,
        ..Settings::default()
    };
    Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Certificates issued 440 days ago (the emulator's clock set back) end in about 19 days:
/// `expiring` finds them in the journal and at CertCentral and exits 3; with a window of 10 days
/// it finds none and exits 0; without a source it is a usage error.
#[test]
fn expiring_exits_3_when_something_ends_within_the_window() {
    let hsm = SoftHsm::new();
    hsm.init_token("expiring");
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    emu.set_clock_offset(time::Duration::days(-440));
    let journal = provision(&hsm, &emu, dir.path(), "expiring", 3);
    emu.set_clock_offset(time::Duration::ZERO);
    let journal_arg = journal.to_str().unwrap();

    let out = cli(
        &hsm,
        &emu,
        &[
            "expiring",
            "--journal",
            journal_arg,
            "--certcentral",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = doc["expiring"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        6,
        "3 from the journal, 3 from CertCentral: {doc}"
    );
    for row in rows {
        let days = row["days_left"].as_i64().unwrap();
        assert!((17..=19).contains(&days), "{row}");
    }
    assert_eq!(rows.iter().filter(|r| r["source"] == "journal").count(), 3);
    assert!(rows.iter().any(|r| r["job_id"] == "life-1"));

    let out = cli(&hsm, &emu, &["expiring", "--journal", journal_arg]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("life-2 (order"),
        "{}",
        text(&out)
    );

    let out = cli(
        &hsm,
        &emu,
        &[
            "expiring",
            "--journal",
            journal_arg,
            "--certcentral",
            "--within",
            "10d",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("nothing ends within 10 days (6 certificate(s) seen)")
    );

    let out = cli(&hsm, &emu, &["expiring"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = cli(
        &hsm,
        &emu,
        &[
            "expiring",
            "--journal",
            dir.path().join("none.sqlite").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// `revoke --order ... --destroy-key URI`: without --yes and without a terminal it is refused
/// before anything is revoked or destroyed (exit 2); with --yes the order is revoked (order
/// info says so, and `openssl verify -crl_check` refuses the leaf) and the key, its public key
/// and its certificate are gone from the token, the other job's objects untouched.
#[test]
fn revoke_refuses_unconfirmed_destruction_then_revokes_and_destroys() {
    let hsm = SoftHsm::new();
    hsm.init_token("revoking");
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let journal = provision(&hsm, &emu, dir.path(), "revoking", 2);
    let row = Journal::open(&journal)
        .unwrap()
        .load("life-1")
        .unwrap()
        .unwrap();
    let order_id = row.order_id.unwrap().to_string();
    let key_uri = hsm.uri("revoking", ";object=life-1");
    assert_eq!(hsm.object_count("revoking"), 6);

    let out = cli(
        &hsm,
        &emu,
        &[
            "revoke",
            "--order",
            &order_id,
            "--comment",
            "key retired",
            "--skip-approval",
            "--destroy-key",
            &key_uri,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--yes"),
        "{}",
        text(&out)
    );
    assert_eq!(hsm.object_count("revoking"), 6, "nothing destroyed");
    let status = cli(&hsm, &emu, &["status", &order_id, "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(info["status"], "issued", "nothing revoked");

    let out = cli(
        &hsm,
        &emu,
        &[
            "revoke",
            "--order",
            &order_id,
            "--comment",
            "key retired",
            "--skip-approval",
            "--destroy-key",
            &key_uri,
            "--yes",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "revoked", "{doc}");
    assert_eq!(doc["destroyed"]["objects"], 3, "{doc}");
    let listing = hsm.list_objects("revoking");
    assert_eq!(hsm.object_count("revoking"), 3, "{listing}");
    assert!(!listing.contains("label:      life-1\n"), "{listing}");
    let status = cli(&hsm, &emu, &["status", &order_id, "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(info["status"], "revoked");

    // The CRL says so: openssl refuses the revoked leaf.
    let chain = row.chain_pem.unwrap();
    let blocks: Vec<&str> = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    let files: Vec<PathBuf> = ["leaf", "intermediate", "root"]
        .iter()
        .zip(&blocks)
        .map(|(name, block)| {
            let path = dir.path().join(format!("{name}.pem"));
            std::fs::write(&path, block).unwrap();
            path
        })
        .collect();
    let crl = dir.path().join("crl.pem");
    std::fs::write(&crl, emu.crl_pem().unwrap()).unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let verify = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        &p(&crl),
        "-CAfile",
        &p(&files[2]),
        "-untrusted",
        &p(&files[1]),
        &p(&files[0]),
    ]);
    let said = String::from_utf8_lossy(&verify.stdout).to_string()
        + &String::from_utf8_lossy(&verify.stderr);
    assert!(
        !verify.status.success() && said.contains("certificate revoked"),
        "{said}"
    );

    // Again: already revoked, said as such.
    let out = cli(
        &hsm,
        &emu,
        &[
            "revoke",
            "--order",
            &order_id,
            "--comment",
            "again",
            "--skip-approval",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("was revoked already"));
}
