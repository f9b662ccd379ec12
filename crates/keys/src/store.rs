//! Where keys live: one abstraction for a PKCS#11 token and a directory of key files, so that a
//! caller (the provisioning pipeline) finds, makes, uses and installs certificates beside keys
//! without knowing which. Another kind of store (another module, a cloud KMS) implements
//! [`KeyStore`] and plugs in.
//!
//! Making a key has two halves, so that a caller can record what it is about to make before it
//! exists anywhere it could outlive a crash: [`KeyStore::prepare`] (a token takes the label's
//! lock; a directory generates the key in memory) gives a [`Creation`] whose
//! [`note`](Creation::note) names the key; [`Creation::create`] then makes it (on the token; in
//! its file) as a [`NewKey`], which [`NewKey::keep`] turns into a [`StoredKey`].
//!
//! ```
//! use codesign_keys::store::{DirectoryStore, KeyName, KeyStore};
//! use codesign_keys::KeyAlgorithm;
//!
//! let dir = tempfile::tempdir()?;
//! let store = DirectoryStore::new(dir.path());
//! let name = KeyName { label: "build-signer".to_string(), id: vec![1, 2] };
//! assert!(store.find(&name)?.is_none());
//! let creation = store.prepare(&name, KeyAlgorithm::P256)?;
//! let note = creation.note();          // record it (a journal) before the key exists
//! let key = creation.create()?.keep()?;
//! assert!(store.made_by(key.as_ref(), Some(&note)));
//! assert!(store.find(&name)?.is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use crate::files::{Overwrite, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, write_atomically};
use crate::pkcs11::{KeyAudit, KeyRequest, LabelLock, PendingKey, TokenKey, TokenSession};
use crate::{KeyAlgorithm, KeySigner, KeysError, SoftwareKey, spki, text};

/// What names a key in a store: its label (`CKA_LABEL`, or the file stem) and the ID chosen for
/// it before it exists (`CKA_ID` on a token; a directory does not use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName {
    /// The label.
    pub label: String,
    /// The ID.
    pub id: Vec<u8>,
}

/// A place keys live.
pub trait KeyStore {
    /// The store, for messages.
    fn describe(&self) -> String;

    /// The key `name`, when the store holds it.
    ///
    /// # Errors
    /// [`KeysError`] when the store cannot be read.
    fn find(&self, name: &KeyName) -> Result<Option<Box<dyn StoredKey + '_>>, KeysError>;

    /// The first half of making a key `name`: what can be done before anything outlives a crash.
    ///
    /// # Errors
    /// [`KeysError`]: another process is making this label, the key cannot be generated.
    fn prepare(
        &self,
        name: &KeyName,
        algorithm: KeyAlgorithm,
    ) -> Result<Box<dyn Creation + '_>, KeysError>;

    /// Whether `key` is the one a creation of this store announced with `note` (the note a
    /// caller recorded, if any): a key found where the caller's would be may have been made by
    /// someone else.
    fn made_by(&self, key: &dyn StoredKey, note: Option<&str>) -> bool;

    /// Destroys what an interrupted creation of `name` left without its key (a public key whose
    /// private half was never written), and says how many objects went. Only for a name whose
    /// creation the caller announced and never saw end: the name is then the caller's alone. A
    /// store whose keys appear whole or not at all has nothing to discard.
    ///
    /// # Errors
    /// [`KeysError`] when the store cannot be read or the leftovers cannot be removed.
    fn discard_interrupted(&self, name: &KeyName) -> Result<usize, KeysError> {
        let _ = name;
        Ok(0)
    }
}

/// A key being made (see [`KeyStore::prepare`]).
pub trait Creation {
    /// What names the key, for the caller to record before [`Creation::create`].
    fn note(&self) -> String;

    /// Makes the key in the store.
    ///
    /// # Errors
    /// [`KeysError`]: the name is taken, the token cannot make it, the file cannot be written.
    fn create<'a>(self: Box<Self>) -> Result<Box<dyn NewKey + 'a>, KeysError>
    where
        Self: 'a;
}

/// A key just made: it signs, and until [`NewKey::keep`] a failure can still take it back
/// (dropped, a token key destroys both halves).
pub trait NewKey {
    /// The key, for signing its CSR.
    fn signer(&self) -> &dyn KeySigner;

    /// The token's attributes read back after generation, for keys on a token.
    fn audit(&self) -> Option<&KeyAudit>;

    /// How long the token's own key-pair generation took (the `C_GenerateKeyPair` call alone),
    /// for keys on a token.
    fn generation_time(&self) -> Option<std::time::Duration> {
        None
    }

    /// Keeps the key.
    ///
    /// # Errors
    /// [`KeysError`] when it cannot be kept.
    fn keep<'a>(self: Box<Self>) -> Result<Box<dyn StoredKey + 'a>, KeysError>
    where
        Self: 'a;
}

/// A key in a store.
pub trait StoredKey {
    /// The key, for signing.
    fn signer(&self) -> &dyn KeySigner;

    /// Where it is, for records: a token key's URI and token, or a file.
    fn describe(&self) -> serde_json::Value;

    /// Its attributes as the token reports them now, for keys on a token.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when they cannot be read.
    fn audit(&self) -> Result<Option<KeyAudit>, KeysError>;

    /// Puts the issued certificate beside the key (`leaf` DER; `chain_pem` leaf first) and says
    /// where; nothing is added when it is there already, and another certificate is refused.
    ///
    /// # Errors
    /// [`KeysError`]: another certificate is there, or it cannot be written.
    fn install(&self, leaf: &[u8], chain_pem: &str) -> Result<String, KeysError>;
}

/// The fingerprint a store's notes carry: the SHA-256 of the key's public key.
fn fingerprint(key: &dyn KeySigner) -> String {
    format!(
        "public key SHA-256 {}",
        spki::sha256_hex(&key.subject_public_key_info())
    )
}

/// Keys on a PKCS#11 token, through one logged-in session. Making a key holds the label's
/// [`LabelLock`] (in `lock_dir`) from before the duplicate check until the key is kept.
#[derive(Debug)]
pub struct TokenStore<'s> {
    session: &'s TokenSession,
    lock_dir: PathBuf,
}

impl<'s> TokenStore<'s> {
    /// The token of `session`; label locks in `lock_dir`.
    pub fn new(session: &'s TokenSession, lock_dir: impl Into<PathBuf>) -> TokenStore<'s> {
        TokenStore {
            session,
            lock_dir: lock_dir.into(),
        }
    }
}

impl<'s> KeyStore for TokenStore<'s> {
    fn describe(&self) -> String {
        self.session.token().description()
    }

    fn find(&self, name: &KeyName) -> Result<Option<Box<dyn StoredKey + '_>>, KeysError> {
        match self.session.find_key(Some(&name.id), None) {
            Ok(key) => Ok(Some(Box::new(TokenStoredKey {
                session: self.session,
                key,
            }))),
            Err(KeysError::KeyNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn prepare(
        &self,
        name: &KeyName,
        algorithm: KeyAlgorithm,
    ) -> Result<Box<dyn Creation + '_>, KeysError> {
        let lock = self.session.lock_label(&self.lock_dir, &name.label)?;
        Ok(Box::new(TokenCreation {
            session: self.session,
            lock,
            request: KeyRequest {
                algorithm,
                label: name.label.clone(),
                id: Some(name.id.clone()),
            },
        }))
    }

    /// A key found by the caller's CKA_ID is the caller's: the ID was chosen for it.
    fn made_by(&self, _key: &dyn StoredKey, _note: Option<&str>) -> bool {
        true
    }

    fn discard_interrupted(&self, name: &KeyName) -> Result<usize, KeysError> {
        self.session.discard_incomplete_pair(&name.id)
    }
}

struct TokenCreation<'s> {
    session: &'s TokenSession,
    lock: LabelLock,
    request: KeyRequest,
}

impl<'s> Creation for TokenCreation<'s> {
    fn note(&self) -> String {
        text::hex(self.request.id.as_deref().unwrap_or_default())
    }

    fn create<'a>(self: Box<Self>) -> Result<Box<dyn NewKey + 'a>, KeysError>
    where
        Self: 'a,
    {
        let pending = self.session.generate_key_pair(&self.request)?;
        Ok(Box::new(TokenNewKey {
            session: self.session,
            pending,
            _lock: self.lock,
        }))
    }
}

struct TokenNewKey<'s> {
    session: &'s TokenSession,
    pending: PendingKey<'s>,
    _lock: LabelLock,
}

impl<'s> NewKey for TokenNewKey<'s> {
    fn signer(&self) -> &dyn KeySigner {
        &*self.pending
    }

    fn audit(&self) -> Option<&KeyAudit> {
        Some(self.pending.audit())
    }

    fn generation_time(&self) -> Option<std::time::Duration> {
        Some(self.pending.generation_time())
    }

    fn keep<'a>(self: Box<Self>) -> Result<Box<dyn StoredKey + 'a>, KeysError>
    where
        Self: 'a,
    {
        let (key, _) = self.pending.keep();
        Ok(Box::new(TokenStoredKey {
            session: self.session,
            key,
        }))
    }
}

struct TokenStoredKey<'s> {
    session: &'s TokenSession,
    key: TokenKey<'s>,
}

impl<'s> StoredKey for TokenStoredKey<'s> {
    fn signer(&self) -> &dyn KeySigner {
        &self.key
    }

    fn describe(&self) -> serde_json::Value {
        let summary = self.session.token().summary();
        serde_json::json!({
            "uri": self.key.uri().to_uri_string(false),
            "token": {
                "label": summary.label, "serial": summary.serial,
                "model": summary.model, "manufacturer": summary.manufacturer,
            },
        })
    }

    fn audit(&self) -> Result<Option<KeyAudit>, KeysError> {
        self.session.audit_key(&self.key).map(Some)
    }

    /// The leaf beside the key; then the chain's intermediates, as authority certificates,
    /// each once on the token (the root, self-signed, is the verifier's to trust, not the
    /// token's to carry).
    fn install(&self, leaf: &[u8], chain_pem: &str) -> Result<String, KeysError> {
        let token = self.session.token().description();
        let said = match self.session.certificate_for(&self.key)? {
            Some(existing) if existing == leaf => "already on the token".to_string(),
            Some(_) => {
                return Err(KeysError::Certificate(format!(
                    "{token} already holds another certificate with CKA_ID {}",
                    text::hex(self.key.id())
                )));
            }
            None => {
                self.session.install_certificate(&self.key, leaf)?;
                format!("on {token} with CKA_ID {}", text::hex(self.key.id()))
            }
        };
        // A token that cannot keep a CA certificate still holds the key's own: the chain file
        // beside the record has the intermediates too, so this is said, not failed.
        let mut added = 0;
        for der in intermediates(chain_pem)? {
            match self.session.install_authority(&der) {
                Ok(true) => added += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!("{token}: an intermediate certificate was not stored: {e}");
                    return Ok(format!("{said}; the intermediate was not stored: {e}"));
                }
            }
        }
        Ok(if added > 0 {
            format!("{said}; {added} intermediate certificate(s) added")
        } else {
            said
        })
    }
}

/// Software keys in a directory: `<label>.pem` (PKCS#8, mode 0600), the chain beside it as
/// `<label>.chain.pem`. For tests and private CAs: publicly trusted code signing keys belong on a
/// token.
#[derive(Debug, Clone)]
pub struct DirectoryStore {
    dir: PathBuf,
}

impl DirectoryStore {
    /// The directory `dir` (made when the first key is written).
    pub fn new(dir: impl Into<PathBuf>) -> DirectoryStore {
        DirectoryStore { dir: dir.into() }
    }

    /// The file of the key `label`.
    pub fn key_path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.pem"))
    }
}

impl KeyStore for DirectoryStore {
    fn describe(&self) -> String {
        format!("directory {}", text::shown_path(&self.dir))
    }

    fn find(&self, name: &KeyName) -> Result<Option<Box<dyn StoredKey + '_>>, KeysError> {
        let path = self.key_path(&name.label);
        if !path.exists() {
            return Ok(None);
        }
        let key = SoftwareKey::read_pem_file(&path, None)?;
        Ok(Some(Box::new(FileKey { path, key })))
    }

    fn prepare(
        &self,
        name: &KeyName,
        algorithm: KeyAlgorithm,
    ) -> Result<Box<dyn Creation + '_>, KeysError> {
        let key = SoftwareKey::generate(algorithm)?;
        Ok(Box::new(FileCreation {
            path: self.key_path(&name.label),
            key,
        }))
    }

    /// A key file is this store's creation only when the note recorded for it names this very
    /// key (its public key's fingerprint): a file found where the key would go may be another
    /// plan's or a person's.
    fn made_by(&self, key: &dyn StoredKey, note: Option<&str>) -> bool {
        note.is_some_and(|note| note.ends_with(&fingerprint(key.signer())))
    }
}

struct FileCreation {
    path: PathBuf,
    key: SoftwareKey,
}

impl Creation for FileCreation {
    fn note(&self) -> String {
        format!("{}; {}", self.path.display(), fingerprint(&self.key))
    }

    fn create<'a>(self: Box<Self>) -> Result<Box<dyn NewKey + 'a>, KeysError>
    where
        Self: 'a,
    {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| KeysError::io(dir, "cannot make the key directory", e))?;
        }
        let pem = self.key.to_pkcs8_pem(None)?;
        write_atomically(
            &self.path,
            pem.as_bytes(),
            PRIVATE_FILE_MODE,
            Overwrite::Refuse,
        )?;
        Ok(Box::new(FileKey {
            path: self.path,
            key: self.key,
        }))
    }
}

struct FileKey {
    path: PathBuf,
    key: SoftwareKey,
}

impl NewKey for FileKey {
    fn signer(&self) -> &dyn KeySigner {
        &self.key
    }

    fn audit(&self) -> Option<&KeyAudit> {
        None
    }

    fn keep<'a>(self: Box<Self>) -> Result<Box<dyn StoredKey + 'a>, KeysError>
    where
        Self: 'a,
    {
        Ok(self)
    }
}

impl StoredKey for FileKey {
    fn signer(&self) -> &dyn KeySigner {
        &self.key
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "path": self.path, "software_key": true })
    }

    fn audit(&self) -> Result<Option<KeyAudit>, KeysError> {
        Ok(None)
    }

    fn install(&self, _leaf: &[u8], chain_pem: &str) -> Result<String, KeysError> {
        let chain_path = chain_file(&self.path);
        write_atomically(
            &chain_path,
            chain_pem.as_bytes(),
            PUBLIC_FILE_MODE,
            Overwrite::Replace,
        )?;
        Ok(chain_path.display().to_string())
    }
}

/// `<key>.chain.pem` beside a key file.
fn chain_file(key_path: &Path) -> PathBuf {
    key_path.with_extension("chain.pem")
}

/// The CA certificates of a chain bundle (leaf first) that are not self-signed, in order.
fn intermediates(chain_pem: &str) -> Result<Vec<Vec<u8>>, KeysError> {
    let blocks = pem::parse_many(chain_pem.as_bytes())
        .map_err(|e| KeysError::Certificate(format!("the chain is not PEM: {e}")))?;
    let mut found = Vec::new();
    for block in blocks.into_iter().skip(1) {
        let der = block.into_contents();
        let (_, cert) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(&der)
            .map_err(|e| KeysError::Certificate(format!("a chain certificate: {e}")))?;
        if cert.tbs_certificate.subject.as_raw() != cert.tbs_certificate.issuer.as_raw() {
            found.push(der);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(label: &str) -> KeyName {
        KeyName {
            label: label.to_string(),
            id: vec![7],
        }
    }

    /// A directory store: prepare (in memory, nothing on disk), create (the file, 0600), find,
    /// made_by only with the note naming this key, install the chain beside it, refuse to make
    /// a key over an existing file.
    #[test]
    fn a_directory_store_makes_finds_and_installs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = DirectoryStore::new(dir.path().join("keys"));
        let creation = store.prepare(&name("a"), KeyAlgorithm::P256).unwrap();
        let note = creation.note();
        assert!(
            !store.key_path("a").exists(),
            "nothing on disk before create"
        );
        assert!(note.contains("public key SHA-256 "), "{note}");
        let new = creation.create().unwrap();
        assert!(new.audit().is_none());
        let kept = new.keep().unwrap();
        let mode = std::fs::metadata(store.key_path("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let found = store.find(&name("a")).unwrap().unwrap();
        assert_eq!(
            found.signer().subject_public_key_info(),
            kept.signer().subject_public_key_info()
        );
        assert!(store.made_by(found.as_ref(), Some(&note)));
        assert!(!store.made_by(found.as_ref(), None));
        let other = store
            .prepare(&name("b"), KeyAlgorithm::P256)
            .unwrap()
            .note();
        assert!(!store.made_by(found.as_ref(), Some(&other)));

        let said = found.install(b"leaf", "CHAIN PEM").unwrap();
        assert!(said.ends_with("a.chain.pem"), "{said}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keys/a.chain.pem")).unwrap(),
            "CHAIN PEM"
        );
        assert_eq!(found.describe()["software_key"], true);

        let again = store.prepare(&name("a"), KeyAlgorithm::P256).unwrap();
        let err = again.create().err().unwrap();
        assert!(matches!(err, KeysError::KeyFileExists { .. }), "{err}");
        assert!(store.find(&name("none")).unwrap().is_none());
    }
}
