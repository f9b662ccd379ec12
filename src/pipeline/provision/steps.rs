//! The steps of a job, each a small function run by [`Worker::run_step`]:
//! key -> CSR -> order validated -> order submitted -> issued -> chain downloaded -> certificate
//! installed -> record written.

use std::path::Path;

use serde_json::json;

use crate::KeysCsrCheck;
use crate::keys::files::{Overwrite, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, write_atomically};
use crate::keys::pkcs11::{KeyRequest, TokenKey, TokenSession};
use crate::keys::{KeySigner, KeysError, SoftwareKey, csr, spki};
use crate::order::model::CertificateDetails;
use crate::order::{CertificateId, Chain, OrderId, OrderProgress, ValidatedOrder};
use crate::pipeline::error::PipelineError;
use crate::pipeline::journal::{JobRow, Step};
use crate::pipeline::plan::KeyLocation;

use super::worker::{Ended, Flow, Worker};

/// Where the job's CSR comes from in this run.
#[derive(Debug, Clone, Copy)]
enum CsrOrigin {
    /// Built and self-checked (signature, key) in this run.
    BuiltNow,
    /// Read back from the journal: inspected again before it is ordered.
    Journaled,
}

/// A job's key where it lives: on a token (through this worker's session) or in a file.
enum JobKey<'s> {
    Token {
        session: &'s TokenSession,
        key: TokenKey<'s>,
    },
    File {
        path: &'s Path,
        key: Box<SoftwareKey>,
    },
}

impl JobKey<'_> {
    fn signer(&self) -> &dyn KeySigner {
        match self {
            JobKey::Token { key, .. } => key,
            JobKey::File { key, .. } => key.as_ref(),
        }
    }

    /// Puts the certificate beside the key: on the token with the key's CKA_ID and label
    /// (nothing added when it is there already), or as `<key>.chain.pem` beside a key file.
    fn install(&self, row: &JobRow, chain: &Chain) -> Result<String, PipelineError> {
        match self {
            JobKey::Token { session, key } => {
                let token = session.token().description();
                match session.certificate_for(key)? {
                    Some(existing) if existing == chain.leaf => {
                        Ok("already on the token".to_string())
                    }
                    Some(_) => Err(PipelineError::AnotherCertificateOnToken {
                        token,
                        key_id: hex(&row.key_id),
                    }),
                    None => {
                        session.install_certificate(key, &chain.leaf)?;
                        Ok(format!("on {token} with CKA_ID {}", hex(&row.key_id)))
                    }
                }
            }
            JobKey::File { path, .. } => {
                let chain_path = path.with_extension("chain.pem");
                write_atomically(
                    &chain_path,
                    chain.pem.as_bytes(),
                    PUBLIC_FILE_MODE,
                    Overwrite::Replace,
                )?;
                Ok(chain_path.display().to_string())
            }
        }
    }

    /// The key as the record describes it.
    fn describe(&self, row: &JobRow) -> serde_json::Value {
        match self {
            JobKey::Token { session, key } => {
                let summary = session.token().summary();
                json!({
                    "uri": key.uri().to_uri_string(false),
                    "token": {
                        "label": summary.label, "serial": summary.serial,
                        "model": summary.model, "manufacturer": summary.manufacturer,
                    },
                    "audit": row.audit_json.as_deref().and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok()),
                })
            }
            JobKey::File { path, .. } => json!({ "path": path, "software_key": true }),
        }
    }
}

impl Worker<'_> {
    /// Runs the job's remaining steps.
    pub(super) fn advance(&mut self, row: &mut JobRow) -> Result<(), PipelineError> {
        // A CSR built (and self-checked: signature and key) in this run needs no second
        // inspection before it is ordered; one read back from the journal gets it.
        let csr = if row.step < Step::CsrBuilt {
            CsrOrigin::BuiltNow
        } else {
            CsrOrigin::Journaled
        };
        match row.spec.location.clone() {
            KeyLocation::Token { uri } => {
                self.open_session(&uri)?;
                let session = self.session(&uri)?;
                let key = self.token_key(session, row)?;
                self.order_steps(row, &JobKey::Token { session, key }, csr)
            }
            KeyLocation::File { path } => {
                let key = self.file_key(&path, row)?;
                let key = JobKey::File {
                    path: &path,
                    key: Box::new(key),
                };
                self.order_steps(row, &key, csr)
            }
        }
    }

    /// The job's token key, with its CSR journaled: found by its journaled CKA_ID (it may exist
    /// from a run that died), or generated and audited, holding the label's lock.
    fn token_key<'s>(
        &self,
        session: &'s TokenSession,
        row: &mut JobRow,
    ) -> Result<TokenKey<'s>, PipelineError> {
        match session.find_key(Some(&row.key_id), None) {
            Ok(key) => {
                // Made by a run that died before journaling it: audited, then journaled.
                self.run_step(row, Step::KeyGenerated, None, |row| {
                    row.audit_json = Some(audit_json(&session.audit_key(&key)?)?);
                    Ok(Ended::Done(
                        "key found on the token after an interrupted run".to_string(),
                    ))
                })?;
                self.csr_step(row, &key)?;
                Ok(key)
            }
            Err(KeysError::KeyNotFound { .. }) => {
                if row.step > Step::KeyGenerated {
                    return Err(PipelineError::KeyGone {
                        place: format!(
                            "{} (CKA_ID {})",
                            session.token().description(),
                            hex(&row.key_id)
                        ),
                    });
                }
                // At `KeyGenerated` without a CSR, the key was destroyed when its CSR failed
                // (a pending key removes itself): it is made again.
                row.step = Step::Planned;
                // Held from before the duplicate check (in generate_key_pair) until the key is
                // journaled: another process making a key of this label on this token now is
                // refused instead of making a second key pair.
                let _label_lock =
                    session.lock_label(&self.context.config.lock_dir, &row.spec.label)?;
                let mut made = None;
                self.run_step(row, Step::KeyGenerated, Some(&hex(&row.key_id)), |row| {
                    let request = KeyRequest {
                        algorithm: row.spec.algorithm,
                        label: row.spec.label.clone(),
                        id: Some(row.key_id.clone()),
                    };
                    let pending = session.generate_key_pair(&request)?;
                    row.audit_json = Some(audit_json(pending.audit())?);
                    made = Some(pending);
                    Ok(Ended::Done(format!("CKA_ID {}", hex(&row.key_id))))
                })?;
                let pending =
                    made.ok_or_else(|| PipelineError::missing(&row.spec.job_id, "key"))?;
                // If the CSR fails, the pending key destroys both halves.
                self.csr_step(row, &*pending)?;
                Ok(pending.keep().0)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The job's software key, with its CSR journaled: read from its file, or generated, named in
    /// the journal by its fingerprint, then written. A file this journal did not name is refused.
    fn file_key(&self, path: &Path, row: &mut JobRow) -> Result<SoftwareKey, PipelineError> {
        let journal = &self.context.journal;
        let fingerprint = |key: &SoftwareKey| {
            format!(
                "public key SHA-256 {}",
                spki::sha256_hex(&key.subject_public_key_info())
            )
        };
        let key = if path.exists() {
            let key = SoftwareKey::read_pem_file(path, None)?;
            if row.step < Step::KeyGenerated {
                // Not yet recorded as this job's key: it is ours only if this journal's begin
                // of the key named this very key (a run that died between writing the file and
                // recording it). Anything else was made by someone else (another plan, a
                // person): ordering a certificate for it could buy a second one for one key.
                let begun = journal.begun_detail(&row.spec.job_id, Step::KeyGenerated)?;
                if !begun.is_some_and(|detail| detail.ends_with(&fingerprint(&key))) {
                    return Err(PipelineError::ForeignKeyFile {
                        path: path.to_path_buf(),
                    });
                }
            }
            key
        } else {
            if row.step > Step::KeyGenerated {
                return Err(PipelineError::KeyGone {
                    place: path.display().to_string(),
                });
            }
            let key = SoftwareKey::generate(row.spec.algorithm)?;
            // On disk before the file exists, naming the key, so a resumed run knows the file
            // for its own.
            journal.begin(
                &row.spec.job_id,
                Step::KeyGenerated,
                &format!("{}; {}", path.display(), fingerprint(&key)),
            )?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|cause| PipelineError::Io {
                    path: dir.to_path_buf(),
                    action: "cannot make the key directory",
                    cause,
                })?;
            }
            let pem = key.to_pkcs8_pem(None)?;
            write_atomically(path, pem.as_bytes(), PRIVATE_FILE_MODE, Overwrite::Refuse)?;
            key
        };
        self.run_step(row, Step::KeyGenerated, None, |_| {
            Ok(Ended::Done(path.display().to_string()))
        })?;
        self.csr_step(row, &key)?;
        Ok(key)
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

    /// The steps after the CSR: the order, its issuance, the chain, the install, the record.
    fn order_steps(
        &self,
        row: &mut JobRow,
        key: &JobKey<'_>,
        csr: CsrOrigin,
    ) -> Result<(), PipelineError> {
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
                self.submit(row, &order, sent_before)
            },
        )?;
        if self.run_step(row, Step::OrderIssued, Some(""), |row| self.issuance(row))? == Flow::Stop
        {
            return Ok(());
        }
        let mut chain = None;
        // The leaf's facts, read once when it is downloaded in this run.
        let mut leaf_facts = None;
        self.run_step(row, Step::ChainDownloaded, Some(""), |row| {
            let (downloaded, facts) = self.download(row, key)?;
            let ended = Ended::Done(format!("leaf SHA-256 {}", facts.sha256));
            chain = Some(downloaded);
            leaf_facts = Some(facts);
            Ok(ended)
        })?;
        let chain = match chain {
            Some(chain) => chain,
            None => {
                let pem = row
                    .chain_pem
                    .as_deref()
                    .ok_or_else(|| PipelineError::missing(&row.spec.job_id, "certificate chain"))?;
                Chain::from_pem(pem.as_bytes())?
            }
        };
        self.run_step(row, Step::CertificateInstalled, Some(""), |row| {
            Ok(Ended::Done(key.install(row, &chain)?))
        })?;
        self.run_step(row, Step::Done, Some("writing the record"), |row| {
            let facts = match leaf_facts.take() {
                Some(facts) => facts,
                None => spki::certificate_facts(&chain.leaf)?,
            };
            self.write_record(row, key, &facts)
        })?;
        Ok(())
    }

    /// The job's order: the plan's body with the job's CSR and alternative order ID, validated
    /// (the CSR inspected too when it comes from the journal).
    fn order_for(&self, row: &JobRow, csr: CsrOrigin) -> Result<ValidatedOrder, PipelineError> {
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
        match progress {
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
        key: &JobKey<'_>,
    ) -> Result<(Chain, spki::CertificateFacts), PipelineError> {
        let cert = CertificateId(
            row.certificate_id
                .ok_or_else(|| PipelineError::missing(&row.spec.job_id, "certificate ID"))?,
        );
        let chain = self
            .context
            .runtime
            .block_on(self.context.client.download_chain(cert))?;
        let facts = spki::certificate_facts(&chain.leaf)?;
        if facts.subject_public_key_info != key.signer().subject_public_key_info() {
            return Err(PipelineError::CertificateForAnotherKey {
                certificate_id: cert.0,
            });
        }
        row.chain_pem = Some(chain.pem.clone());
        Ok((chain, facts))
    }

    /// Writes the provisioning record (and its detached signature first, when records are
    /// signed, so that a record never stands unsigned).
    fn write_record(
        &self,
        row: &mut JobRow,
        key: &JobKey<'_>,
        leaf: &spki::CertificateFacts,
    ) -> Result<Ended, PipelineError> {
        let config = &self.context.config;
        let record = self.record(row, key, leaf)?;
        let path = config.records_dir.join(format!("{}.json", row.spec.job_id));
        std::fs::create_dir_all(&config.records_dir).map_err(|cause| PipelineError::Io {
            path: config.records_dir.clone(),
            action: "cannot make the records directory",
            cause,
        })?;
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
        key: &JobKey<'_>,
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
            .map(|(step, at)| json!({ "step": step, "at": at }))
            .collect();
        Ok(json!({
            "job_id": row.spec.job_id,
            "algorithm": row.spec.algorithm.cli_name(),
            "key": key.describe(row),
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

fn audit_json(audit: &crate::keys::pkcs11::KeyAudit) -> Result<String, PipelineError> {
    serde_json::to_string(audit).map_err(|cause| PipelineError::Encode {
        what: "key audit",
        cause,
    })
}

use crate::keys::text::hex;
