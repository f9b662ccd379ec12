//! The SQLite journal: the embedded default, one file beside the plan, held by one run.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{STORED_COLUMNS, StoredRow};
use super::{Backend, Claim, Claimable, JobRow, JobState, JobStatus, Step, encode_spec, now};
use crate::pipeline::error::PipelineError;
use crate::pipeline::plan::JobSpec;

/// A job's step ends, in order. Every finished job's record reads them, so it must find them
/// through the `history_by_job` index, not by reading the whole history (quadratic in the plan).
pub(super) const STEP_TIMES: &str =
    "SELECT step, at FROM history WHERE job_id = ?1 AND phase = 'end' ORDER BY rowid";

/// Whether a write must be on disk before the caller goes on (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Before returning.
    Now,
    /// With the next write that flushes.
    WithNext,
}

/// The SQLite journal. Shared by the workers (the connection is behind a mutex).
pub(crate) struct SqliteJournal {
    /// The database file, for messages.
    path: PathBuf,
    pub(super) connection: Mutex<Connection>,
    /// SQLite's write-ahead log beside the database (`<journal>-wal`), flushed by `flush`.
    pub(super) wal_path: PathBuf,
    /// How many writes have been committed; counted with the connection locked.
    commits: AtomicU64,
    /// Held while the log is flushed: how many commits the last flush covered.
    pub(super) flushed: Mutex<FlushedUpTo>,
}

/// Commits on disk, and how many flushes it took (for the tests).
#[derive(Debug, Default)]
pub(super) struct FlushedUpTo {
    commits: u64,
    pub(super) flushes: u64,
}

impl SqliteJournal {
    /// Opens (or creates) the journal at `path`, and holds it until dropped: a second process
    /// (another `provision` of the same plan) cannot open it meanwhile, so no two runs work on the
    /// same jobs at once.
    ///
    /// # Errors
    /// [`PipelineError::Journal`], [`PipelineError::JournalInUse`] when another process holds it.
    pub(crate) fn open(path: &Path) -> Result<SqliteJournal, PipelineError> {
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
        let journal = SqliteJournal {
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

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
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
}

impl Backend for SqliteJournal {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn flush(&self) -> Result<(), PipelineError> {
        SqliteJournal::flush(self)
    }

    fn lease(&self) -> Option<std::time::Duration> {
        None
    }

    fn other_live_hosts(&self) -> Result<Vec<String>, PipelineError> {
        Ok(Vec::new())
    }

    fn pinned_to(&self, _job_id: &str) -> Result<Option<String>, PipelineError> {
        Ok(None)
    }

    fn host_id(&self) -> Option<&str> {
        None
    }

    fn worked_here(&self) -> Result<bool, PipelineError> {
        Ok(self.job_count()? > 0)
    }

    #[cfg(test)]
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn claim(&self, row: &JobRow) -> Result<Claim, PipelineError> {
        if let Some(held) = self.load(&row.spec.job_id)? {
            return Ok(Claim::Ours(Box::new(held)));
        }
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
        Ok(Claim::Ours(Box::new(row.clone())))
    }

    fn claimable(&self) -> Result<Claimable, PipelineError> {
        // One host: nothing to take over, nobody to wait for.
        Ok(Claimable::default())
    }

    fn status(&self) -> Result<Vec<JobStatus>, PipelineError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT job_id, step, state, order_id, certificate_id, note, updated_at
                 FROM jobs ORDER BY rowid",
            )
            .map_err(|e| self.db(e))?;
        let rows = statement
            .query_map([], |r| {
                Ok(JobStatus {
                    job_id: r.get(0)?,
                    step: Step::parse(&r.get::<_, String>(1)?).unwrap_or(Step::Planned),
                    state: JobState::parse(&r.get::<_, String>(2)?),
                    host: None,
                    order_id: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                    certificate_id: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    note: r.get(5)?,
                    updated_at: r.get(6)?,
                })
            })
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        Ok(rows)
    }

    fn load(&self, job_id: &str) -> Result<Option<JobRow>, PipelineError> {
        let connection = self.lock();
        let stored: Option<StoredRow> = connection
            .prepare_cached(&format!(
                "SELECT {STORED_COLUMNS} FROM jobs WHERE job_id = ?1"
            ))
            .and_then(|mut statement| {
                statement.query_row(params![job_id], |r| {
                    Ok(StoredRow {
                        spec: r.get(0)?,
                        step: r.get(1)?,
                        state: r.get(2)?,
                        key_id: r.get(3)?,
                        alternative_order_id: r.get(4)?,
                        csr_pem: r.get(5)?,
                        audit_json: r.get(6)?,
                        order_id: r.get(7)?,
                        certificate_id: r.get(8)?,
                        chain_pem: r.get(9)?,
                        note: r.get(10)?,
                    })
                })
            })
            .optional()
            .map_err(|e| self.db(e))?;
        drop(connection);
        stored.map(|row| row.decode(job_id)).transpose()
    }

    fn begin(&self, job_id: &str, step: Step, detail: &str) -> Result<(), PipelineError> {
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

    fn save(&self, row: &JobRow, detail: &str) -> Result<(), PipelineError> {
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

    fn has_begun(&self, job_id: &str, step: Step) -> Result<bool, PipelineError> {
        self.lock()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM history WHERE job_id = ?1 AND step = ?2 AND phase = 'begin')",
            )
            .and_then(|mut statement| {
                statement.query_row(params![job_id, step.as_str()], |r| r.get(0))
            })
            .map_err(|e| self.db(e))
    }

    fn begun_detail(&self, job_id: &str, step: Step) -> Result<Option<String>, PipelineError> {
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

    fn replace_unstarted_spec(&self, spec: &JobSpec) -> Result<(), PipelineError> {
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

    fn in_flight(&self) -> Result<Vec<(String, Step, Option<u64>)>, PipelineError> {
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

    fn job_count(&self) -> Result<u64, PipelineError> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.db(e))
    }

    fn discard_if_empty(self: Box<Self>) -> Result<bool, PipelineError> {
        if self.job_count()? > 0 {
            return Ok(false);
        }
        let this = *self;
        let wal = this.wal_path.as_os_str().to_string_lossy();
        let database = PathBuf::from(wal.strip_suffix("-wal").unwrap_or(&wal));
        let connection = this
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

    fn step_times(&self, job_id: &str) -> Result<Vec<(String, i64)>, PipelineError> {
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

    fn unfinished(&self) -> Result<Vec<String>, PipelineError> {
        self.job_ids("SELECT job_id FROM jobs WHERE state != 'done' ORDER BY rowid")
    }

    fn done(&self) -> Result<Vec<String>, PipelineError> {
        self.job_ids("SELECT job_id FROM jobs WHERE state = 'done' ORDER BY rowid")
    }

    fn counts(&self) -> Result<(u64, u64, u64, u64), PipelineError> {
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
