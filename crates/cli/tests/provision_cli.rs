//! `provision` killed with SIGKILL at several points, then resumed; and `demo`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use certcentral_emulator::{Emulator, EmulatorConfig, Fault, FaultRule, Route, Settings};
use codesign_kit::pipeline::Journal;
use codesign_testkit::{SoftHsm, USER_PIN, count_labelled, count_with_id};

const KEY: &str = "provision-cli-key-8c2d";

fn command(hsm: &SoftHsm, emu: &Emulator, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command
        .args(args)
        .env("DIGICERT_API_KEY", KEY)
        .env("CERTCENTRAL_BASE_URL", emu.api_base())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in hsm.env() {
        command.env(k, v);
    }
    command
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(mut child: Child) {
    // SIGKILL: no destructor, no flush, no cleanup.
    child.kill().unwrap();
    child.wait().unwrap();
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

#[test]
fn a_batch_killed_at_several_points_resumes_without_duplicates_or_orphans() {
    let hsm = SoftHsm::new();
    hsm.init_token("crash-token");
    let mut config = EmulatorConfig::new(KEY);
    config.settings = Settings {
        polls_until_issued: 1,
        ..Settings::default()
    };
    let emu = Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, USER_PIN).unwrap();
    std::fs::write(
        dir.path().join("body.json"),
        r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
            "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#,
    )
    .unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n[[keys]]\ncount = 3\nalgorithm = \"p256\"\n\
             token = \"pkcs11:token=crash-token?module-path={}&pin-source=file:{}\"\nlabel = \"job-{{n}}\"\n\
             subject = \"CN=Example Corp,O=Example Corp,C=US\"\n",
            hsm.module().display(),
            pin_file.display()
        ),
    )
    .unwrap();
    let plan_arg = plan.to_str().unwrap();
    let run = |resume: bool| {
        // One API worker: each kill below finds one order or download in flight. The token
        // worker goes on making the other jobs' keys meanwhile.
        let mut args = vec![
            "provision",
            "--plan",
            plan_arg,
            "--wait",
            "20s",
            "--api-workers",
            "1",
        ];
        if resume {
            args.push("--resume");
        }
        command(&hsm, &emu, &args).spawn().unwrap()
    };

    // 1. After the key and CSR, while the order request hangs before CertCentral commits it.
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::Delay { millis: 60_000 },
        count: 1,
    });
    let child = run(false);
    wait_until("the first order request", || {
        emu.requests_seen(Route::CreateOrder) >= 1
    });
    kill9(child);
    assert_eq!(emu.order_count(), 0);
    let listing = hsm.list_objects("crash-token");
    let keys = count_labelled(&listing, "Private Key Object");
    assert!(
        (1..=3).contains(&keys),
        "the key of the job being ordered exists, and perhaps the others': {listing}"
    );

    // 2. After CertCentral committed the order, before the answer reached the client.
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::DelayAfterCommit { millis: 60_000 },
        count: 1,
    });
    let child = run(true);
    wait_until("the order to be committed", || emu.order_count() >= 1);
    kill9(child);

    // 3. During the download of the chain.
    emu.add_fault(FaultRule {
        route: Route::Download,
        fault: Fault::Delay { millis: 60_000 },
        count: 1,
    });
    let seen_before = emu.requests_seen(Route::Download);
    let child = run(true);
    wait_until("the download", || {
        emu.requests_seen(Route::Download) > seen_before
    });
    kill9(child);

    // Finally, a run that is left to finish.
    let out = finish(run(true));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("3 job(s): 3 done, 0 pending, 0 failed"),
        "{stdout}"
    );

    // Exactly one order per job at CertCentral...
    assert_eq!(emu.order_count(), 3);
    let journal = Journal::open(&plan.with_extension("journal.sqlite")).unwrap();
    assert_eq!(journal.counts().unwrap(), (3, 0, 0, 0));
    let mut key_ids = Vec::new();
    for n in 1..=3 {
        let row = journal.load(&format!("job-{n}")).unwrap().unwrap();
        assert_eq!(
            emu.orders_with_alternative_id(&row.alternative_order_id),
            1,
            "job-{n}"
        );
        key_ids.push(
            row.key_id
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
    }
    // ...and exactly one key pair and one certificate per job on the token, each pointed to by the journal.
    let listing = hsm.list_objects("crash-token");
    assert_eq!(
        count_labelled(&listing, "Private Key Object"),
        3,
        "{listing}"
    );
    assert_eq!(
        count_labelled(&listing, "Public Key Object"),
        3,
        "{listing}"
    );
    assert_eq!(
        count_with_id(&listing, "Certificate Object"),
        3,
        "{listing}"
    );
    for id in key_ids {
        assert_eq!(
            listing.matches(&format!("ID:         {id}")).count(),
            3,
            "key, public key, certificate with {id}"
        );
    }

    // A run without --resume refuses to start over the journal.
    let out = finish(
        command(&hsm, &emu, &["provision", "--plan", plan_arg])
            .spawn()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));

    // While this process holds the journal, a second run of the plan is refused, and orders nothing.
    let out = finish(run(true));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("plan.journal.sqlite"), "{stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert_eq!(emu.order_count(), 3);
    // Once it is let go, the plan runs (and has nothing left to do).
    drop(journal);
    let out = finish(run(true));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(emu.order_count(), 3);
}

#[test]
fn a_bad_plan_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[order]\nproduct = \"code_signing_ev\"\n[[keys]]\nalgorithm = \"rsa2048\"\ndirectory = \"k\"\nlabel = \"x\"\nsubject = \"CN=x,ZZ=1\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_codesign-kit"))
        .args(["provision", "--plan", plan.to_str().unwrap()])
        .env("DIGICERT_API_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for says in [
        "order: give exactly one of body",
        "keys[0].algorithm",
        "keys[0].subject",
    ] {
        assert!(err.contains(says), "{says}: {err}");
    }
    assert!(
        !Path::new(&plan.with_extension("journal.sqlite")).exists(),
        "nothing started"
    );
}
