//! A logged-in session on a token, and finding objects on it.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cryptoki::error::{Error, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use secrecy::ExposeSecret;

use super::calls::failed;
use super::module::TokenRef;
use super::pin::Pin;
use crate::KeysError;

/// A read-write session on one token, logged in as the user. One per thread: it is `Send`, not
/// `Sync`.
pub struct TokenSession {
    pub(crate) token: TokenRef,
    pub(crate) session: Session,
    pub(crate) pin: Pin,
}

impl fmt::Debug for TokenSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSession({})", self.token.summary)
    }
}

impl TokenRef {
    /// Opens a read-write session and logs in as the user, safely:
    /// - the token's flags are read first: a locked user PIN, or one on its final try, is refused
    ///   before any attempt;
    /// - exactly one `C_Login` is made; `CKR_PIN_INCORRECT` is reported and never retried;
    /// - a token with a PIN pad (protected authentication path) gets a login without a PIN.
    ///
    /// # Errors
    /// [`KeysError::PinLocked`], [`KeysError::PinFinalTry`], [`KeysError::PinIncorrect`],
    /// [`KeysError::Pkcs11`].
    pub fn login(&self, pin: &Pin) -> Result<TokenSession, KeysError> {
        let token = self.description();
        let failed = |e: Error, op: &str| failed(token.clone(), e, op);
        let context = self.module.context();
        let info = self
            .module
            .token_info(self.slot)
            .map_err(|e| failed(e, "C_GetTokenInfo"))?;
        if info.user_pin_locked() {
            return Err(KeysError::PinLocked { token });
        }
        if info.user_pin_final_try() {
            return Err(KeysError::PinFinalTry { token });
        }
        if !info.user_pin_initialized() {
            return Err(KeysError::TokenState {
                token,
                what: "its user PIN is not initialized; refusing to log in".to_string(),
            });
        }
        let length = pin.secret().expose_secret().len();
        let (min, max) = (info.min_pin_len, info.max_pin_len);
        // A bound of 0 (or a maximum below the minimum) states nothing.
        let too_short = min > 0 && (length as u64) < min;
        let too_long = max > 0 && max >= min && (length as u64) > max;
        if !info.protected_authentication_path() && (too_short || too_long) {
            return Err(KeysError::PinLength {
                token,
                length,
                min,
                max,
            });
        }
        let session = self
            .module
            .serialized(|| context.open_rw_session(self.slot))
            .map_err(|e| failed(e, "C_OpenSession"))?;
        let result = self.module.serialized(|| {
            if info.protected_authentication_path() {
                session.login(UserType::User, None)
            } else {
                session.login(UserType::User, Some(pin.secret()))
            }
        });
        match result {
            Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(Error::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(KeysError::PinIncorrect { token });
            }
            Err(Error::Pkcs11(RvError::PinLocked, _)) => {
                return Err(KeysError::PinLocked { token });
            }
            Err(Error::Pkcs11(RvError::PinExpired, _)) => {
                return Err(KeysError::PinExpired { token });
            }
            Err(e) => return Err(failed(e, "C_Login")),
        }
        Ok(TokenSession {
            token: self.clone(),
            session,
            pin: pin.clone(),
        })
    }
}

impl TokenSession {
    /// Another read-write session on the same token that shares this one's login, without a
    /// `C_Login` of its own: PKCS#11 logs a user in for the application, not for one session, so
    /// every session the process opens on the token while this one is open is logged in. Workers
    /// use it so that a run makes one login per token however many work at once.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when the session cannot be opened, or when the module does not show
    /// it logged in (then nothing is retried: the caller's one login stands).
    pub fn open_another(&self) -> Result<TokenSession, KeysError> {
        let module = &self.token.module;
        let session = module
            .serialized(|| module.context().open_rw_session(self.token.slot))
            .map_err(|e| self.error(e, "C_OpenSession"))?;
        match module.serialized(|| session.get_session_info()) {
            Ok(info) if info.session_state() != cryptoki::session::SessionState::RwUser => {
                return Err(KeysError::TokenState {
                    token: self.token.description(),
                    what: format!(
                        "a new session is not logged in (state {:?}), though another session of this process is",
                        info.session_state()
                    ),
                });
            }
            Ok(_) => {}
            Err(e @ Error::Pkcs11(..)) => return Err(self.error(e, "C_GetSessionInfo")),
            // A state cryptoki cannot decode (a vendor value): the session's first call says
            // CKR_USER_NOT_LOGGED_IN if it is not logged in.
            Err(undecodable) => tracing::debug!(
                "{}: C_GetSessionInfo gave a state cryptoki cannot decode ({undecodable})",
                self.token.description()
            ),
        }
        Ok(TokenSession {
            token: self.token.clone(),
            session,
            pin: self.pin.clone(),
        })
    }

    /// Takes the lock that makes creating a key labelled `label` on this token exclusive across
    /// processes (see [`LabelLock`]); `lock_dir` is the directory every process shares.
    ///
    /// # Errors
    /// [`KeysError::LabelBusy`] when another process holds it; [`KeysError::Io`].
    pub fn lock_label(&self, lock_dir: &Path, label: &str) -> Result<LabelLock, KeysError> {
        LabelLock::take(lock_dir, &self.token, label)
    }

    /// The token this session is on.
    pub fn token(&self) -> &TokenRef {
        &self.token
    }

    pub(crate) fn error(&self, e: Error, operation: &str) -> KeysError {
        failed(self.token.description(), e, operation)
    }

    /// Runs `call` on the session, under the module's lock where the module needs one.
    pub(crate) fn serialized<T>(&self, call: impl FnOnce(&Session) -> T) -> T {
        self.token.module.serialized(|| call(&self.session))
    }

    /// Handles of the objects matching `template`.
    pub(crate) fn find(&self, template: &[Attribute]) -> Result<Vec<ObjectHandle>, KeysError> {
        self.serialized(|s| s.find_objects(template))
            .map_err(|e| self.error(e, "C_FindObjects"))
    }

    /// How many objects (public and private) the token holds, as seen by this user.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`].
    pub fn object_count(&self) -> Result<usize, KeysError> {
        Ok(self.find(&[Attribute::Token(true)])?.len())
    }

    /// Fails with [`KeysError::DuplicateObject`] if any object on the token has this ID or label.
    pub(crate) fn ensure_unused(&self, id: &[u8], label: &str) -> Result<(), KeysError> {
        if !self.find(&[Attribute::Id(id.to_vec())])?.is_empty() {
            return Err(KeysError::DuplicateObject {
                token: self.token.description(),
                what: format!("CKA_ID {}", hex(id)),
            });
        }
        if !self
            .find(&[Attribute::Label(label.as_bytes().to_vec())])?
            .is_empty()
        {
            return Err(KeysError::DuplicateObject {
                token: self.token.description(),
                what: format!("label \"{label}\""),
            });
        }
        Ok(())
    }

    /// Reads one attribute; `None` when the object has none (or the module gives one cryptoki
    /// cannot decode).
    pub(crate) fn attribute(
        &self,
        object: ObjectHandle,
        kind: AttributeType,
    ) -> Result<Option<Attribute>, KeysError> {
        Ok(self.attributes(object, &[kind])?.pop())
    }

    /// Reads attributes in one call. cryptoki decodes the whole answer at once and fails it all
    /// for one value it cannot decode (a `CK_BBOOL` of the wrong size, a vendor key type); then
    /// each attribute is read alone and the undecodable ones are left out, as if absent, so one
    /// odd value never hides the others. Errors of the module itself are errors.
    pub(crate) fn attributes(
        &self,
        object: ObjectHandle,
        kinds: &[AttributeType],
    ) -> Result<Vec<Attribute>, KeysError> {
        match self.serialized(|s| s.get_attributes(object, kinds)) {
            Ok(found) => Ok(found),
            Err(e @ Error::Pkcs11(..)) => Err(self.error(e, "C_GetAttributeValue")),
            Err(undecodable) => {
                tracing::debug!(
                    "{}: an attribute could not be decoded ({undecodable}); reading them one by one",
                    self.token.description()
                );
                let mut found = Vec::new();
                for kind in kinds {
                    match self.serialized(|s| s.get_attributes(object, &[*kind])) {
                        Ok(mut one) => found.append(&mut one),
                        Err(e @ Error::Pkcs11(..)) => {
                            return Err(self.error(e, "C_GetAttributeValue"));
                        }
                        Err(_) => {}
                    }
                }
                Ok(found)
            }
        }
    }

    /// Destroys objects, reporting the first failure but trying them all.
    pub(crate) fn destroy(&self, objects: &[ObjectHandle]) -> Result<(), KeysError> {
        let mut first = None;
        for object in objects {
            let destroyed = self.serialized(|s| s.destroy_object(*object));
            if let Err(e) = destroyed {
                first.get_or_insert(self.error(e, "C_DestroyObject"));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Destroys what a key generation killed between its writes left under CKA_ID `id`, and
    /// says how many objects went: the objects with that ID while no private key with it holds
    /// its key (the public half was written first, or the private one lost its parameters). A
    /// whole key pair with the ID is left alone (0).
    ///
    /// A generation cut short earlier still (SoftHSM writes an object, then its attributes one by
    /// one) leaves a key object without ID, label or key parameters. Nothing ties such an object
    /// to this job: it could be another process's generation in progress. It is not touched, and
    /// a warning says how many the token holds.
    ///
    /// Call it only for an `id` whose generation the caller announced and never saw end.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when the objects cannot be found or destroyed.
    pub fn discard_incomplete_pair(&self, id: &[u8]) -> Result<usize, KeysError> {
        // A private key under the ID that holds its key (EC parameters or a modulus) is whole.
        for private in self.find_private_keys(Some(id), None)? {
            if !self.lacks_key_parameters(private)? {
                return Ok(0);
            }
        }
        let leftovers = self.find(&[Attribute::Id(id.to_vec())])?;
        self.destroy(&leftovers)?;
        if !leftovers.is_empty() {
            tracing::info!(
                "{}: destroyed {} object(s) left by an interrupted generation of the key with CKA_ID {}",
                self.token.description(),
                leftovers.len(),
                hex(id)
            );
        }
        let mut cut_short = 0;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            for object in self.find(&[Attribute::Class(class)])? {
                if self.is_cut_short(object).unwrap_or(false) {
                    cut_short += 1;
                }
            }
        }
        if cut_short > 0 {
            tracing::warn!(
                "{}: {cut_short} key object(s) without ID, label or key parameters, as a key generation cut short leaves them; nobody can use them: check that no generation is running, then delete them (pkcs11-tool --list-objects shows them without label)",
                self.token.description()
            );
        }
        Ok(leftovers.len())
    }

    /// Whether a key object holds neither EC parameters nor a modulus: written, but cut short
    /// before its key.
    fn lacks_key_parameters(&self, object: ObjectHandle) -> Result<bool, KeysError> {
        let attrs = self.attributes(object, &[AttributeType::EcParams, AttributeType::Modulus])?;
        Ok(!attrs.iter().any(|a| match a {
            Attribute::EcParams(v) | Attribute::Modulus(v) => !v.is_empty(),
            _ => false,
        }))
    }

    /// A key object without ID, label or key parameters: nobody's, and of no use.
    fn is_cut_short(&self, object: ObjectHandle) -> Result<bool, KeysError> {
        let attrs = self.attributes(
            object,
            &[
                AttributeType::Id,
                AttributeType::Label,
                AttributeType::EcParams,
                AttributeType::Modulus,
            ],
        )?;
        Ok(!attrs.iter().any(|a| match a {
            Attribute::Id(v)
            | Attribute::Label(v)
            | Attribute::EcParams(v)
            | Attribute::Modulus(v) => !v.is_empty(),
            _ => false,
        }))
    }

    /// Private key handles matching the URI's `id` and `object` (label).
    pub(crate) fn find_private_keys(
        &self,
        id: Option<&[u8]>,
        label: Option<&str>,
    ) -> Result<Vec<ObjectHandle>, KeysError> {
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(id) = id {
            template.push(Attribute::Id(id.to_vec()));
        }
        if let Some(label) = label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        self.find(&template)
    }
}

pub(crate) use crate::text::hex;

/// An advisory lock (`flock`) on one key label of one token, held while a key is created and until
/// the caller has recorded it. Two processes (two plans, two `keygen`s) that would create a key of
/// the same label on the same token at once: the second is refused at once, by name, instead of
/// both passing the duplicate check and making two key pairs.
///
/// The lock is a file in a directory every process uses (`lock_dir`), named by a SHA-256 of the
/// token's identity (manufacturer, model, serial, label) and the key label. The directory is made
/// world-writable and sticky (like `/tmp`) so that users who share a token share its locks. The
/// lock ends when the value is dropped or the process dies.
///
/// Dropped, the lock removes its file while it still holds it, so that a plan of a million keys
/// does not leave a million files behind. A process that opened the file just before is not
/// fooled: after taking the lock it checks that the path still names the file it locked, and
/// opens the path again if not (the usual protocol for removable lock files).
#[derive(Debug)]
pub struct LabelLock {
    file: File,
    path: PathBuf,
}

impl Drop for LabelLock {
    fn drop(&mut self) {
        // Only while the path is still this lock's file (it always is while the lock is held,
        // unless someone removed it by hand). In a sticky directory another user's file cannot
        // be removed; it stays, harmless, and is reused.
        if same_inode(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` names the file `file` has open.
fn same_inode(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

impl LabelLock {
    fn take(lock_dir: &Path, token: &TokenRef, label: &str) -> Result<LabelLock, KeysError> {
        use sha2::{Digest, Sha256};
        match std::fs::symlink_metadata(lock_dir) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(KeysError::io(
                    lock_dir,
                    "the lock directory is not a directory",
                    std::io::Error::from(std::io::ErrorKind::InvalidInput),
                ));
            }
            Err(_) => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o1777)
                    .create(lock_dir)
                    .map_err(|e| KeysError::io(lock_dir, "cannot make the lock directory", e))?;
                // The mode given is reduced by the umask; set it exactly.
                let _ = std::fs::set_permissions(lock_dir, std::fs::Permissions::from_mode(0o1777));
            }
        }
        let s = &token.summary;
        let mut hash = Sha256::new();
        for part in [&s.manufacturer, &s.model, &s.serial, &s.label] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.update(label.as_bytes());
        let name = hex(&hash.finalize()[..16]);
        let path = lock_dir.join(format!("key-{name}.lock"));
        let open = |write: bool| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(write)
                .create(write)
                .mode(0o666)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
        };
        // A lock file removed by its holder between our open and our lock is no lock any more:
        // the path is opened again. A few rounds are plenty (each needs another process to take
        // and end the whole lock in between).
        for _ in 0..16 {
            // Another user's lock file can be opened for reading, which is all flock needs.
            let file = open(true)
                .or_else(|_| open(false))
                .map_err(|e| KeysError::io(&path, "cannot open the key label lock", e))?;
            match file.try_lock() {
                Ok(()) if same_inode(&file, &path) => return Ok(LabelLock { file, path }),
                Ok(()) => continue,
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(KeysError::LabelBusy {
                        token: token.description(),
                        label: label.to_string(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(KeysError::io(&path, "cannot lock the key label", e));
                }
            }
        }
        Err(KeysError::LabelBusy {
            token: token.description(),
            label: label.to_string(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
