//! The two kinds of worker a run has, and the queues between them.
//!
//! A job's token work runs on a *token worker*: making its key and CSR, and at the end installing
//! its certificate and writing its record. Its CertCentral work runs on an *API worker*: the
//! order, the wait for issuance and the chain's download. A job waiting on CertCentral holds no
//! token worker, so other jobs' keys are made meanwhile; it comes back to a token worker for the
//! install, which finds its key again by label and ID as a resumed run does.
//!
//! ```text
//! plan ──> new ──> token worker: start ──> to_api ──> API worker ──> to_finish ──> token worker: finish
//! ```
//!
//! Token workers take a job coming back before a new one, and take a new one only while the API
//! side has room (`api_backlog`), so that keys are not made far ahead of their orders.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::pipeline::journal::JobRow;
use crate::pipeline::plan::JobSpec;

/// Where a job's CSR comes from in this run.
#[derive(Debug, Clone, Copy)]
pub(super) enum CsrOrigin {
    /// Built and self-checked (signature, key) in this run.
    BuiltNow,
    /// Read back from the journal: inspected again before it is ordered.
    Journaled,
}

/// A job between its stages: its journal row and what the next stage needs of its key.
pub(super) struct Handoff {
    /// The job's row, as journaled.
    pub(super) row: JobRow,
    /// The job key's public key (SPKI DER): the leaf must carry it.
    pub(super) public_key: Vec<u8>,
    /// Where the CSR came from.
    pub(super) csr: CsrOrigin,
    /// The token's key-generation time, when the job made its key in this run.
    pub(super) key_generation_us: Option<u64>,
}

/// What a token worker does next.
pub(super) enum TokenWork {
    /// A job from the plan: its key and CSR.
    Start(JobSpec),
    /// A job back from CertCentral: its install and record.
    Finish(Box<Handoff>),
}

#[derive(Default)]
struct Queues {
    /// Jobs from the plan not yet taken.
    new: VecDeque<JobSpec>,
    /// The plan may still add jobs.
    feeding: bool,
    /// Jobs with a CSR, waiting for an API worker.
    to_api: VecDeque<Box<Handoff>>,
    /// Jobs with their chain, waiting for a token worker.
    to_finish: VecDeque<Box<Handoff>>,
    /// Token workers in a job's start.
    starting: usize,
    /// API workers with a job.
    in_api: usize,
    /// A worker ended without handing its job on (it panicked): everyone stops.
    broken: bool,
}

impl Queues {
    /// No job can reach the API side any more.
    fn api_side_closed(&self) -> bool {
        self.broken || (!self.feeding && self.new.is_empty() && self.starting == 0)
    }

    /// No job can reach a token worker any more.
    fn token_side_closed(&self) -> bool {
        self.broken
            || (self.api_side_closed()
                && self.to_api.is_empty()
                && self.in_api == 0
                && self.to_finish.is_empty())
    }
}

/// The queues of one run.
pub(super) struct Stages {
    queues: Mutex<Queues>,
    changed: Condvar,
    /// New jobs read ahead of the token workers.
    read_ahead: usize,
    /// Jobs started or waiting for the API side at most, before token workers wait.
    api_backlog: usize,
}

impl Stages {
    /// Queues for a run whose API side can take `api_backlog` jobs before token workers wait.
    pub(super) fn new(read_ahead: usize, api_backlog: usize) -> Stages {
        Stages {
            queues: Mutex::new(Queues {
                feeding: true,
                ..Queues::default()
            }),
            changed: Condvar::new(),
            read_ahead: read_ahead.max(1),
            api_backlog: api_backlog.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'g>(&self, guard: MutexGuard<'g, Queues>) -> MutexGuard<'g, Queues> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a job from the plan, waiting while enough are read ahead; `false` when the run
    /// stopped and takes no more.
    pub(super) fn push_new(&self, spec: JobSpec) -> bool {
        let mut queues = self.lock();
        while queues.new.len() >= self.read_ahead && !queues.broken {
            queues = self.wait(queues);
        }
        if queues.broken {
            return false;
        }
        queues.new.push_back(spec);
        drop(queues);
        self.changed.notify_all();
        true
    }

    /// The plan has no more jobs.
    pub(super) fn close_feed(&self) {
        self.lock().feeding = false;
        self.changed.notify_all();
    }

    /// A token worker's next work, or `None` when the run has none left for it.
    pub(super) fn next_token_work(&self) -> Option<TokenWork> {
        let mut queues = self.lock();
        loop {
            if queues.broken {
                return None;
            }
            if let Some(back) = queues.to_finish.pop_front() {
                return Some(TokenWork::Finish(back));
            }
            if queues.to_api.len() + queues.starting < self.api_backlog
                && let Some(spec) = queues.new.pop_front()
            {
                queues.starting += 1;
                drop(queues);
                self.changed.notify_all();
                return Some(TokenWork::Start(spec));
            }
            if queues.token_side_closed() {
                return None;
            }
            queues = self.wait(queues);
        }
    }

    /// A token worker ended a job's start: the job goes to the API side, or (`None`) it ended.
    pub(super) fn started(&self, next: Option<Box<Handoff>>) {
        let mut queues = self.lock();
        queues.starting -= 1;
        if let Some(handoff) = next {
            queues.to_api.push_back(handoff);
        }
        drop(queues);
        self.changed.notify_all();
    }

    /// An API worker's next job, or `None` when no more can come.
    pub(super) fn next_api_work(&self) -> Option<Box<Handoff>> {
        let mut queues = self.lock();
        loop {
            if queues.broken {
                return None;
            }
            if let Some(handoff) = queues.to_api.pop_front() {
                queues.in_api += 1;
                drop(queues);
                self.changed.notify_all();
                return Some(handoff);
            }
            if queues.api_side_closed() {
                return None;
            }
            queues = self.wait(queues);
        }
    }

    /// An API worker ended its part of a job: the job goes back for its install, or (`None`) it
    /// ended (failed, pending).
    pub(super) fn ordered(&self, next: Option<Box<Handoff>>) {
        let mut queues = self.lock();
        queues.in_api -= 1;
        if let Some(handoff) = next {
            queues.to_finish.push_back(handoff);
        }
        drop(queues);
        self.changed.notify_all();
    }

    /// Stops every worker and the plan's reader: a worker died holding a job.
    fn break_down(&self) {
        self.lock().broken = true;
        self.changed.notify_all();
    }

    /// A guard that stops the run when the worker holding it unwinds from a panic, so that no
    /// other worker waits forever for the job it held.
    pub(super) fn panic_guard(&self) -> PanicGuard<'_> {
        PanicGuard { stages: self }
    }
}

/// See [`Stages::panic_guard`].
pub(super) struct PanicGuard<'s> {
    stages: &'s Stages,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.stages.break_down();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::journal::Journal;
    use crate::pipeline::plan::KeyLocation;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn spec(n: usize) -> JobSpec {
        JobSpec {
            job_id: format!("job-{n}"),
            algorithm: crate::keys::KeyAlgorithm::P256,
            subject: "CN=Example Corp,C=US".parse().unwrap(),
            location: KeyLocation::File {
                path: format!("/nonexistent/{n}.pem").into(),
            },
            label: format!("job-{n}"),
            renewal_of: None,
            reissue_of: None,
        }
    }

    /// Every job passes start, API and finish once; token workers never wait on a job at the API
    /// side; all workers end when the last job is finished.
    #[test]
    fn every_job_passes_each_stage_once_and_every_worker_ends() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.sqlite")).unwrap();
        let stages = Stages::new(4, 3);
        let (started, ordered, finished) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    let _guard = stages.panic_guard();
                    while let Some(work) = stages.next_token_work() {
                        match work {
                            TokenWork::Start(spec) => {
                                started.fetch_add(1, Ordering::SeqCst);
                                let row = journal.ensure(&spec).unwrap();
                                // Every third job ends at its start (as a failed key would).
                                let n: usize = spec.job_id[4..].parse().unwrap();
                                stages.started((!n.is_multiple_of(3)).then(|| {
                                    Box::new(Handoff {
                                        row,
                                        public_key: Vec::new(),
                                        csr: CsrOrigin::BuiltNow,
                                        key_generation_us: None,
                                    })
                                }));
                            }
                            TokenWork::Finish(_) => {
                                finished.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
            for _ in 0..3 {
                scope.spawn(|| {
                    let _guard = stages.panic_guard();
                    while let Some(handoff) = stages.next_api_work() {
                        ordered.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        stages.ordered(Some(handoff));
                    }
                });
            }
            for n in 0..30 {
                assert!(stages.push_new(spec(n)));
            }
            stages.close_feed();
        });
        assert_eq!(started.load(Ordering::SeqCst), 30);
        assert_eq!(ordered.load(Ordering::SeqCst), 20);
        assert_eq!(finished.load(Ordering::SeqCst), 20);
    }

    /// A worker that panics holding a job stops the run instead of leaving the others waiting.
    #[test]
    fn a_panicking_worker_stops_the_run() {
        let stages = Stages::new(1, 1);
        let result = std::thread::scope(|scope| {
            let api = scope.spawn(|| {
                let _guard = stages.panic_guard();
                while stages.next_api_work().is_some() {}
            });
            let token = scope.spawn(|| {
                let _guard = stages.panic_guard();
                if let Some(TokenWork::Start(_)) = stages.next_token_work() {
                    panic!("a worker dies holding its job");
                }
            });
            let mut fed = 0;
            for n in 0..10 {
                if !stages.push_new(spec(n)) {
                    break;
                }
                fed += 1;
            }
            stages.close_feed();
            assert!(api.join().is_ok());
            assert!(token.join().is_err());
            fed
        });
        assert!(result < 10, "the reader stopped once the run broke down");
    }
}
