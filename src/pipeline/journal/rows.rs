//! What the journal holds of a job: its steps, its state, its row.

use serde::{Deserialize, Serialize};

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

    /// What a job working towards this step is doing, for progress displays.
    pub fn doing(self) -> &'static str {
        match self {
            Step::Planned => "planning",
            Step::KeyGenerated => "making its key",
            Step::CsrBuilt => "building its CSR",
            Step::OrderValidated => "checking its order",
            Step::OrderSubmitted => "ordering",
            Step::OrderIssued => "waiting for issuance",
            Step::ChainDownloaded => "downloading its chain",
            Step::CertificateInstalled => "installing its certificate",
            Step::Done => "writing its record",
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

    pub(crate) fn parse(s: &str) -> Option<Step> {
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
    /// The name stored in the journal and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Open => "open",
            JobState::Pending => "pending",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> JobState {
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

/// The columns of a job's row, in [`StoredRow`]'s order.
pub(super) const STORED_COLUMNS: &str = "spec, step, state, key_id, alternative_order_id, csr_pem, \
     audit_json, order_id, certificate_id, chain_pem, note";

/// A job's row as a backend stores it (the spec as JSON, the step and state as names).
pub(super) struct StoredRow {
    pub(super) spec: String,
    pub(super) step: String,
    pub(super) state: String,
    pub(super) key_id: Vec<u8>,
    pub(super) alternative_order_id: String,
    pub(super) csr_pem: Option<String>,
    pub(super) audit_json: Option<String>,
    pub(super) order_id: Option<i64>,
    pub(super) certificate_id: Option<i64>,
    pub(super) chain_pem: Option<String>,
    pub(super) note: Option<String>,
}

impl StoredRow {
    /// The row, its spec and step read back.
    pub(super) fn decode(self, job_id: &str) -> Result<JobRow, crate::pipeline::PipelineError> {
        let bad = |what: String| crate::pipeline::PipelineError::JournalContent {
            job_id: job_id.to_string(),
            what,
        };
        Ok(JobRow {
            spec: serde_json::from_str(&self.spec)
                .map_err(|e| bad(format!("unreadable spec: {e}")))?,
            step: Step::parse(&self.step)
                .ok_or_else(|| bad(format!("unknown step {}", self.step)))?,
            state: JobState::parse(&self.state),
            key_id: self.key_id,
            alternative_order_id: self.alternative_order_id,
            csr_pem: self.csr_pem,
            audit_json: self.audit_json,
            order_id: self.order_id.map(|v| v as u64),
            certificate_id: self.certificate_id.map(|v| v as u64),
            chain_pem: self.chain_pem,
            note: self.note,
        })
    }
}
