//! Installing a certificate on the token beside its key.

use cryptoki::object::{Attribute, CertificateType, ObjectClass, ObjectHandle};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::encoding::der_unsigned_integer;
use super::key::TokenKey;
use super::session::TokenSession;
use super::session::hex;
use crate::{KeySigner, KeysError};

impl TokenSession {
    /// Stores `cert_der` on the token as an X.509 certificate object with the key's `CKA_ID` and
    /// `CKA_LABEL`, its subject, issuer and serial number. Refused when the certificate's public key
    /// is not the key's, or when a certificate with that ID is already there.
    ///
    /// # Errors
    /// [`KeysError::Certificate`], [`KeysError::DuplicateObject`], [`KeysError::Pkcs11`].
    pub fn install_certificate(
        &self,
        key: &TokenKey<'_>,
        cert_der: &[u8],
    ) -> Result<ObjectHandle, KeysError> {
        let (rest, cert) = X509Certificate::from_der(cert_der).map_err(|e| {
            KeysError::Certificate(format!("not a readable X.509 certificate: {e}"))
        })?;
        if !rest.is_empty() {
            return Err(KeysError::Certificate(
                "trailing data after the certificate".to_string(),
            ));
        }
        let cert_spki = cert.tbs_certificate.subject_pki.raw;
        if cert_spki != key.subject_public_key_info().as_slice() {
            return Err(KeysError::Certificate(format!(
                "its public key is not the key's (CKA_ID {}, label \"{}\")",
                hex(key.id()),
                key.label()
            )));
        }
        let existing = self.find(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Id(key.id().to_vec()),
        ])?;
        if !existing.is_empty() {
            return Err(KeysError::DuplicateObject {
                token: self.token.description(),
                what: format!("a certificate for CKA_ID {}", hex(key.id())),
            });
        }
        let template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Id(key.id().to_vec()),
            Attribute::Label(key.label().as_bytes().to_vec()),
            Attribute::Subject(cert.tbs_certificate.subject.as_raw().to_vec()),
            Attribute::Issuer(cert.tbs_certificate.issuer.as_raw().to_vec()),
            Attribute::SerialNumber(der_unsigned_integer(cert.tbs_certificate.raw_serial())),
            Attribute::Value(cert_der.to_vec()),
        ];
        self.serialized(|s| s.create_object(&template))
            .map_err(|e| self.error(e, "C_CreateObject"))
    }

    /// Stores a CA certificate (an intermediate of a chain) on the token as a certificate object
    /// of category authority (`CKA_CERTIFICATE_CATEGORY` 2), labelled with its subject's common
    /// name, unless the token holds that certificate already: many keys share one intermediate,
    /// and it is stored once. Says whether it was added.
    ///
    /// # Errors
    /// [`KeysError::Certificate`] for a certificate that does not parse, [`KeysError::Pkcs11`].
    pub fn install_authority(&self, cert_der: &[u8]) -> Result<bool, KeysError> {
        let (rest, cert) = X509Certificate::from_der(cert_der).map_err(|e| {
            KeysError::Certificate(format!("not a readable X.509 certificate: {e}"))
        })?;
        if !rest.is_empty() {
            return Err(KeysError::Certificate(
                "trailing data after the certificate".to_string(),
            ));
        }
        let present = self.find(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Value(cert_der.to_vec()),
        ])?;
        if !present.is_empty() {
            return Ok(false);
        }
        let subject = &cert.tbs_certificate.subject;
        let label = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map_or_else(|| subject.to_string(), str::to_string);
        let ulong = |v: cryptoki_sys::CK_ULONG| v.to_ne_bytes().to_vec();
        // cryptoki 0.12 has no CKA_CERTIFICATE_CATEGORY: the object is made through the module's
        // function list (see `raw`).
        let template = vec![
            (
                cryptoki_sys::CKA_CLASS,
                ulong(cryptoki_sys::CKO_CERTIFICATE),
            ),
            (
                cryptoki_sys::CKA_CERTIFICATE_TYPE,
                ulong(cryptoki_sys::CKC_X_509),
            ),
            (cryptoki_sys::CKA_TOKEN, vec![cryptoki_sys::CK_TRUE]),
            (cryptoki_sys::CKA_PRIVATE, vec![cryptoki_sys::CK_FALSE]),
            (cryptoki_sys::CKA_LABEL, label.into_bytes()),
            (cryptoki_sys::CKA_CERTIFICATE_CATEGORY, ulong(2)),
            (cryptoki_sys::CKA_SUBJECT, subject.as_raw().to_vec()),
            (
                cryptoki_sys::CKA_ISSUER,
                cert.tbs_certificate.issuer.as_raw().to_vec(),
            ),
            (
                cryptoki_sys::CKA_SERIAL_NUMBER,
                der_unsigned_integer(cert.tbs_certificate.raw_serial()),
            ),
            (cryptoki_sys::CKA_VALUE, cert_der.to_vec()),
        ];
        let session = self.session.handle();
        let create = |template: &[(cryptoki_sys::CK_ATTRIBUTE_TYPE, Vec<u8>)]| {
            self.serialized(|_| self.token.module.raw().create_object(session, template))
        };
        match create(&template) {
            Ok(_) => Ok(true),
            // A module of PKCS#11 2.20 (opencryptoki) does not know the category: the
            // certificate is stored without it, which such a module's readers expect anyway.
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::AttributeTypeInvalid,
                _,
            )) => {
                let without: Vec<_> = template
                    .into_iter()
                    .filter(|(kind, _)| *kind != cryptoki_sys::CKA_CERTIFICATE_CATEGORY)
                    .collect();
                create(&without).map_err(|e| self.error(e, "C_CreateObject"))?;
                tracing::info!(
                    "{}: the module does not know CKA_CERTIFICATE_CATEGORY; the CA certificate is stored without it",
                    self.token.description()
                );
                Ok(true)
            }
            Err(e) => Err(self.error(e, "C_CreateObject")),
        }
    }

    /// The chain of `leaf` from the token's certificates: each issuer found by its subject, up to
    /// the first certificate the token does not hold (or a self-signed one). `leaf` is first.
    ///
    /// # Errors
    /// [`KeysError::Certificate`] when a certificate does not parse, [`KeysError::Pkcs11`].
    pub fn chain_on_token(&self, leaf: &[u8]) -> Result<Vec<Vec<u8>>, KeysError> {
        let mut chain = vec![leaf.to_vec()];
        for _ in 0..8 {
            let last = chain.last().cloned().unwrap_or_default();
            let (_, cert) = X509Certificate::from_der(&last).map_err(|e| {
                KeysError::Certificate(format!("not a readable X.509 certificate: {e}"))
            })?;
            let issuer = cert.tbs_certificate.issuer.as_raw();
            if issuer == cert.tbs_certificate.subject.as_raw() {
                break;
            }
            let found = self.find(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Subject(issuer.to_vec()),
            ])?;
            let Some(handle) = found.first() else { break };
            match self.attribute(*handle, cryptoki::object::AttributeType::Value)? {
                Some(Attribute::Value(der)) if !chain.contains(&der) => chain.push(der),
                _ => break,
            }
        }
        Ok(chain)
    }

    /// The DER of the certificate stored with `key`'s `CKA_ID`, if any.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`].
    pub fn certificate_for(&self, key: &TokenKey<'_>) -> Result<Option<Vec<u8>>, KeysError> {
        let found = self.find(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Id(key.id().to_vec()),
        ])?;
        let Some(handle) = found.first() else {
            return Ok(None);
        };
        match self.attribute(*handle, cryptoki::object::AttributeType::Value)? {
            Some(Attribute::Value(der)) => Ok(Some(der)),
            _ => Ok(None),
        }
    }
}
