//! The object identifiers this crate knows, in one table: key algorithms, curves, signature
//! algorithms, CSR extensions. Dotted form, as x509-parser and pkcs8 print them.

/// `rsaEncryption` (RFC 8017).
pub(crate) const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
/// `id-ecPublicKey` (RFC 5480).
pub(crate) const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// `secp256r1` / P-256 (RFC 5480).
pub(crate) const P256: &str = "1.2.840.10045.3.1.7";
/// `secp384r1` / P-384 (RFC 5480).
pub(crate) const P384: &str = "1.3.132.0.34";
/// `secp521r1` / P-521 (RFC 5480).
pub(crate) const P521: &str = "1.3.132.0.35";
/// `sha256WithRSAEncryption` (RFC 8017).
pub(crate) const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
/// `sha384WithRSAEncryption`.
pub(crate) const SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
/// `sha512WithRSAEncryption`.
pub(crate) const SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
/// `ecdsa-with-SHA256` (RFC 5758).
pub(crate) const ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
/// `ecdsa-with-SHA384`.
pub(crate) const ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
/// `ecdsa-with-SHA512`.
pub(crate) const ECDSA_WITH_SHA512: &str = "1.2.840.10045.4.3.4";

/// What each OID is called, for reports: key algorithms, signature algorithms, extensions.
const NAMES: &[(&str, &str)] = &[
    (RSA_ENCRYPTION, "RSA"),
    (EC_PUBLIC_KEY, "EC"),
    ("1.3.101.112", "Ed25519"),
    ("1.3.101.113", "Ed448"),
    ("1.2.840.10040.4.1", "DSA"),
    ("1.2.840.113549.1.1.10", "RSASSA-PSS"),
    ("1.2.840.113549.1.1.5", "sha1WithRSAEncryption"),
    (SHA256_WITH_RSA, "sha256WithRSAEncryption"),
    (SHA384_WITH_RSA, "sha384WithRSAEncryption"),
    (SHA512_WITH_RSA, "sha512WithRSAEncryption"),
    ("1.2.840.10045.4.1", "ecdsa-with-SHA1"),
    (ECDSA_WITH_SHA256, "ecdsa-with-SHA256"),
    (ECDSA_WITH_SHA384, "ecdsa-with-SHA384"),
    (ECDSA_WITH_SHA512, "ecdsa-with-SHA512"),
    ("2.5.29.14", "subjectKeyIdentifier"),
    ("2.5.29.15", "keyUsage"),
    ("2.5.29.17", "subjectAltName"),
    ("2.5.29.19", "basicConstraints"),
    ("2.5.29.37", "extKeyUsage"),
];

/// The name of an OID, when this crate knows it.
pub(crate) fn name(oid: &str) -> Option<&'static str> {
    NAMES.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n)
}

/// A key algorithm this tool does not use, named for the policy's refusal.
pub(crate) fn other_key_algorithm(oid: &str) -> String {
    match name(oid) {
        Some(known) => known.to_string(),
        None => format!("a key of algorithm {oid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_and_oids_are_unique() {
        assert_eq!(name(ECDSA_WITH_SHA384), Some("ecdsa-with-SHA384"));
        assert_eq!(name("2.5.29.17"), Some("subjectAltName"));
        assert_eq!(other_key_algorithm("1.3.101.112"), "Ed25519");
        assert_eq!(other_key_algorithm("1.2.3"), "a key of algorithm 1.2.3");
        for (i, (a, _)) in NAMES.iter().enumerate() {
            assert!(NAMES[i + 1..].iter().all(|(b, _)| a != b), "{a} twice");
        }
    }
}
