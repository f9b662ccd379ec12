//! Public keys as X.509 `SubjectPublicKeyInfo`: what they are, and verifying signatures with them.
//!
//! Signatures are verified here in software, for every key source alike: a CSR read from a file, a
//! CSR just built in software, a CSR just signed on a token. RSA and P-384 use RustCrypto; P-256 uses
//! ring's assembly where ring has the hash (see `verify_p256`).

use crate::KeysError;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::Digest;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::policy::{KeyDescription, NamedCurve, RsaExponent};

use crate::oid::{self, EC_PUBLIC_KEY, RSA_ENCRYPTION};

/// Describes a DER `SubjectPublicKeyInfo` for the policy.
///
/// # Errors
/// [`KeysError::PublicKey`] when the DER is not a public key this tool can describe.
pub fn describe_spki_der(spki_der: &[u8]) -> Result<KeyDescription, KeysError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| KeysError::PublicKey(format!("malformed SubjectPublicKeyInfo: {e}")))?;
    describe(&spki).map_err(KeysError::PublicKey)
}

/// Describes a parsed `SubjectPublicKeyInfo` for the policy.
pub(crate) fn describe(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyDescription, String> {
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        RSA_ENCRYPTION => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                let exponent = match rsa.try_exponent() {
                    Ok(e) => RsaExponent::Value(e),
                    Err(_) => RsaExponent::TooLarge,
                };
                Ok(KeyDescription::Rsa {
                    bits: unsigned_bit_length(rsa.modulus),
                    exponent,
                })
            }
            _ => Err("the RSA public key is malformed".to_string()),
        },
        EC_PUBLIC_KEY => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .ok_or_else(|| {
                    "the EC public key does not name its curve (explicit curve parameters are not accepted)"
                        .to_string()
                })?;
            Ok(KeyDescription::Ec {
                curve: NamedCurve::from_oid(&curve_oid),
            })
        }
        _ => Ok(KeyDescription::Other {
            algorithm: oid::other_key_algorithm(&oid),
        }),
    }
}

/// The number of significant bits of a big-endian unsigned integer.
pub(crate) fn unsigned_bit_length(bytes: &[u8]) -> usize {
    let significant: &[u8] = match bytes.iter().position(|b| *b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    (significant.len() - 1) * 8 + (8 - significant[0].leading_zeros() as usize)
}

/// The SHA-256 of `data` in lower-case hex (fingerprints of keys, CSRs, certificates).
pub fn sha256_hex(data: &[u8]) -> String {
    crate::text::hex(&sha2::Sha256::digest(data))
}

/// The outcome of checking a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The signature verifies with the key.
    Valid,
    /// The signature does not verify (or is malformed for its algorithm).
    Invalid,
    /// The signature uses an algorithm, or the key a curve, that this tool does not verify.
    NotVerifiable {
        /// Why: the algorithm or curve.
        reason: String,
    },
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(message).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(message).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(message).to_vec(),
        }
    }
}

/// The common name of a signature algorithm OID, for reports.
pub fn signature_algorithm_name(oid: &str) -> String {
    oid::name(oid).unwrap_or(oid).to_string()
}

/// Verifies `signature` over `message` with the key in `spki`, for the signature algorithm `sig_oid`
/// (dotted form): RSA PKCS#1 v1.5 or ECDSA (P-256, P-384) with SHA-256/384/512.
pub(crate) fn verify(
    spki: &SubjectPublicKeyInfo<'_>,
    sig_oid: &str,
    message: &[u8],
    signature: &[u8],
) -> SignatureCheck {
    let (is_rsa, hash) = match sig_oid {
        oid::SHA256_WITH_RSA => (true, Hash::Sha256),
        oid::SHA384_WITH_RSA => (true, Hash::Sha384),
        oid::SHA512_WITH_RSA => (true, Hash::Sha512),
        oid::ECDSA_WITH_SHA256 => (false, Hash::Sha256),
        oid::ECDSA_WITH_SHA384 => (false, Hash::Sha384),
        oid::ECDSA_WITH_SHA512 => (false, Hash::Sha512),
        other => {
            return SignatureCheck::NotVerifiable {
                reason: format!(
                    "the signature algorithm {} is not one this tool verifies",
                    signature_algorithm_name(other)
                ),
            };
        }
    };
    let key_oid = spki.algorithm.algorithm.to_id_string();
    let verified = if is_rsa {
        if key_oid != RSA_ENCRYPTION {
            return SignatureCheck::Invalid;
        }
        verify_rsa(spki.raw, hash, &hash.digest(message), signature)
    } else {
        if key_oid != EC_PUBLIC_KEY {
            return SignatureCheck::Invalid;
        }
        let curve = match describe(spki) {
            Ok(KeyDescription::Ec { curve }) => curve,
            _ => return SignatureCheck::Invalid,
        };
        let point = spki.subject_public_key.data.as_ref();
        match curve {
            NamedCurve::P256 => verify_p256(point, hash, message, signature),
            NamedCurve::P384 => verify_p384(point, hash, message, signature),
            other => {
                return SignatureCheck::NotVerifiable {
                    reason: format!(
                        "signatures on curve {} are not verified by this tool",
                        other.name()
                    ),
                };
            }
        }
    };
    if verified {
        SignatureCheck::Valid
    } else {
        SignatureCheck::Invalid
    }
}

fn verify_rsa(spki_der: &[u8], hash: Hash, digest: &[u8], signature: &[u8]) -> bool {
    use rsa::pkcs8::DecodePublicKey;
    let Ok(key) = rsa::PublicKey::from_public_key_der(spki_der) else {
        return false;
    };
    let scheme = match hash {
        Hash::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        Hash::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        Hash::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    };
    key.verify(scheme, digest, signature).is_ok()
}

/// ECDSA on P-256 and P-384 goes through ring where ring has the hash (SHA-256, SHA-384): its
/// assembly verifies four to five times as fast as RustCrypto here (a millisecond of every P-384
/// `keygen --csr-out`), and every CSR this tool builds is verified before use. RustCrypto reads
/// the point first (every SEC1 form, where ring takes only the uncompressed one, and checks it
/// is on the curve) and verifies SHA-512 signatures.
fn verify_p256(point: &[u8], hash: Hash, message: &[u8], signature: &[u8]) -> bool {
    use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA384_ASN1};
    let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
        return false;
    };
    let ring_algorithm = match hash {
        Hash::Sha256 => &ECDSA_P256_SHA256_ASN1,
        Hash::Sha384 => &ECDSA_P256_SHA384_ASN1,
        Hash::Sha512 => {
            return p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(&hash.digest(message), &sig).is_ok());
        }
    };
    verify_with_ring(
        ring_algorithm,
        key.to_sec1_point(false).as_bytes(),
        message,
        signature,
    )
}

/// As [`verify_p256`], on P-384.
fn verify_p384(point: &[u8], hash: Hash, message: &[u8], signature: &[u8]) -> bool {
    use ring::signature::{ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_ASN1};
    let Ok(key) = p384::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
        return false;
    };
    let ring_algorithm = match hash {
        Hash::Sha256 => &ECDSA_P384_SHA256_ASN1,
        Hash::Sha384 => &ECDSA_P384_SHA384_ASN1,
        Hash::Sha512 => {
            return p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(&hash.digest(message), &sig).is_ok());
        }
    };
    verify_with_ring(
        ring_algorithm,
        key.to_sec1_point(false).as_bytes(),
        message,
        signature,
    )
}

/// ring's verification of an ECDSA signature (DER) by an uncompressed SEC1 point.
fn verify_with_ring(
    algorithm: &'static ring::signature::EcdsaVerificationAlgorithm,
    uncompressed: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    ring::signature::UnparsedPublicKey::new(algorithm, uncompressed)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(unsigned_bit_length(&[]), 0);
        assert_eq!(unsigned_bit_length(&[0, 0]), 0);
        assert_eq!(unsigned_bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(unsigned_bit_length(&[0x01, 0x00]), 9);
        let mut modulus = vec![0u8; 385];
        modulus[1] = 0xC0;
        assert_eq!(unsigned_bit_length(&modulus), 3072);
    }

    /// Checks `verify` for one curve: every hash, both point forms, a changed message refused.
    /// `points[compressed]` is the public point; `sign(hash, digest)` an ECDSA DER signature.
    fn check_curve(algorithm_id: &[u8], points: [Vec<u8>; 2], sign: impl Fn(&[u8]) -> Vec<u8>) {
        let message = b"codesign-kit ECDSA self-check";
        let spki_der = |point: &[u8]| {
            let bit_string_len = point.len() + 1;
            let mut der = vec![0x30, (algorithm_id.len() + 2 + bit_string_len) as u8];
            der.extend_from_slice(algorithm_id);
            der.extend_from_slice(&[0x03, bit_string_len as u8, 0x00]);
            der.extend_from_slice(point);
            der
        };
        for (compressed, point) in points.iter().enumerate() {
            let der = spki_der(point);
            let (_, spki) = SubjectPublicKeyInfo::from_der(&der).unwrap();
            for (oid, hash) in [
                ("1.2.840.10045.4.3.2", Hash::Sha256),
                ("1.2.840.10045.4.3.3", Hash::Sha384),
                ("1.2.840.10045.4.3.4", Hash::Sha512),
            ] {
                let signature = sign(&hash.digest(message));
                let case = format!("{oid}, compressed point: {}", compressed == 1);
                assert_eq!(
                    verify(&spki, oid, message, &signature),
                    SignatureCheck::Valid,
                    "{case}"
                );
                assert_eq!(
                    verify(&spki, oid, b"another message", &signature),
                    SignatureCheck::Invalid,
                    "{case}"
                );
            }
        }
    }

    /// P-256 and P-384 go through ring for SHA-256/384 and RustCrypto for SHA-512; both point
    /// forms.
    #[test]
    fn ecdsa_signatures_verify_with_every_hash_and_point_form() {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        check_curve(
            &[
                0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
                0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
            ],
            [false, true].map(|c| key.verifying_key().to_sec1_point(c).as_bytes().to_vec()),
            |digest| {
                let signature: p256::ecdsa::Signature = key.sign_prehash(digest).unwrap();
                signature.to_der().as_bytes().to_vec()
            },
        );
        let key = p384::ecdsa::SigningKey::from_slice(&[9u8; 48]).unwrap();
        check_curve(
            &[
                0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
                0x81, 0x04, 0x00, 0x22,
            ],
            [false, true].map(|c| key.verifying_key().to_sec1_point(c).as_bytes().to_vec()),
            |digest| {
                let signature: p384::ecdsa::Signature = key.sign_prehash(digest).unwrap();
                signature.to_der().as_bytes().to_vec()
            },
        );
    }

    #[test]
    fn garbage_spki_is_an_error_not_a_panic() {
        assert!(describe_spki_der(b"\x30\x03\x02\x01").is_err());
        assert!(describe_spki_der(&[]).is_err());
    }
}

/// What the pipeline needs to know of an issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Subject, RFC 4514 style in encoding order.
    pub subject: String,
    /// Serial number, lower-case hex.
    pub serial_hex: String,
    /// The certificate's DER `SubjectPublicKeyInfo`.
    pub subject_public_key_info: Vec<u8>,
    /// SHA-256 of the certificate DER, lower-case hex.
    pub sha256: String,
    /// The first moment it is valid (Unix seconds).
    pub not_before_unix: i64,
    /// The last moment it is valid (Unix seconds).
    pub not_after_unix: i64,
    /// Whether its issuer is its subject (a root).
    pub self_signed: bool,
}

/// Reads the facts of a DER certificate.
///
/// # Errors
/// [`KeysError::Certificate`] when it is not a readable X.509 certificate.
pub fn certificate_facts(der: &[u8]) -> Result<CertificateFacts, KeysError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| KeysError::Certificate(format!("not a readable X.509 certificate: {e}")))?;
    Ok(CertificateFacts {
        subject: crate::dn::format_x509_name(&cert.tbs_certificate.subject),
        serial_hex: crate::text::hex(cert.tbs_certificate.raw_serial()),
        subject_public_key_info: cert.tbs_certificate.subject_pki.raw.to_vec(),
        sha256: sha256_hex(der),
        not_before_unix: cert.validity().not_before.timestamp(),
        not_after_unix: cert.validity().not_after.timestamp(),
        self_signed: cert.tbs_certificate.subject.as_raw() == cert.tbs_certificate.issuer.as_raw(),
    })
}
