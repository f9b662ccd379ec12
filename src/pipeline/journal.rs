//! The durable journal: one row per job with its last completed step, and the history of every
//! step begun and ended. Two backends behind one interface ([`Journal`]): SQLite, the embedded
//! default (`sqlite`: one file beside the plan, WAL mode, one transaction per write, held by one
//! run), and PostgreSQL (`postgres`), a database that several hosts share.
//!
//! What follows holds for both; the SQLite backend's flushing is its own (PostgreSQL commits are
//! durable when they return).
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

use std::path::Path;

use crate::pipeline::error::PipelineError;
use crate::pipeline::plan::JobSpec;

mod postgres;
mod rows;
mod sqlite;

pub use postgres::{DatabaseUrl, HostClaims};
pub use rows::{JobRow, JobState, Step};

/// What a journal backend does; [`Journal`] adds what is common (new rows with their IDs).
pub(crate) trait Backend: Send + Sync {
    /// Where the journal is, for messages (a database URL without its password).
    fn describe(&self) -> String;
    /// Claims the job for this host: inserts `row` (a new job at `planned`, with its history's
    /// first line) unless the journal holds the job already, then decides whose it is. A
    /// single-host backend always answers [`Claim::Ours`].
    fn claim(&self, row: &JobRow) -> Result<Claim, PipelineError>;
    /// The unfinished jobs no host holds (unpinned, unclaimed or claimed by a host whose lease
    /// lapsed, and not by this one), and how many unpinned ones live hosts hold.
    fn claimable(&self) -> Result<Claimable, PipelineError>;
    /// Every job's step, state and host.
    fn status(&self) -> Result<Vec<JobStatus>, PipelineError>;
    fn load(&self, job_id: &str) -> Result<Option<JobRow>, PipelineError>;
    fn begin(&self, job_id: &str, step: Step, detail: &str) -> Result<(), PipelineError>;
    fn save(&self, row: &JobRow, detail: &str) -> Result<(), PipelineError>;
    fn has_begun(&self, job_id: &str, step: Step) -> Result<bool, PipelineError>;
    fn begun_detail(&self, job_id: &str, step: Step) -> Result<Option<String>, PipelineError>;
    fn replace_unstarted_spec(&self, spec: &JobSpec) -> Result<(), PipelineError>;
    fn in_flight(&self) -> Result<Vec<(String, Step, Option<u64>)>, PipelineError>;
    fn job_count(&self) -> Result<u64, PipelineError>;
    fn other_live_hosts(&self) -> Result<Vec<String>, PipelineError>;
    fn pinned_to(&self, job_id: &str) -> Result<Option<String>, PipelineError>;
    fn host_id(&self) -> Option<&str>;
    fn worked_here(&self) -> Result<bool, PipelineError>;
    fn discard_if_empty(self: Box<Self>) -> Result<bool, PipelineError>;
    fn step_times(&self, job_id: &str) -> Result<Vec<(String, i64)>, PipelineError>;
    fn unfinished(&self) -> Result<Vec<String>, PipelineError>;
    fn done(&self) -> Result<Vec<String>, PipelineError>;
    fn counts(&self) -> Result<(u64, u64, u64, u64), PipelineError>;
    fn flush(&self) -> Result<(), PipelineError>;
    /// This host's lease, on a shared journal.
    fn lease(&self) -> Option<std::time::Duration>;
    /// The backend itself, for its own tests.
    #[cfg(test)]
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Whose a job is, as [`Journal::claim`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This host's to run: its row.
    Ours(Box<JobRow>),
    /// Another host's.
    Elsewhere {
        /// That host, when known.
        host: Option<String>,
        /// Why it is that host's.
        because: HeldBecause,
    },
}

/// Why a job is another host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBecause {
    /// Its key is on that host's token.
    KeyOnItsToken,
    /// That host claimed it and its lease is live.
    WorkingOnIt,
    /// Another host is claiming it this instant.
    BeingClaimed,
    /// Its token is not on this host: the hosts that have it make its key.
    TokenNotHere,
}

impl HeldBecause {
    /// What the reason is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            HeldBecause::KeyOnItsToken => "its key is on that host's token",
            HeldBecause::WorkingOnIt => "that host is working on it",
            HeldBecause::BeingClaimed => "another host is claiming it",
            HeldBecause::TokenNotHere => "its token is not on this host",
        }
    }
}

/// What a host may take over, and what it waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimable {
    /// Unfinished, unpinned jobs no live host holds.
    pub free: Vec<String>,
    /// Unfinished, unpinned jobs that live hosts hold (a few: the jobs whose keys those hosts
    /// are about to make).
    pub held_elsewhere: Vec<String>,
}

/// A job as the shared journal shows it: `jobs` / `provision --status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobStatus {
    /// The job.
    pub job_id: String,
    /// Its last completed step.
    pub step: Step,
    /// Its state.
    pub state: JobState,
    /// The host its key is on, else the host that claimed it; `None` in a single-host journal.
    pub host: Option<String>,
    /// Its order.
    pub order_id: Option<u64>,
    /// Its certificate.
    pub certificate_id: Option<u64>,
    /// Why pending or failed.
    pub note: Option<String>,
    /// When its row last changed (Unix seconds).
    pub updated_at: i64,
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

/// The journal: SQLite or PostgreSQL. Shared by the workers.
pub struct Journal {
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("at", &self.backend.describe())
            .finish()
    }
}

/// Where a journal is: a SQLite file, or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalLocation {
    /// A SQLite file.
    File(std::path::PathBuf),
    /// A PostgreSQL database.
    Postgres(DatabaseUrl),
}

impl JournalLocation {
    /// `postgres://...` or `postgresql://...` is a database; anything else a file path.
    ///
    /// # Errors
    /// [`PipelineError::JournalUrl`] for a database URL that cannot be used.
    pub fn parse(text: &str) -> Result<JournalLocation, PipelineError> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(JournalLocation::Postgres(text.parse()?));
        }
        Ok(JournalLocation::File(text.into()))
    }
}

impl std::fmt::Display for JournalLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalLocation::File(path) => write!(f, "{}", path.display()),
            JournalLocation::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl Journal {
    /// Opens (or creates) the SQLite journal at `path`, and holds it until dropped: a second
    /// process (another `provision` of the same plan) cannot open it meanwhile, so no two runs
    /// work on the same jobs at once.
    ///
    /// # Errors
    /// [`PipelineError::Journal`], [`PipelineError::JournalInUse`] when another process holds it.
    pub fn open(path: &Path) -> Result<Journal, PipelineError> {
        Ok(Journal {
            backend: Box::new(sqlite::SqliteJournal::open(path)?),
        })
    }

    /// Connects to the PostgreSQL journal at `url` as host `host`, bringing its schema up to date
    /// (the migrations in `migrations/postgres/`, each applied once, in order). `plan` names the
    /// plan whose jobs it holds: a database that holds another plan's jobs is refused. See the
    /// `postgres` module for the claim protocol between hosts.
    ///
    /// # Errors
    /// [`PipelineError::Database`] when the database cannot be reached or migrated,
    /// [`PipelineError::JournalOfAnotherPlan`], [`PipelineError::DatabaseInUse`] when another
    /// process runs as the same host.
    pub fn connect(
        url: &DatabaseUrl,
        plan: &str,
        host: &HostClaims,
    ) -> Result<Journal, PipelineError> {
        Ok(Journal {
            backend: Box::new(postgres::PostgresJournal::connect(url, plan, host)?),
        })
    }

    /// Opens the journal at `location` (see [`Journal::open`] and [`Journal::connect`]).
    ///
    /// # Errors
    /// As those.
    pub fn open_location(
        location: &JournalLocation,
        plan: &str,
        host: &HostClaims,
    ) -> Result<Journal, PipelineError> {
        match location {
            JournalLocation::File(path) => Journal::open(path),
            JournalLocation::Postgres(url) => Journal::connect(url, plan, host),
        }
    }

    /// Opens the journal at `location` to read it (`jobs`): a SQLite file as [`Journal::open`]
    /// does; a database without taking a host's lock or lease, or checking the plan.
    ///
    /// # Errors
    /// As [`Journal::open`]; [`PipelineError::Database`].
    pub fn view(location: &JournalLocation) -> Result<Journal, PipelineError> {
        match location {
            JournalLocation::File(path) => Journal::open(path),
            JournalLocation::Postgres(url) => Ok(Journal {
                backend: Box::new(postgres::PostgresJournal::view(url)?),
            }),
        }
    }

    /// Claims a job for this host, its row made first when the journal has none (with a new key
    /// ID and alternative order ID): [`Claim::Ours`] with its row, or whose it is.
    ///
    /// # Errors
    /// [`PipelineError::Journal`], [`PipelineError::Database`].
    pub fn claim(&self, spec: &JobSpec) -> Result<Claim, PipelineError> {
        if let Some(row) = self.load(&spec.job_id)?
            && self.is_single_host()
        {
            return Ok(Claim::Ours(Box::new(row)));
        }
        let row = JobRow {
            spec: spec.clone(),
            step: Step::Planned,
            state: JobState::Open,
            key_id: crate::keys::pkcs11::random_id()?,
            alternative_order_id: crate::order::generate_alternative_order_id()?,
            csr_pem: None,
            audit_json: None,
            order_id: None,
            certificate_id: None,
            chain_pem: None,
            note: None,
        };
        self.backend.claim(&row)
    }

    /// How long this host's lease lasts (a shared journal); `None` for a single-host one.
    pub fn lease(&self) -> Option<std::time::Duration> {
        self.backend.lease()
    }

    /// Whether one host works on this journal (SQLite) rather than several (PostgreSQL, where
    /// each has a host ID).
    pub fn is_single_host(&self) -> bool {
        self.backend.host_id().is_none()
    }

    /// What this host may take over, and what it waits for (see [`Claimable`]).
    ///
    /// # Errors
    /// [`PipelineError::Database`].
    pub fn claimable(&self) -> Result<Claimable, PipelineError> {
        self.backend.claimable()
    }

    /// Every job's step, state and host.
    ///
    /// # Errors
    /// [`PipelineError::Journal`], [`PipelineError::Database`].
    pub fn status(&self) -> Result<Vec<JobStatus>, PipelineError> {
        self.backend.status()
    }

    /// Where the journal is, for messages (a database URL without its password).
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Puts every write committed so far on disk (SQLite: `fdatasync` of the write-ahead log,
    /// unless a flush that started after the last of them already did; PostgreSQL: its commits
    /// are durable already).
    ///
    /// # Errors
    /// [`PipelineError::Journal`] when the log cannot be flushed.
    pub(crate) fn flush(&self) -> Result<(), PipelineError> {
        self.backend.flush()
    }

    /// The job's row, inserting it (with a new key ID and alternative order ID) when absent; a job
    /// another host holds is refused.
    ///
    /// # Errors
    /// [`PipelineError::Journal`], [`PipelineError::HeldByAnotherHost`].
    pub fn ensure(&self, spec: &JobSpec) -> Result<JobRow, PipelineError> {
        match self.claim(spec)? {
            Claim::Ours(row) => Ok(*row),
            Claim::Elsewhere { host, because } => Err(PipelineError::HeldByAnotherHost {
                job_id: spec.job_id.clone(),
                host: host.unwrap_or_else(|| "another host".to_string()),
                because: because.describe(),
            }),
        }
    }

    /// Reads a job's row.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn load(&self, job_id: &str) -> Result<Option<JobRow>, PipelineError> {
        self.backend.load(job_id)
    }

    /// Records that `step` of the job begins. When the step makes a key or an order
    /// ([`Step::must_be_on_disk_before_acting`]) the record is on disk when this returns; otherwise
    /// it is committed and reaches the disk with the next flush.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn begin(&self, job_id: &str, step: Step, detail: &str) -> Result<(), PipelineError> {
        self.backend.begin(job_id, step, detail)
    }

    /// Saves the row with its new step and state, and the step's end in the history, in one
    /// transaction; on disk when this returns if the job is pending, failed or done, else with the
    /// next flush.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn save(&self, row: &JobRow, detail: &str) -> Result<(), PipelineError> {
        self.backend.save(row, detail)
    }

    /// Whether `step` of the job was ever begun (by this run or an earlier one).
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn has_begun(&self, job_id: &str, step: Step) -> Result<bool, PipelineError> {
        self.backend.has_begun(job_id, step)
    }

    /// The detail of the job's last begin of `step`, if it was ever begun.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn begun_detail(&self, job_id: &str, step: Step) -> Result<Option<String>, PipelineError> {
        self.backend.begun_detail(job_id, step)
    }

    /// Replaces the spec of a job that has not begun anything yet (its step is still `planned`):
    /// the plan changed before any key or order existed, so the new spec is simply taken.
    ///
    /// # Errors
    /// [`PipelineError::Journal`]; a job past `planned` is refused.
    pub fn replace_unstarted_spec(&self, spec: &JobSpec) -> Result<(), PipelineError> {
        self.backend.replace_unstarted_spec(spec)
    }

    /// Jobs that began work (a key, an order) and are not done: `(job_id, last step, order ID)`.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn in_flight(&self) -> Result<Vec<(String, Step, Option<u64>)>, PipelineError> {
        self.backend.in_flight()
    }

    /// How many jobs the journal holds.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn job_count(&self) -> Result<u64, PipelineError> {
        self.backend.job_count()
    }

    /// The host a job is pinned to (its key is on that host's token), if any: always none on a
    /// SQLite journal, whose one host needs no pin.
    ///
    /// # Errors
    /// [`PipelineError::Database`].
    pub fn pinned_to(&self, job_id: &str) -> Result<Option<String>, PipelineError> {
        self.backend.pinned_to(job_id)
    }

    /// Whether this host worked on this journal's jobs in an earlier run: on a shared journal,
    /// whether it claimed any job; on a SQLite one, whether the journal holds any job. A host
    /// that joins a shared plan for the first time has not, even when other hosts have.
    ///
    /// # Errors
    /// [`PipelineError::Journal`], [`PipelineError::Database`].
    pub fn worked_here(&self) -> Result<bool, PipelineError> {
        self.backend.worked_here()
    }

    /// This host's ID on a shared journal; `None` on a SQLite one.
    pub fn host_id(&self) -> Option<&str> {
        self.backend.host_id()
    }

    /// The other hosts whose lease is live now: working on this plan this minute (a shared
    /// journal; always none for a SQLite one). A host that starts while others work joins them,
    /// and is no resumption of an earlier run.
    ///
    /// # Errors
    /// [`PipelineError::Database`].
    pub fn other_live_hosts(&self) -> Result<Vec<String>, PipelineError> {
        self.backend.other_live_hosts()
    }

    /// Closes the journal and, when it holds no job, removes what it is (the SQLite files; a
    /// database is left as it is): a run refused before its first job leaves nothing behind, and
    /// the corrected run starts afresh instead of being told to resume. A journal that holds a
    /// job is closed and kept. Returns whether it held no job.
    ///
    /// # Errors
    /// [`PipelineError::Journal`] when it cannot be read or removed.
    pub fn discard_if_empty(self) -> Result<bool, PipelineError> {
        self.backend.discard_if_empty()
    }

    /// When each step of the job ended (Unix seconds), in order.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn step_times(&self, job_id: &str) -> Result<Vec<(String, i64)>, PipelineError> {
        self.backend.step_times(job_id)
    }

    /// The IDs of every job not done, in insertion order.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn unfinished(&self) -> Result<Vec<String>, PipelineError> {
        self.backend.unfinished()
    }

    /// The IDs of every job done, in insertion order.
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn done(&self) -> Result<Vec<String>, PipelineError> {
        self.backend.done()
    }

    /// How many jobs are in each state: (done, pending, failed, open).
    ///
    /// # Errors
    /// [`PipelineError::Journal`].
    pub fn counts(&self) -> Result<(u64, u64, u64, u64), PipelineError> {
        self.backend.counts()
    }

    /// The SQLite backend, for its own tests.
    #[cfg(test)]
    fn sqlite(&self) -> &sqlite::SqliteJournal {
        self.backend
            .as_any()
            .downcast_ref()
            .expect("a SQLite journal")
    }
}

#[cfg(test)]
mod tests;
