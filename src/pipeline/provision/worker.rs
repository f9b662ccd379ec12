//! A worker: runs a job's stages (see `stages`), checks each job against its journal row, and
//! runs every step through the one step runner ([`Worker::run_step`]).

use std::collections::HashMap;

use crate::keys::pkcs11::{Pkcs11Uri, TokenSession};
use crate::pipeline::error::PipelineError;
use crate::pipeline::journal::{Claim, HeldBecause, JobRow, JobState, Step};
use crate::pipeline::plan::{JobSpec, KeyLocation};

use super::context::Context;
use super::logins::TokenLogins;
use super::report::{JobOutcome, Observer, OrderTemplate};
use super::stages::{CsrOrigin, Handoff};

/// How a step ended.
pub(super) enum Ended {
    /// Done; the detail goes into the journal's history.
    Done(String),
    /// Waiting for CertCentral: the job stops `pending` with this note, and `status` goes into
    /// the history.
    Pending {
        /// Why, for the person running it.
        note: String,
        /// CertCentral's status.
        status: String,
    },
}

/// Where a job goes after a stage.
pub(super) enum Next {
    /// On to the next stage.
    Handoff(Box<Handoff>),
    /// It ended for this run.
    Ended(JobOutcome),
}

/// How a job stands, from its row.
fn outcome(row: &JobRow, key_generation_us: Option<u64>) -> JobOutcome {
    JobOutcome {
        job_id: row.spec.job_id.clone(),
        state: row.state,
        step: row.step,
        order_id: row.order_id,
        certificate_id: row.certificate_id,
        note: row.note.clone(),
        key_generation_us,
        held_by: None,
    }
}

/// A job's row when this host may run it, or whose the job is.
enum Prepared {
    /// This host's: its row.
    Ours(Box<JobRow>),
    /// Another host's.
    Elsewhere {
        /// That host.
        host: String,
        /// Why.
        because: HeldBecause,
    },
}

/// Whether a job goes on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// On to the next step.
    Next,
    /// The job stops here for this run (pending).
    Stop,
}

/// One worker thread's state: its sessions, one per token it has met.
pub(super) struct Worker<'p> {
    pub(super) context: &'p Context,
    pub(super) order: &'p OrderTemplate,
    logins: &'p TokenLogins,
    sessions: HashMap<String, TokenSession>,
    observer: &'p dyn Observer,
    /// The token's key-generation time of the job being run, when it made a key.
    pub(super) key_generation: std::cell::Cell<Option<std::time::Duration>>,
}

impl<'p> Worker<'p> {
    pub(super) fn new(
        context: &'p Context,
        order: &'p OrderTemplate,
        logins: &'p TokenLogins,
        observer: &'p dyn Observer,
    ) -> Worker<'p> {
        Worker {
            context,
            order,
            logins,
            sessions: HashMap::new(),
            observer,
            key_generation: std::cell::Cell::new(None),
        }
    }

    /// A job's start, on a token worker: from its last journaled step up to its CSR. Gives the
    /// job on to the API side, or says how it ended (done before, or failed).
    pub(super) fn start(&mut self, spec: &JobSpec) -> Next {
        self.key_generation.set(None);
        let mut row = match self.prepare(spec) {
            Ok(Prepared::Ours(row)) => *row,
            // Another host's (a shared journal): not touched here.
            Ok(Prepared::Elsewhere { host, because }) => {
                return Next::Ended(JobOutcome {
                    job_id: spec.job_id.clone(),
                    state: JobState::Open,
                    step: Step::Planned,
                    order_id: None,
                    certificate_id: None,
                    note: Some(format!("host {host}'s: {}", because.describe())),
                    key_generation_us: None,
                    held_by: Some(host),
                });
            }
            // Not run: the journal row (if any) is left as it was.
            Err((step, order_id, e)) => {
                return Next::Ended(JobOutcome {
                    job_id: spec.job_id.clone(),
                    state: JobState::Failed,
                    step,
                    order_id,
                    certificate_id: None,
                    note: Some(e.to_string()),
                    key_generation_us: None,
                    held_by: None,
                });
            }
        };
        if row.state == JobState::Done {
            return Next::Ended(outcome(&row, None));
        }
        // A CSR built (and self-checked: signature and key) in this run needs no second
        // inspection before it is ordered; one read back from the journal gets it.
        let csr = if row.step < Step::CsrBuilt {
            CsrOrigin::BuiltNow
        } else {
            CsrOrigin::Journaled
        };
        let started = self.start_steps(&mut row);
        let key_generation_us = self
            .key_generation
            .get()
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        match started {
            Ok(public_key) => Next::Handoff(Box::new(Handoff {
                row,
                public_key,
                csr,
                key_generation_us,
            })),
            Err(e) => {
                self.record_failure(&mut row, &e);
                Next::Ended(outcome(&row, key_generation_us))
            }
        }
    }

    /// A job's CertCentral part, on an API worker: order, issuance, chain. Gives the job back for
    /// its install, or says how it ended (pending, or failed).
    pub(super) fn order(&self, mut handoff: Box<Handoff>) -> Next {
        let row = &mut handoff.row;
        match self.order_steps(row, &handoff.public_key, handoff.csr) {
            Ok(Flow::Next) => Next::Handoff(handoff),
            Ok(Flow::Stop) => Next::Ended(outcome(row, handoff.key_generation_us)),
            Err(e) => {
                self.record_failure(row, &e);
                Next::Ended(outcome(row, handoff.key_generation_us))
            }
        }
    }

    /// A job's end, on a token worker: its certificate installed beside its key, its record
    /// written.
    pub(super) fn finish(&mut self, mut handoff: Box<Handoff>) -> JobOutcome {
        let row = &mut handoff.row;
        if let Err(e) = self.finish_steps(row, &handoff.public_key) {
            self.record_failure(row, &e);
        }
        outcome(row, handoff.key_generation_us)
    }

    /// The job's journal row, once the job may run: its token logged in, and its spec the one it
    /// began with (a job that has not begun takes the plan's new spec).
    fn prepare(&self, spec: &JobSpec) -> Result<Prepared, (Step, Option<u64>, PipelineError)> {
        let journal = &self.context.journal;
        // A job whose token refused the login is not touched (not even journaled) this run.
        if let KeyLocation::Token { uri } = &spec.location
            && let Some(refusal) = self.logins.of(uri).and_then(|l| l.refusal())
        {
            return Err((Step::Planned, None, refusal));
        }
        // A job whose token is not on this host (a shared journal) is not claimed: the hosts
        // that have the token make its key. One pinned here is done (and said so), or waits for
        // the token.
        if let KeyLocation::Token { uri } = &spec.location
            && let Some(why) = self.logins.absent(uri)
        {
            let at_planned = |e| (Step::Planned, None, e);
            let pinned = journal.pinned_to(&spec.job_id).map_err(at_planned)?;
            let token = format!("token {}", uri.token_description());
            return match pinned {
                Some(host) if Some(host.as_str()) == journal.host_id() => {
                    match journal.load(&spec.job_id).map_err(at_planned)? {
                        Some(row) if row.state == JobState::Done => {
                            Ok(Prepared::Ours(Box::new(row)))
                        }
                        row => Err((
                            row.as_ref().map_or(Step::Planned, |r| r.step),
                            row.as_ref().and_then(|r| r.order_id),
                            PipelineError::NotLoggedIn {
                                token,
                                reason: format!(
                                    "its key is on it, and it is not on this host now: {why}"
                                ),
                            },
                        )),
                    }
                }
                Some(host) => Ok(Prepared::Elsewhere {
                    host,
                    because: HeldBecause::KeyOnItsToken,
                }),
                None => Ok(Prepared::Elsewhere {
                    host: format!("a host with {token}"),
                    because: HeldBecause::TokenNotHere,
                }),
            };
        }
        let mut row = match journal.claim(spec).map_err(|e| (Step::Planned, None, e))? {
            Claim::Ours(row) => *row,
            Claim::Elsewhere { host, because } => {
                return Ok(Prepared::Elsewhere {
                    host: host.unwrap_or_else(|| "another host".to_string()),
                    because,
                });
            }
        };
        if row.spec != *spec {
            if row.step == Step::Planned && row.state != JobState::Done {
                // Nothing was made yet: the plan's new spec is simply taken.
                journal
                    .replace_unstarted_spec(spec)
                    .map_err(|e| (row.step, row.order_id, e))?;
                row.spec = spec.clone();
            } else {
                let changes = spec_changes(&row.spec, spec);
                if !changes.is_empty() {
                    return Err((
                        row.step,
                        row.order_id,
                        PipelineError::SpecChanged { changes },
                    ));
                }
            }
        }
        Ok(Prepared::Ours(Box::new(row)))
    }

    /// Marks the job failed in the journal; a journal that cannot take the failure is said
    /// together with the failure itself.
    fn record_failure(&self, row: &mut JobRow, e: &PipelineError) {
        row.state = JobState::Failed;
        row.note = Some(e.to_string());
        if let Err(journal_error) = self.context.journal.save(row, &e.to_string()) {
            row.note = Some(format!(
                "{e}; and the journal could not record it: {journal_error}"
            ));
        }
    }

    /// The step runner. A step the journal holds as done is skipped. Otherwise its begin is
    /// journaled when `begin` is given (on disk before the step acts when the step makes a key
    /// or an order: [`Step::must_be_on_disk_before_acting`]), the step acts, and its end is
    /// journaled with the row in one transaction. A step that acts on nothing outside the journal
    /// passes no `begin`.
    pub(super) fn run_step(
        &self,
        row: &mut JobRow,
        step: Step,
        begin: Option<&str>,
        act: impl FnOnce(&mut JobRow) -> Result<Ended, PipelineError>,
    ) -> Result<Flow, PipelineError> {
        if row.step >= step {
            return Ok(Flow::Next);
        }
        if let Some(detail) = begin {
            self.context.journal.begin(&row.spec.job_id, step, detail)?;
        }
        self.observer.started(&row.spec.job_id, step);
        match act(row)? {
            Ended::Done(detail) => {
                row.step = step;
                row.state = if step == Step::Done {
                    JobState::Done
                } else {
                    JobState::Open
                };
                row.note = None;
                self.context.journal.save(row, &detail)?;
                self.observer.step(&row.spec.job_id, step, &detail);
                Ok(Flow::Next)
            }
            Ended::Pending { note, status } => {
                row.state = JobState::Pending;
                row.note = Some(note);
                self.context.journal.save(row, &status)?;
                Ok(Flow::Stop)
            }
        }
    }

    /// Opens this worker's session on a token of the plan, beside the run's one login, unless
    /// it is open already.
    pub(super) fn open_session(&mut self, uri: &Pkcs11Uri) -> Result<(), PipelineError> {
        let key = uri.to_uri_string(false);
        if !self.sessions.contains_key(&key) {
            let login = self
                .logins
                .of(uri)
                .ok_or_else(|| PipelineError::NotLoggedIn {
                    token: uri.to_string(),
                    reason: "the token was not among the run's tokens".to_string(),
                })?;
            let session = login.open_session()?;
            self.sessions.insert(key, session);
        }
        Ok(())
    }

    /// This worker's open session on a token (see [`Worker::open_session`]).
    pub(super) fn session(&self, uri: &Pkcs11Uri) -> Result<&TokenSession, PipelineError> {
        self.sessions
            .get(&uri.to_uri_string(false))
            .ok_or_else(|| PipelineError::NotLoggedIn {
                token: uri.to_string(),
                reason: "this worker has no session on it".to_string(),
            })
    }
}

/// What differs between the spec a job began with and the plan's spec now.
fn spec_changes(journaled: &JobSpec, planned: &JobSpec) -> Vec<String> {
    let mut changes = Vec::new();
    if journaled.algorithm != planned.algorithm {
        changes.push(format!(
            "algorithm {} -> {}",
            journaled.algorithm.cli_name(),
            planned.algorithm.cli_name()
        ));
    }
    if journaled.subject != planned.subject {
        changes.push(format!(
            "subject \"{}\" -> \"{}\"",
            journaled.subject, planned.subject
        ));
    }
    let place = |location: &KeyLocation| match location {
        KeyLocation::Token { uri } => format!("token {uri}"),
        KeyLocation::File { path } => format!(
            "key file {}",
            std::path::absolute(path)
                .unwrap_or_else(|_| path.clone())
                .display()
        ),
    };
    if place(&journaled.location) != place(&planned.location) {
        changes.push(format!(
            "{} -> {}",
            place(&journaled.location),
            place(&planned.location)
        ));
    }
    if journaled.label != planned.label {
        changes.push(format!("label {} -> {}", journaled.label, planned.label));
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{ApiKey, BaseUrl, Client, ClientConfig, OrderRequest, Product};
    use crate::pipeline::journal::Journal;
    use crate::pipeline::plan::KeyLocation;
    use crate::pipeline::provision::{Provisioner, ProvisionerConfig};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Steps(Mutex<Vec<String>>);

    impl Observer for Steps {
        fn step(&self, job_id: &str, step: Step, detail: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{job_id} {} {detail}", step.as_str()));
        }
        fn finished(&self, _: &JobOutcome) {}
    }

    fn provisioner(dir: &std::path::Path) -> Provisioner {
        // Nothing here talks to CertCentral; the client only has to exist.
        let client = Client::new(ClientConfig::new(
            BaseUrl::parse("http://127.0.0.1:9/services/v2").unwrap(),
            ApiKey::new("unused".to_string().into()).unwrap(),
        ))
        .unwrap();
        Provisioner::new(
            Journal::open(&dir.join("j.sqlite")).unwrap(),
            client,
            ProvisionerConfig {
                lock_dir: dir.join("locks"),
                ..ProvisionerConfig::new(dir.join("records"))
            },
        )
        .unwrap()
    }

    fn spec() -> JobSpec {
        JobSpec {
            job_id: "job".to_string(),
            algorithm: crate::keys::KeyAlgorithm::P256,
            subject: "CN=Example Corp,C=US".parse().unwrap(),
            location: KeyLocation::File {
                path: "/nonexistent/job.pem".into(),
            },
            label: "job".to_string(),
            renewal_of: None,
            reissue_of: None,
        }
    }

    /// The step runner: a done step is skipped without acting; a begin is journaled only when
    /// given; an end is journaled with the row and told to the observer; a failed step journals
    /// no end; a pending step stops the job.
    #[test]
    fn the_step_runner_skips_done_steps_and_journals_begins_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let provisioner = provisioner(dir.path());
        let order = OrderTemplate {
            product: Product::CodeSigningEv,
            request: OrderRequest::default(),
        };
        let logins = TokenLogins::default();
        let observer = Steps::default();
        let worker = Worker::new(&provisioner.context, &order, &logins, &observer);
        let journal = &provisioner.context.journal;
        let mut row = journal.ensure(&spec()).unwrap();

        let flow = worker
            .run_step(&mut row, Step::KeyGenerated, Some("making"), |row| {
                row.audit_json = Some("{}".to_string());
                Ok(Ended::Done("made".to_string()))
            })
            .unwrap();
        assert_eq!(flow, Flow::Next);
        assert_eq!(row.step, Step::KeyGenerated);
        assert!(journal.has_begun("job", Step::KeyGenerated).unwrap());
        let saved = journal.load("job").unwrap().unwrap();
        assert_eq!(
            (saved.step, saved.state, saved.audit_json.as_deref()),
            (Step::KeyGenerated, JobState::Open, Some("{}"))
        );

        // Done already: not acted again.
        worker
            .run_step(&mut row, Step::KeyGenerated, Some("again"), |_| {
                panic!("a done step must not act")
            })
            .unwrap();
        assert_eq!(
            journal
                .begun_detail("job", Step::KeyGenerated)
                .unwrap()
                .as_deref(),
            Some("making")
        );

        // No begin given: none journaled.
        worker
            .run_step(&mut row, Step::CsrBuilt, None, |_| {
                Ok(Ended::Done("built".to_string()))
            })
            .unwrap();
        assert!(!journal.has_begun("job", Step::CsrBuilt).unwrap());

        // A failure: the begin stays, no end, the row's step unchanged.
        let err = worker
            .run_step(&mut row, Step::OrderValidated, Some("trying"), |_| {
                Err(PipelineError::missing("job", "CSR"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("holds no CSR"), "{err}");
        assert_eq!(row.step, Step::CsrBuilt);
        assert_eq!(journal.load("job").unwrap().unwrap().step, Step::CsrBuilt);

        // Pending: the job stops, the step is not done.
        let flow = worker
            .run_step(&mut row, Step::OrderValidated, None, |_| {
                Ok(Ended::Pending {
                    note: "waiting".to_string(),
                    status: "pending".to_string(),
                })
            })
            .unwrap();
        assert_eq!(flow, Flow::Stop);
        let saved = journal.load("job").unwrap().unwrap();
        assert_eq!(
            (saved.step, saved.state, saved.note.as_deref()),
            (Step::CsrBuilt, JobState::Pending, Some("waiting"))
        );
        assert_eq!(
            *observer.0.lock().unwrap(),
            ["job key_generated made", "job csr_built built"]
        );
    }

    /// A job that began is not run when its spec changed; one that has not begun takes the new
    /// spec; a job of a token whose login was refused is not even journaled.
    #[test]
    fn a_changed_spec_stops_a_job_that_began() {
        let dir = tempfile::tempdir().unwrap();
        let provisioner = provisioner(dir.path());
        let order = OrderTemplate {
            product: Product::CodeSigningEv,
            request: OrderRequest::default(),
        };
        let logins = TokenLogins::default();
        let observer = Steps::default();
        let worker = Worker::new(&provisioner.context, &order, &logins, &observer);
        let mut changed = spec();
        changed.algorithm = crate::keys::KeyAlgorithm::P384;
        provisioner.context.journal.ensure(&spec()).unwrap();
        match worker.prepare(&changed).unwrap() {
            Prepared::Ours(row) => assert_eq!(row.spec, changed),
            Prepared::Elsewhere { .. } => panic!("a single-host journal's job is ours"),
        }

        let mut row = provisioner.context.journal.load("job").unwrap().unwrap();
        row.step = Step::KeyGenerated;
        provisioner.context.journal.save(&row, "made").unwrap();
        let (_, _, err) = worker.prepare(&spec()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "the plan changed since this job began (algorithm p384 -> p256); it was not run: restore its entry in the plan, or start it under another label"
        );
    }
}
