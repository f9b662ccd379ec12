//! Renewals: which provisioned keys need a new certificate, and the jobs that make them. A
//! renewal is a job like any other (a new key on the same token or in the same directory, its
//! CSR, an order carrying `renewal_of_order_id`, issuance, install, record), journaled in the
//! same journal under the next generation's name: `cs-001` is renewed by `cs-001.g2`, which is
//! renewed by `cs-001.g3`. The name is decided by the job renewed, so a renewal killed at any
//! step and run again is the same job, resumed: one renewal per key, whatever happens.
//!
//! ```
//! use codesign_kit::pipeline::renew::next_generation;
//! assert_eq!(next_generation("cs-001"), "cs-001.g2");
//! assert_eq!(next_generation("cs-001.g2"), "cs-001.g3");
//! ```

use std::collections::BTreeSet;

use crate::pipeline::error::PipelineError;
use crate::pipeline::journal::{JobState, Journal};
use crate::pipeline::plan::{JobSpec, KeyLocation, MAX_LABEL_BYTES, Predecessor};

/// The job that reissues `job_id`'s order for a new key: the next generation's name, the same
/// algorithm, subject and place. A reissue begun earlier and not done is that same job, resumed.
///
/// # Errors
/// [`PipelineError::UnknownJob`] when the journal does not hold the job;
/// [`PipelineError::NotReissuable`] when it is not done, has no order, or is itself followed by a
/// renewal or reissue already done.
pub fn reissue_job(journal: &Journal, job_id: &str) -> Result<JobSpec, PipelineError> {
    let row = journal
        .load(job_id)?
        .ok_or_else(|| PipelineError::UnknownJob {
            job_id: job_id.to_string(),
        })?;
    let refuse = |why: String| PipelineError::NotReissuable {
        job_id: job_id.to_string(),
        why,
    };
    let next = next_generation(job_id);
    if let Some(existing) = journal.load(&next)? {
        return match &existing.spec.reissue_of {
            Some(_) if existing.state != JobState::Done => Ok(existing.spec),
            Some(_) => Err(refuse(format!(
                "{next} reissued it already; reissue {next} instead"
            ))),
            None => Err(refuse(format!("{next} renews it; reissue {next} instead"))),
        };
    }
    if row.state != JobState::Done {
        return Err(refuse("it is not done".to_string()));
    }
    let order_id = row
        .order_id
        .ok_or_else(|| refuse("the journal holds no order for it".to_string()))?;
    let label = next_generation(&row.spec.label);
    if label.len() > MAX_LABEL_BYTES {
        return Err(refuse(format!(
            "its new key's label \"{label}\" would be longer than {MAX_LABEL_BYTES} bytes"
        )));
    }
    Ok(JobSpec {
        job_id: next,
        algorithm: row.spec.algorithm,
        subject: row.spec.subject.clone(),
        location: next_location(&row.spec.location, &label),
        label,
        renewal_of: None,
        reissue_of: Some(Predecessor {
            job_id: job_id.to_string(),
            order_id,
        }),
    })
}

/// The name of the generation after `name` (a job ID or a label): `x` -> `x.g2`, `x.gN` ->
/// `x.g(N+1)`.
pub fn next_generation(name: &str) -> String {
    if let Some((base, digits)) = name.rsplit_once(".g")
        && let Ok(n) = digits.parse::<u32>()
        && n >= 2
        && n.to_string() == digits
    {
        return format!("{base}.g{}", n.saturating_add(1));
    }
    format!("{name}.g2")
}

/// Where the next generation's key goes: the same token, or the same directory under its label.
fn next_location(location: &KeyLocation, label: &str) -> KeyLocation {
    match location {
        KeyLocation::Token { uri } => KeyLocation::Token { uri: uri.clone() },
        KeyLocation::File { path } => KeyLocation::File {
            path: path.with_file_name(format!("{label}.pem")),
        },
    }
}

/// What a renewal selection found.
#[derive(Debug, Default)]
pub struct Selection {
    /// The renewal jobs to run: those begun earlier and not done (resumed), then new ones.
    pub jobs: Vec<JobSpec>,
    /// Jobs inside the window that are not renewed, and why.
    pub skipped: Vec<(String, String)>,
}

/// The renewals of a journal's done jobs whose certificates end within `within_days` of `now`
/// (Unix seconds) and that no job renews yet, with the renewals begun earlier and not done.
/// `only`, when not empty, limits the new renewals to these job IDs (each must be in the
/// journal).
///
/// # Errors
/// [`PipelineError`] when the journal cannot be read, a chain does not parse, or `only` names a
/// job the journal does not hold.
pub fn select(
    journal: &Journal,
    within_days: i64,
    now: i64,
    only: &[String],
) -> Result<Selection, PipelineError> {
    let mut selection = Selection::default();
    // Each row is read once. Jobs a renewal follows, and jobs whose order a done reissue moved
    // to another key, are not renewed (the later job is, in its place); the done jobs ending
    // within the window are kept (their specs only) until every row has been seen.
    let mut followed = BTreeSet::new();
    let mut known = BTreeSet::new();
    let mut candidates = Vec::new();
    for job_id in journal.done()?.into_iter().chain(journal.unfinished()?) {
        let Some(row) = journal.load(&job_id)? else {
            continue;
        };
        known.insert(job_id.clone());
        if let Some(renewal) = &row.spec.renewal_of {
            followed.insert(renewal.job_id.clone());
            // Renewals begun earlier: resumed whatever the window, so none is left half-done.
            if row.state != JobState::Done {
                selection.jobs.push(row.spec.clone());
            }
        }
        if let Some(reissue) = &row.spec.reissue_of
            && row.state == JobState::Done
        {
            followed.insert(reissue.job_id.clone());
        }
        if row.state == JobState::Done
            && (only.is_empty() || only.contains(&job_id))
            && let Some(expiry) = crate::pipeline::expiry::of_row(&row, now)?
            && expiry.days_left <= within_days
        {
            candidates.push((row.spec, row.order_id));
        }
    }
    if let Some(name) = only.iter().find(|name| !known.contains(*name)) {
        return Err(PipelineError::UnknownJob {
            job_id: name.clone(),
        });
    }
    for (spec, order_id) in candidates {
        let job_id = &spec.job_id;
        if followed.contains(job_id) {
            continue;
        }
        let Some(order_id) = order_id else {
            selection.skipped.push((
                job_id.clone(),
                "the journal holds no order for it".to_string(),
            ));
            continue;
        };
        let label = next_generation(&spec.label);
        if label.len() > MAX_LABEL_BYTES {
            selection.skipped.push((
                job_id.clone(),
                format!(
                    "its renewal's label \"{label}\" would be longer than {MAX_LABEL_BYTES} bytes"
                ),
            ));
            continue;
        }
        selection.jobs.push(JobSpec {
            job_id: next_generation(job_id),
            algorithm: spec.algorithm,
            subject: spec.subject.clone(),
            location: next_location(&spec.location, &label),
            label,
            renewal_of: Some(Predecessor {
                job_id: job_id.clone(),
                order_id,
            }),
            reissue_of: None,
        });
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_count_up_and_other_names_start_at_two() {
        assert_eq!(next_generation("a"), "a.g2");
        assert_eq!(next_generation("a.g2"), "a.g3");
        assert_eq!(next_generation("a.g9"), "a.g10");
        assert_eq!(next_generation("a.g"), "a.g.g2");
        assert_eq!(next_generation("a.g1"), "a.g1.g2");
        assert_eq!(next_generation("a.g02"), "a.g02.g2");
        assert_eq!(next_generation("a.gx"), "a.gx.g2");
    }
}
