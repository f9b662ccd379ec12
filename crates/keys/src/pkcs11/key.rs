//! A private key on a token, usable as a [`KeySigner`].

use std::fmt;

use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::UserType;
use sha2::Digest;

use super::encoding::{
    SHA256_DIGEST_INFO_PREFIX, decode_ec_point, ecdsa_raw_to_der, rsa_public_key_der,
};
use super::session::TokenSession;
use super::session::hex;
use crate::policy::{self, KeyDescription, NamedCurve, RsaExponent};
use crate::spki::unsigned_bit_length;
use crate::{KeyAlgorithm, KeySigner, KeysError};

/// How signatures are made on the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigningMechanism {
    /// `CKM_SHA256_RSA_PKCS`: the token hashes.
    Sha256RsaPkcs,
    /// `CKM_RSA_PKCS` over a local SHA-256 `DigestInfo`.
    RsaPkcsLocalHash,
    /// `CKM_ECDSA_SHA256` / `CKM_ECDSA_SHA384`: the token hashes.
    EcdsaWithHash,
    /// `CKM_ECDSA` over a local SHA-256 / SHA-384 digest.
    EcdsaLocalHash,
}

/// A private key on a token (with its public half), borrowed from a [`TokenSession`].
pub struct TokenKey<'s> {
    pub(crate) session: &'s TokenSession,
    pub(crate) private: ObjectHandle,
    pub(crate) public: Option<ObjectHandle>,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) id: Vec<u8>,
    pub(crate) label: String,
    pub(crate) public_bits: Vec<u8>,
    always_authenticate: bool,
    mechanism: SigningMechanism,
}

impl fmt::Debug for TokenKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("token", &self.session.token.summary)
            .field("algorithm", &self.algorithm)
            .field("id", &hex(&self.id))
            .field("label", &self.label)
            .finish()
    }
}

/// A private key on the token, as [`TokenSession::list_keys`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKey {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// The algorithm, for a key the code signing rules allow.
    pub algorithm: Option<KeyAlgorithm>,
    /// Why it is not usable here, for any other.
    pub refused: Option<String>,
    /// The certificate kept beside it (DER).
    pub certificate: Option<Vec<u8>>,
}

impl TokenKey<'_> {
    /// The key's `CKA_ID`.
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// The key's `CKA_LABEL`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The session the key is used through.
    pub fn session(&self) -> &TokenSession {
        self.session
    }

    /// The key's RFC 7512 URI (token label and serial, object label, id, type=private).
    pub fn uri(&self) -> super::uri::Pkcs11Uri {
        let summary = &self.session.token.summary;
        super::uri::Pkcs11Uri {
            token: Some(summary.label.clone()),
            serial: Some(summary.serial.clone()),
            object: Some(self.label.clone()),
            id: Some(self.id.clone()),
            object_type: Some(super::uri::ObjectType::Private),
            ..Default::default()
        }
    }
}

impl TokenSession {
    /// The private key named by `id` and/or `label` (at least one), with its public half.
    ///
    /// # Errors
    /// [`KeysError::KeyNotFound`], [`KeysError::KeyAmbiguous`], [`KeysError::Policy`] for a key
    /// the rules do not allow, [`KeysError::Pkcs11`].
    pub fn find_key(
        &self,
        id: Option<&[u8]>,
        label: Option<&str>,
    ) -> Result<TokenKey<'_>, KeysError> {
        let what = match (id, label) {
            (Some(id), Some(l)) => format!("CKA_ID {} and label \"{l}\"", hex(id)),
            (Some(id), None) => format!("CKA_ID {}", hex(id)),
            (None, Some(l)) => format!("label \"{l}\""),
            (None, None) => {
                return Err(KeysError::Pkcs11Uri {
                    reason: "name the key with id=... or object=...".to_string(),
                });
            }
        };
        let found = self.find_private_keys(id, label)?;
        let private = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(KeysError::KeyNotFound {
                    token: self.token.description(),
                    what,
                });
            }
            many => {
                return Err(KeysError::KeyAmbiguous {
                    token: self.token.description(),
                    what,
                    count: many.len(),
                });
            }
        };
        self.key_from_private(private)
    }

    /// Destroys the key and everything kept beside it under its CKA_ID (its public key, its
    /// certificates), and says how many objects went. A key without a CKA_ID loses its private
    /// and public halves alone.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when the objects cannot be found or destroyed.
    pub fn destroy_key(&self, key: TokenKey<'_>) -> Result<usize, KeysError> {
        let mut objects = vec![key.private];
        objects.extend(key.public);
        if !key.id.is_empty() {
            for object in self.find(&[Attribute::Id(key.id.clone())])? {
                if !objects.contains(&object) {
                    objects.push(object);
                }
            }
        }
        self.destroy(&objects)?;
        Ok(objects.len())
    }

    /// The certificates without a `CKA_ID` (the chains' authority certificates), DER.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`].
    pub fn certificates_without_id(&self) -> Result<Vec<Vec<u8>>, KeysError> {
        let mut found = Vec::new();
        for object in self.find(&[Attribute::Class(ObjectClass::CERTIFICATE)])? {
            let attrs = self.attributes(object, &[AttributeType::Id, AttributeType::Value])?;
            let has_id = attrs
                .iter()
                .any(|a| matches!(a, Attribute::Id(v) if !v.is_empty()));
            if has_id {
                continue;
            }
            if let Some(Attribute::Value(der)) =
                attrs.into_iter().find(|a| matches!(a, Attribute::Value(_)))
            {
                found.push(der);
            }
        }
        Ok(found)
    }

    /// Every private key the token holds, with its certificate when one is kept beside it. A key
    /// the code signing rules do not allow (or that cannot be read) is listed with the reason
    /// instead of its algorithm.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when the keys cannot be found.
    pub fn list_keys(&self) -> Result<Vec<ListedKey>, KeysError> {
        let mut listed = Vec::new();
        for private in self.find_private_keys(None, None)? {
            match self.key_from_private(private) {
                Ok(key) => {
                    let certificate = self.certificate_for(&key)?;
                    listed.push(ListedKey {
                        label: key.label.clone(),
                        id: key.id.clone(),
                        algorithm: Some(key.algorithm),
                        refused: None,
                        certificate,
                    });
                }
                Err(e) => {
                    let mut label = String::new();
                    let mut id = Vec::new();
                    for attr in
                        self.attributes(private, &[AttributeType::Label, AttributeType::Id])?
                    {
                        match attr {
                            Attribute::Label(v) => label = String::from_utf8_lossy(&v).into_owned(),
                            Attribute::Id(v) => id = v,
                            _ => {}
                        }
                    }
                    listed.push(ListedKey {
                        label,
                        id,
                        algorithm: None,
                        refused: Some(e.to_string()),
                        certificate: None,
                    });
                }
            }
        }
        Ok(listed)
    }

    /// Builds the [`TokenKey`] for a private key handle: reads its ID, label, type and public key.
    pub(crate) fn key_from_private(
        &self,
        private: ObjectHandle,
    ) -> Result<TokenKey<'_>, KeysError> {
        let attrs = self.attributes(
            private,
            &[
                AttributeType::Id,
                AttributeType::Label,
                AttributeType::KeyType,
                AttributeType::AlwaysAuthenticate,
            ],
        )?;
        let mut id = Vec::new();
        let mut label = String::new();
        let mut key_type = None;
        let mut always_authenticate = false;
        for attr in attrs {
            match attr {
                Attribute::Id(v) => id = v,
                Attribute::Label(v) => label = String::from_utf8_lossy(&v).into_owned(),
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::AlwaysAuthenticate(b) => always_authenticate = b,
                _ => {}
            }
        }
        let public = if id.is_empty() {
            None
        } else {
            self.find(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(id.clone()),
            ])?
            .first()
            .copied()
        };
        let mechanisms = self
            .token
            .module
            .context()
            .get_mechanism_list(self.token.slot)
            .map_err(|e| self.error(e, "C_GetMechanismList"))?;
        let offers = |m: MechanismType| mechanisms.contains(&m);
        let (algorithm, public_bits, mechanism) = match key_type {
            Some(KeyType::RSA) => {
                // RSA private objects carry the modulus and exponent; fall back to the public half.
                let source = [Some(private), public];
                let mut modulus = None;
                let mut exponent = None;
                for object in source.into_iter().flatten() {
                    if modulus.is_none()
                        && let Some(Attribute::Modulus(m)) =
                            self.attribute(object, AttributeType::Modulus)?
                    {
                        modulus = Some(m);
                    }
                    if exponent.is_none()
                        && let Some(Attribute::PublicExponent(e)) =
                            self.attribute(object, AttributeType::PublicExponent)?
                    {
                        exponent = Some(e);
                    }
                }
                let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
                    return Err(self.unreadable("the RSA key's modulus or exponent"));
                };
                let description = KeyDescription::Rsa {
                    bits: unsigned_bit_length(&modulus),
                    exponent: if unsigned_bit_length(&exponent) > 64 {
                        RsaExponent::TooLarge
                    } else {
                        RsaExponent::Value(
                            exponent.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)),
                        )
                    },
                };
                policy::check(&description).map_err(KeysError::Policy)?;
                let algorithm = match description {
                    KeyDescription::Rsa { bits: 3072, .. } => KeyAlgorithm::Rsa3072,
                    KeyDescription::Rsa { bits: 4096, .. } => KeyAlgorithm::Rsa4096,
                    other => {
                        return Err(KeysError::TokenState {
                            token: self.token.description(),
                            what: format!(
                                "{other} keys are allowed by the rules but this tool signs with RSA-3072 and RSA-4096 only"
                            ),
                        });
                    }
                };
                let mechanism = if offers(MechanismType::SHA256_RSA_PKCS) {
                    SigningMechanism::Sha256RsaPkcs
                } else if offers(MechanismType::RSA_PKCS) {
                    SigningMechanism::RsaPkcsLocalHash
                } else {
                    return Err(self.cannot_sign(algorithm, "CKM_SHA256_RSA_PKCS or CKM_RSA_PKCS"));
                };
                (
                    algorithm,
                    rsa_public_key_der(&modulus, &exponent),
                    mechanism,
                )
            }
            Some(KeyType::EC) => {
                let Some(Attribute::EcParams(params)) =
                    self.attribute(private, AttributeType::EcParams)?
                else {
                    return Err(self.unreadable("the EC key's CKA_EC_PARAMS"));
                };
                let curve = curve_from_params(&params);
                policy::check(&KeyDescription::Ec {
                    curve: curve.clone(),
                })
                .map_err(KeysError::Policy)?;
                let algorithm = if curve == NamedCurve::P256 {
                    KeyAlgorithm::P256
                } else {
                    KeyAlgorithm::P384
                };
                let Some(public) = public else {
                    return Err(self.unreadable(
                        "the EC key's public point (no public key object shares its CKA_ID)",
                    ));
                };
                let Some(Attribute::EcPoint(point)) =
                    self.attribute(public, AttributeType::EcPoint)?
                else {
                    return Err(self.unreadable("the public key's CKA_EC_POINT"));
                };
                let point =
                    decode_ec_point(&point, &curve).map_err(|reason| KeysError::TokenState {
                        token: self.token.description(),
                        what: format!("its public key cannot be read: {reason}"),
                    })?;
                let hashed = if algorithm == KeyAlgorithm::P256 {
                    MechanismType::ECDSA_SHA256
                } else {
                    MechanismType::ECDSA_SHA384
                };
                let mechanism = if offers(hashed) {
                    SigningMechanism::EcdsaWithHash
                } else if offers(MechanismType::ECDSA) {
                    SigningMechanism::EcdsaLocalHash
                } else {
                    return Err(self.cannot_sign(algorithm, "CKM_ECDSA"));
                };
                (algorithm, point, mechanism)
            }
            other => {
                return Err(KeysError::Policy(crate::policy::PolicyViolation::new(
                    KeyDescription::Other {
                        algorithm: format!("a token key of type {other:?}"),
                    },
                )));
            }
        };
        Ok(TokenKey {
            session: self,
            private,
            public,
            algorithm,
            id,
            label,
            public_bits,
            always_authenticate,
            mechanism,
        })
    }

    fn unreadable(&self, what: &str) -> KeysError {
        KeysError::TokenState {
            token: self.token.description(),
            what: format!("{what} cannot be read"),
        }
    }

    fn cannot_sign(&self, algorithm: KeyAlgorithm, needs: &str) -> KeysError {
        KeysError::TokenCapability {
            token: self.token.description(),
            what: format!("sign with {algorithm} keys"),
            supports: format!("none of {needs}"),
        }
    }
}

/// The curve named by DER `CKA_EC_PARAMS` (an OID).
pub(crate) fn curve_from_params(params: &[u8]) -> NamedCurve {
    match params {
        [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07] => NamedCurve::P256,
        [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22] => NamedCurve::P384,
        [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23] => NamedCurve::P521,
        other => NamedCurve::Other(format!("with CKA_EC_PARAMS {}", hex(other))),
    }
}

impl KeySigner for TokenKey<'_> {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key_bits(&self) -> &[u8] {
        &self.public_bits
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeysError> {
        let session = self.session;
        let (mechanism, data, multipart_ok) = match self.mechanism {
            SigningMechanism::Sha256RsaPkcs => (Mechanism::Sha256RsaPkcs, message.to_vec(), true),
            SigningMechanism::RsaPkcsLocalHash => {
                let mut info = SHA256_DIGEST_INFO_PREFIX.to_vec();
                info.extend_from_slice(&sha2::Sha256::digest(message));
                (Mechanism::RsaPkcs, info, false)
            }
            SigningMechanism::EcdsaWithHash => {
                let m = if self.algorithm == KeyAlgorithm::P256 {
                    Mechanism::EcdsaSha256
                } else {
                    Mechanism::EcdsaSha384
                };
                (m, message.to_vec(), true)
            }
            SigningMechanism::EcdsaLocalHash => {
                let digest = if self.algorithm == KeyAlgorithm::P256 {
                    sha2::Sha256::digest(message).to_vec()
                } else {
                    sha2::Sha384::digest(message).to_vec()
                };
                (Mechanism::Ecdsa, digest, false)
            }
        };
        let token = session.token.description();
        let failed = |e: Error, op: &str| {
            KeysError::Signing(format!(
                "{token}: {} failed: {}",
                super::calls::function_name(&e, op),
                super::calls::ckr_name(&e)
            ))
        };
        let raw = session.serialized(|s| -> Result<Vec<u8>, KeysError> {
        Ok(if self.always_authenticate {
            if !multipart_ok {
                return Err(KeysError::Signing(format!(
                    "{token}: the key needs a PIN for every signature (CKA_ALWAYS_AUTHENTICATE) and the token hashes nothing itself, which cryptoki cannot sign with a login in between"
                )));
            }
            s.sign_init(&mechanism, self.private)
                .map_err(|e| failed(e, "C_SignInit"))?;
            match s.login(UserType::ContextSpecific, Some(session.pin.secret()))
            {
                Ok(()) => {}
                Err(Error::Pkcs11(RvError::PinIncorrect, _)) => {
                    return Err(KeysError::PinIncorrect {
                            token: token.clone(),
                        });
                }
                Err(e) => return Err(failed(e, "C_Login")),
            }
            s.sign_update(&data)
                .map_err(|e| failed(e, "C_SignUpdate"))?;
            s.sign_final()
                .map_err(|e| failed(e, "C_SignFinal"))?
        } else {
            s.sign(&mechanism, self.private, &data)
                .map_err(|e| failed(e, "C_Sign"))?
        })
        })?;
        match self.algorithm {
            KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => Ok(raw),
            KeyAlgorithm::P256 => ecdsa_raw_to_der(&raw, &NamedCurve::P256)
                .map_err(|e| KeysError::Signing(e.to_string())),
            KeyAlgorithm::P384 => ecdsa_raw_to_der(&raw, &NamedCurve::P384)
                .map_err(|e| KeysError::Signing(e.to_string())),
        }
    }
}
