//! codesign-kit: provision code signing keys and certificates end to end.
//!
//! This root crate joins the member crates; today it re-exports [`keys`] (key policy, software
//! keys, CSRs). The provisioning pipeline (key -> CSR -> CertCentral order -> certificate on the
//! token) will live here, as the only place where keys and orders meet.
//!
//! ```
//! use codesign_kit::keys::{csr, KeyAlgorithm, SoftwareKey, SubjectDn};
//!
//! let key = SoftwareKey::generate(KeyAlgorithm::P256)?;
//! let request = csr::build(&key, &"CN=Example Corp,C=US".parse::<SubjectDn>()?)?;
//! assert!(csr::inspect(request.der())?.is_acceptable());
//! # Ok::<(), codesign_kit::keys::KeysError>(())
//! ```

pub use codesign_keys as keys;
