//! The PostgreSQL journal: the same rows and history as the SQLite one, in a database that
//! several hosts can reach.
//!
//! The schema is made by the migrations in `migrations/postgres/` (embedded at build time), each
//! applied once and in order, recorded in `schema_migrations`, under an advisory lock so that two
//! hosts starting at once do not apply one twice. A database holds one plan's journal: the plan's
//! name is stored at first use, and another plan is refused.
//!
//! Several hosts work on one plan at once, each under its own host ID (one process per host ID: a
//! session-level advisory lock on it refuses a second). The claim protocol:
//! - a host holds a lease (`hosts.lease_until`), renewed by a heartbeat thread every third of its
//!   length, and given up when the host closes the journal;
//! - a job is claimed (`jobs.claimed_by`) in one transaction that reads its row with
//!   `SELECT ... FOR UPDATE SKIP LOCKED`: a row another host is claiming this instant is skipped,
//!   a job claimed by a host whose lease is live is left to it, and otherwise it is taken;
//! - before a job's key is made, its begin pins the job to this host (`jobs.key_host`), in the
//!   same transaction and only while the claim is still this host's: a host whose claim was
//!   taken over after its lease lapsed stops the job instead of making a second key;
//! - a job pinned to a host is worked by that host alone, whatever leases do: its key is on that
//!   host's token and never leaves it. Its order, issuance and install wait for that host;
//! - a job that is not pinned, claimed by a host whose lease lapsed (killed), is taken over.
//!
//! So no job gets two keys (the pin is set once, under the claim), two orders (only the pinned
//! host orders, and the alternative order ID is the job's, found again whoever sends it) or two
//! certificates.
//!
//! What is on disk when follows the SQLite journal's rule (see the `journal` module): the begin of
//! a key generation or an order, and a write that stops a job, commit with `synchronous_commit`
//! on (the server's default: on disk when the commit returns); every other write commits with
//! `SET LOCAL synchronous_commit = off`, and reaches the disk with the next synchronous commit,
//! which flushes the write-ahead log up to itself (PostgreSQL's log is one sequence), or within
//! the server's `wal_writer_delay`. So `flush` has nothing to do.
//!
//! The connection is TLS when the URL says `sslmode=require` (rustls; the server's certificate
//! checked against the platform's roots, or against the roots the caller gives, e.g. from
//! `PGSSLROOTCERT`): then the server may be anywhere. Without it the connection is in clear, so it
//! is accepted only to this machine (a Unix socket, `localhost` or a loopback address), and
//! neither the password nor the journal's content crosses a network in clear.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use secrecy::{ExposeSecret, SecretString};

use super::rows::StoredRow;
use super::{
    Backend, Claim, Claimable, HeldBecause, JobRow, JobState, JobStatus, Step, encode_spec, now,
};
use crate::pipeline::error::PipelineError;
use crate::pipeline::plan::JobSpec;

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_journal",
        include_str!("../../../migrations/postgres/0001_journal.sql"),
    ),
    (
        2,
        "0002_host_claims",
        include_str!("../../../migrations/postgres/0002_host_claims.sql"),
    ),
];

/// The advisory lock key of the migrations (any constant shared by every host).
const MIGRATION_LOCK: i64 = 0x636f_6465_7369_676e; // "codesign"

/// A PostgreSQL connection string (`postgres://user:password@host:port/database?...` or
/// `host=... dbname=...`): its password is kept secret, and shown nowhere.
#[derive(Clone)]
pub struct DatabaseUrl {
    secret: SecretString,
    /// The password from elsewhere (PGPASSWORD, a password file) when the string has none.
    password: Option<SecretString>,
    shown: String,
    /// `sslmode=require`: the connection is TLS, the server's certificate checked.
    tls: bool,
    /// The roots the server's certificate must chain to (DER), instead of the platform's.
    roots: Vec<Vec<u8>>,
}

impl DatabaseUrl {
    /// The same database, its server's certificate checked against the CA certificates in `pem`
    /// (e.g. the file `PGSSLROOTCERT` names) instead of the platform's roots.
    ///
    /// # Errors
    /// [`PipelineError::JournalUrl`] when `pem` holds no certificate.
    pub fn trusting(mut self, pem: &[u8]) -> Result<DatabaseUrl, PipelineError> {
        let refused = |reason: String| PipelineError::JournalUrl { reason };
        let blocks =
            pem::parse_many(pem).map_err(|e| refused(format!("the CA certificates: {e}")))?;
        self.roots = blocks
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(pem::Pem::into_contents)
            .collect();
        if self.roots.is_empty() {
            return Err(refused("the CA file holds no certificate".to_string()));
        }
        Ok(self)
    }

    /// Whether the connection is TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls
    }

    /// Whether the connection string carries a password of its own.
    pub fn has_password(&self) -> bool {
        self.config().is_ok_and(|c| c.get_password().is_some())
    }

    /// The same database, logging in with `password` (from `PGPASSWORD` or a password file)
    /// unless the connection string has a password of its own, which wins.
    pub fn with_password(mut self, password: SecretString) -> DatabaseUrl {
        if !self.has_password() {
            self.password = Some(password);
        }
        self
    }

    /// The password a libpq password file (`~/.pgpass`, or the file `PGPASSFILE` names) holds
    /// for this connection, read as libpq reads it: lines `host:port:database:user:password`,
    /// the first line whose four fields match wins; `*` matches anything; `\:` and `\\` escape;
    /// `#` starts a comment line. The host is the connection's first, `localhost` matching a Unix
    /// socket too; the port defaults to 5432, the user to this process's user, the database to
    /// the user.
    ///
    /// ```
    /// use codesign_kit::pipeline::DatabaseUrl;
    /// use secrecy::ExposeSecret;
    ///
    /// let url: DatabaseUrl = "postgres://signer@127.0.0.1:5433/plans".parse().unwrap();
    /// let passfile = "# host:port:database:user:password\n\
    ///                 127.0.0.1:5433:other:signer:not-this-one\n\
    ///                 127.0.0.1:*:plans:signer:pa\\:ss\n";
    /// let password = url.password_in_passfile(passfile).unwrap();
    /// assert_eq!(password.expose_secret(), "pa:ss");
    /// ```
    pub fn password_in_passfile(&self, contents: &str) -> Option<SecretString> {
        let config = self.config().ok()?;
        let user = match config.get_user() {
            Some(user) => user.to_string(),
            None => whoami::username().ok()?,
        };
        let database = config.get_dbname().unwrap_or(&user).to_string();
        let port = config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(5432)
            .to_string();
        let hosts: Vec<String> = match config.get_hosts().first()? {
            postgres::config::Host::Tcp(name) => vec![name.clone()],
            postgres::config::Host::Unix(path) => {
                vec!["localhost".to_string(), path.display().to_string()]
            }
        };
        contents
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(passfile_fields)
            .find(|fields| {
                let matches = |field: &str, value: &str| field == "*" || field == value;
                hosts.iter().any(|host| matches(&fields[0], host))
                    && matches(&fields[1], &port)
                    && matches(&fields[2], &database)
                    && matches(&fields[3], &user)
            })
            .map(|mut fields| SecretString::from(std::mem::take(&mut fields[4])))
    }

    /// The connection string parsed (it parsed when this was made).
    fn config(&self) -> Result<postgres::Config, postgres::Error> {
        postgres::Config::from_str(self.secret.expose_secret())
    }

    /// The error of `action` on this database.
    fn failed(&self, action: &'static str) -> impl Fn(postgres::Error) -> PipelineError + '_ {
        move |cause| PipelineError::Database {
            database: self.shown.clone(),
            action,
            cause,
        }
    }

    /// Connects: TLS when asked, in clear otherwise.
    fn connect(&self) -> Result<Client, PipelineError> {
        let failed = self.failed("cannot connect");
        let mut config = self.config().map_err(&failed)?;
        if let Some(password) = &self.password {
            config.password(password.expose_secret());
        }
        if !self.tls {
            return config.connect(NoTls).map_err(failed);
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
        config.connect(tls).map_err(failed)
    }

    /// rustls with ring's cryptography for this connection alone (no process-wide provider), and
    /// the given roots or the platform's verifier.
    fn tls_config(&self) -> Result<rustls::ClientConfig, PipelineError> {
        let refused = |reason: String| PipelineError::JournalUrl {
            reason: format!("{}: TLS: {reason}", self.shown),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| refused(e.to_string()))?;
        if self.roots.is_empty() {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| refused(e.to_string()))?;
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth());
        }
        let mut roots = rustls::RootCertStore::empty();
        for der in &self.roots {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| refused(format!("a CA certificate: {e}")))?;
        }
        Ok(builder.with_root_certificates(roots).with_no_client_auth())
    }
}

impl PartialEq for DatabaseUrl {
    fn eq(&self, other: &DatabaseUrl) -> bool {
        self.secret.expose_secret() == other.secret.expose_secret()
            && self.password.as_ref().map(ExposeSecret::expose_secret)
                == other.password.as_ref().map(ExposeSecret::expose_secret)
    }
}

/// A password file line's five fields, unescaped (`\:` is a colon, `\\` a backslash); `None`
/// for a line with fewer.
fn passfile_fields(line: &str) -> Option<[String; 5]> {
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(escaped) = chars.next() {
                    fields.last_mut()?.push(escaped);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
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
        let tls = config.get_ssl_mode() == postgres::config::SslMode::Require;
        if !tls && let Some(remote) = hosts.iter().find(|h| !is_local(h)) {
            let name = match remote {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            return Err(refused(format!(
                "host {name} is not this machine: add sslmode=require to connect with TLS (the server's certificate checked), or reach it through a tunnel"
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
        let shown = if tls { format!("{shown} (TLS)") } else { shown };
        Ok(DatabaseUrl {
            secret: SecretString::from(text.to_string()),
            password: None,
            shown,
            tls,
            roots: Vec::new(),
        })
    }
}

/// Who this process is among the hosts sharing a plan, and how long its claims outlive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostClaims {
    /// The host's ID (`--host-id`, by default the machine's hostname).
    pub host_id: String,
    /// How long the host's lease lasts without a heartbeat: a killed host's unpinned jobs are
    /// taken over after it.
    pub lease: Duration,
}

/// The client of a locked connection.
struct ClientGuard<'a>(std::sync::MutexGuard<'a, Connection>);

impl std::ops::Deref for ClientGuard<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.0.client
    }
}

impl std::ops::DerefMut for ClientGuard<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.0.client
    }
}

/// The connection and the statements it has prepared (one round trip each, not two).
struct Connection {
    client: Client,
    statements: std::collections::HashMap<&'static str, postgres::Statement>,
}

impl Connection {
    fn new(client: Client) -> Connection {
        Connection {
            client,
            statements: std::collections::HashMap::new(),
        }
    }

    /// `sql`, prepared once.
    fn prepared(&mut self, sql: &'static str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

const INSERT_JOB: &str = "WITH inserted AS (
        INSERT INTO jobs (job_id, spec, step, state, key_id, alternative_order_id, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (job_id) DO NOTHING RETURNING job_id)
    INSERT INTO history (job_id, step, phase, at) SELECT job_id, 'planned', 'end', $7 FROM inserted";
const LOCK_FOR_CLAIM: &str = "SELECT claimed_by, key_host, state,
        claimed_by IS NOT NULL AND claimed_by != $2 AND EXISTS (
            SELECT 1 FROM hosts h WHERE h.host_id = jobs.claimed_by AND h.lease_until > now())
    FROM jobs WHERE job_id = $1 FOR UPDATE SKIP LOCKED";
const TAKE_CLAIM: &str = "UPDATE jobs SET claimed_by = $2 WHERE job_id = $1";
const PIN: &str = "UPDATE jobs SET key_host = $2
    WHERE job_id = $1 AND claimed_by = $2 AND (key_host IS NULL OR key_host = $2)";
const BEGIN_STEP: &str =
    "INSERT INTO history (job_id, step, phase, at, detail) VALUES ($1, $2, 'begin', $3, $4)";
const SAVE_ROW: &str = "WITH saved AS (
        UPDATE jobs SET step = $2, state = $3, csr_pem = $4, audit_json = $5, order_id = $6,
                        certificate_id = $7, chain_pem = $8, note = $9, updated_at = $10
        WHERE job_id = $1 RETURNING job_id)
    INSERT INTO history (job_id, step, phase, at, detail) SELECT job_id, $2, $11, $10, $12 FROM saved";
/// The columns of `rows::STORED_COLUMNS`, in `StoredRow`'s order.
const LOAD_ROW: &str =
    "SELECT spec, step, state, key_id, alternative_order_id, csr_pem, audit_json,
        order_id, certificate_id, chain_pem, note FROM jobs WHERE job_id = $1";

/// The PostgreSQL journal of one plan, as one host sees it.
pub(crate) struct PostgresJournal {
    url: DatabaseUrl,
    client: Mutex<Connection>,
    host: HostClaims,
    /// `None` for a viewer ([`PostgresJournal::view`]), which holds no lease.
    heartbeat: Option<Heartbeat>,
}

/// The thread that renews the host's lease.
struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Renews `host`'s lease every third of its length on a connection of its own, until stopped.
fn start_heartbeat(url: &DatabaseUrl, host: &HostClaims) -> Result<Heartbeat, PipelineError> {
    let mut client = url.connect()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (id, lease) = (host.host_id.clone(), host.lease);
    let stopping = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("journal-heartbeat".to_string())
        .spawn(move || {
            let every = lease / 3;
            let mut last = Instant::now();
            while !stopping.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50).min(every));
                if last.elapsed() < every {
                    continue;
                }
                last = Instant::now();
                if let Err(e) = client.execute(
                    "UPDATE hosts SET lease_until = now() + make_interval(secs => $2) WHERE host_id = $1",
                    &[&id, &lease.as_secs_f64()],
                ) {
                    tracing::warn!("journal: host {id}: the lease could not be renewed: {e}");
                }
            }
        })
        // Without a heartbeat the lease would lapse while the host works: refused, not carried on.
        .map_err(|cause| PipelineError::Io {
            path: std::path::PathBuf::from("journal-heartbeat"),
            action: "cannot start the thread that renews the host's lease",
            cause,
        })?;
    Ok(Heartbeat {
        stop,
        thread: Some(thread),
    })
}

impl PostgresJournal {
    /// Connects, applies the migrations not yet applied, checks the journal is `plan`'s, takes
    /// the host's lock and lease, and starts its heartbeat.
    pub(crate) fn connect(
        url: &DatabaseUrl,
        plan: &str,
        host: &HostClaims,
    ) -> Result<PostgresJournal, PipelineError> {
        let failed = |action: &'static str| url.failed(action);
        let mut client = url.connect()?;
        migrate(&mut client).map_err(failed("cannot bring the journal's schema up to date"))?;
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended('codesign-kit host ' || $1, 0))",
                &[&host.host_id],
            )
            .map_err(failed("cannot lock the journal"))?
            .get(0);
        if !locked {
            return Err(PipelineError::DatabaseInUse {
                database: url.to_string(),
                host_id: host.host_id.clone(),
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
        client
            .execute(
                "INSERT INTO hosts (host_id, lease_until) VALUES ($1, now() + make_interval(secs => $2))
                 ON CONFLICT (host_id) DO UPDATE SET lease_until = EXCLUDED.lease_until, started_at = now()",
                &[&host.host_id, &host.lease.as_secs_f64()],
            )
            .map_err(failed("cannot take the host's lease"))?;
        // Writes commit asynchronously unless they say otherwise (see the module's documentation).
        client
            .batch_execute("SET synchronous_commit = off")
            .map_err(failed("cannot set up the session"))?;
        let heartbeat = start_heartbeat(url, host)?;
        Ok(PostgresJournal {
            url: url.clone(),
            client: Mutex::new(Connection::new(client)),
            host: host.clone(),
            heartbeat: Some(heartbeat),
        })
    }

    /// Connects to read the journal (`jobs`): no host lock, no lease, no plan check; the
    /// schema must exist.
    pub(crate) fn view(url: &DatabaseUrl) -> Result<PostgresJournal, PipelineError> {
        let mut client = url.connect()?;
        migrate(&mut client).map_err(url.failed("cannot bring the journal's schema up to date"))?;
        Ok(PostgresJournal {
            url: url.clone(),
            client: Mutex::new(Connection::new(client)),
            host: HostClaims {
                host_id: String::new(),
                lease: Duration::ZERO,
            },
            heartbeat: None,
        })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client, for statements run once in a while.
    fn lock(&self) -> ClientGuard<'_> {
        ClientGuard(self.connection())
    }

    fn db(&self, action: &'static str) -> impl Fn(postgres::Error) -> PipelineError + '_ {
        self.url.failed(action)
    }

    fn job_ids(&self, query: &str) -> Result<Vec<String>, PipelineError> {
        let rows = self
            .lock()
            .query(query, &[])
            .map_err(self.db("cannot list jobs"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

impl Drop for PostgresJournal {
    /// The heartbeat stops and the lease is given up at once: what this host leaves unpinned is
    /// for the others to take without waiting for the lease to lapse.
    fn drop(&mut self) {
        let Some(heartbeat) = self.heartbeat.take() else {
            return;
        };
        drop(heartbeat);
        let released = self.lock().execute(
            "UPDATE hosts SET lease_until = now() WHERE host_id = $1",
            &[&self.host.host_id],
        );
        if let Err(e) = released {
            tracing::warn!(
                "journal: host {}: the lease could not be given up (it lapses by itself): {e}",
                self.host.host_id
            );
        }
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

    fn lease(&self) -> Option<std::time::Duration> {
        Some(self.host.lease)
    }

    fn host_id(&self) -> Option<&str> {
        Some(&self.host.host_id)
    }

    fn worked_here(&self) -> Result<bool, PipelineError> {
        Ok(self
            .lock()
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE claimed_by = $1 OR key_host = $1)",
                &[&self.host.host_id],
            )
            .map_err(self.db("cannot read the jobs"))?
            .get(0))
    }

    fn pinned_to(&self, job_id: &str) -> Result<Option<String>, PipelineError> {
        Ok(self
            .lock()
            .query_opt("SELECT key_host FROM jobs WHERE job_id = $1", &[&job_id])
            .map_err(self.db("cannot read a job"))?
            .and_then(|row| row.get(0)))
    }

    fn other_live_hosts(&self) -> Result<Vec<String>, PipelineError> {
        Ok(self
            .lock()
            .query(
                "SELECT host_id FROM hosts WHERE host_id != $1 AND lease_until > now() ORDER BY host_id",
                &[&self.host.host_id],
            )
            .map_err(self.db("cannot read the hosts' leases"))?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    #[cfg(test)]
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn claim(&self, row: &JobRow) -> Result<Claim, PipelineError> {
        let spec_json = encode_spec(&row.spec)?;
        let me = &self.host.host_id;
        let job_id = &row.spec.job_id;
        let failed = self.db("cannot claim a job");
        let decided = {
            let mut connection = self.connection();
            let insert = connection.prepared(INSERT_JOB).map_err(&failed)?;
            let lock = connection.prepared(LOCK_FOR_CLAIM).map_err(&failed)?;
            let take = connection.prepared(TAKE_CLAIM).map_err(&failed)?;
            // Committed asynchronously: on disk with the begin of the job's key generation.
            let mut tx = connection.client.transaction().map_err(&failed)?;
            tx.execute(
                &insert,
                &[
                    job_id,
                    &spec_json,
                    &row.step.as_str(),
                    &row.state.as_str(),
                    &row.key_id,
                    &row.alternative_order_id,
                    &now(),
                ],
            )
            .map_err(&failed)?;
            let found = tx.query_opt(&lock, &[job_id, me]).map_err(&failed)?;
            let decided = match found {
                // Another host is claiming it this instant.
                None => Some(Claim::Elsewhere {
                    host: None,
                    because: HeldBecause::BeingClaimed,
                }),
                Some(found) => {
                    let claimed_by: Option<String> = found.get(0);
                    let key_host: Option<String> = found.get(1);
                    let state: String = found.get(2);
                    let held_live: bool = found.get(3);
                    match key_host {
                        Some(other) if other != *me => Some(Claim::Elsewhere {
                            host: Some(other),
                            because: HeldBecause::KeyOnItsToken,
                        }),
                        _ if state == JobState::Done.as_str() => None,
                        _ if held_live => Some(Claim::Elsewhere {
                            host: claimed_by,
                            because: HeldBecause::WorkingOnIt,
                        }),
                        _ => {
                            if claimed_by.as_deref() != Some(me.as_str()) {
                                tx.execute(&take, &[job_id, me]).map_err(&failed)?;
                            }
                            None
                        }
                    }
                }
            };
            tx.commit().map_err(&failed)?;
            decided
        };
        if let Some(elsewhere) = decided {
            return Ok(elsewhere);
        }
        let held = self
            .load(job_id)?
            .ok_or_else(|| PipelineError::JournalContent {
                job_id: job_id.clone(),
                what: "its row vanished while it was claimed".to_string(),
            })?;
        Ok(Claim::Ours(Box::new(held)))
    }

    fn load(&self, job_id: &str) -> Result<Option<JobRow>, PipelineError> {
        let failed = self.db("cannot read a job");
        let found = {
            let mut connection = self.connection();
            let statement = connection.prepared(LOAD_ROW).map_err(&failed)?;
            connection
                .client
                .query_opt(&statement, &[&job_id])
                .map_err(&failed)?
        };
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
        let failed = self.db("cannot record a step's begin");
        let me = &self.host.host_id;
        let mut connection = self.connection();
        let begin = connection.prepared(BEGIN_STEP).map_err(&failed)?;
        let params: [&(dyn postgres::types::ToSql + Sync); 4] =
            [&job_id, &step.as_str(), &now(), &detail];
        if !step.must_be_on_disk_before_acting() {
            // Committed asynchronously: on disk with the next synchronous commit.
            connection
                .client
                .execute(&begin, &params)
                .map_err(&failed)?;
            return Ok(());
        }
        let pin = connection.prepared(PIN).map_err(&failed)?;
        let mut tx = connection.client.transaction().map_err(&failed)?;
        tx.batch_execute("SET LOCAL synchronous_commit = on")
            .map_err(&failed)?;
        if step == Step::KeyGenerated {
            // The pin, under the claim: a claim taken over since (this host's lease lapsed) makes
            // no second key.
            let pinned = tx.execute(&pin, &[&job_id, me]).map_err(&failed)?;
            if pinned != 1 {
                return Err(PipelineError::ClaimLost {
                    job_id: job_id.to_string(),
                    host_id: me.clone(),
                });
            }
        }
        tx.execute(&begin, &params).map_err(&failed)?;
        tx.commit().map_err(&failed)
    }

    fn save(&self, row: &JobRow, detail: &str) -> Result<(), PipelineError> {
        let failed = self.db("cannot save a job");
        let mut connection = self.connection();
        let save = connection.prepared(SAVE_ROW).map_err(&failed)?;
        let (order_id, certificate_id) = (
            row.order_id.map(|v| v as i64),
            row.certificate_id.map(|v| v as i64),
        );
        let at = now();
        let params: [&(dyn postgres::types::ToSql + Sync); 12] = [
            &row.spec.job_id,
            &row.step.as_str(),
            &row.state.as_str(),
            &row.csr_pem,
            &row.audit_json,
            &order_id,
            &certificate_id,
            &row.chain_pem,
            &row.note,
            &at,
            &phase_of(row.state),
            &detail,
        ];
        if row.state == JobState::Open {
            // A step of a job that goes on: on disk with the next synchronous commit.
            connection.client.execute(&save, &params).map_err(&failed)?;
            return Ok(());
        }
        // A job that stops (pending, failed, done) is on disk when this returns.
        let mut tx = connection.client.transaction().map_err(&failed)?;
        tx.batch_execute("SET LOCAL synchronous_commit = on")
            .map_err(&failed)?;
        tx.execute(&save, &params).map_err(&failed)?;
        tx.commit().map_err(&failed)
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
        // ends the host's lock, and dropping the journal its lease.
        Ok(self.job_count()? == 0)
    }

    fn claimable(&self) -> Result<Claimable, PipelineError> {
        let row = self
            .lock()
            .query_one(
                "SELECT
                    COALESCE(array_agg(job_id ORDER BY seq) FILTER (WHERE NOT live), '{}'),
                    COALESCE(array_agg(job_id ORDER BY seq) FILTER (WHERE live), '{}')
                 FROM (
                    SELECT j.job_id, j.seq, EXISTS (
                        SELECT 1 FROM hosts h
                        WHERE h.host_id = j.claimed_by AND h.lease_until > now()) AS live
                    FROM jobs j
                    WHERE j.state != 'done' AND j.key_host IS NULL
                      AND j.claimed_by IS DISTINCT FROM $1
                 ) unpinned",
                &[&self.host.host_id],
            )
            .map_err(self.db("cannot look for jobs to take over"))?;
        Ok(Claimable {
            free: row.get(0),
            held_elsewhere: row.get(1),
        })
    }

    fn status(&self) -> Result<Vec<JobStatus>, PipelineError> {
        let rows = self
            .lock()
            .query(
                "SELECT job_id, step, state, COALESCE(key_host, claimed_by), order_id, certificate_id,
                        note, updated_at
                 FROM jobs ORDER BY seq",
                &[],
            )
            .map_err(self.db("cannot list jobs"))?;
        Ok(rows
            .iter()
            .map(|r| JobStatus {
                job_id: r.get(0),
                step: Step::parse(&r.get::<_, String>(1)).unwrap_or(Step::Planned),
                state: JobState::parse(&r.get::<_, String>(2)),
                host: r.get(3),
                order_id: r.get::<_, Option<i64>>(4).map(|v| v as u64),
                certificate_id: r.get::<_, Option<i64>>(5).map(|v| v as u64),
                note: r.get(6),
                updated_at: r.get(7),
            })
            .collect())
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

    /// A connection string's password is shown nowhere; a remote host is refused unless the URL
    /// asks for TLS; a socket, localhost and loopback addresses are taken.
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
        // Another machine: only with TLS.
        let remote: DatabaseUrl = "postgres://u:s3cret-pw@db.example.com/db?sslmode=require"
            .parse()
            .unwrap();
        assert!(remote.uses_tls());
        assert_eq!(
            remote.to_string(),
            "postgres://u@db.example.com:5432/db (TLS)"
        );
        for refused in [
            "postgres://u:s3cret-pw@db.example.com/db",
            "postgres://u:s3cret-pw@db.example.com/db?sslmode=prefer",
            "postgres://u@10.0.0.5/db",
            "not a url at all ===",
        ] {
            let error = refused.parse::<DatabaseUrl>().unwrap_err().to_string();
            assert!(!error.contains("s3cret-pw"), "{error}");
        }
    }

    /// libpq's password file: the first matching line wins, `*` matches anything, escapes are
    /// undone, comments and short lines are skipped; a socket matches `localhost`; the port,
    /// user and database take their defaults; the URL's own password wins over one given.
    #[test]
    fn password_files_are_read_as_libpq_reads_them() {
        let found = |url: &str, passfile: &str| {
            url.parse::<DatabaseUrl>()
                .unwrap()
                .password_in_passfile(passfile)
                .map(|p| p.expose_secret().to_string())
        };
        let passfile = "# a comment:*:*:*:no\n\
                        short:line\n\
                        db.example.com:5432:plans:signer:first\n\
                        db.example.com:*:plans:signer:second\n\
                        *:6000:*:signer:any-host\n\
                        localhost:5432:plans:signer:socket\n\
                        127.0.0.1:5433:pl\\:ans:sign\\\\er:esc\\aped:colon\n";
        let remote = "postgres://signer@db.example.com/plans?sslmode=require";
        assert_eq!(found(remote, passfile).as_deref(), Some("first"));
        let other_port = "postgres://signer@db.example.com:6543/plans?sslmode=require";
        assert_eq!(found(other_port, passfile).as_deref(), Some("second"));
        assert_eq!(
            found("postgres://signer@127.0.0.1:6000/x", passfile).as_deref(),
            Some("any-host")
        );
        assert_eq!(
            found("host=/run/postgresql dbname=plans user=signer", passfile).as_deref(),
            Some("socket")
        );
        assert_eq!(
            found("postgres://sign%5Cer@127.0.0.1:5433/pl:ans", passfile).as_deref(),
            Some("escaped:colon")
        );
        assert_eq!(found("postgres://nobody@127.0.0.1/plans", passfile), None);
        // The database defaults to the user's name.
        assert_eq!(
            found(
                "postgres://signer@localhost",
                "localhost:5432:signer:signer:own-db\n"
            )
            .as_deref(),
            Some("own-db")
        );
        // A password of the URL's own is kept.
        let own: DatabaseUrl = "postgres://u:own@localhost/db".parse().unwrap();
        assert!(own.has_password());
        assert_eq!(own.clone().with_password("other".into()), own);
        let none: DatabaseUrl = "postgres://u@localhost/db".parse().unwrap();
        assert!(!none.has_password());
        assert_ne!(none.clone().with_password("given".into()), none);
    }
}
