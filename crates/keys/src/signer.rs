//! One signer abstraction for every place a key lives (software now, PKCS#11 tokens too).
//!
//! The CSR code only sees a [`KeySigner`]; [`RcgenSigner`] adapts it to rcgen's traits and keeps
//! the signer's own error, which rcgen would otherwise reduce to "remote key error".

use std::cell::RefCell;

use crate::{KeyAlgorithm, KeysError};

/// A private key that can sign a CSR.
///
/// Implementors return signatures in X.509 form: RSA PKCS#1 v1.5 signature bytes over SHA-256, or a
/// DER `Ecdsa-Sig-Value` over SHA-256 (P-256) / SHA-384 (P-384).
pub trait KeySigner {
    /// The key's algorithm.
    fn algorithm(&self) -> KeyAlgorithm;

    /// The contents of the `subjectPublicKey` BIT STRING: the PKCS#1 `RSAPublicKey` DER for RSA,
    /// the uncompressed SEC1 point (`04 || X || Y`) for EC.
    fn public_key_bits(&self) -> &[u8];

    /// Signs `message` (the whole, unhashed data) with the algorithm's hash.
    ///
    /// # Errors
    /// [`KeysError::Signing`] with the underlying reason (for tokens: the PKCS#11 return code).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeysError>;

    /// The DER `SubjectPublicKeyInfo` of the key.
    fn subject_public_key_info(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&PublicPart {
            algorithm: self.algorithm(),
            bits: self.public_key_bits(),
        })
    }
}

struct PublicPart<'a> {
    algorithm: KeyAlgorithm,
    bits: &'a [u8],
}

impl rcgen::PublicKeyData for PublicPart<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.bits
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm.rcgen_signature_algorithm()
    }
}

/// Adapts a [`KeySigner`] to rcgen, remembering the first signing error.
pub(crate) struct RcgenSigner<'a> {
    inner: &'a dyn KeySigner,
    error: RefCell<Option<KeysError>>,
}

impl<'a> RcgenSigner<'a> {
    pub(crate) fn new(inner: &'a dyn KeySigner) -> Self {
        RcgenSigner {
            inner,
            error: RefCell::new(None),
        }
    }

    /// The signer's own error, if signing failed.
    pub(crate) fn take_error(&self) -> Option<KeysError> {
        self.error.borrow_mut().take()
    }
}

impl rcgen::PublicKeyData for RcgenSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.inner.public_key_bits()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.inner.algorithm().rcgen_signature_algorithm()
    }
}

impl rcgen::SigningKey for RcgenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.inner.sign(msg).map_err(|e| {
            self.error.borrow_mut().get_or_insert(e);
            rcgen::Error::RemoteKeyError
        })
    }
}
