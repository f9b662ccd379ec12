//! The steps of a job, each a small function run by [`Worker::run_step`]:
//! key -> CSR -> order validated -> order submitted -> issued -> chain downloaded -> certificate
//! installed -> record written.

use std::path::Path;

use serde_json::json;

use crate::KeysCsrCheck;
use crate::keys::files::{Overwrite, PUBLIC_FILE_MODE, write_atomically};
use crate::keys::store::{DirectoryStore, KeyName, KeyStore, StoredKey, TokenStore};
use crate::keys::{KeySigner, csr, spki};
use crate::order::model::CertificateDetails;
use crate::order::{CertificateId, Chain, OrderId, OrderProgress, ValidatedOrder};
use crate::pipeline::error::PipelineError;
use crate::pipeline::journal::{JobRow, Step};
use crate::pipeline::plan::KeyLocation;

use super::stages::CsrOrigin;
use super::worker::{Ended, Flow, Worker};

impl Worker<'_> {
    /// A job's first token work: its key (found, or made) and its CSR. Gives the key's public
    /// key, which the leaf must carry.
    pub(super) fn start_steps(&mut self, row: &mut JobRow) -> Result<Vec<u8>, PipelineError> {
        match row.spec.location.clone() {
            KeyLocation::Token { uri } => {
                self.open_session(&uri)?;
                let session = self.session(&uri)?;
                let store = TokenStore::new(session, &self.context.config.lock_dir);
                let key = self.job_key(&store, row)?;
                Ok(key.signer().subject_public_key_info())
            }
            KeyLocation::File { path } => {
                let store = DirectoryStore::new(key_directory(&path));
                let key = self.job_key(&store, row)?;
                Ok(key.signer().subject_public_key_info())
            }
        }
    }

    /// A job's last token work, once its chain is journaled: the key found again by label and ID,
    /// the certificate installed beside it, the record written.
    pub(super) fn finish_steps(
        &mut self,
        row: &mut JobRow,
        public_key: &[u8],
    ) -> Result<(), PipelineError> {
        match row.spec.location.clone() {
            KeyLocation::Token { uri } => {
                self.open_session(&uri)?;
                let session = self.session(&uri)?;
                let store = TokenStore::new(session, &self.context.config.lock_dir);
                self.install_steps(&store, row, public_key)
            }
            KeyLocation::File { path } => {
                let store = DirectoryStore::new(key_directory(&path));
                self.install_steps(&store, row, public_key)
            }
        }
    }

    /// The job's key, with its CSR journaled: found in the store (it may exist from a run that
    /// died before journaling it: then it must be the one this journal announced), or made in
    /// two halves around the journal's begin, so that the key is recorded before it can outlive
    /// a crash.
    fn job_key<'s>(
        &self,
        store: &'s dyn KeyStore,
        row: &mut JobRow,
    ) -> Result<Box<dyn StoredKey + 's>, PipelineError> {
        let journal = &self.context.journal;
        let name = KeyName {
            label: row.spec.label.clone(),
            id: row.key_id.clone(),
        };
        // A run killed inside the generation announced this key's ID and never saw it end: what
        // it left under that ID short of a whole key (half a pair, a key without its parameters)
        // is this job's, and goes before the key is looked for.
        let mut discarded = 0;
        if row.step < Step::KeyGenerated
            && journal.has_begun(&row.spec.job_id, Step::KeyGenerated)?
        {
            discarded = store.discard_interrupted(&name)?;
        }
        if let Some(key) = store.find(&name)? {
            if row.step < Step::KeyGenerated {
                let announced = journal.begun_detail(&row.spec.job_id, Step::KeyGenerated)?;
                if !store.made_by(key.as_ref(), announced.as_deref()) {
                    return Err(PipelineError::ForeignKey {
                        place: format!("{}: {}", store.describe(), key.describe()),
                    });
                }
            }
            self.run_step(row, Step::KeyGenerated, None, |row| {
                row.audit_json = key.audit()?.as_ref().map(audit_json).transpose()?;
                Ok(Ended::Done(format!(
                    "key found in {} after an interrupted run",
                    store.describe()
                )))
            })?;
            self.csr_step(row, key.signer())?;
            return Ok(key);
        }
        if row.step > Step::KeyGenerated {
            return Err(PipelineError::KeyGone {
                place: format!(
                    "{} (label {}, ID {})",
                    store.describe(),
                    row.spec.label,
                    hex(&row.key_id)
                ),
            });
        }
        // At `KeyGenerated` without a CSR, the key was destroyed when its CSR failed (a new key
        // takes itself back when dropped): it is made again.
        row.step = Step::Planned;
        let creation = store.prepare(&name, row.spec.algorithm)?;
        let mut note = creation.note();
        if discarded > 0 {
            note = format!(
                "{note} (after destroying {discarded} object(s) an interrupted generation left)"
            );
        }
        let mut made = None;
        let mut generation = None;
        self.run_step(row, Step::KeyGenerated, Some(&note), |row| {
            let new = creation.create()?;
            row.audit_json = new.audit().map(audit_json).transpose()?;
            generation = new.generation_time();
            made = Some(new);
            Ok(Ended::Done(note.clone()))
        })?;
        self.key_generation.set(generation);
        let new = made.ok_or_else(|| PipelineError::missing(&row.spec.job_id, "key"))?;
        // If the CSR fails, the new key is dropped and takes itself back.
        self.csr_step(row, new.signer())?;
        Ok(new.keep()?)
    }

    /// Builds the CSR, signed by the key and checked, and journals it.
    fn csr_step(&self, row: &mut JobRow, key: &dyn KeySigner) -> Result<Flow, PipelineError> {
        let subject = row.spec.subject.to_string();
        self.run_step(row, Step::CsrBuilt, Some(&subject), |row| {
            let request = csr::build(key, &row.spec.subject)?;
            let digest = spki::sha256_hex(request.der());
            row.csr_pem = Some(request.pem());
            Ok(Ended::Done(format!("CSR SHA-256 {digest}")))
        })
    }

    /// A job's CertCentral work, on an API worker: the order, its issuance, the chain. Says
    /// [`Flow::Stop`] when the order is still pending and the job stops for this run.
    pub(super) fn order_steps(
        &self,
        row: &mut JobRow,
        public_key: &[u8],
        csr: CsrOrigin,
    ) -> Result<Flow, PipelineError> {
        if let Some(reissued) = row.spec.reissue_of.clone() {
            self.reissue_steps(row, &reissued, csr)?;
        } else {
            self.new_order_steps(row, csr)?;
        }
        if self.run_step(row, Step::OrderIssued, Some(""), |row| self.issuance(row))? == Flow::Stop
        {
            return Ok(Flow::Stop);
        }
        self.run_step(row, Step::ChainDownloaded, Some(""), |row| {
            let facts = self.download(row, public_key)?;
            Ok(Ended::Done(format!("leaf SHA-256 {}", facts.sha256)))
        })
    }

    /// A reissue job's "order": the job renewed's order, reissued for this job's key (its CSR),
    /// asked for exactly once (see [`crate::order::Client::reissue`]).
    fn reissue_steps(
        &self,
        row: &mut JobRow,
        reissued: &crate::pipeline::plan::Predecessor,
        csr: CsrOrigin,
    ) -> Result<(), PipelineError> {
        let order_id = OrderId(reissued.order_id);
        self.run_step(row, Step::OrderValidated, None, |row| {
            let csr_pem = row
                .csr_pem
                .as_deref()
                .ok_or_else(|| PipelineError::missing(&row.spec.job_id, "CSR"))?;
            if let CsrOrigin::Journaled = csr
                && let Err(reasons) = crate::order::CsrCheck::check(&KeysCsrCheck, csr_pem)
            {
                return Err(PipelineError::Key(crate::keys::KeysError::CsrBuild(
                    reasons.join("; "),
                )));
            }
            Ok(Ended::Done(format!(
                "reissue of order {order_id} ({})",
                reissued.job_id
            )))
        })?;
        let sent_before = row.step < Step::OrderSubmitted
            && self
                .context
                .journal
                .has_begun(&row.spec.job_id, Step::OrderSubmitted)?;
        let begin = format!("reissue of order {order_id}");
        self.run_step(row, Step::OrderSubmitted, Some(&begin), |row| {
            let csr_pem = row
                .csr_pem
                .clone()
                .ok_or_else(|| PipelineError::missing(&row.spec.job_id, "CSR"))?;
            let mut body = serde_json::json!({
                "comments": format!("codesign-kit: new key for {}", reissued.job_id),
            });
            if self.order.request.skip_approval == Some(true) {
                body["skip_approval"] = serde_json::json!(true);
            }
            let placed = self.context.runtime.block_on(self.context.client.reissue(
                order_id,
                &csr_pem,
                body,
                sent_before,
            ))?;
            row.order_id = Some(order_id.0);
            row.certificate_id = placed.certificate_id.map(|c| c.0);
            Ok(Ended::Done(format!(
                "reissue of order {order_id} requested{}",
                if placed.recovered {
                    " (found in the order's reissue list)"
                } else {
                    ""
                }
            )))
        })?;
        Ok(())
    }

    /// A new order (a first one, or a renewal's): validated, placed exactly once.
    fn new_order_steps(&self, row: &mut JobRow, csr: CsrOrigin) -> Result<(), PipelineError> {
        // The order is validated once per run, when a step still needs it.
        let mut order = None;
        self.run_step(row, Step::OrderValidated, None, |row| {
            order = Some(self.order_for(row, csr)?);
            Ok(Ended::Done(format!(
                "alternative order ID {}",
                row.alternative_order_id
            )))
        })?;
        // The submission's begin is on disk before any send, so without an earlier one no run
        // has sent this order: the first send needs no lookup.
        let sent_before = row.step < Step::OrderSubmitted
            && self
                .context
                .journal
                .has_begun(&row.spec.job_id, Step::OrderSubmitted)?;
        let alternative_order_id = row.alternative_order_id.clone();
        self.run_step(
            row,
            Step::OrderSubmitted,
            Some(&alternative_order_id),
            |row| {
                let order = match order.take() {
                    Some(order) => order,
                    None => self.order_for(row, csr)?,
                };
                match self.submit(row, &order, sent_before) {
                    // CertCentral refused the renewal link: the renewal is ordered without it,
                    // and says so.
                    Err(PipelineError::CertCentral(e)) if renewal_link_refused(&e).is_some() => {
                        let code = renewal_link_refused(&e).unwrap_or_default();
                        let unlinked = self.unlinked_order_for(row, csr)?;
                        match self.submit(row, &unlinked, true)? {
                            Ended::Done(detail) => Ok(Ended::Done(format!(
                                "{detail} (CertCentral refused the renewal link: {code}; ordered without renewal_of_order_id)"
                            ))),
                            pending => Ok(pending),
                        }
                    }
                    other => other,
                }
            },
        )?;
        Ok(())
    }

    /// The install and the record, with the job's key found in `store` by its label and ID.
    fn install_steps(
        &self,
        store: &dyn KeyStore,
        row: &mut JobRow,
        public_key: &[u8],
    ) -> Result<(), PipelineError> {
        let name = KeyName {
            label: row.spec.label.clone(),
            id: row.key_id.clone(),
        };
        let gone = || PipelineError::KeyGone {
            place: format!(
                "{} (label {}, ID {})",
                store.describe(),
                row.spec.label,
                hex(&row.key_id)
            ),
        };
        let key = store.find(&name)?.ok_or_else(gone)?;
        if key.signer().subject_public_key_info() != public_key {
            return Err(gone());
        }
        let pem = row
            .chain_pem
            .as_deref()
            .ok_or_else(|| PipelineError::missing(&row.spec.job_id, "certificate chain"))?;
        let chain = Chain::from_pem(pem.as_bytes())?;
        self.run_step(row, Step::CertificateInstalled, Some(""), |_| {
            Ok(Ended::Done(key.install(&chain.leaf, &chain.pem)?))
        })?;
        self.run_step(row, Step::Done, Some("writing the record"), |row| {
            let facts = spki::certificate_facts(&chain.leaf)?;
            self.write_record(row, key.as_ref(), &facts)
        })?;
        Ok(())
    }

    /// The job's order: the plan's body with the job's CSR and alternative order ID, validated
    /// (the CSR inspected too when it comes from the journal).
    fn order_for(&self, row: &JobRow, csr: CsrOrigin) -> Result<ValidatedOrder, PipelineError> {
        self.order_with_link(row, csr, true)
    }

    /// The job's order without its renewal link.
    fn unlinked_order_for(
        &self,
        row: &JobRow,
        csr: CsrOrigin,
    ) -> Result<ValidatedOrder, PipelineError> {
        self.order_with_link(row, csr, false)
    }

    fn order_with_link(
        &self,
        row: &JobRow,
        csr: CsrOrigin,
        renewal_link: bool,
    ) -> Result<ValidatedOrder, PipelineError> {
        let csr_pem = row
            .csr_pem
            .clone()
            .ok_or_else(|| PipelineError::missing(&row.spec.job_id, "CSR"))?;
        let mut request = self.order.request.clone();
        request
            .certificate
            .get_or_insert_with(CertificateDetails::default)
            .csr = Some(csr_pem);
        request.alternative_order_id = Some(row.alternative_order_id.clone());
        if renewal_link && let Some(renewal) = &row.spec.renewal_of {
            request.renewal_of_order_id = Some(i64::try_from(renewal.order_id).unwrap_or(i64::MAX));
        }
        let check: Option<&dyn crate::order::CsrCheck> = match csr {
            CsrOrigin::BuiltNow => None,
            CsrOrigin::Journaled => Some(&KeysCsrCheck),
        };
        Ok(ValidatedOrder::new(
            self.order.product.clone(),
            request,
            check,
        )?)
    }

    /// Places the order, exactly once (see [`crate::order::Client::place_order`]).
    fn submit(
        &self,
        row: &mut JobRow,
        order: &ValidatedOrder,
        sent_before: bool,
    ) -> Result<Ended, PipelineError> {
        let client = &self.context.client;
        let runtime = &self.context.runtime;
        let placed = if sent_before {
            runtime.block_on(client.place_order(order))?
        } else {
            runtime.block_on(client.place_new_order(order))?
        };
        row.order_id = Some(placed.order_id.0);
        row.certificate_id = placed.certificate_id.map(|c| c.0);
        Ok(Ended::Done(format!(
            "order {}{}",
            placed.order_id,
            if placed.recovered {
                " (found by its alternative order ID)"
            } else {
                ""
            }
        )))
    }

    /// Asks whether the order is issued, waiting up to `--wait` with backoff; a pending order
    /// stops the job for this run.
    fn issuance(&self, row: &mut JobRow) -> Result<Ended, PipelineError> {
        let client = &self.context.client;
        let runtime = &self.context.runtime;
        let wait = self.context.config.wait;
        let order_id = OrderId(
            row.order_id
                .ok_or_else(|| PipelineError::missing(&row.spec.job_id, "order ID"))?,
        );
        let progress = if wait.is_zero() {
            runtime.block_on(client.check_order(order_id))?
        } else {
            match runtime.block_on(client.wait_for_issuance(order_id, wait)) {
                Ok(cert) => OrderProgress::Issued(cert),
                Err(crate::order::CertCentralError::StillPending { .. }) => {
                    runtime.block_on(client.check_order(order_id))?
                }
                Err(e) => return Err(e.into()),
            }
        };
        // A reissue's order shows the certificate being replaced until the new one is issued.
        let replaced = match &row.spec.reissue_of {
            Some(reissued) => self
                .context
                .journal
                .load(&reissued.job_id)?
                .and_then(|old| old.certificate_id),
            None => None,
        };
        match progress {
            OrderProgress::Issued(cert) if Some(cert.0) == replaced => Ok(Ended::Pending {
                note: format!(
                    "order {order_id} still shows certificate {cert}, the one being replaced; resume the run later to pick up the reissue"
                ),
                status: "reissue_pending".to_string(),
            }),
            OrderProgress::Issued(cert) => {
                row.certificate_id = Some(cert.0);
                Ok(Ended::Done(format!("certificate {cert}")))
            }
            OrderProgress::Pending(status) => Ok(Ended::Pending {
                note: format!("order {order_id} is {status}; resume the run later to pick it up"),
                status: status.to_string(),
            }),
            OrderProgress::Failed(status) => Err(PipelineError::OrderNotIssued {
                order_id: order_id.0,
                status: status.to_string(),
            }),
        }
    }

    /// Downloads the chain and checks that its leaf carries the job's public key.
    fn download(
        &self,
        row: &mut JobRow,
        public_key: &[u8],
    ) -> Result<spki::CertificateFacts, PipelineError> {
        let cert = CertificateId(
            row.certificate_id
                .ok_or_else(|| PipelineError::missing(&row.spec.job_id, "certificate ID"))?,
        );
        let chain = self
            .context
            .runtime
            .block_on(self.context.client.download_chain(cert))?;
        let facts = spki::certificate_facts(&chain.leaf)?;
        if facts.subject_public_key_info != public_key {
            return Err(PipelineError::CertificateForAnotherKey {
                certificate_id: cert.0,
            });
        }
        chain.ensure_path_order()?;
        row.chain_pem = Some(chain.pem);
        Ok(facts)
    }

    /// Writes the provisioning record (and its detached signature first, when records are
    /// signed, so that a record never stands unsigned).
    fn write_record(
        &self,
        row: &mut JobRow,
        key: &dyn StoredKey,
        leaf: &spki::CertificateFacts,
    ) -> Result<Ended, PipelineError> {
        let config = &self.context.config;
        let path = config.records_dir.join(format!("{}.json", row.spec.job_id));
        std::fs::create_dir_all(&config.records_dir).map_err(|cause| PipelineError::Io {
            path: config.records_dir.clone(),
            action: "cannot make the records directory",
            cause,
        })?;
        // The chain beside the record (leaf first, PEM): what signing tools take with the key.
        let chain_path = config
            .records_dir
            .join(format!("{}.chain.pem", row.spec.job_id));
        let chain_pem = row
            .chain_pem
            .as_deref()
            .ok_or_else(|| PipelineError::missing(&row.spec.job_id, "certificate chain"))?;
        write_atomically(
            &chain_path,
            chain_pem.as_bytes(),
            PUBLIC_FILE_MODE,
            Overwrite::Replace,
        )?;
        let mut record = self.record(row, key, leaf)?;
        record["chain_file"] = json!(chain_path.display().to_string());
        let text =
            serde_json::to_string_pretty(&record).map_err(|cause| PipelineError::Encode {
                what: "provisioning record",
                cause,
            })?;
        if let Some(signer) = &config.record_signer {
            let signature = signer.sign(text.as_bytes())?;
            let mut sig_path = path.clone().into_os_string();
            sig_path.push(".sig");
            write_atomically(
                Path::new(&sig_path),
                &signature,
                PUBLIC_FILE_MODE,
                Overwrite::Replace,
            )?;
        }
        write_atomically(&path, text.as_bytes(), PUBLIC_FILE_MODE, Overwrite::Replace)?;
        Ok(Ended::Done(path.display().to_string()))
    }

    fn record(
        &self,
        row: &JobRow,
        key: &dyn StoredKey,
        facts: &spki::CertificateFacts,
    ) -> Result<serde_json::Value, PipelineError> {
        let csr_sha256 = row
            .csr_pem
            .as_deref()
            .and_then(|p| csr::to_der(p.as_bytes()).ok())
            .map(|der| spki::sha256_hex(&der));
        let steps: Vec<serde_json::Value> = self
            .context
            .journal
            .step_times(&row.spec.job_id)?
            .into_iter()
            .map(|(step, at)| json!({ "step": step, "at": rfc3339(at) }))
            .collect();
        Ok(json!({
            "job_id": row.spec.job_id,
            "algorithm": row.spec.algorithm.cli_name(),
            "key": key_record(key, row),
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
                "not_before": rfc3339(facts.not_before_unix),
                "not_after": rfc3339(facts.not_after_unix),
            },
            "steps": steps,
            "renewal_of": row.spec.renewal_of.as_ref().map(|r| json!({
                "job_id": r.job_id,
                "order_id": r.order_id,
            })),
            "reissue_of": row.spec.reissue_of.as_ref().map(|r| json!({
                "job_id": r.job_id,
                "order_id": r.order_id,
            })),
            "written_at": rfc3339(time::OffsetDateTime::now_utc().unix_timestamp()),
        }))
    }
}

/// The key as the record describes it: where it is, and for a token key its attribute audit.
fn key_record(key: &dyn StoredKey, row: &JobRow) -> serde_json::Value {
    let mut described = key.describe();
    if let Some(audit) = row
        .audit_json
        .as_deref()
        .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
    {
        described["audit"] = audit;
    }
    described
}

fn audit_json(audit: &crate::keys::pkcs11::KeyAudit) -> Result<String, PipelineError> {
    serde_json::to_string(audit).map_err(|cause| PipelineError::Encode {
        what: "key audit",
        cause,
    })
}

use crate::keys::text::hex;

/// The code of CertCentral's refusal of a renewal link, when that is what `e` is. DigiCert
/// documents no codes for it; these are the ones client code treats so.
fn renewal_link_refused(e: &crate::order::CertCentralError) -> Option<String> {
    const REFUSALS: [&str; 6] = [
        "order_not_eligible_for_renewal",
        "order_renewed_already",
        "order_not_renewable",
        "renewal_window_closed",
        "cannot_renew_expired_order",
        "product_not_eligible_for_renewal",
    ];
    match e {
        crate::order::CertCentralError::Api { errors, .. } => errors
            .iter()
            .find(|item| REFUSALS.contains(&item.code.as_str()))
            .map(|item| item.code.clone()),
        _ => None,
    }
}

/// A Unix time as RFC 3339 (UTC), or null when out of range.
fn rfc3339(unix: i64) -> serde_json::Value {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(serde_json::Value::Null, serde_json::Value::from)
}

/// The directory of a key file.
fn key_directory(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}
