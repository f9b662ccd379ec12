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

use crate::pipeline::error::PipelineError;
use crate::pipeline::plan::JobSpec;

mod rows;
pub use rows::{JobRow, JobState, Step};

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

/// A job spec as the journal stores it (JSON).
fn encode_spec(spec: &JobSpec) -> Result<String, PipelineError> {
    serde_json::to_string(spec).map_err(|cause| PipelineError::Encode {
        what: "job spec",
        cause,
    })
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
            alternative_order_id: crate::order::generate_alternative_order_id()?,
            csr_pem: None,
            audit_json: None,
            order_id: None,
            certificate_id: None,
            chain_pem: None,
            note: None,
        };
        let spec_json = encode_spec(&row.spec)?;
        // Flushed by the begin of the job's key generation, before the key is made.
        self.write(Flush::WithNext, |connection| {
            let tx = connection.transaction()?;
            tx.prepare_cached(
                "INSERT INTO jobs (job_id, spec, step, state, key_id, alternative_order_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                    row.spec.job_id,
                    spec_json,
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
        let spec_json = encode_spec(spec)?;
        let changed = self.write(Flush::WithNext, |connection| {
            connection
                .prepare_cached(
                    "UPDATE jobs SET spec = ?2, updated_at = ?3 WHERE job_id = ?1 AND step = 'planned'",
                )?
                .execute(params![
                    spec.job_id,
                    spec_json,
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
        self.job_ids("SELECT job_id FROM jobs WHERE state != 'done' ORDER BY rowid")
    }

    /// The IDs of every job done, in insertion order.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn done(&self) -> Result<Vec<String>, PipelineError> {
        self.job_ids("SELECT job_id FROM jobs WHERE state = 'done' ORDER BY rowid")
    }

    /// The job IDs a query of `job_id` selects.
    fn job_ids(&self, query: &str) -> Result<Vec<String>, PipelineError> {
        let connection = self.lock();
        let mut statement = connection.prepare(query).map_err(|e| self.db(e))?;
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
mod tests;
