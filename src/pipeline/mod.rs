//! The provisioning pipeline: many jobs (key -> CSR -> order -> certificate beside the key),
//! journaled step by step in SQLite so that a run can stop anywhere and `--resume` continues.
//!
//! - [`plan`]: the TOML plan, expanded lazily into jobs.
//! - [`journal`]: the durable journal.
//! - [`provision`]: the [`Provisioner`] that runs jobs with workers and reports to an [`Observer`].

mod error;
pub mod journal;
pub mod plan;
pub mod provision;

pub use error::PipelineError;
pub use journal::{JobRow, JobState, Journal, Step};
pub use plan::{JobSpec, KeyLocation, Plan};
pub use provision::{
    JobOutcome, Observer, OrderTemplate, PrintObserver, Provisioner, ProvisionerConfig, RunSummary,
};
