//! The pipeline's one error type.

use std::path::PathBuf;

/// What can stop a run or a job, in the user's terms. Errors of the member crates are kept whole
/// (`Key`, `CertCentral`, `Validation`), and so are the database's and the system's; each cause is
/// said once, in the message.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The plan file is not usable; every problem is listed.
    #[error("{}: {}", shown_path(.path), .problems.join("; "))]
    Plan {
        /// The plan file.
        path: PathBuf,
        /// Every problem.
        problems: Vec<String>,
    },

    /// The journal's database failed.
    #[error("journal {}: {cause}", shown_path(.path))]
    Journal {
        /// The journal.
        path: PathBuf,
        /// SQLite's error.
        cause: rusqlite::Error,
    },

    /// Another process holds the journal.
    #[error(
        "{}: the journal is in use by another process (is another provision run working on this plan?)",
        shown_path(.path)
    )]
    JournalInUse {
        /// The journal.
        path: PathBuf,
    },

    /// The journal's PostgreSQL database failed.
    #[error("journal {database}: {action}: {}", database_error_text(.cause))]
    Database {
        /// The database (its URL without the password).
        database: String,
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        cause: postgres::Error,
    },

    /// Another process runs as this host on the journal's database.
    #[error(
        "journal {database}: another provision run works on this plan as host \"{host_id}\"; wait for it to end, or give this one another --host-id"
    )]
    DatabaseInUse {
        /// The database (its URL without the password).
        database: String,
        /// The host ID both use.
        host_id: String,
    },

    /// The job is another host's (its key is there, or that host works on it).
    #[error("job {job_id} is host {host}'s: {because}")]
    HeldByAnotherHost {
        /// The job.
        job_id: String,
        /// The host.
        host: String,
        /// Why.
        because: &'static str,
    },

    /// The host's claim on the job was taken over (its lease lapsed) before its key was made:
    /// the job was left to the host that took it.
    #[error(
        "job {job_id}: host {host_id}'s claim was taken over by another host (its lease lapsed) before the key was made; no key was made here"
    )]
    ClaimLost {
        /// The job.
        job_id: String,
        /// This host.
        host_id: String,
    },

    /// The journal's database holds another plan's jobs.
    #[error(
        "journal {journal}: it holds the jobs of plan \"{holds}\", not \"{plan}\"; give each plan a database of its own"
    )]
    JournalOfAnotherPlan {
        /// The database (its URL without the password).
        journal: String,
        /// The plan it holds.
        holds: String,
        /// The plan of this run.
        plan: String,
    },

    /// A `--journal` database URL that cannot be used.
    #[error("--journal: {reason}")]
    JournalUrl {
        /// Why.
        reason: String,
    },

    /// A journal row cannot be read, or is missing what its step says it holds.
    #[error("journal: job {job_id}: {what}")]
    JournalContent {
        /// The job.
        job_id: String,
        /// What is wrong.
        what: String,
    },

    /// A file or directory of the run could not be read, written or removed.
    #[error("{}: {action}: {cause}", shown_path(.path))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The system's error.
        cause: std::io::Error,
    },

    /// A key, token, CSR or key file failed.
    #[error(transparent)]
    Key(#[from] crate::keys::KeysError),

    /// CertCentral failed or refused.
    #[error(transparent)]
    CertCentral(#[from] crate::order::CertCentralError),

    /// The order body breaks a rule of the API.
    #[error("the order breaks the CertCentral API's rules: {0}")]
    Validation(#[from] crate::order::ValidationErrors),

    /// A job named on the command line is not in the journal.
    #[error("the journal holds no job {job_id}")]
    UnknownJob {
        /// The job asked for.
        job_id: String,
    },

    /// A job cannot be reissued.
    #[error("{job_id} cannot be reissued: {why}")]
    NotReissuable {
        /// The job.
        job_id: String,
        /// Why not.
        why: String,
    },

    /// The journal says a job's key exists, but it is not where the job keeps it.
    #[error("the journal says the key was made, but {place} holds it no more")]
    KeyGone {
        /// Where the key should be (a token and CKA_ID, a file).
        place: String,
    },

    /// A key is where the job's key would go, and this journal did not make it.
    #[error(
        "{place} is where this job's key goes, but this plan's journal did not make it (another plan or a person did); refusing to use it: move it away or give the job another label"
    )]
    ForeignKey {
        /// The store and the key found.
        place: String,
    },

    /// A plan orders certificates for software keys from a CertCentral that is not on this
    /// machine, without the user's explicit leave.
    #[error(
        "job {job_id}: its key would be in {storage}, and {url} is not a local CertCentral; {rule}. Nothing was done. Put the key on a certified HSM or eToken, or pass --allow-software-key if this CA is a private test CA",
        rule = crate::keys::storage::HARDWARE_KEY_RULE
    )]
    SoftwareKey {
        /// The first job with a software key.
        job_id: String,
        /// Where its key would be.
        storage: String,
        /// The CertCentral.
        url: String,
    },

    /// The job's token could not be logged in this run; the job was not touched.
    #[error("not run: {token} could not be logged in ({reason})")]
    NotLoggedIn {
        /// The token, described.
        token: String,
        /// Why.
        reason: String,
    },

    /// The plan's entry of a job that began is not what it began with.
    #[error(
        "the plan changed since this job began ({}); it was not run: restore its entry in the plan, or start it under another label",
        .changes.join("; ")
    )]
    SpecChanged {
        /// What changed, `old -> new`.
        changes: Vec<String>,
    },

    /// The certificate CertCentral issued is not for the job's key.
    #[error(
        "certificate {certificate_id} does not carry the job's public key; it was not installed"
    )]
    CertificateForAnotherKey {
        /// The certificate.
        certificate_id: u64,
    },

    /// The order ended without a certificate.
    #[error("order {order_id} is {status}; it will not be issued")]
    OrderNotIssued {
        /// The order.
        order_id: u64,
        /// Its final status.
        status: String,
    },

    /// Something of the run could not be written as JSON.
    #[error("cannot encode the {what}: {cause}")]
    Encode {
        /// What (a job spec, a record).
        what: &'static str,
        /// serde_json's error.
        cause: serde_json::Error,
    },

    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl PipelineError {
    /// A row of the journal lacks what its step says it holds.
    pub(crate) fn missing(job_id: &str, what: &str) -> PipelineError {
        PipelineError::JournalContent {
            job_id: job_id.to_string(),
            what: format!("the journal holds no {what}"),
        }
    }
}

fn shown_path(path: &std::path::Path) -> String {
    crate::keys::text::shown_path(path)
}

/// The PostgreSQL driver's error with the server's own message, when it has one (the driver's
/// `Display` says "db error" alone).
fn database_error_text(cause: &postgres::Error) -> String {
    if let Some(db) = cause.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    // The driver's own text ("error performing TLS handshake") and what caused it.
    let mut text = cause.to_string();
    let mut source = std::error::Error::source(cause);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
