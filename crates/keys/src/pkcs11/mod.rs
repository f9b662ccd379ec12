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
//! let pin = Pin::resolve(&uri, &token.description(), &codesign_keys::pkcs11::NoPinSource)?;
//! let session = token.login(&pin)?;
//! let key = session.generate_key_pair(&KeyRequest::new(KeyAlgorithm::P384, "cs-001"))?;
//! let request = csr::build(&*key, &"CN=Example Corp,C=US".parse()?)?;
//! let (key, audit) = key.keep();
//! # Ok::<(), codesign_keys::KeysError>(())
//! ```

mod calls;
mod capability;
mod cert;
mod doctor;
mod encoding;
mod key;
mod keygen;
mod module;
mod objects;
mod pin;
mod raw;
mod session;
mod uri;

pub use capability::AlgorithmVerdict;
pub use doctor::{DigicertVerdict, MechanismReport, PinLength, TokenReport};
pub use encoding::{decode_ec_point, ecdsa_raw_to_der};
pub use key::{ListedKey, TokenKey};
pub use keygen::{KeyAudit, KeyRequest, PendingKey, random_id};
pub use module::{Module, TokenRef, TokenSummary};
pub use objects::TokenObject;
pub use pin::{NoPinSource, Pin, PinSource};
pub use raw::TokenClock;
pub use session::{LabelLock, TokenSession};
pub use uri::{ObjectType, Pkcs11Uri};

pub(crate) use calls::ckr_name;
