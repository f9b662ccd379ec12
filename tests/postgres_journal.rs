//! The PostgreSQL journal against a real PostgreSQL server (`initdb` and `pg_ctl` into a temporary
//! directory, on a free loopback port): rows and history kept as the SQLite journal keeps them,
//! migrations applied once, one run at a time, one plan per database, no password shown.
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
    use std::time::Duration;

    use codesign_kit::pipeline::{
        Claim, DatabaseUrl, HeldBecause, HostClaims, JobSpec, JobState, Journal, KeyLocation,
        PipelineError, Step,
    };
    use codesign_testkit::Postgres;

    fn host(id: &str) -> HostClaims {
        HostClaims {
            host_id: id.to_string(),
            lease: Duration::from_secs(30),
        }
    }

    fn server() -> Postgres {
        Postgres::start().unwrap_or_else(|why| panic!("no PostgreSQL server: {why}"))
    }

    fn spec(id: &str) -> JobSpec {
        JobSpec {
            job_id: id.to_string(),
            algorithm: codesign_kit::keys::KeyAlgorithm::P256,
            subject: "CN=x".parse().unwrap(),
            location: KeyLocation::File {
                path: format!("{id}.pem").into(),
            },
            label: id.to_string(),
            renewal_of: None,
            reissue_of: None,
        }
    }

    /// What the SQLite journal's own test asks, against PostgreSQL: a row keeps its IDs, steps and
    /// history across connections; lists and counts follow the states; step times come in order.
    #[test]
    fn rows_and_history_survive_reconnecting() {
        let pg = server();
        let url: DatabaseUrl = pg.create_database("rows").parse().unwrap();
        let journal = Journal::connect(&url, "plan.toml", &host("a")).unwrap();
        let mut row = journal.ensure(&spec("a")).unwrap();
        journal.ensure(&spec("b")).unwrap();
        assert_eq!(row.step, Step::Planned);
        assert_eq!(row.key_id.len(), 16);
        assert_eq!(journal.ensure(&spec("a")).unwrap(), row, "IDs chosen once");
        journal.begin("a", Step::OrderSubmitted, "sending").unwrap();
        row.step = Step::OrderSubmitted;
        row.order_id = Some(42);
        row.csr_pem = Some("-----BEGIN CERTIFICATE REQUEST-----\n...".to_string());
        journal.save(&row, "order 42").unwrap();
        assert_eq!(
            journal.in_flight().unwrap(),
            [("a".to_string(), Step::OrderSubmitted, Some(42))]
        );
        row.step = Step::Done;
        row.state = JobState::Done;
        row.chain_pem = Some("chain".to_string());
        journal.save(&row, "").unwrap();
        drop(journal);

        let journal = Journal::connect(&url, "plan.toml", &host("a")).unwrap();
        assert!(journal.has_begun("a", Step::OrderSubmitted).unwrap());
        assert!(!journal.has_begun("a", Step::CertificateInstalled).unwrap());
        assert_eq!(
            journal.begun_detail("a", Step::OrderSubmitted).unwrap(),
            Some("sending".to_string())
        );
        assert_eq!(journal.load("a").unwrap().unwrap(), row);
        assert!(journal.load("c").unwrap().is_none());
        assert_eq!(journal.unfinished().unwrap(), ["b"]);
        assert_eq!(journal.done().unwrap(), ["a"]);
        assert_eq!(journal.counts().unwrap(), (1, 0, 0, 1));
        assert_eq!(journal.job_count().unwrap(), 2);
        let steps: Vec<String> = journal
            .step_times("a")
            .unwrap()
            .into_iter()
            .map(|(step, _)| step)
            .collect();
        assert_eq!(steps, ["planned", "order_submitted", "done"]);
        // A spec changes only before the first step.
        journal.replace_unstarted_spec(&spec("b")).unwrap();
        assert!(journal.replace_unstarted_spec(&spec("a")).is_err());
        assert_eq!(
            pg.psql("rows", "SELECT COUNT(*) FROM history WHERE job_id = 'a'"),
            "4",
            "planned, begin and end of the order, done"
        );
    }

    /// The schema comes from the versioned migrations, each applied once however many runs
    /// connect; a second process as the same host is refused at once (another host ID is not),
    /// and so is another plan's run; the messages name the database without its password.
    #[test]
    fn one_run_one_plan_and_migrations_applied_once() {
        let pg = server();
        pg.create_database("guarded");
        pg.psql("postgres", "ALTER USER journal PASSWORD 'pw-never-shown'");
        let url: DatabaseUrl = pg
            .url("guarded")
            .replace("journal@", "journal:pw-never-shown@")
            .parse()
            .unwrap();
        assert!(!url.to_string().contains("pw-never-shown"));
        let first = Journal::connect(&url, "plan.toml", &host("a")).unwrap();
        let second = Journal::connect(&url, "plan.toml", &host("a")).unwrap_err();
        assert!(
            matches!(second, PipelineError::DatabaseInUse { .. }),
            "{second}"
        );
        assert!(!second.to_string().contains("pw-never-shown"), "{second}");
        let other_host = Journal::connect(&url, "plan.toml", &host("b")).unwrap();
        drop(other_host);
        drop(first);
        let other = Journal::connect(&url, "another-plan.toml", &host("a")).unwrap_err();
        assert!(
            other
                .to_string()
                .contains("holds the jobs of plan \"plan.toml\""),
            "{other}"
        );
        assert!(!other.to_string().contains("pw-never-shown"), "{other}");
        let again = Journal::connect(&url, "plan.toml", &host("a")).unwrap();
        assert_eq!(format!("{again:?}").matches("pw-never-shown").count(), 0);
        assert_eq!(
            pg.psql(
                "guarded",
                "SELECT string_agg(version || ':' || name, ',') FROM schema_migrations"
            ),
            "1:0001_journal,2:0002_host_claims"
        );
    }

    /// The claim protocol between hosts: a job claimed by a live host is left to it; a job whose
    /// key generation began is pinned to its host for good; a host that closes gives its
    /// unpinned jobs up at once; a claim taken over after a lapsed lease stops the first host
    /// before it makes a key (no second key).
    #[test]
    fn hosts_claim_pin_take_over_and_are_fenced() {
        let pg = server();
        let url: DatabaseUrl = pg.create_database("claims").parse().unwrap();
        let a = Journal::connect(&url, "plan.toml", &host("a")).unwrap();
        let b = Journal::connect(&url, "plan.toml", &host("b")).unwrap();
        let ours = |claim: Claim| match claim {
            Claim::Ours(row) => *row,
            other => panic!("not ours: {other:?}"),
        };
        let x = ours(a.claim(&spec("x")).unwrap());
        assert_eq!(
            b.claim(&spec("x")).unwrap(),
            Claim::Elsewhere {
                host: Some("a".to_string()),
                because: HeldBecause::WorkingOnIt
            }
        );
        a.begin("x", Step::KeyGenerated, "making the key").unwrap();
        assert_eq!(
            b.claim(&spec("x")).unwrap(),
            Claim::Elsewhere {
                host: Some("a".to_string()),
                because: HeldBecause::KeyOnItsToken
            }
        );
        // The same IDs whoever reads them.
        assert_eq!(a.load("x").unwrap().unwrap().key_id, x.key_id);

        // y: claimed by a, never pinned; a closes, b takes it at once and pins it.
        ours(a.claim(&spec("y")).unwrap());
        assert_eq!(b.claimable().unwrap().held_elsewhere, ["y"]);
        drop(a);
        let claimable = b.claimable().unwrap();
        assert_eq!(claimable.free, ["y"]);
        ours(b.claim(&spec("y")).unwrap());
        b.begin("y", Step::KeyGenerated, "making the key").unwrap();
        assert!(b.claimable().unwrap().free.is_empty());

        // z: c claims it; c's lease lapses (a host frozen, not dead); d takes it over; c's key
        // generation is refused, d's goes on.
        let c = Journal::connect(&url, "plan.toml", &host("c")).unwrap();
        ours(c.claim(&spec("z")).unwrap());
        pg.psql(
            "claims",
            "UPDATE hosts SET lease_until = now() - interval '1 hour' WHERE host_id = 'c'",
        );
        let d = Journal::connect(&url, "plan.toml", &host("d")).unwrap();
        ours(d.claim(&spec("z")).unwrap());
        let lost = c
            .begin("z", Step::KeyGenerated, "making the key")
            .unwrap_err();
        assert!(matches!(lost, PipelineError::ClaimLost { .. }), "{lost}");
        d.begin("z", Step::KeyGenerated, "making the key").unwrap();
        assert_eq!(
            pg.psql(
                "claims",
                "SELECT string_agg(job_id || '=' || key_host, ',' ORDER BY job_id) FROM jobs"
            ),
            "x=a,y=b,z=d"
        );
        // The status every host sees: the pinned host of each job.
        let hosts: Vec<Option<String>> = d.status().unwrap().into_iter().map(|j| j.host).collect();
        assert_eq!(
            hosts,
            [Some("a".into()), Some("b".into()), Some("d".into())]
        );
    }

    /// A journal URL with sslmode=require talks TLS: refused while the server's certificate does
    /// not chain to a trusted root (the platform's know no test CA), taken once the CA is given,
    /// and the server sees its sessions encrypted.
    #[test]
    fn a_tls_journal_checks_the_servers_certificate() {
        let pg = Postgres::start_tls().unwrap_or_else(|why| panic!("no PostgreSQL server: {why}"));
        pg.create_database("tls");
        let url: DatabaseUrl = format!(
            "postgres://journal@localhost:{}/tls?sslmode=require",
            pg.port()
        )
        .parse()
        .unwrap();
        assert!(url.uses_tls());
        let refused = Journal::connect(&url, "plan.toml", &host("a")).unwrap_err();
        assert!(refused.to_string().contains("certificate"), "{refused}");
        let trusted = url.trusting(&std::fs::read(pg.ca_pem()).unwrap()).unwrap();
        let journal = Journal::connect(&trusted, "plan.toml", &host("a")).unwrap();
        journal.ensure(&spec("t")).unwrap();
        let encrypted: u32 = pg
            .psql(
                "postgres",
                "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.datname = 'tls' AND s.ssl",
            )
            .parse()
            .unwrap();
        assert!(
            encrypted >= 2,
            "the journal's and its heartbeat's sessions: {encrypted}"
        );
        let in_clear: u32 = pg
            .psql(
                "postgres",
                "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.datname = 'tls' AND NOT s.ssl",
            )
            .parse()
            .unwrap();
        assert_eq!(in_clear, 0);
    }
}
