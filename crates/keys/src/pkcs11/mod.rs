//! Keys on PKCS#11 tokens (HSMs, USB eTokens; SoftHSM2 in tests), through cryptoki.
//!
//! The path of a token key:
//! 1. [`Module::resolve`] loads the module (one initialized context per module path per process).
//! 2. [`Module::find_token`] finds the token by label / serial / model / manufacturer, never by slot
//!    number alone.
//! 3. [`TokenRef::login`] reads the token's PIN flags first (refusing a locked PIN or one on its
//!    final try), then logs in once: a wrong PIN is reported, never retried.
//! 4. [`TokenSession::generate_key_pair`] checks the token's mechanisms and key-size ranges, makes
//!    the pair with an explicit template, reads its attributes back ([`KeyAudit`]) and destroys
//!    both halves if anything is off. The result is a [`PendingKey`]: dropped without
//!    [`PendingKey::keep`], it destroys itself, so a failure between key and CSR leaves no orphan.
//! 5. A [`TokenKey`] is a [`crate::KeySigner`]: `csr::build` signs on the token.
//! 6. [`TokenSession::install_certificate`] puts the issued certificate beside its key.
//!
//! ```no_run
//! use codesign_keys::pkcs11::{KeyRequest, Module, Pin, Pkcs11Uri};
//! use codesign_keys::{csr, KeyAlgorithm};
//!
//! let uri: Pkcs11Uri = "pkcs11:token=Code%20Signing?module-path=/usr/lib/softhsm/libsofthsm2.so".parse()?;
//! let module = Module::resolve(&uri, None)?;
//! let token = module.find_token(&uri)?;
//! let pin = Pin::resolve(&uri, &token.description())?;
//! let session = token.login(&pin)?;
//! let key = session.generate_key_pair(&KeyRequest::new(KeyAlgorithm::P384, "cs-001"))?;
//! let request = csr::build(&*key, &"CN=Example Corp,C=US".parse()?)?;
//! let (key, audit) = key.keep();
//! # Ok::<(), codesign_keys::KeysError>(())
//! ```

mod capability;
mod cert;
mod doctor;
mod encoding;
mod key;
mod keygen;
mod module;
mod pin;
mod session;
mod uri;

pub use capability::AlgorithmVerdict;
pub use doctor::{MechanismReport, TokenReport};
pub use encoding::{decode_ec_point, ecdsa_raw_to_der};
pub use key::TokenKey;
pub use keygen::{KeyAudit, KeyRequest, PendingKey, random_id};
pub use module::{Module, TokenRef, TokenSummary};
pub use pin::Pin;
pub use session::{LabelLock, TokenSession};
pub use uri::{ObjectType, Pkcs11Uri};

/// The `CKR_...` name of a cryptoki error, or its text.
pub(crate) fn rv_name(err: &cryptoki::error::Error) -> String {
    match err {
        cryptoki::error::Error::Pkcs11(rv, _) => {
            let camel = format!("{rv:?}");
            let mut out = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
        other => other.to_string(),
    }
}

/// The `C_...` name of the function a cryptoki error came from, when known.
pub(crate) fn function_name(err: &cryptoki::error::Error, fallback: &str) -> String {
    match err {
        cryptoki::error::Error::Pkcs11(_, function) => format!("C_{function:?}"),
        _ => fallback.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;
    use cryptoki::error::{Error, RvError};

    #[test]
    fn error_names_are_the_ckr_constants() {
        let err = Error::Pkcs11(RvError::PinIncorrect, Function::Login);
        assert_eq!(rv_name(&err), "CKR_PIN_INCORRECT");
        assert_eq!(function_name(&err, "?"), "C_Login");
        let err = Error::Pkcs11(RvError::MechanismInvalid, Function::GenerateKeyPair);
        assert_eq!(rv_name(&err), "CKR_MECHANISM_INVALID");
    }
}
