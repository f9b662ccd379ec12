//! `provision --journal postgres://...` against a real PostgreSQL server and the emulator: a run
//! journaled in the database, killed with SIGKILL while an order hangs, resumed (the dead
//! session's lock gone with it) without a second key or order; a second run refused while one
//! works; the password shown nowhere.
//!
//! Without PostgreSQL these tests fail with the command to install it; `cargo xtask test` leaves
//! them out by name (NOT RUN) on a machine without it, and CI installs it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

/// Every test here needs a PostgreSQL server: `cargo xtask test` leaves `postgres::` out
/// where there is none.
mod postgres {
    use std::process::{Command, Output, Stdio};
    use std::time::{Duration, Instant};

    use certcentral_emulator::{Emulator, EmulatorConfig, Fault, FaultRule, Route, Settings};
    use codesign_testkit::{Postgres, SoftHsm, USER_PIN, count_labelled};

    const KEY: &str = "postgres-cli-key-51f0";
    const PASSWORD: &str = "pg-pw-never-shown-7d1";

    fn command(hsm: &SoftHsm, emu: &Emulator, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
        command
            .args(args)
            .env("DIGICERT_API_KEY", KEY)
            .env("CERTCENTRAL_BASE_URL", emu.api_base())
            .env("PKCS11_PIN", USER_PIN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in hsm.env() {
            command.env(k, v);
        }
        command
    }

    fn text(o: &Output) -> String {
        format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
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

    #[test]
    fn a_run_journaled_in_postgres_survives_sigkill_and_resumes_once() {
        let pg = Postgres::start().unwrap_or_else(|why| panic!("no PostgreSQL server: {why}"));
        pg.create_database("plans");
        pg.psql(
            "postgres",
            &format!("ALTER USER journal PASSWORD '{PASSWORD}'"),
        );
        let url = pg
            .url("plans")
            .replace("journal@", &format!("journal:{PASSWORD}@"));
        let hsm = SoftHsm::new();
        hsm.init_token("pg-token");
        let mut config = EmulatorConfig::new(KEY);
        config.settings = Settings {
            polls_until_issued: 1,
            rate_limits: false,
            ..Settings::default()
        };
        let emu = Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("body.json"),
            r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
                "order_validity": {"days": 459}, "skip_approval": true, "organization": {"id": 123456}}"#,
        )
        .unwrap();
        let plan = dir.path().join("plan.toml");
        std::fs::write(
            &plan,
            format!(
                "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n[[keys]]\ncount = 4\nalgorithm = \"p256\"\n\
                 token = \"{}\"\nlabel = \"pg-{{n}}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n",
                hsm.uri("pg-token", "")
            ),
        )
        .unwrap();
        let lock_dir = dir.path().join("locks");
        let args = |extra: &[&str]| -> Vec<String> {
            let mut args: Vec<String> = [
                "provision",
                "--plan",
                plan.to_str().unwrap(),
                "--journal",
                &url,
                "--lock-dir",
                lock_dir.to_str().unwrap(),
                "--wait",
                "20s",
                "--api-workers",
                "1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        };
        let run = |extra: &[&str]| {
            let args = args(extra);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            command(&hsm, &emu, &args)
        };

        // Killed while the first order request hangs at CertCentral, before it commits.
        emu.add_fault(FaultRule {
            route: Route::CreateOrder,
            fault: Fault::Delay { millis: 60_000 },
            count: 1,
        });
        let mut child = run(&[]).spawn().unwrap();
        wait_until("the first order request", || {
            emu.requests_seen(Route::CreateOrder) >= 1
        });
        // While it works, a second run on the same journal is refused at once.
        let second = run(&["--resume"]).output().unwrap();
        assert_eq!(second.status.code(), Some(1), "{}", text(&second));
        assert!(
            String::from_utf8_lossy(&second.stderr).contains("another provision run"),
            "{}",
            text(&second)
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(emu.order_count(), 0);
        assert!(
            pg.psql("plans", "SELECT COUNT(*) FROM jobs")
                .parse::<u32>()
                .unwrap()
                >= 1,
            "the killed run's jobs are in the database"
        );
        emu.clear_faults();

        // Without --resume, the journal of the earlier run is not started over.
        let refused = run(&[]).output().unwrap();
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("pass --resume"),
            "{}",
            text(&refused)
        );

        let resumed = run(&["--resume", "--json"]).output().unwrap();
        assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
        let doc: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
        assert_eq!(doc["done"], 4, "{doc}");
        assert_eq!(emu.order_count(), 4, "one order per job");
        let listing = hsm.list_objects("pg-token");
        assert_eq!(
            count_labelled(&listing, "Private Key Object"),
            4,
            "one key per job: {listing}"
        );
        assert_eq!(
            pg.psql(
                "plans",
                "SELECT COUNT(*) FILTER (WHERE state = 'done') || '/' || COUNT(*) FROM jobs"
            ),
            "4/4"
        );
        for output in [&second, &refused, &resumed] {
            assert!(!text(output).contains(PASSWORD), "{}", text(output));
        }

        // A database that is not on this machine is refused before anything (no TLS yet).
        let remote = command(
            &hsm,
            &emu,
            &[
                "provision",
                "--plan",
                plan.to_str().unwrap(),
                "--journal",
                &format!("postgres://journal:{PASSWORD}@db.example.com/plans"),
            ],
        )
        .output()
        .unwrap();
        assert_eq!(remote.status.code(), Some(2), "{}", text(&remote));
        assert!(
            String::from_utf8_lossy(&remote.stderr).contains("is not this machine"),
            "{}",
            text(&remote)
        );
        assert!(!text(&remote).contains(PASSWORD), "{}", text(&remote));
    }
}
