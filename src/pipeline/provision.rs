//! Running jobs through the steps: key -> CSR -> order -> issuance -> chain -> install -> record,
//! each step journaled, every job resumable from its last completed step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use serde_json::json;

use crate::KeysCsrCheck;
use crate::keys::files::{Overwrite, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, write_atomically};
use crate::keys::pkcs11::{KeyRequest, Module, Pin, Pkcs11Uri, TokenKey, TokenRef, TokenSession};
use crate::keys::{KeySigner, KeysError, SoftwareKey, SubjectDn, csr, spki};
use crate::order::model::CertificateDetails;
use crate::order::{
    CertificateId, Client, OrderId, OrderProgress, OrderRequest, Product, ValidatedOrder,
};
use crate::pipeline::PipelineError;
use crate::pipeline::journal::{JobRow, JobState, Journal, Step};
use crate::pipeline::plan::{JobSpec, KeyLocation, Plan};

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

/// One token's login for a run: made once, before any job, whatever the number of jobs and
/// workers, so a wrong PIN costs one try of the token's counter, not one per job.
enum TokenLogin {
    /// Logged in; workers open their own sessions beside this one (`open_another`).
    Ready(std::sync::Mutex<TokenSession>),
    /// The login was refused (wrong, locked or expired PIN, ...): every job of the token stops
    /// with this reason, untouched, for this run.
    Refused(String),
}

/// The tokens of a run: each URI of the plan mapped to its token's one login.
#[derive(Default)]
struct TokenLogins {
    by_uri: HashMap<String, usize>,
    logins: Vec<TokenLogin>,
}

impl TokenLogins {
    fn of(&self, uri: &str) -> Option<&TokenLogin> {
        self.by_uri.get(uri).map(|i| &self.logins[*i])
    }
}

/// Runs plans against a journal and a CertCentral client.
pub struct Provisioner {
    journal: Arc<Journal>,
    client: Client,
    runtime: tokio::runtime::Runtime,
    config: ProvisionerConfig,
}

/// One token, opened once per worker.
struct TokenHandle {
    token: TokenRef,
    session: TokenSession,
}

struct Worker<'p> {
    provisioner: &'p Provisioner,
    order: &'p OrderTemplate,
    logins: &'p TokenLogins,
    tokens: HashMap<String, TokenHandle>,
    observer: &'p dyn Observer,
}

fn failed_key(e: KeysError) -> PipelineError {
    PipelineError::Key(e.to_string())
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
            .map_err(|e| PipelineError::Runtime(e.to_string()))?;
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
                    let mut worker = Worker {
                        provisioner: self,
                        order,
                        logins: &logins,
                        tokens: HashMap::new(),
                        observer,
                    };
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

impl Provisioner {
    /// Logs in to every token of `jobs` once, asking each token's PIN once. A token that is
    /// missing, or whose PIN cannot be had, stops the run before any job; a login that fails
    /// (wrong, locked, expired PIN) stops that token's jobs for this run, said once to the
    /// observer, and the other tokens' jobs go on.
    fn log_in<I>(&self, jobs: I, observer: &dyn Observer) -> Result<TokenLogins, PipelineError>
    where
        I: Iterator<Item = JobSpec>,
    {
        let mut logins = TokenLogins::default();
        let mut by_token: HashMap<(PathBuf, String, String), usize> = HashMap::new();
        for spec in jobs {
            let KeyLocation::Token { uri } = &spec.location else {
                continue;
            };
            if logins.by_uri.contains_key(uri) {
                continue;
            }
            let parsed: Pkcs11Uri = uri.parse().map_err(failed_key)?;
            let module =
                Module::resolve(&parsed, self.config.module.as_deref()).map_err(failed_key)?;
            let token = module.find_token(&parsed).map_err(failed_key)?;
            let identity = (
                module.path().to_path_buf(),
                token.summary().serial.clone(),
                token.summary().label.clone(),
            );
            let index = match by_token.get(&identity) {
                Some(index) => *index,
                None => {
                    let pin = Pin::resolve(&parsed, &token.description()).map_err(failed_key)?;
                    let login = match token.login(&pin) {
                        Ok(session) => TokenLogin::Ready(std::sync::Mutex::new(session)),
                        Err(e) => {
                            observer.notice(&format!(
                                "{}: cannot log in, so none of its jobs runs now: {e}",
                                token.description()
                            ));
                            TokenLogin::Refused(format!(
                                "not run: {} could not be logged in ({e})",
                                token.description()
                            ))
                        }
                    };
                    logins.logins.push(login);
                    by_token.insert(identity, logins.logins.len() - 1);
                    logins.logins.len() - 1
                }
            };
            logins.by_uri.insert(uri.clone(), index);
        }
        Ok(logins)
    }
}

impl Worker<'_> {
    fn process(&mut self, spec: &JobSpec) -> JobOutcome {
        let journal = &self.provisioner.journal;
        let stopped = |step: Step, order_id: Option<u64>, note: String| JobOutcome {
            job_id: spec.job_id.clone(),
            state: JobState::Failed,
            step,
            order_id,
            certificate_id: None,
            note: Some(note),
        };
        // A job whose token refused the login is not touched (not even journaled) this run.
        if let KeyLocation::Token { uri } = &spec.location
            && let Some(TokenLogin::Refused(reason)) = self.logins.of(uri)
        {
            return stopped(Step::Planned, None, reason.clone());
        }
        let mut row = match journal.ensure(spec) {
            Ok(row) => row,
            Err(e) => return stopped(Step::Planned, None, e.to_string()),
        };
        if row.spec != *spec {
            let changes = spec_changes(&row.spec, spec);
            if row.step == Step::Planned && row.state != JobState::Done {
                // Nothing was made yet: the plan's new spec is simply taken.
                if let Err(e) = journal.replace_unstarted_spec(spec) {
                    return stopped(row.step, row.order_id, e.to_string());
                }
                row.spec = spec.clone();
            } else if !changes.is_empty() {
                return stopped(
                    row.step,
                    row.order_id,
                    format!(
                        "the plan changed since this job began ({}); it was not run: restore its entry in the plan, or start it under another label",
                        changes.join("; ")
                    ),
                );
            }
        }
        if row.state != JobState::Done
            && let Err(e) = self.advance(&mut row)
        {
            row.state = JobState::Failed;
            row.note = Some(e.to_string());
            // Report a journal that cannot take the failure together with the failure itself.
            if let Err(journal_error) = journal.save(&row, &e.to_string()) {
                row.note = Some(format!(
                    "{e}; and the journal could not record it: {journal_error}"
                ));
            }
        }
        JobOutcome {
            job_id: row.spec.job_id.clone(),
            state: row.state,
            step: row.step,
            order_id: row.order_id,
            certificate_id: row.certificate_id,
            note: row.note.clone(),
        }
    }

    fn save(&self, row: &mut JobRow, step: Step, detail: &str) -> Result<(), PipelineError> {
        row.step = step;
        row.state = if step == Step::Done {
            JobState::Done
        } else {
            JobState::Open
        };
        row.note = None;
        self.provisioner.journal.save(row, detail)?;
        self.observer.step(&row.spec.job_id, step, detail);
        Ok(())
    }

    /// This worker's session on the job's token, opened beside the run's one login.
    fn token(&mut self, uri: &str) -> Result<&TokenHandle, PipelineError> {
        if !self.tokens.contains_key(uri) {
            let session = match self.logins.of(uri) {
                Some(TokenLogin::Ready(login)) => login
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .open_another()
                    .map_err(failed_key)?,
                Some(TokenLogin::Refused(reason)) => {
                    return Err(PipelineError::Key(reason.clone()));
                }
                None => {
                    return Err(PipelineError::Key(format!(
                        "no login for {uri}: the token was not among the run's tokens"
                    )));
                }
            };
            let token = session.token().clone();
            self.tokens
                .insert(uri.to_string(), TokenHandle { token, session });
        }
        Ok(&self.tokens[uri])
    }

    fn advance(&mut self, row: &mut JobRow) -> Result<(), PipelineError> {
        let location = row.spec.location.clone();
        match location {
            KeyLocation::Token { uri } => {
                self.token(&uri)?;
                let handle = &self.tokens[&uri];
                let key = self.token_key(handle, row)?;
                self.order_steps(row, &key, &KeyPlace::Token(handle, &key))
            }
            KeyLocation::File { path } => {
                let key = self.file_key(&path, row)?;
                self.order_steps(row, &key, &KeyPlace::File(&path))
            }
        }
    }

    /// The job's token key: found by its journaled CKA_ID (it may exist from a run that died), or
    /// generated, audited and given its CSR.
    fn token_key<'s>(
        &self,
        handle: &'s TokenHandle,
        row: &mut JobRow,
    ) -> Result<TokenKey<'s>, PipelineError> {
        let session = &handle.session;
        match session.find_key(Some(&row.key_id), None) {
            Ok(key) => {
                if row.step < Step::CsrBuilt {
                    let audit = session.audit_key(&key).map_err(failed_key)?;
                    row.audit_json = Some(serde_json::to_string(&audit).expect("audit serializes"));
                    self.save(
                        row,
                        Step::KeyGenerated,
                        "key found on the token after an interrupted run",
                    )?;
                    self.build_csr(row, &key)?;
                }
                Ok(key)
            }
            Err(KeysError::KeyNotFound { .. }) => {
                if row.step > Step::KeyGenerated {
                    return Err(PipelineError::Key(format!(
                        "the journal says the key was made, but {} holds no key with CKA_ID {}",
                        handle.token.description(),
                        hex(&row.key_id)
                    )));
                }
                // Held from before the duplicate check (in generate_key_pair) until the key is
                // journaled: another process making a key of this label on this token now is
                // refused instead of making a second key pair.
                let _label_lock = session
                    .lock_label(&self.provisioner.config.lock_dir, &row.spec.label)
                    .map_err(failed_key)?;
                self.provisioner.journal.begin(
                    &row.spec.job_id,
                    Step::KeyGenerated,
                    &hex(&row.key_id),
                )?;
                let request = KeyRequest {
                    algorithm: row.spec.algorithm,
                    label: row.spec.label.clone(),
                    id: Some(row.key_id.clone()),
                };
                let pending = session.generate_key_pair(&request).map_err(failed_key)?;
                row.audit_json =
                    Some(serde_json::to_string(pending.audit()).expect("audit serializes"));
                // If anything fails before `keep`, the pending key destroys itself.
                self.save(
                    row,
                    Step::KeyGenerated,
                    &format!("CKA_ID {}", hex(&row.key_id)),
                )?;
                self.build_csr(row, &*pending)?;
                let (key, _) = pending.keep();
                Ok(key)
            }
            Err(e) => Err(failed_key(e)),
        }
    }

    fn file_key(&self, path: &Path, row: &mut JobRow) -> Result<SoftwareKey, PipelineError> {
        let journal = &self.provisioner.journal;
        let fingerprint = |key: &SoftwareKey| {
            format!(
                "public key SHA-256 {}",
                spki::sha256_hex(&key.subject_public_key_info())
            )
        };
        let key = if path.exists() {
            let key = SoftwareKey::read_pem_file(path, None).map_err(failed_key)?;
            if row.step < Step::KeyGenerated {
                // Not yet recorded as this job's key: it is ours only if this journal's begin
                // of the key named this very key (a run that died between writing the file and
                // recording it). Anything else was made by someone else (another plan, a
                // person): ordering a certificate for it could buy a second one for one key.
                let begun = journal.begun_detail(&row.spec.job_id, Step::KeyGenerated)?;
                if !begun.is_some_and(|detail| detail.ends_with(&fingerprint(&key))) {
                    return Err(PipelineError::Key(format!(
                        "{} exists, but this plan's journal did not make it (another plan or a person did); refusing to use it: move it away or give the job another label",
                        path.display()
                    )));
                }
            }
            key
        } else {
            if row.step > Step::KeyGenerated {
                return Err(PipelineError::Key(format!(
                    "the journal says the key was made, but {} is gone",
                    path.display()
                )));
            }
            let key = SoftwareKey::generate(row.spec.algorithm).map_err(failed_key)?;
            // On disk before the file exists, naming the key, so a resumed run knows the file for
            // its own.
            journal.begin(
                &row.spec.job_id,
                Step::KeyGenerated,
                &format!("{}; {}", path.display(), fingerprint(&key)),
            )?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| PipelineError::Key(format!("{}: {e}", dir.display())))?;
            }
            let pem = key.to_pkcs8_pem(None).map_err(failed_key)?;
            write_atomically(path, pem.as_bytes(), PRIVATE_FILE_MODE, Overwrite::Refuse)
                .map_err(failed_key)?;
            key
        };
        if row.step < Step::KeyGenerated {
            self.save(row, Step::KeyGenerated, &path.display().to_string())?;
        }
        if row.step < Step::CsrBuilt {
            self.build_csr(row, &key)?;
        }
        Ok(key)
    }

    fn build_csr(&self, row: &mut JobRow, key: &dyn KeySigner) -> Result<(), PipelineError> {
        self.provisioner
            .journal
            .begin(&row.spec.job_id, Step::CsrBuilt, &row.spec.subject)?;
        let subject: SubjectDn = row.spec.subject.parse().map_err(failed_key)?;
        let request = csr::build(key, &subject).map_err(failed_key)?;
        let pem = request.pem();
        let digest = spki::sha256_hex(request.der());
        row.csr_pem = Some(pem);
        self.save(row, Step::CsrBuilt, &format!("CSR SHA-256 {digest}"))
    }

    fn order_steps(
        &self,
        row: &mut JobRow,
        key: &dyn KeySigner,
        place: &KeyPlace<'_>,
    ) -> Result<(), PipelineError> {
        let client = &self.provisioner.client;
        let runtime = &self.provisioner.runtime;
        let csr_pem = row
            .csr_pem
            .clone()
            .ok_or_else(|| PipelineError::Key("the journal holds no CSR".to_string()))?;
        let order = self.order_for(&csr_pem, &row.alternative_order_id)?;
        if row.step < Step::OrderValidated {
            self.provisioner
                .journal
                .begin(&row.spec.job_id, Step::OrderValidated, "")?;
            self.save(
                row,
                Step::OrderValidated,
                &format!("alternative order ID {}", row.alternative_order_id),
            )?;
        }
        if row.step < Step::OrderSubmitted {
            // The begin below is on disk before any send, so without an earlier one no run has
            // sent this order: the first send needs no lookup.
            let sent_before = self
                .provisioner
                .journal
                .has_begun(&row.spec.job_id, Step::OrderSubmitted)?;
            self.provisioner.journal.begin(
                &row.spec.job_id,
                Step::OrderSubmitted,
                &row.alternative_order_id,
            )?;
            let placed = if sent_before {
                runtime.block_on(client.place_order(&order))?
            } else {
                runtime.block_on(client.place_new_order(&order))?
            };
            row.order_id = Some(placed.order_id.0);
            row.certificate_id = placed.certificate_id.map(|c| c.0);
            let detail = format!(
                "order {}{}",
                placed.order_id,
                if placed.recovered {
                    " (found by its alternative order ID)"
                } else {
                    ""
                }
            );
            self.save(row, Step::OrderSubmitted, &detail)?;
        }
        if row.step < Step::OrderIssued {
            self.provisioner
                .journal
                .begin(&row.spec.job_id, Step::OrderIssued, "")?;
            let order_id = OrderId(
                row.order_id
                    .ok_or_else(|| PipelineError::Key("no order ID in the journal".to_string()))?,
            );
            let progress = if self.provisioner.config.wait.is_zero() {
                runtime.block_on(client.check_order(order_id))?
            } else {
                match runtime
                    .block_on(client.wait_for_issuance(order_id, self.provisioner.config.wait))
                {
                    Ok(cert) => OrderProgress::Issued(cert),
                    Err(crate::order::CertCentralError::StillPending { .. }) => {
                        runtime.block_on(client.check_order(order_id))?
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            match progress {
                OrderProgress::Issued(cert) => {
                    row.certificate_id = Some(cert.0);
                    self.save(row, Step::OrderIssued, &format!("certificate {cert}"))?;
                }
                OrderProgress::Pending(status) => {
                    row.state = JobState::Pending;
                    row.note = Some(format!(
                        "order {order_id} is {status}; run again with --resume"
                    ));
                    self.provisioner.journal.save(row, &status.to_string())?;
                    return Ok(());
                }
                OrderProgress::Failed(status) => {
                    return Err(PipelineError::Order(format!(
                        "order {order_id} is {status}"
                    )));
                }
            }
        }
        if row.step < Step::ChainDownloaded {
            self.provisioner
                .journal
                .begin(&row.spec.job_id, Step::ChainDownloaded, "")?;
            let cert = CertificateId(row.certificate_id.ok_or_else(|| {
                PipelineError::Key("no certificate ID in the journal".to_string())
            })?);
            let chain = runtime.block_on(client.download_chain(cert))?;
            let facts = spki::certificate_facts(&chain.leaf).map_err(PipelineError::Order)?;
            if facts.subject_public_key_info != key.subject_public_key_info() {
                return Err(PipelineError::Order(format!(
                    "certificate {cert} does not carry the job's public key; it was not installed"
                )));
            }
            row.chain_pem = Some(chain.pem);
            self.save(
                row,
                Step::ChainDownloaded,
                &format!("leaf SHA-256 {}", facts.sha256),
            )?;
        }
        let chain_pem = row.chain_pem.clone().ok_or_else(|| {
            PipelineError::Key("the journal holds no certificate chain".to_string())
        })?;
        let chain = crate::order::Chain::from_pem(chain_pem.as_bytes())?;
        if row.step < Step::CertificateInstalled {
            self.provisioner
                .journal
                .begin(&row.spec.job_id, Step::CertificateInstalled, "")?;
            let detail = match place {
                KeyPlace::Token(handle, token_key) => {
                    match handle
                        .session
                        .certificate_for(token_key)
                        .map_err(failed_key)?
                    {
                        Some(existing) if existing == chain.leaf => {
                            "already on the token".to_string()
                        }
                        Some(_) => {
                            return Err(PipelineError::Key(format!(
                                "{} already holds another certificate with CKA_ID {}",
                                handle.token.description(),
                                hex(&row.key_id)
                            )));
                        }
                        None => {
                            handle
                                .session
                                .install_certificate(token_key, &chain.leaf)
                                .map_err(failed_key)?;
                            format!(
                                "on {} with CKA_ID {}",
                                handle.token.description(),
                                hex(&row.key_id)
                            )
                        }
                    }
                }
                KeyPlace::File(path) => {
                    let chain_path = path.with_extension("chain.pem");
                    write_atomically(
                        &chain_path,
                        chain_pem.as_bytes(),
                        PUBLIC_FILE_MODE,
                        Overwrite::Replace,
                    )
                    .map_err(failed_key)?;
                    chain_path.display().to_string()
                }
            };
            self.save(row, Step::CertificateInstalled, &detail)?;
        }
        if row.step < Step::Done {
            self.provisioner
                .journal
                .begin(&row.spec.job_id, Step::Done, "writing the record")?;
            let record = self.record(row, place, &chain.leaf)?;
            let path = self
                .provisioner
                .config
                .records_dir
                .join(format!("{}.json", row.spec.job_id));
            std::fs::create_dir_all(&self.provisioner.config.records_dir).map_err(|e| {
                PipelineError::Key(format!(
                    "{}: {e}",
                    self.provisioner.config.records_dir.display()
                ))
            })?;
            let text = serde_json::to_string_pretty(&record).expect("a record serializes");
            if let Some(signer) = &self.provisioner.config.record_signer {
                // Detached: the signature file first, so a record never stands unsigned.
                let signature = signer.sign(text.as_bytes()).map_err(failed_key)?;
                let mut sig_path = path.clone().into_os_string();
                sig_path.push(".sig");
                write_atomically(
                    Path::new(&sig_path),
                    &signature,
                    PUBLIC_FILE_MODE,
                    Overwrite::Replace,
                )
                .map_err(failed_key)?;
            }
            write_atomically(&path, text.as_bytes(), PUBLIC_FILE_MODE, Overwrite::Replace)
                .map_err(failed_key)?;
            self.save(row, Step::Done, &path.display().to_string())?;
        }
        Ok(())
    }

    fn order_for(
        &self,
        csr_pem: &str,
        alternative_order_id: &str,
    ) -> Result<ValidatedOrder, PipelineError> {
        let mut request: OrderRequest = self.order.request.clone();
        request
            .certificate
            .get_or_insert_with(CertificateDetails::default)
            .csr = Some(csr_pem.to_string());
        request.alternative_order_id = Some(alternative_order_id.to_string());
        let product: Product = self.order.product.clone();
        ValidatedOrder::new(product, request, Some(&KeysCsrCheck))
            .map_err(|e| PipelineError::Order(e.to_string()))
    }

    fn record(
        &self,
        row: &JobRow,
        place: &KeyPlace<'_>,
        leaf: &[u8],
    ) -> Result<serde_json::Value, PipelineError> {
        let facts = spki::certificate_facts(leaf).map_err(PipelineError::Order)?;
        let csr_sha256 = row
            .csr_pem
            .as_deref()
            .and_then(|p| csr::to_der(p.as_bytes()).ok())
            .map(|der| spki::sha256_hex(&der));
        let steps: Vec<serde_json::Value> = self
            .provisioner
            .journal
            .step_times(&row.spec.job_id)?
            .into_iter()
            .map(|(step, at)| json!({ "step": step, "at": at }))
            .collect();
        let key = match place {
            KeyPlace::Token(handle, token_key) => {
                let summary = handle.token.summary();
                json!({
                    "uri": token_key.uri().to_uri_string(false),
                    "token": {
                        "label": summary.label, "serial": summary.serial,
                        "model": summary.model, "manufacturer": summary.manufacturer,
                    },
                    "audit": row.audit_json.as_deref().and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok()),
                })
            }
            KeyPlace::File(path) => json!({ "path": path, "software_key": true }),
        };
        Ok(json!({
            "job_id": row.spec.job_id,
            "algorithm": row.spec.algorithm.cli_name(),
            "key": key,
            "csr_sha256": csr_sha256,
            "public_key_sha256": spki::sha256_hex(&facts.subject_public_key_info),
            "order": {
                "product": self.order.product.as_str(),
                "order_id": row.order_id,
                "alternative_order_id": row.alternative_order_id,
                "certificate_id": row.certificate_id,
            },
            "certificate": {
                "subject": facts.subject,
                "serial": facts.serial_hex,
                "sha256": facts.sha256,
            },
            "steps": steps,
            "written_at": time::OffsetDateTime::now_utc().unix_timestamp(),
        }))
    }
}

enum KeyPlace<'a> {
    Token(&'a TokenHandle, &'a TokenKey<'a>),
    File(&'a Path),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
