//! A logged-in session on a token, and finding objects on it.

use std::fmt;

use cryptoki::error::{Error, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

use super::{Pin, TokenRef, function_name, rv_name};
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
        let failed = |e: Error, op: &str| KeysError::Pkcs11 {
            token: token.clone(),
            operation: function_name(&e, op),
            code: rv_name(&e),
        };
        let context = self.module.context();
        let info = context
            .get_token_info(self.slot)
            .map_err(|e| failed(e, "C_GetTokenInfo"))?;
        if info.user_pin_locked() {
            return Err(KeysError::PinLocked { token });
        }
        if info.user_pin_final_try() {
            return Err(KeysError::PinFinalTry { token });
        }
        if !info.user_pin_initialized() {
            return Err(KeysError::Pkcs11 {
                token,
                operation: "login".to_string(),
                code: "the token's user PIN is not initialized".to_string(),
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
    /// The token this session is on.
    pub fn token(&self) -> &TokenRef {
        &self.token
    }

    pub(crate) fn error(&self, e: Error, operation: &str) -> KeysError {
        KeysError::Pkcs11 {
            token: self.token.description(),
            operation: function_name(&e, operation),
            code: rv_name(&e),
        }
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

    /// Reads one attribute that must be present.
    pub(crate) fn attribute(
        &self,
        object: ObjectHandle,
        kind: AttributeType,
    ) -> Result<Option<Attribute>, KeysError> {
        let mut found = self
            .serialized(|s| s.get_attributes(object, &[kind]))
            .map_err(|e| self.error(e, "C_GetAttributeValue"))?;
        Ok(found.pop())
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

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
