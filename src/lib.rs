//! codesign-kit: provision code signing keys and certificates end to end.
//!
//! The root crate joins the member crates, which know nothing of each other:
//! - [`keys`] (`codesign-keys`): key policy, software and PKCS#11 keys, CSRs;
//! - [`order`] (`certcentral`): the CertCentral client for code signing orders.
//!
//! [`KeysCsrCheck`] is the first joint: it lets the order client judge a CSR with the keys crate
//! (parse, self-signature, key policy). The provisioning pipeline (key -> CSR -> order -> certificate
//! on the token) will live here too.
//!
//! ```
//! use codesign_kit::keys::{csr, KeyAlgorithm, SoftwareKey, SubjectDn};
//! use codesign_kit::order::CsrCheck;
//!
//! let key = SoftwareKey::generate(KeyAlgorithm::P256)?;
//! let request = csr::build(&key, &"CN=Example Corp,C=US".parse::<SubjectDn>()?)?;
//! assert!(codesign_kit::KeysCsrCheck.check(&request.pem()).is_ok());
//! # Ok::<(), codesign_kit::keys::KeysError>(())
//! ```

pub mod pipeline;

pub use certcentral as order;
pub use codesign_keys as keys;

/// Judges the CSR of an order with [`keys::csr::inspect`]: it must parse, its self-signature must
/// verify, and its key must meet the code signing key rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeysCsrCheck;

impl order::CsrCheck for KeysCsrCheck {
    fn check(&self, csr_pem: &str) -> Result<(), Vec<String>> {
        match keys::csr::inspect(csr_pem.as_bytes()) {
            Ok(report) => {
                let reasons = report.refusal_reasons();
                if reasons.is_empty() {
                    Ok(())
                } else {
                    Err(reasons)
                }
            }
            Err(e) => Err(vec![e.to_string()]),
        }
    }
}
