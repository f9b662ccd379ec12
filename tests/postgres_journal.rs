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
    use codesign_kit::pipeline::{
        DatabaseUrl, JobSpec, JobState, Journal, KeyLocation, PipelineError, Step,
    };
    use codesign_testkit::Postgres;

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
        let journal = Journal::connect(&url, "plan.toml").unwrap();
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

        let journal = Journal::connect(&url, "plan.toml").unwrap();
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
    /// connect; a second run while one is connected is refused at once, and so is another plan's
    /// run; the messages name the database without its password.
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
        let first = Journal::connect(&url, "plan.toml").unwrap();
        let second = Journal::connect(&url, "plan.toml").unwrap_err();
        assert!(
            matches!(second, PipelineError::DatabaseInUse { .. }),
            "{second}"
        );
        assert!(!second.to_string().contains("pw-never-shown"), "{second}");
        drop(first);
        let other = Journal::connect(&url, "another-plan.toml").unwrap_err();
        assert!(
            other
                .to_string()
                .contains("holds the jobs of plan \"plan.toml\""),
            "{other}"
        );
        assert!(!other.to_string().contains("pw-never-shown"), "{other}");
        let again = Journal::connect(&url, "plan.toml").unwrap();
        assert_eq!(format!("{again:?}").matches("pw-never-shown").count(), 0);
        assert_eq!(
            pg.psql(
                "guarded",
                "SELECT string_agg(version || ':' || name, ',') FROM schema_migrations"
            ),
            "1:0001_journal"
        );
    }
}
