//! Code signing keys: the algorithm policy, software keys, CSR building and inspection.
//!
//! This crate knows nothing of HTTP or CertCentral; it makes keys and CSRs and judges them.
//!
//! - [`policy`]: the single place where the code signing key rules live (RSA-3072+ with exponent
//!   65537, or ECC P-256/P-384).
//! - [`SoftwareKey`]: keys in memory and in PKCS#8 PEM files (optionally encrypted).
//! - [`KeySigner`]: the one signing abstraction; software and token keys implement it.
//! - [`SubjectDn`]: CSR subjects written as `CN=..,O=..,C=..` strings.
//! - [`csr`]: building a CSR with any signer, and inspecting CSRs from anywhere.
//! - [`storage`]: where a key is kept as the CA's key-storage rule sees it, and DigiCert's
//!   supported tokens.
//!
//! ```
//! use codesign_keys::{csr, KeyAlgorithm, SoftwareKey, SubjectDn};
//!
//! let key = SoftwareKey::generate(KeyAlgorithm::P384)?;
//! let subject: SubjectDn = "CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US".parse()?;
//! let request = csr::build(&key, &subject)?;
//! assert!(request.pem().starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"));
//! # Ok::<(), codesign_keys::KeysError>(())
//! ```

mod algorithm;
pub mod csr;
mod dn;
mod error;
pub mod files;
mod oid;
pub mod pkcs11;
pub mod policy;
mod signer;
mod software;
pub mod spki;
pub mod storage;
pub mod store;
pub mod text;

pub use algorithm::KeyAlgorithm;
pub use dn::{DnAttribute, SubjectDn};
pub use error::KeysError;
pub use signer::KeySigner;
pub use software::SoftwareKey;
