//! The durable journal: one SQLite row per job with its last completed step, and the history of
//! every step begun and ended. WAL mode, one transaction per write.
//!
//! What is on disk when: every write is committed before it returns, so `kill -9` loses nothing.
//! Two kinds of write are also flushed to disk before they return, with every write committed
//! before them:
//! - the begin of a key generation or of an order ([`Step::must_be_on_disk_before_acting`]): after
//!   a power cut the journal holds the job's key ID and alternative order ID, so the resumed run
//!   finds the key by its CKA_ID and asks CertCentral for the order by its alternative ID instead
//!   of making either twice;
//! - a write that leaves the job pending, failed or done; a job is done only after its certificate
//!   and record files are on disk.
//!
//! Every other write reaches the disk with the next flush, which comes at the latest when the job
//! next makes a key or an order, or stops. A power cut may lose such writes, and that leaves the
//! journal as `kill -9` leaves it a moment earlier, which the resumed run handles: the end of a key
//! generation or an order is the same as the step begun and cut short (found again as above); the
//! certificate install checks the token before it adds anything and the chain and record files are
//! replaced, so they are safely done again; a CSR built, a status read or a chain downloaded act on
//! nothing outside.
//!
//! How it is flushed: `synchronous = FULL` would have SQLite `fsync` the write-ahead log inside each
//! commit, while the workers' shared connection is locked, so workers would queue behind each
//! other's disk flushes. Instead the connection runs with `synchronous = NORMAL` (SQLite still syncs
//! around checkpoints) and a write that needs it, after its commit and outside the lock, flushes the
//! log file itself with `fdatasync`. One flush covers every commit made before it starts, so a
//! worker whose commit another worker's flush already covered does not flush again (group commit).
//!
//! One run at a time: the connection takes SQLite's EXCLUSIVE lock when it opens and keeps it, so a
//! second run on the same journal is refused instead of working on the same jobs; and with no other
//! reader possible, no transaction takes or releases a file lock.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::pipeline::PipelineError;
use crate::pipeline::plan::JobSpec;

/// The steps of a job, in order. A row's `step` is the last one completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// In the journal; its key ID and alternative order ID are chosen.
    Planned,
    /// The key exists (and was audited, on a token).
    KeyGenerated,
    /// The CSR is built and checked.
    CsrBuilt,
    /// The order body passed validation.
    OrderValidated,
    /// The order exists at CertCentral.
    OrderSubmitted,
    /// The certificate is issued.
    OrderIssued,
    /// The chain is downloaded and its leaf matches the key.
    ChainDownloaded,
    /// The certificate is beside the key.
    CertificateInstalled,
    /// The provisioning record is written: the job is done.
    Done,
}

impl Step {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Planned => "planned",
            Step::KeyGenerated => "key_generated",
            Step::CsrBuilt => "csr_built",
            Step::OrderValidated => "order_validated",
            Step::OrderSubmitted => "order_submitted",
            Step::OrderIssued => "order_issued",
            Step::ChainDownloaded => "chain_downloaded",
            Step::CertificateInstalled => "certificate_installed",
            Step::Done => "done",
        }
    }

    /// Whether the step makes something outside that a resumed run can only find again through
    /// an ID the journal chose before: the key (its CKA_ID) and the order (its alternative order
    /// ID). Such a step's begin, and every write before it, is on disk before the step acts.
    /// The other steps act on nothing outside (a CSR built, a status read, a chain downloaded) or
    /// are safely done again (the certificate install checks the token first; the chain and
    /// record files are replaced), so their writes reach the disk with the next flush.
    pub fn must_be_on_disk_before_acting(self) -> bool {
        match self {
            Step::KeyGenerated | Step::OrderSubmitted => true,
            Step::Planned
            | Step::CsrBuilt
            | Step::OrderValidated
            | Step::OrderIssued
            | Step::ChainDownloaded
            | Step::CertificateInstalled
            | Step::Done => false,
        }
    }

    fn parse(s: &str) -> Option<Step> {
        [
            Step::Planned,
            Step::KeyGenerated,
            Step::CsrBuilt,
            Step::OrderValidated,
            Step::OrderSubmitted,
            Step::OrderIssued,
            Step::ChainDownloaded,
            Step::CertificateInstalled,
            Step::Done,
        ]
        .into_iter()
        .find(|step| step.as_str() == s)
    }
}

/// Where a job stands overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Steps remain that can run now.
    Open,
    /// Waiting for CertCentral (approval, validation); `--resume` asks again.
    Pending,
    /// Finished.
    Done,
    /// Stopped on an error that needs a person; `--resume` tries again.
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Open => "open",
            JobState::Pending => "pending",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "pending" => JobState::Pending,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            _ => JobState::Open,
        }
    }
}

/// A job's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// What to do.
    pub spec: JobSpec,
    /// The last completed step.
    pub step: Step,
    /// Overall state.
    pub state: JobState,
    /// `CKA_ID` of a token key, chosen before generation so the journal points to the key first.
    pub key_id: Vec<u8>,
    /// The order's alternative ID, chosen and stored before the order is sent.
    pub alternative_order_id: String,
    /// The CSR, PEM.
    pub csr_pem: Option<String>,
    /// The key's attribute audit (JSON), for token keys.
    pub audit_json: Option<String>,
    /// The CertCentral order ID.
    pub order_id: Option<u64>,
    /// The certificate ID.
    pub certificate_id: Option<u64>,
    /// The downloaded chain, PEM.
    pub chain_pem: Option<String>,
    /// The last error or pending reason.
    pub note: Option<String>,
}

/// A job's step ends, in order. Every finished job's record reads them, so it must find them
/// through the `history_by_job` index, not by reading the whole history (quadratic in the plan).
const STEP_TIMES: &str =
    "SELECT step, at FROM history WHERE job_id = ?1 AND phase = 'end' ORDER BY rowid";

/// Whether a write must be on disk before the caller goes on (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Before returning.
    Now,
    /// With the next write that flushes.
    WithNext,
}

/// The journal. Shared by the workers (the connection is behind a mutex).
pub struct Journal {
    /// The database file, for messages.
    path: PathBuf,
    connection: Mutex<Connection>,
    /// SQLite's write-ahead log beside the database (`<journal>-wal`), flushed by `flush`.
    wal_path: PathBuf,
    /// How many writes have been committed; counted with the connection locked.
    commits: AtomicU64,
    /// Held while the log is flushed: how many commits the last flush covered.
    flushed: Mutex<FlushedUpTo>,
}

/// Commits on disk, and how many flushes it took (for the tests).
#[derive(Debug, Default)]
struct FlushedUpTo {
    commits: u64,
    flushes: u64,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Journal {
    /// Opens (or creates) the journal at `path`, and holds it until dropped: a second process
    /// (another `provision` of the same plan) cannot open it meanwhile, so no two runs work on the
    /// same jobs at once.
    ///
    /// # Errors
    /// [`PipelineError::Journal`], [`PipelineError::JournalInUse`] when another process holds it.
    pub fn open(path: &Path) -> Result<Journal, PipelineError> {
        // The journal is the operator's working state (CSRs, order and certificate IDs, chains):
        // made readable by its owner alone, whatever the umask. SQLite gives its -wal and -shm
        // files the database file's mode.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|cause| PipelineError::Io {
                    path: path.to_path_buf(),
                    action: "cannot open the journal",
                    cause,
                })?;
        }
        let failed = |cause: rusqlite::Error| PipelineError::Journal {
            path: path.to_path_buf(),
            cause,
        };
        let connection = Connection::open(path).map_err(failed)?;
        // EXCLUSIVE locking before WAL: the lock is taken by the first write below and kept, and
        // SQLite keeps the log's index in memory instead of a shared file, so no transaction
        // after this one takes or releases a file lock. No busy wait: a journal held by another
        // run is refused at once.
        connection
            .execute_batch(
                "PRAGMA busy_timeout = 0;
                 PRAGMA locking_mode = EXCLUSIVE;
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 BEGIN EXCLUSIVE;
                 CREATE TABLE IF NOT EXISTS jobs (
                     job_id TEXT PRIMARY KEY,
                     spec TEXT NOT NULL,
                     step TEXT NOT NULL,
                     state TEXT NOT NULL,
                     key_id BLOB NOT NULL,
                     alternative_order_id TEXT NOT NULL,
                     csr_pem TEXT,
                     audit_json TEXT,
                     order_id INTEGER,
                     certificate_id INTEGER,
                     chain_pem TEXT,
                     note TEXT,
                     updated_at INTEGER NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS history (
                     job_id TEXT NOT NULL,
                     step TEXT NOT NULL,
                     phase TEXT NOT NULL,
                     at INTEGER NOT NULL,
                     detail TEXT
                 );
                 CREATE INDEX IF NOT EXISTS history_by_job ON history (job_id);
                 COMMIT;",
            )
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    PipelineError::JournalInUse {
                        path: path.to_path_buf(),
                    }
                }
                _ => failed(e),
            })?;
        let mut wal_path = match connection.path() {
            Some(full) if !full.is_empty() => PathBuf::from(full),
            _ => path.to_path_buf(),
        }
        .into_os_string();
        wal_path.push("-wal");
        let journal = Journal {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
            wal_path: wal_path.into(),
            // The schema written above counts as the first commit.
            commits: AtomicU64::new(1),
            flushed: Mutex::new(FlushedUpTo::default()),
        };
        journal.flush()?;
        Ok(journal)
    }

    /// Runs `write` (which commits its own transaction) on the connection, then, when `flush`
    /// says so and with the connection unlocked, flushes the write-ahead log to disk.
    fn write<T>(
        &self,
        flush: Flush,
        write: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, PipelineError> {
        let written = {
            let mut connection = self.lock();
            let written = write(&mut connection).map_err(|e| self.db(e))?;
            self.commits.fetch_add(1, Ordering::SeqCst);
            written
        };
        if flush == Flush::Now {
            self.flush()?;
        }
        Ok(written)
    }

    /// Puts every write committed so far on disk (`fdatasync` of the write-ahead log), unless a
    /// flush that started after the last of them already did.
    ///
    /// # Errors
    /// [`PipelineError::Journal`] when the log cannot be flushed.
    pub(crate) fn flush(&self) -> Result<(), PipelineError> {
        let committed = self.commits.load(Ordering::SeqCst);
        let mut flushed = self.flushed.lock().unwrap_or_else(|p| p.into_inner());
        if flushed.commits >= committed {
            return Ok(());
        }
        // Every commit counted now is in the log file before this flush starts.
        let covers = self.commits.load(Ordering::SeqCst);
        std::fs::File::open(&self.wal_path)
            .and_then(|log| log.sync_data())
            .map_err(|cause| PipelineError::Io {
                path: self.wal_path.clone(),
                action: "cannot flush the journal's write-ahead log to disk",
                cause,
            })?;
        flushed.commits = covers;
        flushed.flushes += 1;
        Ok(())
    }

    fn db(&self, cause: rusqlite::Error) -> PipelineError {
        PipelineError::Journal {
            path: self.path.clone(),
            cause,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job's row, inserting it (with a new key ID and alternative order ID) when absent.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn ensure(&self, spec: &JobSpec) -> Result<JobRow, PipelineError> {
        if let Some(row) = self.load(&spec.job_id)? {
            return Ok(row);
        }
        let key_id = crate::keys::pkcs11::random_id()?;
        let row = JobRow {
            spec: spec.clone(),
            step: Step::Planned,
            state: JobState::Open,
            key_id,
            alternative_order_id: crate::order::generate_alternative_order_id(),
            csr_pem: None,
            audit_json: None,
            order_id: None,
            certificate_id: None,
            chain_pem: None,
            note: None,
        };
        // Flushed by the begin of the job's key generation, before the key is made.
        self.write(Flush::WithNext, |connection| {
            let tx = connection.transaction()?;
            tx.prepare_cached(
                "INSERT INTO jobs (job_id, spec, step, state, key_id, alternative_order_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                    row.spec.job_id,
                    serde_json::to_string(&row.spec).expect("a job spec serializes"),
                    row.step.as_str(),
                    row.state.as_str(),
                    row.key_id,
                    row.alternative_order_id,
                    now()
                ])?;
            tx.prepare_cached(
                "INSERT INTO history (job_id, step, phase, at) VALUES (?1, 'planned', 'end', ?2)",
            )?
            .execute(params![row.spec.job_id, now()])?;
            tx.commit()
        })?;
        Ok(row)
    }

    /// Reads a job's row.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn load(&self, job_id: &str) -> Result<Option<JobRow>, PipelineError> {
        type Raw = (
            String,
            String,
            String,
            Vec<u8>,
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
        );
        let connection = self.lock();
        let raw: Option<Raw> = connection
            .prepare_cached(
                "SELECT spec, step, state, key_id, alternative_order_id, csr_pem, audit_json,
                        order_id, certificate_id, chain_pem, note
                 FROM jobs WHERE job_id = ?1",
            )
            .and_then(|mut statement| {
                statement.query_row(params![job_id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                    ))
                })
            })
            .optional()
            .map_err(|e| self.db(e))?;
        drop(connection);
        let Some((
            spec,
            step,
            state,
            key_id,
            alternative_order_id,
            csr_pem,
            audit_json,
            order_id,
            certificate_id,
            chain_pem,
            note,
        )) = raw
        else {
            return Ok(None);
        };
        let bad = |what: String| PipelineError::JournalContent {
            job_id: job_id.to_string(),
            what,
        };
        Ok(Some(JobRow {
            spec: serde_json::from_str(&spec).map_err(|e| bad(format!("unreadable spec: {e}")))?,
            step: Step::parse(&step).ok_or_else(|| bad(format!("unknown step {step}")))?,
            state: JobState::parse(&state),
            key_id,
            alternative_order_id,
            csr_pem,
            audit_json,
            order_id: order_id.map(|v| v as u64),
            certificate_id: certificate_id.map(|v| v as u64),
            chain_pem,
            note,
        }))
    }

    /// Records that `step` of the job begins. When the step makes a key or an order
    /// ([`Step::must_be_on_disk_before_acting`]) the record is on disk when this returns; otherwise
    /// it is committed and reaches the disk with the next flush.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn begin(&self, job_id: &str, step: Step, detail: &str) -> Result<(), PipelineError> {
        let insert = |connection: &mut Connection| {
            connection
                .prepare_cached(
                    "INSERT INTO history (job_id, step, phase, at, detail) VALUES (?1, ?2, 'begin', ?3, ?4)",
                )?
                .execute(params![job_id, step.as_str(), now(), detail])
        };
        let flush = if step.must_be_on_disk_before_acting() {
            Flush::Now
        } else {
            Flush::WithNext
        };
        self.write(flush, insert)?;
        Ok(())
    }

    /// Saves the row with its new step and state, and the step's end in the history, in one
    /// transaction; on disk when this returns if the job is pending, failed or done, else with the
    /// next flush.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn save(&self, row: &JobRow, detail: &str) -> Result<(), PipelineError> {
        let flush = if row.state != JobState::Open {
            Flush::Now
        } else {
            Flush::WithNext
        };
        self.write(flush, |connection| {
            let tx = connection.transaction()?;
            tx.prepare_cached(
                "UPDATE jobs SET step = ?2, state = ?3, csr_pem = ?4, audit_json = ?5, order_id = ?6,
                                 certificate_id = ?7, chain_pem = ?8, note = ?9, updated_at = ?10
                 WHERE job_id = ?1",
            )?
            .execute(params![
                    row.spec.job_id,
                    row.step.as_str(),
                    row.state.as_str(),
                    row.csr_pem,
                    row.audit_json,
                    row.order_id.map(|v| v as i64),
                    row.certificate_id.map(|v| v as i64),
                    row.chain_pem,
                    row.note,
                    now()
                ])?;
            tx.prepare_cached(
                "INSERT INTO history (job_id, step, phase, at, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                    row.spec.job_id,
                    row.step.as_str(),
                    match row.state {
                        JobState::Pending => "pending",
                        JobState::Failed => "failed",
                        _ => "end",
                    },
                    now(),
                    detail
                ])?;
            tx.commit()
        })
    }

    /// Whether `step` of the job was ever begun (by this run or an earlier one).
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn has_begun(&self, job_id: &str, step: Step) -> Result<bool, PipelineError> {
        self.lock()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM history WHERE job_id = ?1 AND step = ?2 AND phase = 'begin')",
            )
            .and_then(|mut statement| {
                statement.query_row(params![job_id, step.as_str()], |r| r.get(0))
            })
            .map_err(|e| self.db(e))
    }

    /// The detail of the job's last begin of `step`, if it was ever begun.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn begun_detail(&self, job_id: &str, step: Step) -> Result<Option<String>, PipelineError> {
        self.lock()
            .prepare_cached(
                "SELECT detail FROM history WHERE job_id = ?1 AND step = ?2 AND phase = 'begin'
                 ORDER BY rowid DESC LIMIT 1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![job_id, step.as_str()], |r| {
                        r.get::<_, Option<String>>(0)
                    })
                    .optional()
            })
            .map(Option::flatten)
            .map_err(|e| self.db(e))
    }

    /// Replaces the spec of a job that has not begun anything yet (its step is still `planned`):
    /// the plan changed before any key or order existed, so the new spec is simply taken.
    ///
    /// # Errors
    /// [`PipelineError::Journal`]; a job past `planned` is refused.
    pub fn replace_unstarted_spec(&self, spec: &JobSpec) -> Result<(), PipelineError> {
        let changed = self.write(Flush::WithNext, |connection| {
            connection
                .prepare_cached(
                    "UPDATE jobs SET spec = ?2, updated_at = ?3 WHERE job_id = ?1 AND step = 'planned'",
                )?
                .execute(params![
                    spec.job_id,
                    serde_json::to_string(spec).expect("a job spec serializes"),
                    now()
                ])
        })?;
        if changed != 1 {
            return Err(PipelineError::JournalContent {
                job_id: spec.job_id.clone(),
                what: "its spec can change only before its first step".to_string(),
            });
        }
        Ok(())
    }

    /// Jobs that began work (a key, an order) and are not done: `(job_id, last step, order ID)`.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn in_flight(&self) -> Result<Vec<(String, Step, Option<u64>)>, PipelineError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT job_id, step, order_id FROM jobs
                 WHERE state != 'done' AND step != 'planned' ORDER BY rowid",
            )
            .map_err(|e| self.db(e))?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        Ok(rows
            .into_iter()
            .map(|(id, step, order)| {
                (
                    id,
                    Step::parse(&step).unwrap_or(Step::Planned),
                    order.map(|o| o as u64),
                )
            })
            .collect())
    }

    /// How many jobs the journal holds.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn job_count(&self) -> Result<u64, PipelineError> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.db(e))
    }

    /// Closes the journal and removes its files when it holds no job: a run refused before its
    /// first job leaves nothing behind, and the corrected run starts afresh instead of being
    /// told to resume. A journal that holds a job is closed and kept. Returns whether it was
    /// removed.
    ///
    /// # Errors
    /// [`PipelineError::Journal`] when it cannot be read or removed.
    pub fn discard_if_empty(self) -> Result<bool, PipelineError> {
        if self.job_count()? > 0 {
            return Ok(false);
        }
        let wal = self.wal_path.as_os_str().to_string_lossy();
        let database = PathBuf::from(wal.strip_suffix("-wal").unwrap_or(&wal));
        let connection = self
            .connection
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        connection
            .close()
            .map_err(|(_, cause)| PipelineError::Journal {
                path: database.clone(),
                cause,
            })?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = database.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(cause) => {
                    return Err(PipelineError::Io {
                        path: path.into(),
                        action: "cannot remove it",
                        cause,
                    });
                }
            }
        }
        Ok(true)
    }

    /// When each step of the job ended (Unix seconds), in order.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn step_times(&self, job_id: &str) -> Result<Vec<(String, i64)>, PipelineError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(STEP_TIMES)
            .map_err(|e| self.db(e))?;
        let times = statement
            .query_map(params![job_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        Ok(times)
    }

    /// The IDs of every job not done, in insertion order.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn unfinished(&self) -> Result<Vec<String>, PipelineError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare("SELECT job_id FROM jobs WHERE state != 'done' ORDER BY rowid")
            .map_err(|e| self.db(e))?;
        let ids = statement
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        Ok(ids)
    }

    /// How many jobs are in each state: (done, pending, failed, open).
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn counts(&self) -> Result<(u64, u64, u64, u64), PipelineError> {
        let connection = self.lock();
        let count = |state: &str| -> Result<u64, PipelineError> {
            connection
                .query_row(
                    "SELECT COUNT(*) FROM jobs WHERE state = ?1",
                    params![state],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as u64)
                .map_err(|e| self.db(e))
        };
        Ok((
            count("done")?,
            count("pending")?,
            count("failed")?,
            count("open")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::plan::KeyLocation;

    fn spec(id: &str) -> JobSpec {
        JobSpec {
            job_id: id.to_string(),
            algorithm: crate::keys::KeyAlgorithm::P256,
            subject: "CN=x".to_string(),
            location: KeyLocation::File {
                path: format!("{id}.pem").into(),
            },
            label: id.to_string(),
        }
    }

    #[test]
    fn rows_survive_reopening_and_keep_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let journal = Journal::open(&path).unwrap();
        let mut row = journal.ensure(&spec("a")).unwrap();
        journal.ensure(&spec("b")).unwrap();
        assert_eq!(row.step, Step::Planned);
        assert_eq!(row.key_id.len(), 16);
        assert_eq!(row.alternative_order_id.len(), 32);
        // Ensuring again returns the same row: the IDs are chosen once.
        assert_eq!(journal.ensure(&spec("a")).unwrap(), row);
        journal.begin("a", Step::OrderSubmitted, "sending").unwrap();
        row.step = Step::OrderSubmitted;
        row.order_id = Some(42);
        journal.save(&row, "order 42").unwrap();
        row.step = Step::Done;
        row.state = JobState::Done;
        journal.save(&row, "").unwrap();
        drop(journal);

        let journal = Journal::open(&path).unwrap();
        assert!(journal.has_begun("a", Step::OrderSubmitted).unwrap());
        assert!(!journal.has_begun("a", Step::CertificateInstalled).unwrap());
        assert!(!journal.has_begun("b", Step::OrderSubmitted).unwrap());
        let back = journal.load("a").unwrap().unwrap();
        assert_eq!(back, row);
        assert_eq!(journal.unfinished().unwrap(), ["b"]);
        assert_eq!(journal.counts().unwrap(), (1, 0, 0, 1));
        assert!(journal.load("c").unwrap().is_none());
        let history: i64 = journal
            .lock()
            .query_row("SELECT COUNT(*) FROM history WHERE job_id = 'a'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(history, 4, "planned, begin and end of the order, done");
    }

    /// Reading a job's step times searches the history by job, whatever the history's size.
    #[test]
    fn step_times_use_the_history_index() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let plan: Vec<String> = journal
            .lock()
            .prepare(&format!("EXPLAIN QUERY PLAN {STEP_TIMES}"))
            .unwrap()
            .query_map(params!["a"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|line| line.contains("USING INDEX history_by_job")),
            "{plan:?}"
        );
    }

    /// The journal and its write-ahead log are the owner's alone, whatever the umask; an empty
    /// journal is removed by `discard_if_empty`, one with a job is kept.
    #[test]
    fn the_journal_is_private_and_an_empty_one_can_be_discarded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let journal = Journal::open(&path).unwrap();
        journal.ensure(&spec("a")).unwrap();
        for file in [path.clone(), dir.path().join("j.sqlite-wal")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}: {mode:o}", file.display());
        }
        assert!(!journal.discard_if_empty().unwrap());
        assert!(path.exists());

        let empty = dir.path().join("empty.sqlite");
        assert!(Journal::open(&empty).unwrap().discard_if_empty().unwrap());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("empty"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// A job's spec may change while nothing was made; after that, the change is refused.
    #[test]
    fn a_spec_changes_only_before_the_first_step() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let mut row = journal.ensure(&spec("a")).unwrap();
        let mut changed = spec("a");
        changed.algorithm = crate::keys::KeyAlgorithm::P384;
        journal.replace_unstarted_spec(&changed).unwrap();
        assert_eq!(journal.load("a").unwrap().unwrap().spec, changed);
        row.spec = changed.clone();
        row.step = Step::KeyGenerated;
        journal.save(&row, "made").unwrap();
        assert!(journal.replace_unstarted_spec(&spec("a")).is_err());
        assert_eq!(
            journal.in_flight().unwrap(),
            vec![("a".to_string(), Step::KeyGenerated, None)]
        );
        journal.begin("a", Step::KeyGenerated, "first").unwrap();
        journal.begin("a", Step::KeyGenerated, "second").unwrap();
        assert_eq!(
            journal
                .begun_detail("a", Step::KeyGenerated)
                .unwrap()
                .as_deref(),
            Some("second")
        );
        assert_eq!(journal.begun_detail("a", Step::Done).unwrap(), None);
    }

    /// A journal is held by one `Journal` at a time: a second run on the same plan is refused at
    /// once, by name, and may open it when the first is done.
    #[test]
    fn a_journal_in_use_is_refused_until_it_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let first = Journal::open(&path).unwrap();
        first.ensure(&spec("a")).unwrap();
        let started = std::time::Instant::now();
        let err = Journal::open(&path).err().expect("the journal is held");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "refused at once"
        );
        drop(first);
        let second = Journal::open(&path).unwrap();
        assert!(second.load("a").unwrap().is_some());
    }

    /// Each write flushes SQLite's own log file, and says so when it cannot.
    #[test]
    fn writes_flush_the_write_ahead_log_and_fail_when_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.wal_path, dir.path().join("j.sqlite-wal"));
        let before = std::fs::metadata(&journal.wal_path).unwrap().len();
        journal.ensure(&spec("a")).unwrap();
        let after = std::fs::metadata(&journal.wal_path).unwrap().len();
        assert!(
            after > before,
            "the commit went to the log we flush: {before} -> {after}"
        );

        let flushes = || journal.flushed.lock().unwrap().flushes;
        // The begin of a key generation is flushed before it returns, with the insert before it;
        // a second flush with nothing new to cover does not touch the disk.
        let opened = flushes();
        journal.begin("a", Step::KeyGenerated, "").unwrap();
        assert_eq!(flushes(), opened + 1);
        journal.flush().unwrap();
        assert_eq!(flushes(), opened + 1, "nothing new was committed");
        // Its end, the steps that act on nothing outside and those safely done again wait for the
        // next flush...
        let mut row = journal.load("a").unwrap().unwrap();
        row.step = Step::KeyGenerated;
        journal.save(&row, "").unwrap();
        journal.begin("a", Step::CsrBuilt, "").unwrap();
        journal.begin("a", Step::CertificateInstalled, "").unwrap();
        journal.begin("a", Step::Done, "").unwrap();
        assert_eq!(flushes(), opened + 1);
        // ...or for the begin of an order...
        journal.begin("a", Step::OrderSubmitted, "").unwrap();
        assert_eq!(flushes(), opened + 2);
        // ...and a job that stops is flushed when it does.
        row.state = JobState::Failed;
        journal.save(&row, "").unwrap();
        assert_eq!(flushes(), opened + 3);

        std::fs::remove_file(&journal.wal_path).unwrap();
        // A step that acts on nothing outside is committed and waits for the next flush...
        journal.begin("a", Step::CsrBuilt, "").unwrap();
        // ...one that does is flushed before it returns.
        let err = journal.begin("a", Step::KeyGenerated, "").unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot flush the journal's write-ahead log to disk"),
            "{err}"
        );
    }
}
