//! Software keys: generated from the operating system's randomness, stored as PKCS#8 PEM.
//!
//! Code signing keys for real certificates belong on a token (see the `pkcs11` part of this crate);
//! software keys serve tests, demos and CAs' own tooling.
//!
//! ```
//! use codesign_keys::{KeyAlgorithm, KeySigner, SoftwareKey};
//!
//! let key = SoftwareKey::generate(KeyAlgorithm::P256)?;
//! let pem = key.to_pkcs8_pem(None)?;
//! let again = SoftwareKey::from_pem(pem.as_bytes(), None, std::path::Path::new("k.pem"))?;
//! assert_eq!(again.public_key_bits(), key.public_key_bits());
//! # Ok::<(), codesign_keys::KeysError>(())
//! ```

use std::fmt;
use std::path::Path;

use getrandom::SysRng;
use getrandom::rand_core::TryRng;
use pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::files::{Overwrite, PRIVATE_FILE_MODE, write_atomically};
use crate::policy::{self, KeyDescription, NamedCurve, RsaExponent};
use crate::spki::unsigned_bit_length;
use crate::{KeyAlgorithm, KeySigner, KeysError};

enum Secret {
    Rsa(rsa::pkcs1v15::SigningKey<sha2::Sha256>),
    P256(RingP256),
    P384(p384::ecdsa::SigningKey),
}

/// A P-256 key held by ring, whose P-256 arithmetic is assembly: on this project's machines it
/// generates, signs and verifies about four times as fast as RustCrypto's `p256` (BENCHMARKS.md).
/// RustCrypto stays for P-384, where it is as fast as ring or faster.
struct RingP256 {
    pair: ring::signature::EcdsaKeyPair,
    /// The same key as PKCS#8 DER, for writing it out.
    pkcs8: Zeroizing<Vec<u8>>,
}

impl RingP256 {
    const SIGNING: &'static ring::signature::EcdsaSigningAlgorithm =
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;

    fn generate() -> Result<RingP256, KeysError> {
        let rng = ring::rand::SystemRandom::new();
        let document = ring::signature::EcdsaKeyPair::generate_pkcs8(Self::SIGNING, &rng)
            .map_err(|_| KeysError::Randomness)?;
        let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
        // `from_pkcs8` also checks that the public key is the private key's.
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(Self::SIGNING, &pkcs8, &rng).map_err(
            |e| KeysError::KeyGeneration {
                algorithm: KeyAlgorithm::P256,
                reason: e.to_string(),
            },
        )?;
        Ok(RingP256 { pair, pkcs8 })
    }

    fn from_rustcrypto(key: &p256::ecdsa::SigningKey) -> Result<RingP256, String> {
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| format!("cannot encode the P-256 key: {e}"))?;
        let scalar = Zeroizing::new(key.to_bytes());
        let public = key.verifying_key().to_sec1_point(false);
        let pair = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            Self::SIGNING,
            scalar.as_slice(),
            public.as_bytes(),
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| format!("the P-256 key is not usable: {e}"))?;
        Ok(RingP256 {
            pair,
            pkcs8: Zeroizing::new(pkcs8.as_bytes().to_vec()),
        })
    }
}

/// A private key held in memory.
///
/// Its `Debug` output names the algorithm only. RSA and P-384 key material is zeroized on drop by
/// the underlying crates, and so is the PKCS#8 copy of a P-256 key; ring's own copy of a P-256 key
/// is not (ring does not zeroize). Keys for real certificates belong on a token.
pub struct SoftwareKey {
    algorithm: KeyAlgorithm,
    secret: Secret,
    public_bits: Vec<u8>,
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKey")
            .field("algorithm", &self.algorithm)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl SoftwareKey {
    /// Generates a key with the operating system's random number generator.
    ///
    /// # Errors
    /// [`KeysError::Randomness`] or [`KeysError::KeyGeneration`].
    pub fn generate(algorithm: KeyAlgorithm) -> Result<SoftwareKey, KeysError> {
        let secret = match algorithm {
            KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let bits = algorithm.rsa_bits().unwrap_or(3072);
                // `new` uses the public exponent 65537.
                let key = rsa::PrivateKey::new(&mut SysRng, bits).map_err(|e| {
                    KeysError::KeyGeneration {
                        algorithm,
                        reason: e.to_string(),
                    }
                })?;
                Secret::Rsa(rsa::pkcs1v15::SigningKey::new(key))
            }
            KeyAlgorithm::P256 => Secret::P256(RingP256::generate()?),
            KeyAlgorithm::P384 => Secret::P384(random_scalar(|bytes: &[u8; 48]| {
                p384::ecdsa::SigningKey::from_slice(bytes).ok()
            })?),
        };
        Ok(SoftwareKey::from_secret(algorithm, secret))
    }

    fn from_secret(algorithm: KeyAlgorithm, secret: Secret) -> SoftwareKey {
        let public_bits = match &secret {
            Secret::Rsa(k) => {
                use rsa::pkcs1::EncodeRsaPublicKey;
                let public = k.as_ref().to_public_key();
                public
                    .to_pkcs1_der()
                    .map(|d| d.as_bytes().to_vec())
                    .unwrap_or_default()
            }
            Secret::P256(k) => {
                use ring::signature::KeyPair;
                k.pair.public_key().as_ref().to_vec()
            }
            Secret::P384(k) => k.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
        };
        SoftwareKey {
            algorithm,
            secret,
            public_bits,
        }
    }

    /// The key as PKCS#8 PEM (LF line ends): `PRIVATE KEY`, or `ENCRYPTED PRIVATE KEY` when a
    /// passphrase is given (PBES2: PBKDF2-HMAC-SHA256 with 600,000 iterations and AES-256-CBC, which
    /// OpenSSL and HSM import tools read).
    ///
    /// # Errors
    /// [`KeysError::Randomness`] (salt and IV) or an encoding failure.
    pub fn to_pkcs8_pem(
        &self,
        passphrase: Option<&SecretString>,
    ) -> Result<Zeroizing<String>, KeysError> {
        let encoding = |e: pkcs8::Error| KeysError::KeyFile {
            path: "<memory>".into(),
            reason: format!("cannot encode the key as PKCS#8: {e}"),
        };
        let document = match &self.secret {
            Secret::Rsa(k) => k.as_ref().to_pkcs8_der(),
            Secret::P256(k) => {
                pkcs8::SecretDocument::try_from(k.pkcs8.as_slice()).map_err(Into::into)
            }
            Secret::P384(k) => k.to_pkcs8_der(),
        }
        .map_err(encoding)?;
        let pem = match passphrase {
            None => document.to_pem("PRIVATE KEY", LineEnding::LF),
            Some(passphrase) => {
                let params = pkcs8::pkcs5::pbes2::Parameters::generate_pbkdf2(&mut SysRng)
                    .map_err(|_| KeysError::Randomness)?;
                let info =
                    pkcs8::PrivateKeyInfoRef::try_from(document.as_bytes()).map_err(encoding)?;
                info.encrypt_with_params(params, passphrase.expose_secret().as_bytes())
                    .map_err(encoding)?
                    .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            }
        };
        pem.map_err(|e| encoding(e.into()))
    }

    /// Writes the key to `path` as PKCS#8 PEM, atomically and with mode 0600.
    ///
    /// # Errors
    /// [`KeysError::KeyFileExists`] when the file exists and `overwrite` is
    /// [`Overwrite::Refuse`]; [`KeysError::Io`].
    pub fn write_pem_file(
        &self,
        path: &Path,
        passphrase: Option<&SecretString>,
        overwrite: Overwrite,
    ) -> Result<(), KeysError> {
        let pem = self.to_pkcs8_pem(passphrase)?;
        write_atomically(path, pem.as_bytes(), PRIVATE_FILE_MODE, overwrite)
    }

    /// Reads a key file: PKCS#8 (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`), PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`), then checks it against the policy.
    ///
    /// # Errors
    /// [`KeysError::Io`], [`KeysError::KeyFile`], [`KeysError::PassphraseRequired`],
    /// [`KeysError::WrongPassphrase`], or [`KeysError::Policy`] for a key the rules do not allow.
    pub fn read_pem_file(
        path: &Path,
        passphrase: Option<&SecretString>,
    ) -> Result<SoftwareKey, KeysError> {
        let text = Zeroizing::new(crate::files::read_input(
            path,
            crate::files::InputKind::PrivateKey,
        )?);
        SoftwareKey::from_pem(&text, passphrase, path)
    }

    /// Reads a key from PEM text; `path` only names the source in errors.
    ///
    /// # Errors
    /// As [`SoftwareKey::read_pem_file`].
    pub fn from_pem(
        text: &[u8],
        passphrase: Option<&SecretString>,
        path: &Path,
    ) -> Result<SoftwareKey, KeysError> {
        let bad = |reason: String| KeysError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let block = pem::parse(text).map_err(|e| {
            bad(format!(
                "not a PEM private key ({e}); expected a PKCS#8 'PRIVATE KEY' block"
            ))
        })?;
        let tag = block.tag().to_string();
        if block.headers().iter().next().is_some() {
            return Err(bad(
                "legacy OpenSSL-encrypted PEM is not supported; convert it with `openssl pkcs8 -topk8`"
                    .to_string(),
            ));
        }
        let der = Zeroizing::new(block.into_contents());
        match tag.as_str() {
            "PRIVATE KEY" => from_pkcs8_der(&der, path),
            "ENCRYPTED PRIVATE KEY" => {
                let Some(passphrase) = passphrase else {
                    return Err(KeysError::PassphraseRequired {
                        path: path.to_path_buf(),
                    });
                };
                let encrypted = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
                    .map_err(|e| bad(format!("malformed encrypted PKCS#8 key: {e}")))?;
                let plain = encrypted
                    .decrypt(passphrase.expose_secret().as_bytes())
                    .map_err(|_| KeysError::WrongPassphrase {
                        path: path.to_path_buf(),
                    })?;
                from_pkcs8_der(plain.as_bytes(), path)
            }
            "RSA PRIVATE KEY" => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                let key = rsa::PrivateKey::from_pkcs1_der(&der)
                    .map_err(|e| bad(format!("malformed PKCS#1 RSA key: {e}")))?;
                from_rsa(key, path)
            }
            "EC PRIVATE KEY" => {
                if let Ok(k) = p256::SecretKey::from_sec1_der(&der) {
                    from_p256(&k.into(), path)
                } else if let Ok(k) = p384::SecretKey::from_sec1_der(&der) {
                    Ok(SoftwareKey::from_secret(
                        KeyAlgorithm::P384,
                        Secret::P384(k.into()),
                    ))
                } else {
                    Err(bad(
                        "the SEC1 EC key is malformed or not on P-256/P-384; code signing keys must be RSA-3072 or larger, or ECC P-256/P-384"
                            .to_string(),
                    ))
                }
            }
            other => Err(bad(format!(
                "found a PEM block labelled '{other}', expected 'PRIVATE KEY' or 'ENCRYPTED PRIVATE KEY'"
            ))),
        }
    }

    /// The key's description for the policy.
    pub fn description(&self) -> KeyDescription {
        match &self.secret {
            Secret::Rsa(k) => rsa_description(k.as_ref()),
            Secret::P256(_) => KeyDescription::Ec {
                curve: NamedCurve::P256,
            },
            Secret::P384(_) => KeyDescription::Ec {
                curve: NamedCurve::P384,
            },
        }
    }
}

fn rsa_description(key: &rsa::PrivateKey) -> KeyDescription {
    let e = key.e_bytes();
    let exponent = if unsigned_bit_length(&e) > 64 {
        RsaExponent::TooLarge
    } else {
        RsaExponent::Value(e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    KeyDescription::Rsa {
        bits: unsigned_bit_length(&key.n_bytes()),
        exponent,
    }
}

fn from_rsa(key: rsa::PrivateKey, path: &Path) -> Result<SoftwareKey, KeysError> {
    let description = rsa_description(&key);
    policy::check(&description).map_err(KeysError::Policy)?;
    let algorithm = match description {
        KeyDescription::Rsa { bits: 3072, .. } => KeyAlgorithm::Rsa3072,
        KeyDescription::Rsa { bits: 4096, .. } => KeyAlgorithm::Rsa4096,
        other => {
            return Err(KeysError::KeyFile {
                path: path.to_path_buf(),
                reason: format!(
                    "this key is {other}; the rules allow it, but this tool signs with RSA-3072 and RSA-4096 keys only"
                ),
            });
        }
    };
    Ok(SoftwareKey::from_secret(
        algorithm,
        Secret::Rsa(rsa::pkcs1v15::SigningKey::new(key)),
    ))
}

fn from_p256(key: &p256::ecdsa::SigningKey, path: &Path) -> Result<SoftwareKey, KeysError> {
    let key = RingP256::from_rustcrypto(key).map_err(|reason| KeysError::KeyFile {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(SoftwareKey::from_secret(
        KeyAlgorithm::P256,
        Secret::P256(key),
    ))
}

fn from_pkcs8_der(der: &[u8], path: &Path) -> Result<SoftwareKey, KeysError> {
    let bad = |reason: String| KeysError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let info = pkcs8::PrivateKeyInfoRef::try_from(der)
        .map_err(|e| bad(format!("malformed PKCS#8 key: {e}")))?;
    let oid = info.algorithm.oid.to_string();
    match oid.as_str() {
        crate::oid::RSA_ENCRYPTION => {
            let key = rsa::PrivateKey::from_pkcs8_der(der)
                .map_err(|e| bad(format!("malformed RSA key: {e}")))?;
            from_rsa(key, path)
        }
        crate::oid::EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map(|o| NamedCurve::from_oid(&o.to_string()))
                .map_err(|_| bad("the EC key does not name its curve".to_string()))?;
            match curve {
                NamedCurve::P256 => p256::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| bad(format!("malformed P-256 key: {e}")))
                    .and_then(|k| from_p256(&k, path)),
                NamedCurve::P384 => p384::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map(|k| SoftwareKey::from_secret(KeyAlgorithm::P384, Secret::P384(k)))
                    .map_err(|e| bad(format!("malformed P-384 key: {e}"))),
                curve => Err(KeysError::Policy(crate::policy::PolicyViolation::new(
                    KeyDescription::Ec { curve },
                ))),
            }
        }
        other => Err(KeysError::Policy(crate::policy::PolicyViolation::new(
            KeyDescription::Other {
                algorithm: crate::oid::other_key_algorithm(other),
            },
        ))),
    }
}

/// Draws scalars from the OS until one is valid for the curve (all but a ~2^-32 fraction are).
fn random_scalar<K, const SIZE: usize>(
    make: impl Fn(&[u8; SIZE]) -> Option<K>,
) -> Result<K, KeysError> {
    for _ in 0..64 {
        let mut bytes = Zeroizing::new([0u8; SIZE]);
        SysRng
            .try_fill_bytes(bytes.as_mut_slice())
            .map_err(|_| KeysError::Randomness)?;
        if let Some(key) = make(&bytes) {
            return Ok(key);
        }
    }
    Err(KeysError::Randomness)
}

impl KeySigner for SoftwareKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key_bits(&self) -> &[u8] {
        &self.public_bits
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeysError> {
        use p256::ecdsa::signature::Signer;
        let failed = |e: p256::ecdsa::Error| KeysError::Signing(e.to_string());
        Ok(match &self.secret {
            Secret::Rsa(k) => {
                let sig: rsa::pkcs1v15::Signature = k.try_sign(message).map_err(failed)?;
                Box::<[u8]>::from(sig).into_vec()
            }
            Secret::P256(k) => k
                .pair
                .sign(&ring::rand::SystemRandom::new(), message)
                .map_err(|_| {
                    KeysError::Signing("ring could not sign with the P-256 key".to_string())
                })?
                .as_ref()
                .to_vec(),
            Secret::P384(k) => {
                let sig: p384::ecdsa::Signature = k.try_sign(message).map_err(failed)?;
                sig.to_der().as_bytes().to_vec()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_keys_need_the_right_passphrase() {
        let key = SoftwareKey::generate(KeyAlgorithm::P384).unwrap();
        let pass = SecretString::from("correct horse");
        let pem = key.to_pkcs8_pem(Some(&pass)).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
        assert!(!pem.contains('\r'));
        let path = Path::new("k.pem");
        let err = SoftwareKey::from_pem(pem.as_bytes(), None, path).unwrap_err();
        assert!(matches!(err, KeysError::PassphraseRequired { .. }), "{err}");
        let wrong = SecretString::from("wrong");
        let err = SoftwareKey::from_pem(pem.as_bytes(), Some(&wrong), path).unwrap_err();
        assert!(matches!(err, KeysError::WrongPassphrase { .. }), "{err}");
        let back = SoftwareKey::from_pem(pem.as_bytes(), Some(&pass), path).unwrap();
        assert_eq!(back.public_key_bits(), key.public_key_bits());
        assert_eq!(back.algorithm(), KeyAlgorithm::P384);
    }

    #[test]
    fn debug_output_hides_the_key() {
        let key = SoftwareKey::generate(KeyAlgorithm::P256).unwrap();
        let debug = format!("{key:?}");
        assert_eq!(
            debug,
            "SoftwareKey { algorithm: P256, private_key: \"<redacted>\" }"
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let path = Path::new("junk.pem");
        for junk in [
            &b""[..],
            b"hello",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let err = SoftwareKey::from_pem(junk, None, path).unwrap_err();
            assert!(err.to_string().starts_with("junk.pem: "), "{err}");
        }
        let cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = SoftwareKey::from_pem(cert, None, path).unwrap_err();
        assert!(err.to_string().contains("labelled 'CERTIFICATE'"), "{err}");
    }
}
