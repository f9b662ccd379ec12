//! What expires when: the certificates of a journal's done jobs (read from the chains the
//! journal keeps), and the issued orders of a CertCentral account (as it lists them).
//!
//! ```
//! use codesign_kit::pipeline::expiry::{Expiry, Source, inside};
//! let soon = Expiry {
//!     source: Source::Journal,
//!     job_id: Some("cs-001".into()),
//!     order_id: Some(100_001),
//!     certificate_id: Some(100_003),
//!     valid_till: "2026-12-20".into(),
//!     days_left: 21,
//! };
//! assert_eq!(inside(&[soon], 30).len(), 1);
//! ```

use serde::Serialize;

use crate::order::{Client, OrderQuery};
use crate::pipeline::error::PipelineError;
use crate::pipeline::journal::{JobRow, Journal};

/// Where an expiry was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A done job's certificate, from the journal's chain.
    Journal,
    /// A provisioning record (`records/*.json`).
    Record,
    /// An issued order, as CertCentral lists it.
    Certcentral,
}

/// One certificate's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    /// Where this was read.
    pub source: Source,
    /// The job, for journal entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The order.
    pub order_id: Option<u64>,
    /// The certificate.
    pub certificate_id: Option<u64>,
    /// Its last day (`yyyy-mm-dd`, UTC).
    pub valid_till: String,
    /// Whole days from now to its end (negative once expired).
    pub days_left: i64,
}

/// The certificates of the journal's done jobs, soonest end first, counted from `now` (Unix
/// seconds).
///
/// # Errors
/// [`PipelineError`] when the journal cannot be read or a job's chain does not parse.
pub fn from_journal(journal: &Journal, now: i64) -> Result<Vec<Expiry>, PipelineError> {
    let mut found = Vec::new();
    for job_id in journal.done()? {
        if let Some(row) = journal.load(&job_id)?
            && let Some(expiry) = of_row(&row, now)?
        {
            found.push(expiry);
        }
    }
    found.sort_by_key(|e| e.days_left);
    Ok(found)
}

/// The end of a job's certificate, from the chain its row holds (`None` without one).
///
/// # Errors
/// [`PipelineError`] when the chain does not parse.
pub fn of_row(row: &JobRow, now: i64) -> Result<Option<Expiry>, PipelineError> {
    let Some(pem) = row.chain_pem.as_deref() else {
        return Ok(None);
    };
    let chain = crate::order::Chain::from_pem(pem.as_bytes())?;
    let facts = crate::keys::spki::certificate_facts(&chain.leaf)?;
    let till = time::OffsetDateTime::from_unix_timestamp(facts.not_after_unix).map_err(|e| {
        PipelineError::missing(&row.spec.job_id, &format!("a valid end date ({e})"))
    })?;
    Ok(Some(Expiry {
        source: Source::Journal,
        job_id: Some(row.spec.job_id.clone()),
        order_id: row.order_id,
        certificate_id: row.certificate_id,
        valid_till: till.date().to_string(),
        days_left: (facts.not_after_unix - now).div_euclid(86_400),
    }))
}

/// The certificates the provisioning records in `dir` (`*.json`) describe, soonest end first,
/// counted from `now` (Unix seconds). Records written before they carried `not_after` are passed
/// over.
///
/// # Errors
/// [`PipelineError::Io`] when the directory or a record cannot be read, and for a `*.json` file
/// that is not JSON (the error names the file).
pub fn from_records(dir: &std::path::Path, now: i64) -> Result<Vec<Expiry>, PipelineError> {
    let entries = std::fs::read_dir(dir).map_err(|cause| PipelineError::Io {
        path: dir.to_path_buf(),
        action: "cannot read the records directory",
        cause,
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = crate::keys::files::read_input(&path, crate::keys::files::InputKind::Plan)?;
        let record: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|cause| PipelineError::Io {
                path: path.clone(),
                action: "not a provisioning record (JSON)",
                cause: std::io::Error::new(std::io::ErrorKind::InvalidData, cause),
            })?;
        let Some(not_after) = record["certificate"]["not_after"].as_str() else {
            continue;
        };
        let Ok(till) =
            time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
        else {
            continue;
        };
        found.push(Expiry {
            source: Source::Record,
            job_id: record["job_id"].as_str().map(str::to_string),
            order_id: record["order"]["order_id"].as_u64(),
            certificate_id: record["order"]["certificate_id"].as_u64(),
            valid_till: till.date().to_string(),
            days_left: (till.unix_timestamp() - now).div_euclid(86_400),
        });
    }
    found.sort_by_key(|e| e.days_left);
    Ok(found)
}

/// The account's issued orders with their certificates' ends, soonest first, as CertCentral
/// lists them (`valid_till`, `days_remaining`); every page is read.
///
/// # Errors
/// As the client's calls.
pub async fn from_certcentral(client: &Client) -> Result<Vec<Expiry>, PipelineError> {
    let query = OrderQuery {
        status: Some("issued".into()),
        ..OrderQuery::default()
    };
    let mut found: Vec<Expiry> = client
        .list_all_orders(&query)
        .await?
        .into_iter()
        .filter_map(|order| {
            let certificate = order.certificate?;
            Some(Expiry {
                source: Source::Certcentral,
                job_id: None,
                order_id: Some(order.id.0),
                certificate_id: certificate.id.map(|c| c.0),
                valid_till: certificate.valid_till?,
                days_left: certificate.days_remaining?,
            })
        })
        .collect();
    found.sort_by_key(|e| e.days_left);
    Ok(found)
}

/// The expiries that end within `days` (or have ended).
pub fn inside(expiries: &[Expiry], days: i64) -> Vec<&Expiry> {
    expiries.iter().filter(|e| e.days_left <= days).collect()
}
