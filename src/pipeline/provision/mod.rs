//! Running jobs through the steps: key -> CSR -> order -> issuance -> chain -> install -> record,
//! each step journaled, every job resumable from its last completed step.
//!
//! - this module: the [`Provisioner`];
//! - `context`: its configuration, and what its workers share;
//! - `report`: what a run tells (progress, outcomes, the summary);
//! - `preflight`: before any token is touched or anything sent: tokens found, algorithms offered,
//!   the hardware-key rule;
//! - `logins`: one login per token per run, shared by the workers;
//! - `stages`: token workers and API workers, and the queues between them: a job waiting on
//!   CertCentral holds no token worker;
//! - `worker`: a job's stages, and the step runner every step goes through;
//! - `steps`: the steps themselves, each a small function.

mod context;
mod logins;
mod preflight;
mod report;
mod stages;
mod steps;
mod worker;

use std::sync::Arc;
use std::time::Duration;

pub use context::ProvisionerConfig;
pub use report::{JobOutcome, JobReport, Observer, OrderTemplate, PrintObserver, RunSummary};

use crate::order::Client;
use crate::pipeline::error::PipelineError;
use crate::pipeline::journal::{JobState, Journal};
use crate::pipeline::plan::{JobSpec, Plan};
use context::Context;

/// Runs plans against a journal and a CertCentral client.
pub struct Provisioner {
    context: Context,
    /// On a shared journal, the URIs (text) of the plan's tokens that are not on this host, as
    /// the runs so far found them: their jobs are left to other hosts, never taken over here.
    tokens_not_here: std::sync::Mutex<std::collections::HashSet<String>>,
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
            tokens_not_here: Default::default(),
            context: Context {
                journal: Arc::new(journal),
                client,
                runtime,
                config,
            },
        })
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.context.journal
    }

    /// Where job `job_id` stands: its key, order, certificate and files, from the journal (and
    /// the records directory for the files a done job wrote); `None` for a job the journal does
    /// not hold.
    ///
    /// # Errors
    /// [`PipelineError`] when the journal cannot be read.
    pub fn job_report(&self, job_id: &str) -> Result<Option<JobReport>, PipelineError> {
        let Some(row) = self.context.journal.load(job_id)? else {
            return Ok(None);
        };
        let key = match &row.spec.location {
            crate::pipeline::plan::KeyLocation::Token { uri } => {
                let mut named = (**uri).clone();
                named.object = Some(row.spec.label.clone());
                named.id = (!row.key_id.is_empty()).then(|| row.key_id.clone());
                named.object_type = Some(crate::keys::pkcs11::ObjectType::Private);
                named.to_uri_string(false)
            }
            crate::pipeline::plan::KeyLocation::File { path } => path.display().to_string(),
        };
        let records = &self.context.config.records_dir;
        // Absolute, so that whoever reads the report finds the files from any directory.
        let written = |name: String| {
            let path = records.join(name);
            (row.state == JobState::Done && path.is_file())
                .then(|| std::path::absolute(&path).unwrap_or(path))
        };
        Ok(Some(JobReport {
            job_id: row.spec.job_id.clone(),
            state: row.state,
            step: row.step,
            key,
            order_id: row.order_id,
            certificate_id: row.certificate_id,
            chain_file: written(format!("{job_id}.chain.pem")),
            record_file: written(format!("{job_id}.json")),
            note: row.note.clone(),
            held_by: None,
        }))
    }

    /// Ends the provisioner and gives its journal back (for [`Journal::discard_if_empty`]);
    /// `None` only while a run still holds it, which cannot outlast [`Provisioner::run_jobs`].
    pub fn into_journal(self) -> Option<Journal> {
        Arc::into_inner(self.context.journal)
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
        // What a run killed in the middle of writing a file left (a key file, a record): the
        // files themselves are written again by the jobs that need them.
        let records = self.context.config.records_dir.as_path();
        for dir in std::iter::once(records).chain(plan.key_directories()) {
            match crate::keys::files::remove_stray_temporaries(dir) {
                Ok(removed) => {
                    for path in removed {
                        observer.notice(&format!(
                            "removed {}: a temporary file an interrupted run left",
                            path.display()
                        ));
                    }
                }
                Err(e) => observer.notice(&format!("stray temporary files are left: {e}")),
            }
        }
        let mut summary = self.run_jobs(plan.jobs(), &order, observer)?;
        if !self.context.journal.is_single_host() {
            self.take_over(plan, &order, observer, &mut summary)?;
        }
        // A job that began (its key or order exists) and is no longer in the plan is not dropped
        // silently: it is reported, and stays in the journal for when it is put back.
        for (job_id, step, order_id) in self.context.journal.in_flight()? {
            if plan.contains(&job_id) {
                continue;
            }
            let outcome = JobOutcome {
                job_id,
                state: JobState::Failed,
                step,
                order_id,
                certificate_id: None,
                key_generation_us: None,
                held_by: None,
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

    /// With a shared journal, after the plan's pass: the plan's jobs that no host holds (left
    /// without a key by a host whose lease lapsed, or never claimed) are run here, and jobs that
    /// live hosts hold without a key yet are waited for, so that a host killed before it made
    /// their keys does not leave them undone. Ends when every unpinned job is done or this host's.
    fn take_over(
        &self,
        plan: &Plan,
        order: &OrderTemplate,
        observer: &dyn Observer,
        summary: &mut RunSummary,
    ) -> Result<(), PipelineError> {
        let journal = &self.context.journal;
        let pause = journal.lease().map_or(Duration::from_secs(1), |lease| {
            (lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(5))
        });
        let mut waiting_said = false;
        loop {
            let claimable = journal.claimable()?;
            let free: std::collections::HashSet<String> = claimable
                .free
                .into_iter()
                .filter(|id| plan.contains(id))
                .collect();
            // Jobs whose token is not on this host are the other hosts' to take.
            let not_here = self
                .tokens_not_here
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let here = |job: &JobSpec| match &job.location {
                crate::pipeline::plan::KeyLocation::Token { uri } => {
                    !not_here.contains(&uri.to_uri_string(false))
                }
                crate::pipeline::plan::KeyLocation::File { .. } => true,
            };
            let takeable = if free.is_empty() {
                0
            } else {
                plan.jobs()
                    .filter(|job| free.contains(&job.job_id) && here(job))
                    .count()
            };
            if takeable > 0 {
                observer.notice(&format!(
                    "taking over {takeable} job(s) that no host holds any more (no key made yet)"
                ));
                let jobs = plan
                    .jobs()
                    .filter(|job| free.contains(&job.job_id) && here(job));
                let later = self.run_jobs(jobs, order, observer)?;
                summary.merge(later);
                waiting_said = false;
                continue;
            }
            // What live hosts hold without a key yet is waited for (and taken over if a host's
            // lease lapses), unless its token is not on this host: then nothing could be done.
            let held: std::collections::HashSet<String> =
                claimable.held_elsewhere.into_iter().collect();
            let waiting = if held.is_empty() {
                0
            } else if not_here.is_empty() {
                held.len()
            } else {
                plan.jobs()
                    .filter(|job| held.contains(&job.job_id) && here(job))
                    .count()
            };
            if waiting == 0 {
                return Ok(());
            }
            if !waiting_said {
                observer.notice(&format!(
                    "waiting for {waiting} job(s) other hosts hold without a key yet (taken over if a host's lease lapses)"
                ));
                waiting_said = true;
            }
            std::thread::sleep(pause);
        }
    }

    /// Runs every job of `jobs` that is not done, from its last journaled step: `workers` token
    /// workers make keys and CSRs and install certificates, `api_workers` API workers order and
    /// wait for issuance (see `stages`). Jobs are pulled from the iterator as workers free up, so memory does not grow with
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
        let found = preflight::check(
            jobs.clone(),
            self.context.config.module.as_deref(),
            &preflight::OrderTarget {
                url: self.context.client.base_url(),
                allow_software_keys: self.context.config.allow_software_keys,
            },
            !self.context.journal.is_single_host(),
            observer,
        )?;
        self.tokens_not_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(found.absent.keys().cloned());
        let logins = logins::log_in(
            jobs.clone(),
            &found,
            self.context.config.pin_source.as_ref(),
            observer,
        )?;
        let workers = preflight::workers_within_session_limits(
            self.context.config.workers.max(1),
            &found.tokens,
            observer,
        )?;
        let api_workers = self.context.config.api_workers.max(1);
        let stages = stages::Stages::new(workers * 2, api_workers * 2);
        let summary = std::sync::Mutex::new(RunSummary::default());
        let conclude = |outcome: JobOutcome| {
            observer.finished(&outcome);
            summary
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(outcome);
        };
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    let _guard = stages.panic_guard();
                    let mut worker = worker::Worker::new(&self.context, order, &logins, observer);
                    while let Some(work) = stages.next_token_work() {
                        match work {
                            stages::TokenWork::Start(spec) => match worker.start(&spec) {
                                worker::Next::Handoff(handoff) => stages.started(Some(handoff)),
                                worker::Next::Ended(outcome) => {
                                    stages.started(None);
                                    conclude(outcome);
                                }
                            },
                            stages::TokenWork::Finish(handoff) => conclude(worker.finish(handoff)),
                        }
                    }
                });
            }
            for _ in 0..api_workers {
                scope.spawn(|| {
                    let _guard = stages.panic_guard();
                    let worker = worker::Worker::new(&self.context, order, &logins, observer);
                    while let Some(handoff) = stages.next_api_work() {
                        match worker.order(handoff) {
                            worker::Next::Handoff(handoff) => stages.ordered(Some(handoff)),
                            worker::Next::Ended(outcome) => {
                                stages.ordered(None);
                                conclude(outcome);
                            }
                        }
                    }
                });
            }
            for spec in jobs {
                if !stages.push_new(spec) {
                    break;
                }
            }
            stages.close_feed();
        });
        // Each job flushed its last write when it stopped; this covers any write still waiting.
        self.context.journal.flush()?;
        let mut summary = summary.into_inner().unwrap_or_else(|p| p.into_inner());
        summary.pending.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        summary.failed.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        Ok(summary)
    }
}
