//! The provisioning pipeline: many jobs (key -> CSR -> order -> certificate beside the key),
//! journaled step by step in SQLite so that a run can stop anywhere and `--resume` continues.
//!
//! - [`plan`]: the TOML plan, expanded lazily into jobs.
//! - [`journal`]: the durable journal.
//! - [`provision`]: the [`Provisioner`] that runs jobs with workers and reports to an [`Observer`].

pub mod journal;
pub mod plan;
pub mod provision;

use std::path::PathBuf;

pub use journal::{JobRow, JobState, Journal, Step};
pub use plan::{JobSpec, KeyLocation, Plan};
pub use provision::{
    JobOutcome, Observer, OrderTemplate, PrintObserver, Provisioner, ProvisionerConfig, RunSummary,
};

/// What can stop a run or a job.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The plan file is not usable; every problem is listed.
    #[error("{}: {}", .path.display(), .problems.join("; "))]
    Plan {
        /// The plan file.
        path: PathBuf,
        /// Every problem.
        problems: Vec<String>,
    },
    /// The journal cannot be read or written.
    #[error("journal: {0}")]
    Journal(String),
    /// A key, token or file step failed.
    #[error("{0}")]
    Key(String),
    /// An order step failed.
    #[error("{0}")]
    Order(String),
    /// CertCentral failed.
    #[error(transparent)]
    CertCentral(#[from] crate::order::CertCentralError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
}
