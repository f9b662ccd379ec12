//! Running jobs through the steps: key -> CSR -> order -> issuance -> chain -> install -> record,
//! each step journaled, every job resumable from its last completed step.
//!
//! - this module: the [`Provisioner`], its configuration, what a run reports;
//! - `logins`: one login per token per run, shared by the workers;
//! - `worker`: a worker's jobs, and the step runner every step goes through;
//! - `steps`: the steps themselves, each a small function.

mod logins;
mod steps;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use crate::keys::SoftwareKey;
use crate::order::{Client, OrderRequest, Product};
use crate::pipeline::PipelineError;
use crate::pipeline::journal::{JobState, Journal, Step};
use crate::pipeline::plan::{JobSpec, Plan};

/// Receives progress. Called from worker threads.
pub trait Observer: Send + Sync {
    /// A job completed `step`.
    fn step(&self, job_id: &str, step: Step, detail: &str);
    /// A job stopped: done, pending or failed.
    fn finished(&self, outcome: &JobOutcome);
    /// Something that concerns the run rather than one job (a token that could not be logged
    /// in, so none of its jobs runs). Said once.
    fn notice(&self, _text: &str) {}
}

/// An observer that prints one plain line per event to stderr.
#[derive(Debug, Default)]
pub struct PrintObserver;

impl Observer for PrintObserver {
    fn step(&self, job_id: &str, step: Step, detail: &str) {
        eprintln!("{job_id}: {} {detail}", step.as_str());
    }
    fn finished(&self, outcome: &JobOutcome) {
        eprintln!(
            "{}: {:?} {}",
            outcome.job_id,
            outcome.state,
            outcome.note.as_deref().unwrap_or("")
        );
    }
    fn notice(&self, text: &str) {
        eprintln!("{text}");
    }
}

/// How a job ended (this run).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobOutcome {
    /// The job.
    pub job_id: String,
    /// Done, pending or failed.
    pub state: JobState,
    /// The last completed step.
    pub step: Step,
    /// The order, if placed.
    pub order_id: Option<u64>,
    /// The certificate, if issued.
    pub certificate_id: Option<u64>,
    /// Why pending or failed.
    pub note: Option<String>,
}

/// What every job orders: the product and the body (its CSR and alternative order ID are set per
/// job).
#[derive(Debug, Clone)]
pub struct OrderTemplate {
    /// The product.
    pub product: Product,
    /// The order body.
    pub request: OrderRequest,
}

/// What a run gives: counts, and every job that is not done.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    /// Jobs done (now or earlier).
    pub done: u64,
    /// Jobs waiting for CertCentral.
    pub pending: Vec<JobOutcome>,
    /// Jobs stopped on an error.
    pub failed: Vec<JobOutcome>,
}

impl RunSummary {
    /// All jobs seen.
    pub fn total(&self) -> u64 {
        self.done + self.pending.len() as u64 + self.failed.len() as u64
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// Jobs at a time.
    pub workers: usize,
    /// How long each job waits for issuance (polling with backoff) before it is left pending.
    pub wait: Duration,
    /// Where provisioning records go.
    pub records_dir: PathBuf,
    /// The PKCS#11 module when token URIs have no module-path.
    pub module: Option<PathBuf>,
    /// Signs each provisioning record (detached signature `<record>.sig`), when given.
    pub record_signer: Option<Arc<SoftwareKey>>,
    /// Where the locks that make key creation on a token exclusive per label live: a directory
    /// every process that may use the same tokens shares (see [`crate::keys::pkcs11::LabelLock`]).
    pub lock_dir: PathBuf,
}

impl ProvisionerConfig {
    /// The lock directory every process of this machine finds by default:
    /// `codesign-kit-locks` in the system's temporary directory.
    pub fn default_lock_dir() -> PathBuf {
        std::env::temp_dir().join("codesign-kit-locks")
    }
}

/// Runs plans against a journal and a CertCentral client.
pub struct Provisioner {
    journal: Arc<Journal>,
    client: Client,
    runtime: tokio::runtime::Runtime,
    config: ProvisionerConfig,
}

impl Provisioner {
    /// A provisioner writing to `journal` and ordering through `client`.
    ///
    /// # Errors
    /// [`PipelineError::Runtime`] when the async runtime cannot start.
    pub fn new(
        journal: Journal,
        client: Client,
        config: ProvisionerConfig,
    ) -> Result<Provisioner, PipelineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(PipelineError::Runtime)?;
        Ok(Provisioner {
            journal: Arc::new(journal),
            client,
            runtime,
            config,
        })
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Ends the provisioner and gives its journal back (for [`Journal::discard_if_empty`]);
    /// `None` only while a run still holds it, which cannot outlast [`Provisioner::run_jobs`].
    pub fn into_journal(self) -> Option<Journal> {
        Arc::into_inner(self.journal)
    }

    /// Runs every job of `plan` that is not done; see [`Provisioner::run_jobs`].
    ///
    /// # Errors
    /// As [`Provisioner::run_jobs`].
    pub fn run(&self, plan: &Plan, observer: &dyn Observer) -> Result<RunSummary, PipelineError> {
        let order = OrderTemplate {
            product: plan.product.clone(),
            request: plan.request.clone(),
        };
        let mut summary = self.run_jobs(plan.jobs(), &order, observer)?;
        // A job that began (its key or order exists) and is no longer in the plan is not dropped
        // silently: it is reported, and stays in the journal for when it is put back.
        for (job_id, step, order_id) in self.journal.in_flight()? {
            if plan.contains(&job_id) {
                continue;
            }
            let outcome = JobOutcome {
                job_id,
                state: JobState::Failed,
                step,
                order_id,
                certificate_id: None,
                note: Some(format!(
                    "in flight (last step {}{}) but no longer in the plan; it was not run: put it back in the plan to finish it",
                    step.as_str(),
                    order_id.map(|o| format!(", order {o}")).unwrap_or_default()
                )),
            };
            observer.finished(&outcome);
            summary.failed.push(outcome);
        }
        summary.failed.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        Ok(summary)
    }

    /// Runs every job of `jobs` that is not done, `workers` at a time, from its last journaled
    /// step. Jobs are pulled from the iterator as workers free up, so memory does not grow with
    /// their number. The iterator is walked twice: first to find the tokens and ask each PIN once,
    /// before any work; then to run. Pass a [`Plan`]'s jobs, or a source of your own.
    ///
    /// # Errors
    /// [`PipelineError`] for problems that stop the whole run (no PIN, journal unusable); a job's
    /// own failure is in the summary.
    pub fn run_jobs<I>(
        &self,
        jobs: I,
        order: &OrderTemplate,
        observer: &dyn Observer,
    ) -> Result<RunSummary, PipelineError>
    where
        I: Iterator<Item = JobSpec> + Clone,
    {
        let logins = self.log_in(jobs.clone(), observer)?;
        let workers = self.config.workers.max(1);
        let (sender, receiver) = sync_channel::<JobSpec>(workers * 2);
        let receiver = std::sync::Mutex::new(receiver);
        let summary = std::sync::Mutex::new(RunSummary::default());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    let mut worker = worker::Worker::new(self, order, &logins, observer);
                    loop {
                        let next = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(spec) = next else { break };
                        let outcome = worker.process(&spec);
                        observer.finished(&outcome);
                        let mut summary = summary.lock().unwrap_or_else(|p| p.into_inner());
                        match outcome.state {
                            JobState::Done => summary.done += 1,
                            JobState::Pending | JobState::Open => summary.pending.push(outcome),
                            JobState::Failed => summary.failed.push(outcome),
                        }
                    }
                });
            }
            for spec in jobs {
                if sender.send(spec).is_err() {
                    break;
                }
            }
            drop(sender);
        });
        // Each job flushed its last write when it stopped; this covers any write still waiting.
        self.journal.flush()?;
        let mut summary = summary.into_inner().unwrap_or_else(|p| p.into_inner());
        summary.pending.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        summary.failed.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_does_not_show_the_record_signing_key() {
        let key = SoftwareKey::generate(crate::keys::KeyAlgorithm::P256).unwrap();
        let pem = key.to_pkcs8_pem(None).unwrap();
        let config = ProvisionerConfig {
            workers: 1,
            wait: Duration::ZERO,
            records_dir: "records".into(),
            module: None,
            record_signer: Some(Arc::new(key)),
            lock_dir: ProvisionerConfig::default_lock_dir(),
        };
        let debug = format!("{config:?}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!debug.contains(&body[..40]));
    }
}
