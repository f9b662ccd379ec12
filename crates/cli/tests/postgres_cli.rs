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

    /// The emulator: issues at the first poll, no rate limits, `latency` per answer.
    fn emulator(latency: Duration) -> Emulator {
        let mut config = EmulatorConfig::new(KEY);
        config.settings = Settings {
            polls_until_issued: 1,
            rate_limits: false,
            latency,
            ..Settings::default()
        };
        Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
    }

    /// A directory for a plan, with the order body its plans name (`body.json`).
    fn plan_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("body.json"),
            r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
                "order_validity": {"days": 459}, "skip_approval": true, "organization": {"id": 123456}}"#,
        )
        .unwrap();
        dir
    }

    fn as_strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
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
        let emu = emulator(Duration::ZERO);
        let dir = plan_dir();
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

        // A database that is not on this machine is refused before anything (without sslmode=require it would be in clear).
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

    /// Two hosts, each with its own SoftHSM store holding a token of the same label, work one
    /// plan of 40 jobs through one database; host a is killed with SIGKILL mid-run, host b
    /// finishes what it may (and takes over what a left without a key once a's lease lapses),
    /// then a resumes its own. Then: 40 orders, 40 certificates, each job's key on exactly one
    /// token (its host's), 40 records, every job done in the journal, and `jobs` says which
    /// host did what.
    #[test]
    fn two_hosts_share_one_plan_and_a_killed_host_loses_nothing() {
        let pg = Postgres::start().unwrap_or_else(|why| panic!("no PostgreSQL server: {why}"));
        let url = pg.create_database("shared");
        let emu = emulator(Duration::from_millis(15));
        let (hsm_a, hsm_b) = (SoftHsm::new(), SoftHsm::new());
        hsm_a.init_token("shared");
        hsm_b.init_token("shared");
        let dir = plan_dir();
        let plan = dir.path().join("plan.toml");
        std::fs::write(
            &plan,
            "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n[[keys]]\ncount = 40\nalgorithm = \"p256\"\n\
             token = \"pkcs11:token=shared\"\nlabel = \"fleet-{n:02}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n",
        )
        .unwrap();
        let host = |name: &str, hsm: &SoftHsm, extra: &[&str]| {
            let records = dir.path().join(format!("records-{name}"));
            let locks = dir.path().join(format!("locks-{name}"));
            let mut args = vec![
                "provision".to_string(),
                "--plan".into(),
                plan.display().to_string(),
                "--journal".into(),
                url.clone(),
                "--host-id".into(),
                name.into(),
                "--lease".into(),
                "2s".into(),
                "--workers".into(),
                "2".into(),
                "--wait".into(),
                "30s".into(),
                "--records".into(),
                records.display().to_string(),
                "--lock-dir".into(),
                locks.display().to_string(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            command(hsm, &emu, &args)
        };
        let pinned_to = |name: &str| -> u32 {
            pg.psql(
                "shared",
                &format!("SELECT COUNT(*) FROM jobs WHERE key_host = '{name}'"),
            )
            .parse()
            .unwrap()
        };

        // Both tokens are slow to search (the shim in front of SoftHSM), so that the two hosts
        // share the plan's jobs and a job sits claimed without a key for a while.
        let slow = |mut command: Command, hsm: &SoftHsm| {
            command
                .env("PKCS11_MODULE", codesign_testkit::p11shim())
                .env("P11SHIM_MODULE", hsm.module())
                .env("P11SHIM_DELAY_FIND_MS", "30");
            command
        };
        let mut a = slow(host("a", &hsm_a, &[]), &hsm_a).spawn().unwrap();
        wait_until("the journal's schema", || {
            pg.psql("shared", "SELECT to_regclass('jobs') IS NOT NULL") == "t"
        });
        // b joins a plan that a works on already: no --resume, since a's run is this run.
        wait_until("host a's first key", || pinned_to("a") >= 1);
        let b = slow(host("b", &hsm_b, &[]), &hsm_b).spawn().unwrap();
        let keyless_of_a = || -> Vec<String> {
            let listed = pg.psql(
                "shared",
                "SELECT string_agg(job_id, ',') FROM jobs
                 WHERE claimed_by = 'a' AND key_host IS NULL AND state != 'done'",
            );
            listed
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        // a is frozen (SIGSTOP) to look; killed when a job of a's is claimed without a key,
        // else let go on and looked at again.
        let pid_a = a.id().to_string();
        let signal = |name: &str| {
            let sent = Command::new("kill").args([name, &pid_a]).status().unwrap();
            assert!(sent.success());
        };
        wait_until("host a's fifth key", || pinned_to("a") >= 5);
        let mut looks = 0;
        let keyless_at_kill = loop {
            looks += 1;
            assert!(
                looks < 500 && a.try_wait().unwrap().is_none(),
                "host a never held a job without its key (looked {looks} times)"
            );
            signal("-STOP");
            std::thread::sleep(Duration::from_millis(30));
            let keyless = keyless_of_a();
            if !keyless.is_empty() {
                break keyless;
            }
            signal("-CONT");
            std::thread::sleep(Duration::from_millis(15));
        };
        a.kill().unwrap();
        a.wait().unwrap();
        let b = b.wait_with_output().unwrap();
        assert_eq!(b.status.code(), Some(0), "{}", text(&b));
        assert!(
            String::from_utf8_lossy(&b.stderr)
                .contains("joining the plan; hosts working on it now: a"),
            "{}",
            text(&b)
        );
        // What a left claimed without a key went to b once a's lease lapsed.
        assert!(
            String::from_utf8_lossy(&b.stderr).contains("taking over"),
            "{}",
            text(&b)
        );
        for job in &keyless_at_kill {
            assert_eq!(
                pg.psql(
                    "shared",
                    &format!("SELECT key_host FROM jobs WHERE job_id = '{job}'")
                ),
                "b",
                "{job}: taken over by b"
            );
        }
        let pinned_a = pinned_to("a");
        assert!(pinned_a >= 5, "{pinned_a}");
        assert_eq!(pinned_a + pinned_to("b"), 40, "every job pinned once");

        let a = host("a", &hsm_a, &["--resume", "--json"]).output().unwrap();
        assert_eq!(a.status.code(), Some(0), "{}", text(&a));
        let summary: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
        assert_eq!(summary["failed"], 0, "{summary}");

        assert_eq!(emu.order_count(), 40, "one order per job");
        assert_eq!(
            pg.psql(
                "shared",
                "SELECT COUNT(*) FILTER (WHERE state = 'done') || ' ' || COUNT(DISTINCT order_id)
                        || ' ' || COUNT(DISTINCT certificate_id) || ' ' || COUNT(key_host)
                 FROM jobs"
            ),
            "40 40 40 40"
        );
        let listings = [hsm_a.list_objects("shared"), hsm_b.list_objects("shared")];
        for n in 1..=40 {
            let label = format!("fleet-{n:02}");
            let key_host = pg.psql(
                "shared",
                &format!("SELECT key_host FROM jobs WHERE job_id = '{label}'"),
            );
            let on = |listing: &str| {
                codesign_testkit::object_blocks(listing)
                    .iter()
                    .filter(|block| block.starts_with("Private Key Object"))
                    .filter(|block| {
                        block.lines().any(|l| {
                            l.trim_start().strip_prefix("label:").map(str::trim)
                                == Some(label.as_str())
                        })
                    })
                    .count()
            };
            let (on_a, on_b) = (on(&listings[0]), on(&listings[1]));
            assert_eq!(on_a + on_b, 1, "{label}: one key on the two tokens");
            assert_eq!(
                if on_a == 1 { "a" } else { "b" },
                key_host,
                "{label}: the key is on its host's token"
            );
            let record = |name: &str| {
                dir.path()
                    .join(format!("records-{name}/{label}.json"))
                    .is_file()
            };
            assert_eq!(
                (record("a"), record("b")),
                (key_host == "a", key_host == "b"),
                "{label}: one record, by its host"
            );
        }

        // What expires when, from the shared journal: the 40 certificates, none within 30 days.
        let expiring = command(
            &hsm_a,
            &emu,
            &["expiring", "--journal", &url, "--within", "30d", "--json"],
        )
        .output()
        .unwrap();
        assert_eq!(expiring.status.code(), Some(0), "{}", text(&expiring));
        let doc: serde_json::Value = serde_json::from_slice(&expiring.stdout).unwrap();
        assert_eq!(doc["seen"], 40, "{doc}");

        let jobs = command(&hsm_a, &emu, &["jobs", "--journal", &url, "--json"])
            .output()
            .unwrap();
        assert_eq!(jobs.status.code(), Some(0), "{}", text(&jobs));
        let doc: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap();
        assert_eq!(doc["jobs"].as_array().unwrap().len(), 40, "{doc}");
        let done: u64 = doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["done"].as_u64().unwrap())
            .sum();
        assert_eq!(done, 40, "{doc}");
    }

    /// A database that asks for a password: the plan names it (`[journal]`) without one, and the
    /// password comes from a password file (only one that others cannot read) or PGPASSWORD, as
    /// libpq reads them; a plan holding a password is refused before anything is touched; a
    /// password on the command line works with a warning that the process list shows it; the
    /// password is printed nowhere.
    #[test]
    fn the_password_comes_from_pgpassword_or_a_password_file_never_the_plan() {
        const SIGNER_PASSWORD: &str = "signer-pw-5e0b-never-shown";
        let pg = Postgres::start().unwrap_or_else(|why| panic!("no PostgreSQL server: {why}"));
        let url = pg.create_password_role("signer", SIGNER_PASSWORD, "signed");
        let hsm = SoftHsm::new();
        hsm.init_token("pw-token");
        let emu = emulator(Duration::ZERO);
        let dir = plan_dir();
        let plan_with = |database: &str| {
            let plan = dir.path().join("plan.toml");
            std::fs::write(
                &plan,
                format!(
                    "[order]\nproduct = \"code_signing\"\nbody = \"body.json\"\n\n[[keys]]\nalgorithm = \"p256\"\n\
                     token = \"{}\"\nlabel = \"pw-1\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n\n\
                     [journal]\ndatabase = \"{database}\"\n",
                    hsm.uri("pw-token", "")
                ),
            )
            .unwrap();
            plan
        };
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let passfile = dir.path().join("pgpass");
        let run = |args: &[&str], passfile_env: Option<&std::path::Path>, password: bool| {
            let mut command = command(&hsm, &emu, args);
            command.env("HOME", &home).env_remove("PGPASSWORD");
            command.env(
                "PGPASSFILE",
                passfile_env.unwrap_or(std::path::Path::new("")),
            );
            if password {
                command.env("PGPASSWORD", SIGNER_PASSWORD);
            }
            let out = command.output().unwrap();
            assert!(
                !text(&out).contains(SIGNER_PASSWORD),
                "the password is printed: {}",
                text(&out)
            );
            out
        };
        let lock_dir = dir.path().join("locks");
        let provision = |plan: &std::path::Path| -> Vec<String> {
            [
                "provision",
                "--plan",
                plan.to_str().unwrap(),
                "--lock-dir",
                lock_dir.to_str().unwrap(),
                "--wait",
                "20s",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };

        // A plan holding the password: refused by name, nothing touched.
        let with_password = url.replace("signer@", &format!("signer:{SIGNER_PASSWORD}@"));
        let plan = plan_with(&with_password);
        let refused = run(&as_strs(&provision(&plan)), None, false);
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("journal.database") && stderr.contains("must not hold a password"),
            "{stderr}"
        );
        assert_eq!(pg.psql("signed", "SELECT to_regclass('jobs') IS NULL"), "t");

        // No password anywhere: the server's refusal, and nothing on the token.
        let plan = plan_with(&url);
        let no_password = run(&as_strs(&provision(&plan)), None, false);
        assert_eq!(no_password.status.code(), Some(1), "{}", text(&no_password));
        assert!(
            String::from_utf8_lossy(&no_password.stderr).contains("password authentication failed")
                || String::from_utf8_lossy(&no_password.stderr).contains("password missing"),
            "{}",
            text(&no_password)
        );
        assert_eq!(
            count_labelled(&hsm.list_objects("pw-token"), "Private Key Object"),
            0
        );

        // A password file that others may read is not read (libpq's rule), with a warning.
        let port = url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        std::fs::write(
            &passfile,
            format!("# host:port:database:user:password\n127.0.0.1:{port}:signed:signer:{SIGNER_PASSWORD}\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open_file = run(&as_strs(&provision(&plan)), Some(&passfile), false);
        assert_eq!(open_file.status.code(), Some(1), "{}", text(&open_file));
        assert!(
            String::from_utf8_lossy(&open_file.stderr).contains("has group or world access"),
            "{}",
            text(&open_file)
        );

        // The same file, 0600: the run goes through.
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        let done = run(&as_strs(&provision(&plan)), Some(&passfile), false);
        assert_eq!(done.status.code(), Some(0), "{}", text(&done));
        assert_eq!(
            pg.psql("signed", "SELECT state FROM jobs WHERE job_id = 'pw-1'"),
            "done"
        );
        assert_eq!(emu.order_count(), 1);

        // PGPASSWORD, through `jobs --journal URL`.
        let jobs = run(&["jobs", "--journal", &url, "--json"], None, true);
        assert_eq!(jobs.status.code(), Some(0), "{}", text(&jobs));
        let doc: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap();
        assert_eq!(doc["jobs"][0]["state"], "done", "{doc}");

        // The password on the command line: it works, and the process list is named.
        let argv = run(&["jobs", "--journal", &with_password], None, false);
        assert_eq!(argv.status.code(), Some(0), "{}", text(&argv));
        assert!(
            String::from_utf8_lossy(&argv.stderr).contains("process list"),
            "{}",
            text(&argv)
        );
    }

    /// Hosts with different tokens share one plan: while the right host works on its token's
    /// jobs, the left host joins, makes the keys of its own token, leaves the right token's jobs
    /// to the right host (said once, by token) without waiting for them, and ends; the right host
    /// ends with the rest. Nothing is made twice. A host's second run needs --resume; a token
    /// missing on a SQLite journal still stops the run before anything is touched.
    #[test]
    fn each_host_makes_the_keys_of_the_tokens_it_has() {
        let pg = Postgres::start().unwrap_or_else(|why| panic!("no PostgreSQL server: {why}"));
        let url = pg.create_database("split");
        let emu = emulator(Duration::ZERO);
        let (hsm_left, hsm_right) = (SoftHsm::new(), SoftHsm::new());
        hsm_left.init_token("left");
        hsm_right.init_token("right");
        let dir = plan_dir();
        let plan = dir.path().join("plan.toml");
        std::fs::write(
            &plan,
            "[order]\nproduct = \"code_signing\"\nbody = \"body.json\"\n\n\
             [[keys]]\ncount = 3\nalgorithm = \"p256\"\ntoken = \"pkcs11:token=left\"\nlabel = \"l-{n}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n\n\
             [[keys]]\ncount = 2\nalgorithm = \"p256\"\ntoken = \"pkcs11:token=right\"\nlabel = \"r-{n}\"\nsubject = \"CN=Example Corp,O=Example Corp,C=US\"\n",
        )
        .unwrap();
        let host = |name: &str, hsm: &SoftHsm, journal: &str| {
            let records = dir.path().join(format!("records-{name}"));
            let locks = dir.path().join(format!("locks-{name}"));
            let args = [
                "provision",
                "--plan",
                plan.to_str().unwrap(),
                "--journal",
                journal,
                "--host-id",
                name,
                "--wait",
                "20s",
                "--records",
                records.to_str().unwrap(),
                "--lock-dir",
                locks.to_str().unwrap(),
                "--json",
            ];
            command(hsm, &emu, &args)
        };

        // The right host's token is slow to search (the shim in front of SoftHSM), so that its
        // jobs sit claimed, without a key yet, for seconds each.
        let mut right = host("right", &hsm_right, &url);
        right
            .env("PKCS11_MODULE", codesign_testkit::p11shim())
            .env("P11SHIM_MODULE", hsm_right.module())
            .env("P11SHIM_DELAY_FIND_MS", "1000");
        let right = right.spawn().unwrap();
        wait_until("a job of the right token claimed without its key", || {
            pg.psql("split", "SELECT to_regclass('jobs') IS NOT NULL") == "t"
                && pg.psql(
                    "split",
                    "SELECT COUNT(*) FROM jobs WHERE claimed_by = 'right' AND key_host IS NULL",
                ) != "0"
        });

        // The left host meanwhile: its three jobs done; the right token's two left to the right
        // host, not waited for (nothing here could be done with them), said once.
        let left = host("left", &hsm_left, &url).output().unwrap();
        assert_eq!(left.status.code(), Some(0), "{}", text(&left));
        let stderr = String::from_utf8_lossy(&left.stderr);
        assert_eq!(
            stderr
                .matches("token label \"right\": not on this host")
                .count(),
            1,
            "said once: {stderr}"
        );
        assert!(
            stderr.contains("joining the plan; hosts working on it now: right")
                && !stderr.contains("waiting for"),
            "{stderr}"
        );
        let doc: serde_json::Value = serde_json::from_slice(&left.stdout).unwrap();
        assert_eq!(doc["done"], 3, "{doc}");
        assert_eq!(doc["elsewhere"], 2, "{doc}");
        let right_jobs: Vec<&serde_json::Value> = doc["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["job_id"].as_str().unwrap().starts_with("r-"))
            .collect();
        assert_eq!(right_jobs.len(), 2, "{doc}");
        for job in right_jobs {
            assert!(
                job["held_by"] == "right" || job["held_by"] == "a host with token label \"right\"",
                "{job}"
            );
        }

        // The right host does the rest; nothing is made twice.
        let right = right.wait_with_output().unwrap();
        assert_eq!(right.status.code(), Some(0), "{}", text(&right));
        assert!(
            String::from_utf8_lossy(&right.stderr)
                .contains("token label \"left\": not on this host"),
            "{}",
            text(&right)
        );
        // The left host again, without --resume: its own earlier run is there.
        let again = host("left", &hsm_left, &url).output().unwrap();
        assert_eq!(again.status.code(), Some(1), "{}", text(&again));
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("pass --resume"),
            "{}",
            text(&again)
        );
        assert_eq!(emu.order_count(), 5);
        assert_eq!(
            pg.psql(
                "split",
                "SELECT string_agg(job_id || '@' || key_host || ':' || state, ',' ORDER BY job_id) FROM jobs"
            ),
            "l-1@left:done,l-2@left:done,l-3@left:done,r-1@right:done,r-2@right:done"
        );
        for (hsm, label, keys) in [(&hsm_left, "left", 3), (&hsm_right, "right", 2)] {
            assert_eq!(
                count_labelled(&hsm.list_objects(label), "Private Key Object"),
                keys,
                "{label}"
            );
        }

        // The left host's token unplugged after its jobs are done (its store now holds only
        // the right token): a --resume says its jobs are done, not failed, and makes nothing.
        let unplugged = host("left", &hsm_right, &url)
            .arg("--resume")
            .output()
            .unwrap();
        assert_eq!(unplugged.status.code(), Some(0), "{}", text(&unplugged));
        let doc: serde_json::Value = serde_json::from_slice(&unplugged.stdout).unwrap();
        assert_eq!(
            (&doc["done"], &doc["elsewhere"], &doc["failed"]),
            (&3.into(), &2.into(), &0.into()),
            "{doc}"
        );
        assert_eq!(emu.order_count(), 5);

        // One host, a SQLite journal: a token missing here stops the run before anything.
        let sqlite = dir.path().join("one-host.sqlite");
        let alone = host("alone", &hsm_left, sqlite.to_str().unwrap())
            .output()
            .unwrap();
        assert_eq!(alone.status.code(), Some(1), "{}", text(&alone));
        let error: serde_json::Value = serde_json::from_slice(&alone.stderr).unwrap();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("no token has label \"right\""),
            "{}",
            text(&alone)
        );
        assert_eq!(
            count_labelled(&hsm_left.list_objects("left"), "Private Key Object"),
            3
        );
    }
}
