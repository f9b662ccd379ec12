//! What a run tells: progress to an [`Observer`], each job's [`JobOutcome`], the [`RunSummary`];
//! and what every job orders ([`OrderTemplate`]).

use crate::order::{OrderRequest, Product};
use crate::pipeline::journal::{JobState, Step};

/// Receives progress. Called from worker threads.
pub trait Observer: Send + Sync {
    /// A job began working towards `step` (a key being made, an order placed, issuance awaited):
    /// what it is doing now, until [`Observer::step`] says it completed or
    /// [`Observer::finished`] that it stopped.
    fn started(&self, _job_id: &str, _step: Step) {}
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
        if detail.is_empty() {
            eprintln!("{job_id}: {}", step.as_str());
        } else {
            eprintln!("{job_id}: {} {detail}", step.as_str());
        }
    }
    /// A job that did not end done says how it stands; a done one said so with its last step.
    fn finished(&self, outcome: &JobOutcome) {
        if outcome.state == JobState::Done {
            return;
        }
        match outcome.note.as_deref() {
            Some(note) => eprintln!(
                "{}: {} after {}: {note}",
                outcome.job_id,
                outcome.state.as_str(),
                outcome.step.as_str()
            ),
            None => eprintln!(
                "{}: {} after {}",
                outcome.job_id,
                outcome.state.as_str(),
                outcome.step.as_str()
            ),
        }
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
    /// How long the token took to generate this job's key pair in this run, in microseconds
    /// (the `C_GenerateKeyPair` call alone), for a key made on a token now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_generation_us: Option<u64>,
    /// Another host's job (a shared journal): that host, and the job was not run here; for a job
    /// whose token is not on this host and that no host holds yet, `a host with token ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
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
    /// Their IDs, in the order they ended.
    #[serde(skip)]
    pub done_jobs: Vec<String>,
    /// Jobs waiting for CertCentral.
    pub pending: Vec<JobOutcome>,
    /// Jobs stopped on an error.
    pub failed: Vec<JobOutcome>,
    /// Jobs another host holds (a shared journal): not run here.
    pub elsewhere: Vec<JobOutcome>,
    /// Key pairs made on tokens in this run, and the tokens' own time for them (the
    /// `C_GenerateKeyPair` calls alone, in microseconds): what the run asked of its tokens.
    pub token_keys_made: u64,
    /// See `token_keys_made`.
    pub key_generation_us: u64,
}

impl RunSummary {
    /// All jobs seen.
    pub fn total(&self) -> u64 {
        self.done
            + self.pending.len() as u64
            + self.failed.len() as u64
            + self.elsewhere.len() as u64
    }

    /// Adds the summary of a later pass over some of the same jobs: a job it ran leaves the list
    /// of jobs held elsewhere.
    pub fn merge(&mut self, later: RunSummary) {
        let ran: std::collections::HashSet<&str> = later
            .done_jobs
            .iter()
            .map(String::as_str)
            .chain(later.pending.iter().map(|o| o.job_id.as_str()))
            .chain(later.failed.iter().map(|o| o.job_id.as_str()))
            .collect();
        self.elsewhere.retain(|o| !ran.contains(o.job_id.as_str()));
        let later_elsewhere: Vec<JobOutcome> = later
            .elsewhere
            .into_iter()
            .filter(|o| !self.elsewhere.iter().any(|e| e.job_id == o.job_id))
            .collect();
        self.elsewhere.extend(later_elsewhere);
        self.done += later.done;
        self.done_jobs.extend(later.done_jobs);
        self.pending.extend(later.pending);
        self.failed.extend(later.failed);
        self.token_keys_made += later.token_keys_made;
        self.key_generation_us += later.key_generation_us;
    }

    /// Counts a job's outcome.
    pub(super) fn add(&mut self, outcome: JobOutcome) {
        if let Some(us) = outcome.key_generation_us {
            self.token_keys_made += 1;
            self.key_generation_us += us;
        }
        if outcome.held_by.is_some() {
            self.elsewhere.push(outcome);
            return;
        }
        match outcome.state {
            JobState::Done => {
                self.done += 1;
                self.done_jobs.push(outcome.job_id);
            }
            JobState::Pending | JobState::Open => self.pending.push(outcome),
            JobState::Failed => self.failed.push(outcome),
        }
    }
}

/// Where a job stands, from its journal row: what `provision --json` lists for every job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobReport {
    /// The job.
    pub job_id: String,
    /// Done, pending, failed or open.
    pub state: JobState,
    /// The last completed step.
    pub step: Step,
    /// The key: a PKCS#11 URI naming it by token, label and `CKA_ID` (no PIN), or its file.
    pub key: String,
    /// The CertCentral order, once placed.
    pub order_id: Option<u64>,
    /// The certificate, once issued.
    pub certificate_id: Option<u64>,
    /// The chain file (leaf first, PEM) beside the record, once written (an absolute path).
    pub chain_file: Option<std::path::PathBuf>,
    /// The provisioning record, once written (an absolute path).
    pub record_file: Option<std::path::PathBuf>,
    /// Why pending or failed.
    pub note: Option<String>,
    /// Another host's job (a shared journal): that host (or `a host with token ...`, see
    /// [`JobOutcome::held_by`]); the job was not run here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
}
