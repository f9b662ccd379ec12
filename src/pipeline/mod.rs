//! The provisioning pipeline: many jobs (key -> CSR -> order -> certificate beside the key),
//! journaled step by step in SQLite so that a run can stop anywhere and `--resume` continues.
//!
//! - [`plan`]: the TOML plan, expanded lazily into jobs.
//! - [`journal`]: the durable journal.
//! - [`provision`]: the [`Provisioner`] that runs jobs with workers and reports to an [`Observer`].
//! - [`expiry`]: what expires when, from the journal and from CertCentral.
//! - [`renew`]: which keys need a new certificate, and the renewal jobs that make them.

mod error;
pub mod expiry;
pub mod journal;
pub mod plan;
pub mod provision;
pub mod renew;

pub use error::PipelineError;
pub use journal::{
    Claim, Claimable, DatabaseUrl, HeldBecause, HostClaims, JobRow, JobState, JobStatus, Journal,
    JournalLocation, Step,
};
pub use plan::{JobSpec, KeyLocation, Plan, PlanJournal, Predecessor};
pub use provision::{
    JobOutcome, JobReport, Observer, OrderTemplate, PrintObserver, Provisioner, ProvisionerConfig,
    RunSummary,
};
