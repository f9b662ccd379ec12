//! The PostgreSQL journal: the same rows and history as the SQLite one, in a database that
//! several hosts can reach.
//!
//! The schema is made by the migrations in `migrations/postgres/` (embedded at build time), each
//! applied once and in order, recorded in `schema_migrations`, under an advisory lock so that two
//! hosts starting at once do not apply one twice. A database holds one plan's journal: the plan's
//! name is stored at first use, and another plan is refused.
//!
//! Until jobs are claimed per host, one run works on a journal at a time, as with SQLite: a run
//! holds a session-level advisory lock for as long as it is connected, and a second run is
//! refused at once.
//!
//! PostgreSQL commits are durable when they return (`synchronous_commit` on, the server's
//! default), so every write here is on disk when it returns and `flush` has nothing to do.
//!
//! The connection is plain TCP or a Unix socket: it is accepted only to this machine (a socket,
//! `localhost` or a loopback address), so that neither the password nor the journal's content
//! crosses a network in clear.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use postgres::{Client, NoTls};
use secrecy::{ExposeSecret, SecretString};

use super::rows::{STORED_COLUMNS, StoredRow};
use super::{Backend, JobRow, JobState, Step, encode_spec, now};
use crate::pipeline::error::PipelineError;
use crate::pipeline::plan::JobSpec;

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "0001_journal",
    include_str!("../../../migrations/postgres/0001_journal.sql"),
)];

/// The advisory lock key of the migrations (any constant shared by every host).
const MIGRATION_LOCK: i64 = 0x636f_6465_7369_676e; // "codesign"
/// The advisory lock key of a run on the journal (one run at a time, until per-host claims).
const RUN_LOCK: i64 = 0x636f_6465_7275_6e31; // "coderun1"

/// A PostgreSQL connection string (`postgres://user:password@host:port/database?...` or
/// `host=... dbname=...`): its password is kept secret, and shown nowhere.
#[derive(Clone)]
pub struct DatabaseUrl {
    secret: SecretString,
    shown: String,
}

impl PartialEq for DatabaseUrl {
    fn eq(&self, other: &DatabaseUrl) -> bool {
        self.secret.expose_secret() == other.secret.expose_secret()
    }
}

impl Eq for DatabaseUrl {}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.shown)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Whether `host` is this machine: a Unix socket directory, `localhost` or a loopback address.
fn is_local(host: &postgres::config::Host) -> bool {
    match host {
        postgres::config::Host::Unix(_) => true,
        postgres::config::Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = PipelineError;

    fn from_str(text: &str) -> Result<DatabaseUrl, PipelineError> {
        let refused = |reason: String| PipelineError::JournalUrl { reason };
        let config = postgres::Config::from_str(text)
            .map_err(|e| refused(format!("not a PostgreSQL connection string: {e}")))?;
        let hosts = config.get_hosts();
        if hosts.is_empty() {
            return Err(refused(
                "it names no host (add one, or host=/run/postgresql for the local socket)"
                    .to_string(),
            ));
        }
        if let Some(remote) = hosts.iter().find(|h| !is_local(h)) {
            let name = match remote {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            return Err(refused(format!(
                "host {name} is not this machine: the journal connects without TLS, so only to a Unix socket or a loopback address (reach a remote server through a tunnel)"
            )));
        }
        let host = match &hosts[0] {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        };
        let port = config
            .get_ports()
            .first()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let shown = format!(
            "postgres://{}{host}{port}/{}",
            config
                .get_user()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            config.get_dbname().unwrap_or("")
        );
        Ok(DatabaseUrl {
            secret: SecretString::from(text.to_string()),
            shown,
        })
    }
}

/// The PostgreSQL journal of one plan.
pub(crate) struct PostgresJournal {
    url: DatabaseUrl,
    client: Mutex<Client>,
}

impl PostgresJournal {
    /// Connects, applies the migrations not yet applied, checks the journal is `plan`'s, and
    /// takes the run lock.
    pub(crate) fn connect(url: &DatabaseUrl, plan: &str) -> Result<PostgresJournal, PipelineError> {
        let failed = |action: &'static str| {
            let database = url.to_string();
            move |cause: postgres::Error| PipelineError::Database {
                database: database.clone(),
                action,
                cause,
            }
        };
        let mut client =
            Client::connect(url.secret.expose_secret(), NoTls).map_err(failed("cannot connect"))?;
        migrate(&mut client).map_err(failed("cannot bring the journal's schema up to date"))?;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RUN_LOCK])
            .map_err(failed("cannot lock the journal"))?
            .get(0);
        if !locked {
            return Err(PipelineError::DatabaseInUse {
                database: url.to_string(),
            });
        }
        client
            .execute(
                "INSERT INTO journal_meta (key, value) VALUES ('plan', $1) ON CONFLICT (key) DO NOTHING",
                &[&plan],
            )
            .map_err(failed("cannot record the plan"))?;
        let holds: String = client
            .query_one("SELECT value FROM journal_meta WHERE key = 'plan'", &[])
            .map_err(failed("cannot read the journal's plan"))?
            .get(0);
        if holds != plan {
            return Err(PipelineError::JournalOfAnotherPlan {
                journal: url.to_string(),
                holds,
                plan: plan.to_string(),
            });
        }
        Ok(PostgresJournal {
            url: url.clone(),
            client: Mutex::new(client),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db(&self, action: &'static str) -> impl Fn(postgres::Error) -> PipelineError + '_ {
        move |cause| PipelineError::Database {
            database: self.url.to_string(),
            action,
            cause,
        }
    }

    fn job_ids(&self, query: &str) -> Result<Vec<String>, PipelineError> {
        let rows = self
            .lock()
            .query(query, &[])
            .map_err(self.db("cannot list jobs"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// Applies every migration not applied yet, each in its own transaction, under an advisory lock.
fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let applied = (|| -> Result<(), postgres::Error> {
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )?;
        let current: i32 = client
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )?
            .get(0);
        for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
            let mut tx = client.transaction()?;
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )?;
            tx.commit()?;
            tracing::info!("journal schema: applied migration {name}");
        }
        Ok(())
    })();
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
    applied
}

fn phase_of(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "pending",
        JobState::Failed => "failed",
        _ => "end",
    }
}

impl Backend for PostgresJournal {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    fn flush(&self) -> Result<(), PipelineError> {
        Ok(())
    }

    #[cfg(test)]
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn insert(&self, row: &JobRow) -> Result<JobRow, PipelineError> {
        let spec_json = encode_spec(&row.spec)?;
        let inserted = {
            let mut client = self.lock();
            let mut tx = client
                .transaction()
                .map_err(self.db("cannot insert a job"))?;
            let inserted = tx
                .execute(
                    "INSERT INTO jobs (job_id, spec, step, state, key_id, alternative_order_id, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (job_id) DO NOTHING",
                    &[
                        &row.spec.job_id,
                        &spec_json,
                        &row.step.as_str(),
                        &row.state.as_str(),
                        &row.key_id,
                        &row.alternative_order_id,
                        &now(),
                    ],
                )
                .map_err(self.db("cannot insert a job"))?;
            if inserted == 1 {
                tx.execute(
                    "INSERT INTO history (job_id, step, phase, at) VALUES ($1, 'planned', 'end', $2)",
                    &[&row.spec.job_id, &now()],
                )
                .map_err(self.db("cannot insert a job"))?;
            }
            tx.commit().map_err(self.db("cannot insert a job"))?;
            inserted == 1
        };
        if inserted {
            return Ok(row.clone());
        }
        // Another run inserted it first: its IDs are the job's.
        self.load(&row.spec.job_id)?
            .ok_or_else(|| PipelineError::JournalContent {
                job_id: row.spec.job_id.clone(),
                what: "its row vanished while it was inserted".to_string(),
            })
    }

    fn load(&self, job_id: &str) -> Result<Option<JobRow>, PipelineError> {
        let found = self
            .lock()
            .query_opt(
                &format!("SELECT {STORED_COLUMNS} FROM jobs WHERE job_id = $1"),
                &[&job_id],
            )
            .map_err(self.db("cannot read a job"))?;
        found
            .map(|r| {
                StoredRow {
                    spec: r.get(0),
                    step: r.get(1),
                    state: r.get(2),
                    key_id: r.get(3),
                    alternative_order_id: r.get(4),
                    csr_pem: r.get(5),
                    audit_json: r.get(6),
                    order_id: r.get(7),
                    certificate_id: r.get(8),
                    chain_pem: r.get(9),
                    note: r.get(10),
                }
                .decode(job_id)
            })
            .transpose()
    }

    fn begin(&self, job_id: &str, step: Step, detail: &str) -> Result<(), PipelineError> {
        self.lock()
            .execute(
                "INSERT INTO history (job_id, step, phase, at, detail) VALUES ($1, $2, 'begin', $3, $4)",
                &[&job_id, &step.as_str(), &now(), &detail],
            )
            .map_err(self.db("cannot record a step's begin"))?;
        Ok(())
    }

    fn save(&self, row: &JobRow, detail: &str) -> Result<(), PipelineError> {
        let mut client = self.lock();
        let mut tx = client.transaction().map_err(self.db("cannot save a job"))?;
        tx.execute(
            "UPDATE jobs SET step = $2, state = $3, csr_pem = $4, audit_json = $5, order_id = $6,
                             certificate_id = $7, chain_pem = $8, note = $9, updated_at = $10
             WHERE job_id = $1",
            &[
                &row.spec.job_id,
                &row.step.as_str(),
                &row.state.as_str(),
                &row.csr_pem,
                &row.audit_json,
                &row.order_id.map(|v| v as i64),
                &row.certificate_id.map(|v| v as i64),
                &row.chain_pem,
                &row.note,
                &now(),
            ],
        )
        .map_err(self.db("cannot save a job"))?;
        tx.execute(
            "INSERT INTO history (job_id, step, phase, at, detail) VALUES ($1, $2, $3, $4, $5)",
            &[
                &row.spec.job_id,
                &row.step.as_str(),
                &phase_of(row.state),
                &now(),
                &detail,
            ],
        )
        .map_err(self.db("cannot save a job"))?;
        tx.commit().map_err(self.db("cannot save a job"))
    }

    fn has_begun(&self, job_id: &str, step: Step) -> Result<bool, PipelineError> {
        Ok(self
            .lock()
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM history WHERE job_id = $1 AND step = $2 AND phase = 'begin')",
                &[&job_id, &step.as_str()],
            )
            .map_err(self.db("cannot read the history"))?
            .get(0))
    }

    fn begun_detail(&self, job_id: &str, step: Step) -> Result<Option<String>, PipelineError> {
        Ok(self
            .lock()
            .query_opt(
                "SELECT detail FROM history WHERE job_id = $1 AND step = $2 AND phase = 'begin'
                 ORDER BY seq DESC LIMIT 1",
                &[&job_id, &step.as_str()],
            )
            .map_err(self.db("cannot read the history"))?
            .and_then(|r| r.get::<_, Option<String>>(0)))
    }

    fn replace_unstarted_spec(&self, spec: &JobSpec) -> Result<(), PipelineError> {
        let spec_json = encode_spec(spec)?;
        let changed = self
            .lock()
            .execute(
                "UPDATE jobs SET spec = $2, updated_at = $3 WHERE job_id = $1 AND step = 'planned'",
                &[&spec.job_id, &spec_json, &now()],
            )
            .map_err(self.db("cannot change a job's spec"))?;
        if changed != 1 {
            return Err(PipelineError::JournalContent {
                job_id: spec.job_id.clone(),
                what: "its spec can change only before its first step".to_string(),
            });
        }
        Ok(())
    }

    fn in_flight(&self) -> Result<Vec<(String, Step, Option<u64>)>, PipelineError> {
        let rows = self
            .lock()
            .query(
                "SELECT job_id, step, order_id FROM jobs
                 WHERE state != 'done' AND step != 'planned' ORDER BY seq",
                &[],
            )
            .map_err(self.db("cannot list jobs"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let step: String = r.get(1);
                (
                    r.get::<_, String>(0),
                    Step::parse(&step).unwrap_or(Step::Planned),
                    r.get::<_, Option<i64>>(2).map(|o| o as u64),
                )
            })
            .collect())
    }

    fn job_count(&self) -> Result<u64, PipelineError> {
        let count: i64 = self
            .lock()
            .query_one("SELECT COUNT(*) FROM jobs", &[])
            .map_err(self.db("cannot count jobs"))?
            .get(0);
        Ok(count as u64)
    }

    fn discard_if_empty(self: Box<Self>) -> Result<bool, PipelineError> {
        // The database is the operator's: nothing is removed from it. Closing the connection
        // ends the run lock.
        Ok(self.job_count()? == 0)
    }

    fn step_times(&self, job_id: &str) -> Result<Vec<(String, i64)>, PipelineError> {
        let rows = self
            .lock()
            .query(
                "SELECT step, at FROM history WHERE job_id = $1 AND phase = 'end' ORDER BY seq",
                &[&job_id],
            )
            .map_err(self.db("cannot read the history"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn unfinished(&self) -> Result<Vec<String>, PipelineError> {
        self.job_ids("SELECT job_id FROM jobs WHERE state != 'done' ORDER BY seq")
    }

    fn done(&self) -> Result<Vec<String>, PipelineError> {
        self.job_ids("SELECT job_id FROM jobs WHERE state = 'done' ORDER BY seq")
    }

    fn counts(&self) -> Result<(u64, u64, u64, u64), PipelineError> {
        let row = self
            .lock()
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE state = 'done'),
                        COUNT(*) FILTER (WHERE state = 'pending'),
                        COUNT(*) FILTER (WHERE state = 'failed'),
                        COUNT(*) FILTER (WHERE state = 'open')
                 FROM jobs",
                &[],
            )
            .map_err(self.db("cannot count jobs"))?;
        let n = |i: usize| row.get::<_, i64>(i) as u64;
        Ok((n(0), n(1), n(2), n(3)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection string's password is shown nowhere; a remote host is refused (no TLS yet);
    /// a socket, localhost and loopback addresses are taken.
    #[test]
    fn database_urls_hide_their_password_and_stay_on_this_machine() {
        let url: DatabaseUrl = "postgres://journal:s3cret-pw@127.0.0.1:5433/plans"
            .parse()
            .unwrap();
        assert_eq!(url.to_string(), "postgres://journal@127.0.0.1:5433/plans");
        assert!(!format!("{url:?}").contains("s3cret-pw"));
        for local in [
            "postgres://u@localhost/db",
            "postgresql://u@[::1]:5432/db",
            "host=/run/postgresql dbname=db user=u password=s3cret-pw",
        ] {
            let url: DatabaseUrl = local.parse().unwrap();
            assert!(!url.to_string().contains("s3cret-pw"), "{url}");
        }
        for refused in [
            "postgres://u:s3cret-pw@db.example.com/db",
            "postgres://u@10.0.0.5/db",
            "not a url at all ===",
        ] {
            let error = refused.parse::<DatabaseUrl>().unwrap_err().to_string();
            assert!(!error.contains("s3cret-pw"), "{error}");
        }
    }
}
