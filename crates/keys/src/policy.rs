//! The code signing key rules, in one place.
//!
//! Since June 2023 code signing certificates require RSA keys of at least 3072 bits or ECC keys on
//! NIST P-256 or P-384. This tool also requires the RSA public exponent 65537 (F4), the only one
//! CAs and HSMs agree on. Every check of a key, wherever it comes from (generated, read from a file,
//! found in a CSR, made on a token), goes through [`check`].
//!
//! ```
//! use codesign_keys::policy::{self, KeyDescription, RsaExponent};
//!
//! let weak = KeyDescription::Rsa { bits: 2048, exponent: RsaExponent::Value(65537) };
//! let err = policy::check(&weak).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "code signing keys must be RSA-3072 or larger, or ECC P-256/P-384; this key is RSA-2048"
//! );
//! ```

use std::fmt;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 3072;
/// The only RSA public exponent accepted.
pub const RSA_EXPONENT: u64 = 65537;

const SIZE_RULE: &str = "code signing keys must be RSA-3072 or larger, or ECC P-256/P-384";

/// A named elliptic curve, as found in a key or CSR.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum NamedCurve {
    /// NIST P-256 (secp256r1, prime256v1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (secp521r1): not allowed for code signing.
    P521,
    /// Any other curve, by its OID in dotted form.
    Other(String),
}

impl NamedCurve {
    /// The curve named by a dotted OID.
    pub fn from_oid(oid: &str) -> NamedCurve {
        match oid {
            crate::oid::P256 => NamedCurve::P256,
            crate::oid::P384 => NamedCurve::P384,
            crate::oid::P521 => NamedCurve::P521,
            other => NamedCurve::Other(other.to_string()),
        }
    }

    /// The curve's short name (`P-256`, ...), or its OID.
    pub fn name(&self) -> &str {
        match self {
            NamedCurve::P256 => "P-256",
            NamedCurve::P384 => "P-384",
            NamedCurve::P521 => "P-521",
            NamedCurve::Other(oid) => oid,
        }
    }
}

/// An RSA public exponent as found in a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaExponent {
    /// An exponent that fits in 64 bits.
    Value(u64),
    /// An exponent wider than 64 bits (never acceptable).
    TooLarge,
}

impl fmt::Display for RsaExponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RsaExponent::Value(v) => write!(f, "{v}"),
            RsaExponent::TooLarge => f.write_str("wider than 64 bits"),
        }
    }
}

/// What a public key is, as far as the policy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDescription {
    /// An RSA key.
    Rsa {
        /// Modulus size in bits (leading zero bits not counted).
        bits: usize,
        /// Public exponent.
        exponent: RsaExponent,
    },
    /// An elliptic curve key (id-ecPublicKey).
    Ec {
        /// The curve of its parameters.
        curve: NamedCurve,
    },
    /// Any other kind of key (Ed25519, DSA, ...), by name or OID.
    Other {
        /// The algorithm's name or dotted OID.
        algorithm: String,
    },
}

impl fmt::Display for KeyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDescription::Rsa { bits, .. } => write!(f, "RSA-{bits}"),
            KeyDescription::Ec {
                curve: NamedCurve::Other(oid),
            } => write!(f, "ECC on curve {oid}"),
            KeyDescription::Ec { curve } => write!(f, "ECC {}", curve.name()),
            KeyDescription::Other { algorithm } => f.write_str(algorithm),
        }
    }
}

/// A key that breaks the code signing key rules, with every rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyViolation {
    /// The key that was checked.
    pub found: KeyDescription,
    /// One sentence per broken rule, each stating the rule and what was found.
    pub reasons: Vec<String>,
}

impl PolicyViolation {
    pub(crate) fn new(found: KeyDescription) -> Self {
        let reasons = reasons(&found);
        PolicyViolation { found, reasons }
    }
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reasons.join("; "))
    }
}

impl std::error::Error for PolicyViolation {}

/// Every rule the key breaks; empty when the key is acceptable.
pub fn reasons(key: &KeyDescription) -> Vec<String> {
    let mut reasons = Vec::new();
    match key {
        KeyDescription::Rsa { bits, exponent } => {
            if *bits < MIN_RSA_BITS {
                reasons.push(format!("{SIZE_RULE}; this key is {key}"));
            }
            if *exponent != RsaExponent::Value(RSA_EXPONENT) {
                reasons.push(format!(
                    "RSA code signing keys must use the public exponent {RSA_EXPONENT}; this key's exponent is {exponent}"
                ));
            }
        }
        KeyDescription::Ec { curve } => {
            if !matches!(curve, NamedCurve::P256 | NamedCurve::P384) {
                reasons.push(format!("{SIZE_RULE}; this key is {key}"));
            }
        }
        KeyDescription::Other { .. } => reasons.push(format!("{SIZE_RULE}; this key is {key}")),
    }
    reasons
}

/// Checks a key against the code signing key rules.
///
/// # Errors
/// A [`PolicyViolation`] listing every broken rule.
pub fn check(key: &KeyDescription) -> Result<(), PolicyViolation> {
    let reasons = reasons(key);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(PolicyViolation {
            found: key.clone(),
            reasons,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa(bits: usize, e: u64) -> KeyDescription {
        KeyDescription::Rsa {
            bits,
            exponent: RsaExponent::Value(e),
        }
    }

    #[test]
    fn accepts_the_allowed_keys() {
        for key in [
            rsa(3072, 65537),
            rsa(4096, 65537),
            rsa(8192, 65537),
            KeyDescription::Ec {
                curve: NamedCurve::P256,
            },
            KeyDescription::Ec {
                curve: NamedCurve::P384,
            },
        ] {
            assert_eq!(check(&key), Ok(()), "{key}");
        }
    }

    #[test]
    fn refuses_small_rsa_at_the_boundary() {
        assert!(check(&rsa(3071, 65537)).is_err());
        let err = check(&rsa(2048, 65537)).unwrap_err();
        assert_eq!(
            err.reasons,
            vec![
                "code signing keys must be RSA-3072 or larger, or ECC P-256/P-384; this key is RSA-2048"
            ]
        );
    }

    #[test]
    fn refuses_other_exponents_and_reports_every_reason() {
        let err = check(&rsa(2048, 3)).unwrap_err();
        assert_eq!(err.reasons.len(), 2);
        assert!(err.reasons[1].contains("exponent is 3"), "{err}");
        let err = check(&KeyDescription::Rsa {
            bits: 4096,
            exponent: RsaExponent::TooLarge,
        })
        .unwrap_err();
        assert!(err.to_string().contains("wider than 64 bits"));
    }

    #[test]
    fn refuses_other_curves_and_algorithms() {
        let err = check(&KeyDescription::Ec {
            curve: NamedCurve::from_oid("1.3.132.0.35"),
        })
        .unwrap_err();
        assert!(err.to_string().ends_with("this key is ECC P-521"));
        let err = check(&KeyDescription::Ec {
            curve: NamedCurve::from_oid("1.3.132.0.10"),
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("this key is ECC on curve 1.3.132.0.10")
        );
        let err = check(&KeyDescription::Other {
            algorithm: "Ed25519".into(),
        })
        .unwrap_err();
        assert!(err.to_string().ends_with("this key is Ed25519"));
    }
}
