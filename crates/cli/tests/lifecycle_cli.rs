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
use codesign_testkit::{SoftHsm, USER_PIN, count_with_id, openssl};

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

    let records = dir.path().join("records");
    let out = cli(
        &hsm,
        &emu,
        &["expiring", "--records", records.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = doc["expiring"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{doc}");
    assert!(
        rows.iter()
            .all(|r| r["source"] == "record"
                && (17..=19).contains(&r["days_left"].as_i64().unwrap())),
        "{doc}"
    );

    // A *.json file in the directory that is no record is named, with its line and column.
    std::fs::write(records.join("notes.json"), "not json").unwrap();
    let out = cli(
        &hsm,
        &emu,
        &["expiring", "--records", records.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notes.json: not a provisioning record (JSON): expected")
            && stderr.contains("at line 1 column 2"),
        "{stderr}"
    );
    std::fs::remove_file(records.join("notes.json")).unwrap();

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
    // Two keys with their public keys and certificates, and the chain's intermediate.
    assert_eq!(hsm.object_count("revoking"), 7);

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
    assert_eq!(hsm.object_count("revoking"), 7, "nothing destroyed");
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
    assert_eq!(
        hsm.object_count("revoking"),
        4,
        "the other key's three, the intermediate: {listing}"
    );
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

fn spawn(hsm: &SoftHsm, emu: &Emulator, args: &[&str]) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command
        .args(args)
        .env("DIGICERT_API_KEY", KEY)
        .env("CERTCENTRAL_BASE_URL", emu.api_base())
        .env("PKCS11_PIN", USER_PIN)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in hsm.env() {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn kill9(mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Ten keys whose certificates end in about 19 days are renewed: the renewal run is killed with
/// SIGKILL while an order hangs, after CertCentral committed one, during a download, and at a
/// moment chosen at random, then run to the end. Exactly one renewal per key: 10 new key pairs
/// and certificates beside the old ones, 10 new orders each carrying its old order's ID
/// (CertCentral shows the old orders renewed), records that name the job and order renewed; a
/// further run finds nothing to renew.
#[test]
fn renewals_killed_at_several_points_leave_one_renewal_per_key() {
    use certcentral_emulator::{Fault, FaultRule, Route};
    let hsm = SoftHsm::new();
    hsm.init_token("renewing");
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    emu.set_clock_offset(time::Duration::days(-440));
    let journal_path = provision(&hsm, &emu, dir.path(), "renewing", 10);
    emu.set_clock_offset(time::Duration::ZERO);
    assert_eq!(emu.order_count(), 10);
    let plan = dir.path().join("plan.toml");
    let plan_arg = plan.to_str().unwrap();
    let locks = dir.path().join("locks");
    let renew = [
        "renew",
        "--plan",
        plan_arg,
        "--wait",
        "20s",
        "--workers",
        "2",
        "--api-workers",
        "2",
        "--lock-dir",
        locks.to_str().unwrap(),
    ];

    // 1. While the first renewal order hangs before CertCentral takes it.
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::Delay { millis: 60_000 },
        count: 1,
    });
    let child = spawn(&hsm, &emu, &renew);
    wait_until("the first renewal order", || {
        emu.requests_seen(Route::CreateOrder) >= 11
    });
    kill9(child);
    emu.clear_faults();
    // 2. After CertCentral committed a renewal order, before the answer came.
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::DelayAfterCommit { millis: 60_000 },
        count: 1,
    });
    let committed = emu.order_count();
    let child = spawn(&hsm, &emu, &renew);
    wait_until("a renewal order committed", || {
        emu.order_count() > committed
    });
    kill9(child);
    emu.clear_faults();
    // 3. During a download.
    emu.add_fault(FaultRule {
        route: Route::Download,
        fault: Fault::Delay { millis: 60_000 },
        count: 1,
    });
    let downloads = emu.requests_seen(Route::Download);
    let child = spawn(&hsm, &emu, &renew);
    wait_until("a download", || {
        emu.requests_seen(Route::Download) > downloads
    });
    kill9(child);
    emu.clear_faults();
    // 4. At a moment chosen at random.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let child = spawn(&hsm, &emu, &renew);
    std::thread::sleep(std::time::Duration::from_millis(
        20 + u64::from(nanos % 200),
    ));
    kill9(child);

    // Then to the end.
    let out = spawn(&hsm, &emu, &renew).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(emu.order_count(), 20, "one renewal order per key");

    let journal = Journal::open(&journal_path).unwrap();
    assert_eq!(journal.counts().unwrap(), (20, 0, 0, 0));
    for n in 1..=10 {
        let old = journal.load(&format!("life-{n}")).unwrap().unwrap();
        let new = journal.load(&format!("life-{n}.g2")).unwrap().unwrap();
        let renewal = new.spec.renewal_of.clone().unwrap();
        assert_eq!(
            (renewal.job_id.as_str(), Some(renewal.order_id)),
            (format!("life-{n}").as_str(), old.order_id)
        );
        assert_eq!(new.spec.label, format!("life-{n}.g2"));
        assert_ne!(new.key_id, old.key_id);
        assert_eq!(
            emu.orders_with_alternative_id(&new.alternative_order_id),
            1,
            "life-{n}.g2"
        );
        let info = cli(
            &hsm,
            &emu,
            &["status", &old.order_id.unwrap().to_string(), "--json"],
        );
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["is_renewed"], true, "{info}");
        assert_eq!(info["renewed_order_id"].as_u64(), new.order_id, "{info}");
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("records/life-{n}.g2.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["renewal_of"]["job_id"], format!("life-{n}"));
        assert_eq!(record["renewal_of"]["order_id"].as_u64(), old.order_id);
    }
    let listing = hsm.list_objects("renewing");
    for kind in [
        "Private Key Object",
        "Public Key Object",
        "Certificate Object",
    ] {
        assert_eq!(count_with_id(&listing, kind), 20, "{kind}: {listing}");
    }
    drop(journal);

    let out = spawn(&hsm, &emu, &renew).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to renew"),
        "{}",
        text(&out)
    );
    assert_eq!(emu.order_count(), 20);

    // Retiring the old keys: each destroyed once, the new ones kept.
    let mut retire: Vec<&str> = renew.to_vec();
    retire.push("--retire-old");
    let out = spawn(&hsm, &emu, &retire).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        said.matches(": retired (renewed by life-").count(),
        10,
        "{}",
        text(&out)
    );
    let listing = hsm.list_objects("renewing");
    assert_eq!(
        count_with_id(&listing, "Private Key Object"),
        10,
        "{listing}"
    );
    assert_eq!(
        count_with_id(&listing, "Certificate Object"),
        10,
        "{listing}"
    );
    assert!(!listing.contains("label:      life-3\n"), "{listing}");
    let out = spawn(&hsm, &emu, &retire).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("retired"),
        "{}",
        text(&out)
    );
}

/// When CertCentral refuses the renewal link (here: the old order was renewed by another order
/// already), the renewal is ordered without `renewal_of_order_id`, and the run says so.
#[test]
fn a_refused_renewal_link_is_dropped_and_said() {
    let hsm = SoftHsm::new();
    hsm.init_token("relinking");
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    emu.set_clock_offset(time::Duration::days(-440));
    let journal_path = provision(&hsm, &emu, dir.path(), "relinking", 1);
    emu.set_clock_offset(time::Duration::ZERO);
    let old_order = Journal::open(&journal_path)
        .unwrap()
        .load("life-1")
        .unwrap()
        .unwrap()
        .order_id
        .unwrap();
    // Someone renewed the order already, by hand.
    let body = dir.path().join("by-hand.json");
    std::fs::write(
        &body,
        format!(
            r#"{{"certificate": {{"signature_hash": "sha256"}}, "cs_provisioning_method": "email",
                "order_validity": {{"years": 1}}, "skip_approval": true, "organization": {{"id": 123456}},
                "renewal_of_order_id": {old_order}}}"#
        ),
    )
    .unwrap();
    let csr = codesign_testkit::fixture("openssl-p384.csr");
    let out = cli(
        &hsm,
        &emu,
        &[
            "order",
            "--product",
            "code_signing_ev",
            "--request",
            body.to_str().unwrap(),
            "--csr",
            csr.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let plan = dir.path().join("plan.toml");
    let locks = dir.path().join("locks");
    let out = cli(
        &hsm,
        &emu,
        &[
            "renew",
            "--plan",
            plan.to_str().unwrap(),
            "--wait",
            "20s",
            "--lock-dir",
            locks.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("CertCentral refused the renewal link: order_renewed_already; ordered without renewal_of_order_id"),
        "{}",
        text(&out)
    );
    assert_eq!(
        emu.order_count(),
        3,
        "the old order, the one by hand, the renewal"
    );
}

/// `reissue --job`: a new key beside the old one, the job's order reissued for it (the order's
/// certificate replaced, its chain verified by openssl), a record naming what it follows; killed
/// after CertCentral made the reissue but before it answered, and run again: one reissue. A job
/// already reissued is refused by name.
#[test]
fn a_reissue_rotates_the_key_under_the_same_order_once() {
    use certcentral_emulator::{Fault, FaultRule, Route};
    let hsm = SoftHsm::new();
    hsm.init_token("reissuing");
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let journal_path = provision(&hsm, &emu, dir.path(), "reissuing", 2);
    let plan = dir.path().join("plan.toml");
    let locks = dir.path().join("locks");
    let args = |job: &str| -> Vec<String> {
        [
            "reissue",
            "--plan",
            plan.to_str().unwrap(),
            "--job",
            job,
            "--wait",
            "20s",
            "--lock-dir",
            locks.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |job: &str| {
        let args = args(job);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&hsm, &emu, &args)
    };

    let out = run("life-1");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let journal = Journal::open(&journal_path).unwrap();
    let old = journal.load("life-1").unwrap().unwrap();
    let new = journal.load("life-1.g2").unwrap().unwrap();
    drop(journal);
    assert_eq!(new.order_id, old.order_id, "the same order");
    assert_ne!(new.certificate_id, old.certificate_id, "a new certificate");
    assert_ne!(new.key_id, old.key_id, "a new key");
    let listing = hsm.list_objects("reissuing");
    assert_eq!(
        count_with_id(&listing, "Private Key Object"),
        3,
        "{listing}"
    );
    assert_eq!(
        count_with_id(&listing, "Certificate Object"),
        3,
        "{listing}"
    );
    let status = cli(
        &hsm,
        &emu,
        &["status", &old.order_id.unwrap().to_string(), "--json"],
    );
    let info: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        info["certificate"]["id"].as_u64(),
        new.certificate_id,
        "{info}"
    );
    let chain = new.chain_pem.clone().unwrap();
    let blocks: Vec<&str> = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    let paths: Vec<PathBuf> = blocks
        .iter()
        .enumerate()
        .map(|(i, block)| {
            let path = dir.path().join(format!("reissued-{i}.pem"));
            std::fs::write(&path, block).unwrap();
            path
        })
        .collect();
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let verify = openssl(&[
        "verify",
        "-CAfile",
        &p(&paths[2]),
        "-untrusted",
        &p(&paths[1]),
        &p(&paths[0]),
    ]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("records/life-1.g2.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["reissue_of"]["job_id"], "life-1");

    let again = run("life-1");
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("life-1.g2 reissued it already"),
        "{}",
        text(&again)
    );

    // Killed after CertCentral made the reissue, before its answer; then run again. (A second
    // reissue request would be refused: the order is `reissue_pending`.)
    emu.add_fault(FaultRule {
        route: Route::Reissue,
        fault: Fault::DelayAfterCommit { millis: 60_000 },
        count: 1,
    });
    let seen = emu.requests_seen(Route::Reissue);
    let child = spawn(
        &hsm,
        &emu,
        &args("life-2")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    wait_until("the reissue request", || {
        emu.requests_seen(Route::Reissue) > seen
    });
    kill9(child);
    emu.clear_faults();
    let out = run("life-2");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("found in the order's reissue list"),
        "{}",
        text(&out)
    );
    assert_eq!(emu.order_count(), 2, "no new order for a reissue");
}

/// After `provision`, the token holds each key's certificate and the chain's intermediate:
/// `pubkey` gives the key's public key (the leaf's, as openssl reads it), `cert export` the
/// leaf, and `cert export --chain` the leaf and the intermediate from the token, which openssl
/// verifies against the emulator's root; the chain file beside the record says the same.
#[test]
fn the_chain_is_on_the_token_and_exports_with_its_key() {
    let hsm = SoftHsm::new();
    hsm.init_token("exporting");
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let journal = provision(&hsm, &emu, dir.path(), "exporting", 2);
    let row = Journal::open(&journal)
        .unwrap()
        .load("life-2")
        .unwrap()
        .unwrap();
    let key_uri = hsm.uri("exporting", ";object=life-2");
    let p = |x: &Path| x.to_str().unwrap().to_string();

    let pubkey = cli(&hsm, &emu, &["pubkey", &key_uri]);
    assert_eq!(pubkey.status.code(), Some(0), "{}", text(&pubkey));
    let chain_file = dir.path().join("records/life-2.chain.pem");
    let chain = std::fs::read_to_string(&chain_file).unwrap();
    assert_eq!(
        Some(chain.clone()),
        row.chain_pem,
        "the chain file is the journal's chain"
    );
    let blocks: Vec<&str> = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&leaf, blocks[0]).unwrap();
    let leaf_key = openssl(&["x509", "-in", &p(&leaf), "-noout", "-pubkey"]).stdout;
    assert_eq!(
        pubkey.stdout, leaf_key,
        "the key's public key is the leaf's"
    );

    let exported = cli(&hsm, &emu, &["cert", "export", &key_uri]);
    assert_eq!(exported.status.code(), Some(0), "{}", text(&exported));
    assert_eq!(String::from_utf8_lossy(&exported.stdout), blocks[0]);

    let with_chain = dir.path().join("exported-chain.pem");
    let out = cli(
        &hsm,
        &emu,
        &[
            "cert",
            "export",
            &key_uri,
            "--chain",
            "--out",
            &p(&with_chain),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let exported_chain = std::fs::read_to_string(&with_chain).unwrap();
    assert_eq!(
        exported_chain,
        format!("{}{}", blocks[0], blocks[1]),
        "leaf and intermediate, no root"
    );
    let root = dir.path().join("root.pem");
    std::fs::write(&root, emu.root_pem()).unwrap();
    let intermediate = dir.path().join("intermediate-from-token.pem");
    std::fs::write(&intermediate, blocks[1]).unwrap();
    let verify = openssl(&[
        "verify",
        "-CAfile",
        &p(&root),
        "-untrusted",
        &p(&intermediate),
        &p(&leaf),
    ]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // Not written over without --force.
    let again = cli(
        &hsm,
        &emu,
        &["cert", "export", &key_uri, "--out", &p(&with_chain)],
    );
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    // A key with no certificate beside it: said by name.
    let bare = cli(
        &hsm,
        &emu,
        &[
            "keygen",
            "--alg",
            "p256",
            "--pkcs11",
            &hsm.uri("exporting", ""),
            "--label",
            "bare",
        ],
    );
    assert_eq!(bare.status.code(), Some(0), "{}", text(&bare));
    let none = cli(
        &hsm,
        &emu,
        &["cert", "export", &hsm.uri("exporting", ";object=bare")],
    );
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    assert!(
        String::from_utf8_lossy(&none.stderr)
            .contains("no certificate is kept beside key \"bare\""),
        "{}",
        text(&none)
    );

    // `token list`: the three keys, the two certificates beside them, the one CA certificate.
    let listed = cli(
        &hsm,
        &emu,
        &["token", "list", &hsm.uri("exporting", ""), "--json"],
    );
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
    let doc: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "{doc}");
    let with_certificates = keys
        .iter()
        .filter(|k| k["certificate"]["subject"].is_string())
        .count();
    assert_eq!(with_certificates, 2, "{doc}");
    assert!(keys.iter().all(|k| k["algorithm"] == "p256"), "{doc}");
    let cas = doc["ca_certificates"].as_array().unwrap();
    assert_eq!(cas.len(), 1, "{doc}");
    assert!(
        cas[0]["subject"]
            .as_str()
            .unwrap()
            .contains("CertCentral Emulator Code Signing CA"),
        "{doc}"
    );
    let plain = cli(&hsm, &emu, &["token", "list", &hsm.uri("exporting", "")]);
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain));
    let said = String::from_utf8_lossy(&plain.stdout);
    assert!(
        said.contains("3 key(s)")
            && said.contains("key \"bare\"")
            && said.contains("no certificate"),
        "{said}"
    );
}

/// DigiCert's HSM flow by hand: `keygen --csr-out` (key and CSR in one process), `order`,
/// `download`, then `cert install` puts the leaf beside the key it was found by (its public key,
/// not its label) and the intermediate as a CA certificate; `cert export --chain` gives back
/// what openssl verifies against the emulator's root. Installing it again, a certificate whose
/// key the token does not hold, and a bundle out of order are refused and change nothing.
#[test]
fn the_manual_path_ends_with_the_chain_on_the_token() {
    let hsm = SoftHsm::new();
    hsm.init_token("manual");
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let csr = dir.path().join("req.csr");
    let out = cli(
        &hsm,
        &emu,
        &[
            "keygen",
            "--alg",
            "p384",
            "--pkcs11",
            &hsm.uri("manual", ""),
            "--label",
            "by-hand",
            "--csr-out",
            &p(&csr),
            "--subject",
            "CN=Example Corp,O=Example Corp,C=US",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["csr"]["path"], p(&csr), "{made}");
    let verify = openssl(&["req", "-in", &p(&csr), "-verify", "-noout", "-pubkey"]);
    assert!(verify.status.success(), "{}", text(&verify));

    std::fs::write(
        dir.path().join("body.json"),
        r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
            "order_validity": {"days": 459}, "skip_approval": true, "organization": {"id": 123456}}"#,
    )
    .unwrap();
    let key_uri = hsm.uri("manual", ";object=by-hand");
    let placed = cli(
        &hsm,
        &emu,
        &[
            "order",
            "--product",
            "code-signing-ev",
            "--request",
            &p(&dir.path().join("body.json")),
            "--csr",
            &p(&csr),
            "--key",
            &key_uri,
            "--json",
        ],
    );
    assert_eq!(placed.status.code(), Some(0), "{}", text(&placed));
    let placed: serde_json::Value = serde_json::from_slice(&placed.stdout).unwrap();
    let order_id = placed["order_id"].as_u64().unwrap().to_string();
    let status = cli(&hsm, &emu, &["status", &order_id, "--json"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let info: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(info["status"], "issued", "{info}");
    let chain = dir.path().join("chain.pem");
    let out = cli(
        &hsm,
        &emu,
        &["download", &order_id, "--by-order", "--out", &p(&chain)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Another key with a label of its own, so that the install cannot be right by label alone.
    let other = cli(
        &hsm,
        &emu,
        &[
            "keygen",
            "--alg",
            "p384",
            "--pkcs11",
            &hsm.uri("manual", ""),
            "--label",
            "other",
        ],
    );
    assert_eq!(other.status.code(), Some(0), "{}", text(&other));
    let before = hsm.object_count("manual");

    let token_uri = hsm.uri("manual", "");
    let out = cli(
        &hsm,
        &emu,
        &["cert", "install", &token_uri, &p(&chain), "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let installed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(installed["label"], "by-hand", "{installed}");
    assert_eq!(installed["intermediates_added"], 1, "{installed}");
    assert_eq!(installed["roots_skipped"], 1, "{installed}");
    assert_eq!(
        hsm.object_count("manual"),
        before + 2,
        "the leaf and the intermediate"
    );

    let exported = dir.path().join("exported.pem");
    let out = cli(
        &hsm,
        &emu,
        &[
            "cert",
            "export",
            &key_uri,
            "--chain",
            "--out",
            &p(&exported),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let root = dir.path().join("root.pem");
    std::fs::write(&root, emu.root_pem()).unwrap();
    let exported_text = std::fs::read_to_string(&exported).unwrap();
    let blocks: Vec<&str> = exported_text
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    assert_eq!(blocks.len(), 2, "leaf and intermediate: {exported_text}");
    let (leaf, intermediate) = (dir.path().join("leaf.pem"), dir.path().join("int.pem"));
    std::fs::write(&leaf, blocks[0]).unwrap();
    std::fs::write(&intermediate, blocks[1]).unwrap();
    let verify = openssl(&[
        "verify",
        "-CAfile",
        &p(&root),
        "-untrusted",
        &p(&intermediate),
        &p(&leaf),
    ]);
    assert!(verify.status.success(), "{}", text(&verify));

    // Refusals, each by name, each leaving the token as it is.
    let count = hsm.object_count("manual");
    let again = cli(&hsm, &emu, &["cert", "install", &token_uri, &p(&chain)]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("installed already"),
        "{}",
        text(&again)
    );
    let reversed = dir.path().join("reversed.pem");
    std::fs::write(&reversed, format!("{}{}", blocks[1], blocks[0])).unwrap();
    let out = cli(&hsm, &emu, &["cert", "install", &token_uri, &p(&reversed)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the leaf is not the first certificate"),
        "{}",
        text(&out)
    );
    let (foreign_key, foreign_csr, foreign) = (
        dir.path().join("f.key"),
        dir.path().join("f.csr"),
        dir.path().join("f.pem"),
    );
    let out = cli(
        &hsm,
        &emu,
        &[
            "keygen",
            "--alg",
            "p256",
            "--out",
            &p(&foreign_key),
            "--csr-out",
            &p(&foreign_csr),
            "--subject",
            "CN=Foreign",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let signed = openssl(&[
        "x509",
        "-req",
        "-in",
        &p(&foreign_csr),
        "-signkey",
        &p(&foreign_key),
        "-days",
        "2",
        "-out",
        &p(&foreign),
    ]);
    assert!(signed.status.success(), "{}", text(&signed));
    let out = cli(&hsm, &emu, &["cert", "install", &token_uri, &p(&foreign)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no key on token \"manual\"")
            && String::from_utf8_lossy(&out.stderr)
                .contains("carries the certificate's public key"),
        "{}",
        text(&out)
    );
    assert_eq!(hsm.object_count("manual"), count, "nothing changed");
}

/// `token delete`: refuses a URI naming no object, one matching two keys' objects, and (without
/// a terminal) to go on without --yes; `type=cert` takes the certificate alone; `object=` the
/// rest of that key. pkcs11-tool judges what is left.
#[test]
fn token_delete_takes_what_the_uri_names_and_nothing_more() {
    let hsm = SoftHsm::new();
    hsm.init_token("deleting");
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    provision(&hsm, &emu, dir.path(), "deleting", 2);
    let listing = || hsm.list_objects("deleting");
    // Two keys labelled alike (pkcs11-tool makes them; our keygen would refuse the second).
    for id in ["a1", "a2"] {
        let out = Command::new("pkcs11-tool")
            .args(["--module", hsm.module().to_str().unwrap()])
            .args(["--token-label", "deleting", "--login", "--pin", USER_PIN])
            .args(["--keypairgen", "--key-type", "EC:prime256v1", "--id", id])
            .args(["--label", "twin", "--usage-sign"])
            .envs(hsm.env())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let before = hsm.object_count("deleting");

    let refused = [
        (hsm.uri("deleting", ""), 2, "name the objects to delete"),
        (
            hsm.uri("deleting", ";object=twin"),
            1,
            "matches 4 objects of more than one key",
        ),
        (
            hsm.uri("deleting", ";object=life-1"),
            2,
            "confirm on a terminal, or pass --yes",
        ),
        (
            hsm.uri("deleting", ";object=no-such-key"),
            1,
            "no object matches",
        ),
    ];
    for (uri, status, said) in refused {
        let mut args = vec!["token", "delete", uri.as_str()];
        if !said.contains("--yes") {
            args.push("--yes");
        }
        let out = cli(&hsm, &emu, &args);
        assert_eq!(out.status.code(), Some(status), "{uri}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(said),
            "{uri}: {}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nothing was deleted") || status == 2,
            "{}",
            text(&out)
        );
    }
    assert_eq!(hsm.object_count("deleting"), before, "nothing went");

    let out = cli(
        &hsm,
        &emu,
        &[
            "token",
            "delete",
            &hsm.uri("deleting", ";object=life-1;type=cert"),
            "--yes",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["deleted"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["deleted"][0]["type"], "cert", "{doc}");
    let left = listing();
    assert!(
        left.contains("Private Key Object") && left.contains("life-1"),
        "the key stays: {left}"
    );
    assert_eq!(hsm.object_count("deleting"), before - 1);

    let out = cli(
        &hsm,
        &emu,
        &[
            "token",
            "delete",
            &hsm.uri("deleting", ";object=life-1"),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("deleted private key \"life-1\"")
            && said.contains("deleted public key \"life-1\""),
        "{said}"
    );
    let left = listing();
    assert!(!left.contains("life-1"), "{left}");
    assert!(left.contains("life-2"), "the other key stays: {left}");
    assert!(
        left.contains("CertCentral Emulator Code Signing CA"),
        "the CA certificate stays: {left}"
    );
    assert_eq!(hsm.object_count("deleting"), before - 3);
}

/// `provision --json` lists every job of the run, done ones too (and again on a `--resume` that
/// has nothing left to do), each with its key URI, order, certificate, chain file and record;
/// a pending run exits 75 with its jobs listed as pending and no files; an error under `--json`
/// is one JSON object on stderr with the exit status it gives.
#[test]
fn provision_json_lists_every_job_and_errors_come_as_json() {
    let hsm = SoftHsm::new();
    hsm.init_token("listing");
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let journal = provision(&hsm, &emu, dir.path(), "listing", 2);
    let plan = dir.path().join("plan.toml");
    let lock_dir = dir.path().join("locks");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "provision",
            "--plan",
            plan.to_str().unwrap(),
            "--lock-dir",
            lock_dir.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        cli(&hsm, &emu, &args)
    };
    let out = run(&["--resume"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["done"], 2, "{doc}");
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{doc}");
    let journal = Journal::open(&journal).unwrap();
    for (job, name) in jobs.iter().zip(["life-1", "life-2"]) {
        let row = journal.load(name).unwrap().unwrap();
        assert_eq!(job["job_id"], name, "{doc}");
        assert_eq!(job["state"], "done", "{doc}");
        assert_eq!(job["order_id"], row.order_id.unwrap(), "{doc}");
        assert_eq!(job["certificate_id"], row.certificate_id.unwrap(), "{doc}");
        let key = job["key"].as_str().unwrap();
        assert!(
            key.starts_with("pkcs11:") && key.contains(&format!("object={name}")),
            "{key}"
        );
        assert!(!key.contains("pin-value"), "{key}");
        // The URI names the key well enough for `pubkey` to find it.
        let pubkey = cli(&hsm, &emu, &["pubkey", key]);
        assert_eq!(pubkey.status.code(), Some(0), "{}", text(&pubkey));
        let chain = std::fs::read_to_string(job["chain_file"].as_str().unwrap()).unwrap();
        assert_eq!(Some(chain), row.chain_pem);
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(job["record_file"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(record["chain_file"], job["chain_file"]);
    }
    drop(journal);

    // Pending: the next job's order waits for CertCentral; --wait 0s leaves it there.
    emu.set_settings(Settings {
        polls_until_issued: 1000,
        rate_limits: false,
        ..Settings::default()
    });
    let more = std::fs::read_to_string(&plan)
        .unwrap()
        .replace("count = 2", "count = 3");
    std::fs::write(&plan, more).unwrap();
    let out = run(&["--resume", "--wait", "0s"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["done"].as_u64(), doc["pending"].as_u64()),
        (Some(2), Some(1)),
        "{doc}"
    );
    let waiting = &doc["jobs"][2];
    assert_eq!(waiting["job_id"], "life-3", "{doc}");
    assert_eq!(waiting["state"], "pending", "{doc}");
    assert!(waiting["order_id"].is_u64(), "{doc}");
    assert!(
        waiting["chain_file"].is_null() && waiting["record_file"].is_null(),
        "{doc}"
    );

    // Errors as JSON: a usage error (2) and a refusal (1), each one object on stderr.
    for (extra, status, said) in [
        (vec!["--resume", "--wait", "10x"], 2, "--wait"),
        (vec![], 1, "pass --resume"),
    ] {
        let out = run(&extra);
        assert_eq!(out.status.code(), Some(status), "{}", text(&out));
        assert!(out.stdout.is_empty(), "{}", text(&out));
        let error: serde_json::Value =
            serde_json::from_slice(&out.stderr).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        assert_eq!(error["error"]["exit_status"], status, "{error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(said),
            "{error}"
        );
    }
}

/// The end of the user's job: after `provision`, osslsigncode (through OpenSSL's pkcs11 engine)
/// signs a PowerShell script with the token key and the chain file beside the record, and
/// verifies the signature against the emulator's root. The same check against another root, and
/// of the script changed after signing, fails: the verification is a real one.
#[test]
fn a_provisioned_key_signs_code_that_osslsigncode_verifies() {
    let hsm = SoftHsm::new();
    hsm.init_token("signing");
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    provision(&hsm, &emu, dir.path(), "signing", 1);
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let script = dir.path().join("hello.ps1");
    std::fs::write(&script, "Write-Host \"hello\"\r\n").unwrap();
    let signed = dir.path().join("hello.signed.ps1");
    let chain = dir.path().join("records/life-1.chain.pem");
    let engine = codesign_testkit::pkcs11_engine();
    let env = hsm.env();
    let sign = codesign_testkit::osslsigncode(
        &[
            "sign",
            "-pkcs11engine",
            &p(&engine),
            "-pkcs11module",
            &p(hsm.module()),
            "-certs",
            &p(&chain),
            "-key",
            "pkcs11:token=signing;object=life-1;type=private",
            "-pass",
            USER_PIN,
            "-h",
            "sha256",
            "-in",
            &p(&script),
            "-out",
            &p(&signed),
        ],
        &env,
    );
    assert!(sign.status.success(), "{}", text(&sign));
    let root = dir.path().join("root.pem");
    std::fs::write(&root, emu.root_pem()).unwrap();
    let verify = |file: &Path, ca: &Path| {
        codesign_testkit::osslsigncode(&["verify", "-in", &p(file), "-CAfile", &p(ca)], &env)
    };
    let verified = verify(&signed, &root);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("Signature verification: ok"),
        "{}",
        text(&verified)
    );

    // Another root does not vouch for it.
    let other_root = dir.path().join("other-root.pem");
    let made = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p(&dir.path().join("other-root.key")),
        "-subj",
        "/CN=Some Other Root",
        "-days",
        "2",
        "-out",
        &p(&other_root),
    ]);
    assert!(made.status.success(), "{}", text(&made));
    assert!(!verify(&signed, &other_root).status.success());
    // A changed script does not verify.
    let tampered = dir.path().join("tampered.ps1");
    let body = std::fs::read_to_string(&signed)
        .unwrap()
        .replacen("hello", "HELLO", 1);
    std::fs::write(&tampered, body).unwrap();
    assert!(!verify(&tampered, &root).status.success());
}
