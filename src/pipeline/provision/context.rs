//! What a run works with: its configuration, and the journal, client and runtime every worker
//! shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::keys::SoftwareKey;
use crate::keys::pkcs11::{NoPinSource, PinSource};
use crate::order::Client;
use crate::pipeline::journal::Journal;

/// How to run. [`ProvisionerConfig::new`] gives the defaults.
#[derive(Clone)]
pub struct ProvisionerConfig {
    /// Token workers: jobs making keys and CSRs, or installing certificates, at a time (one
    /// session each on every token they use).
    pub workers: usize,
    /// API workers: jobs ordering, waiting for issuance or downloading at a time. They hold no
    /// token session, so a job waiting on CertCentral holds up no other job's key.
    pub api_workers: usize,
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
    /// Where a token's PIN comes from when its URI names none (asked once per token and run).
    pub pin_source: Arc<dyn PinSource>,
    /// Order certificates for software keys (key files, known software tokens) from a
    /// CertCentral that is not on this machine: only for a private test CA, as a publicly trusted
    /// one refuses them ([`crate::keys::storage::HARDWARE_KEY_RULE`]). Off by default.
    pub allow_software_keys: bool,
}

impl std::fmt::Debug for ProvisionerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionerConfig")
            .field("workers", &self.workers)
            .field("api_workers", &self.api_workers)
            .field("wait", &self.wait)
            .field("records_dir", &self.records_dir)
            .field("module", &self.module)
            .field("record_signer", &self.record_signer)
            .field("lock_dir", &self.lock_dir)
            .field("allow_software_keys", &self.allow_software_keys)
            .finish_non_exhaustive()
    }
}

impl ProvisionerConfig {
    /// API workers by default: enough to keep CertCentral's short window (100 requests per
    /// 5 s) full at 150 ms or more per answer, few enough that threads are no concern.
    pub const DEFAULT_API_WORKERS: usize = 16;

    /// One token worker, [`ProvisionerConfig::DEFAULT_API_WORKERS`] API workers, no waiting for issuance, records in `records_dir`, no default module, records
    /// unsigned, the default lock directory, and no PIN but the tokens' URIs' own.
    pub fn new(records_dir: impl Into<PathBuf>) -> ProvisionerConfig {
        ProvisionerConfig {
            workers: 1,
            api_workers: ProvisionerConfig::DEFAULT_API_WORKERS,
            wait: Duration::ZERO,
            records_dir: records_dir.into(),
            module: None,
            record_signer: None,
            lock_dir: ProvisionerConfig::default_lock_dir(),
            pin_source: Arc::new(NoPinSource),
            allow_software_keys: false,
        }
    }

    /// The lock directory every process of this machine finds by default:
    /// `codesign-kit` in `/run/lock` (the FHS place for lock files, world-writable and sticky),
    /// else `/tmp/codesign-kit-locks`. It depends on no environment variable, so every process
    /// and user of the machine finds the same one.
    pub fn default_lock_dir() -> PathBuf {
        let run_lock = std::path::Path::new("/run/lock");
        if run_lock.is_dir() {
            run_lock.join("codesign-kit")
        } else {
            PathBuf::from("/tmp/codesign-kit-locks")
        }
    }
}

/// What the workers of a run share.
pub(super) struct Context {
    pub(super) journal: Arc<Journal>,
    pub(super) client: Client,
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) config: ProvisionerConfig,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_configuration_does_not_show_the_record_signing_key() {
        let key = SoftwareKey::generate(crate::keys::KeyAlgorithm::P256).unwrap();
        let pem = key.to_pkcs8_pem(None).unwrap();
        let config = ProvisionerConfig {
            record_signer: Some(Arc::new(key)),
            ..ProvisionerConfig::new("records")
        };
        let debug = format!("{config:?}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!debug.contains(&body[..40]));
    }
}
