//! Generating key pairs on a token: capability check, explicit template, audit, no orphans.

use std::ops::Deref;
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use getrandom::SysRng;
use getrandom::rand_core::TryRng;

use super::key::TokenKey;
use super::session::TokenSession;
use super::session::hex;
use crate::policy::NamedCurve;
use crate::{KeyAlgorithm, KeysError};

/// DER OID of P-256 for `CKA_EC_PARAMS`.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER OID of P-384 for `CKA_EC_PARAMS`.
const P384_PARAMS: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// What key to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// `CKA_LABEL` of both halves; must not be in use on the token.
    pub label: String,
    /// `CKA_ID` of both halves; random 16 bytes when `None`. Must not be in use on the token.
    pub id: Option<Vec<u8>>,
}

impl KeyRequest {
    /// A request with a random ID.
    pub fn new(algorithm: KeyAlgorithm, label: impl Into<String>) -> KeyRequest {
        KeyRequest {
            algorithm,
            label: label.into(),
            id: None,
        }
    }
}

/// The attributes of a new private key as read back from the token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyAudit {
    /// `CKA_TOKEN`: stored on the token.
    pub token: Option<bool>,
    /// `CKA_PRIVATE`: needs a login.
    pub private: Option<bool>,
    /// `CKA_SENSITIVE`.
    pub sensitive: Option<bool>,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: Option<bool>,
    /// `CKA_EXTRACTABLE`.
    pub extractable: Option<bool>,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: Option<bool>,
    /// `CKA_LOCAL`: generated on the token.
    pub local: Option<bool>,
    /// `CKA_SIGN`.
    pub sign: Option<bool>,
    /// `CKA_DECRYPT`.
    pub decrypt: Option<bool>,
    /// `CKA_UNWRAP`.
    pub unwrap: Option<bool>,
    /// `CKA_DERIVE`.
    pub derive: Option<bool>,
    /// RSA modulus bits, read back.
    pub modulus_bits: Option<usize>,
    /// EC curve, read back.
    pub curve: Option<String>,
    /// The module refused the usage restrictions of the template (`CKA_DECRYPT`, `CKA_UNWRAP`,
    /// `CKA_DERIVE` false on the private half; `CKA_ENCRYPT`, `CKA_WRAP` false on the public
    /// half), so the key was made with the module's own usage defaults. tpm2-pkcs11 does this: a
    /// TPM key is made for signing and decryption at once.
    pub usage_left_to_module: bool,
}

impl KeyAudit {
    /// What the key may do beyond signing, by the module's choice: not a protection failure (the
    /// key stays sensitive, non-extractable and on the token, and the certificate limits its use
    /// to code signing), but said wherever the key is reported. Empty for a sign-only key.
    pub fn wider_usage(&self) -> Vec<&'static str> {
        [
            ("decrypt", self.decrypt),
            ("unwrap", self.unwrap),
            ("derive", self.derive),
        ]
        .into_iter()
        .filter(|(_, v)| *v == Some(true))
        .map(|(name, _)| name)
        .collect()
    }

    /// The audit in words: `sensitive, always sensitive, never extractable, local, sign only`,
    /// or what the key may do beyond signing.
    pub fn summary(&self) -> String {
        let wider = self.wider_usage();
        if wider.is_empty() {
            "sensitive, always sensitive, never extractable, local, sign only".to_string()
        } else {
            format!(
                "sensitive, always sensitive, never extractable, local; signs, and may also {} (the module's choice, which it does not let a template narrow)",
                wider.join(", ")
            )
        }
    }

    /// Every check that failed; empty when the key is as it must be. A key that may decrypt,
    /// unwrap or derive besides signing is not a failure: see [`KeyAudit::wider_usage`].
    pub fn failures(&self, algorithm: KeyAlgorithm) -> Vec<String> {
        let mut failures = Vec::new();
        let mut want = |name: &str, got: Option<bool>, expected: bool| match got {
            Some(v) if v == expected => {}
            Some(v) => failures.push(format!("{name} is {v}, must be {expected}")),
            None => failures.push(format!("{name} could not be read")),
        };
        want("CKA_TOKEN", self.token, true);
        want("CKA_PRIVATE", self.private, true);
        want("CKA_SENSITIVE", self.sensitive, true);
        want("CKA_ALWAYS_SENSITIVE", self.always_sensitive, true);
        want("CKA_EXTRACTABLE", self.extractable, false);
        want("CKA_NEVER_EXTRACTABLE", self.never_extractable, true);
        want("CKA_LOCAL", self.local, true);
        want("CKA_SIGN", self.sign, true);
        match (algorithm.rsa_bits(), algorithm.curve()) {
            (Some(bits), _) if self.modulus_bits != Some(bits) => failures.push(format!(
                "the modulus is {} bits, must be {bits}",
                self.modulus_bits
                    .map_or("unreadable".to_string(), |b| b.to_string())
            )),
            (_, Some(curve)) if self.curve.as_deref() != Some(curve.name()) => {
                failures.push(format!(
                    "the curve is {}, must be {}",
                    self.curve.as_deref().unwrap_or("unreadable"),
                    curve.name()
                ))
            }
            _ => {}
        }
        failures
    }
}

/// Whether a failed `C_GenerateKeyPair` may be the module refusing the template's usage
/// restrictions: the template return values, and `CKR_GENERAL_ERROR`, which tpm2-pkcs11 gives
/// ("User specified and TPM specified attr mismatch").
fn template_refused(error: &cryptoki::error::Error) -> bool {
    use cryptoki::error::{Error, RvError};
    matches!(
        error,
        Error::Pkcs11(
            RvError::AttributeValueInvalid
                | RvError::AttributeTypeInvalid
                | RvError::TemplateInconsistent
                | RvError::TemplateIncomplete
                | RvError::GeneralError
                | RvError::FunctionFailed,
            _
        )
    )
}

/// A key pair just generated and audited, not yet kept. Dropped without [`PendingKey::keep`], it
/// destroys both halves on the token, so any failure before the caller is done (CSR, journal
/// write) leaves no orphan object.
pub struct PendingKey<'s> {
    key: Option<TokenKey<'s>>,
    audit: KeyAudit,
    generation_time: Duration,
}

impl<'s> PendingKey<'s> {
    /// Keeps the key on the token.
    #[allow(
        clippy::expect_used,
        reason = "the key is taken only here, and `keep` consumes the pending key"
    )]
    pub fn keep(mut self) -> (TokenKey<'s>, KeyAudit) {
        let key = self
            .key
            .take()
            .expect("a pending key holds its key until kept");
        (key, self.audit.clone())
    }

    /// The attribute audit.
    pub fn audit(&self) -> &KeyAudit {
        &self.audit
    }

    /// How long the token took to generate the pair: the `C_GenerateKeyPair` call alone, without
    /// the checks before it, the audit after it, or any wait for another thread's call to the
    /// same module. Everything else [`TokenSession::generate_key_pair`] spends is its overhead.
    pub fn generation_time(&self) -> Duration {
        self.generation_time
    }

    /// Destroys both halves now, reporting a failure (dropping does the same silently).
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when the token refuses to destroy an object.
    pub fn discard(mut self) -> Result<(), KeysError> {
        match self.key.take() {
            Some(key) => destroy_pair(&key),
            None => Ok(()),
        }
    }
}

fn destroy_pair(key: &TokenKey<'_>) -> Result<(), KeysError> {
    let objects: Vec<ObjectHandle> = [Some(key.private), key.public]
        .into_iter()
        .flatten()
        .collect();
    key.session.destroy(&objects)
}

impl<'s> Deref for PendingKey<'s> {
    type Target = TokenKey<'s>;
    #[allow(
        clippy::expect_used,
        reason = "the key is taken only by `keep`, which consumes the pending key"
    )]
    fn deref(&self) -> &TokenKey<'s> {
        self.key
            .as_ref()
            .expect("a pending key holds its key until kept")
    }
}

impl Drop for PendingKey<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take()
            && let Err(e) = destroy_pair(&key)
        {
            tracing::warn!("could not remove an unfinished key from the token: {e}");
        }
    }
}

impl super::module::TokenRef {
    /// Checks that the token can generate and sign with `algorithm`: the key-pair mechanism is
    /// offered with a key-size range that covers it, and a signing mechanism exists. Needs no
    /// login, so a token that cannot make the key is refused before anything touches it.
    ///
    /// # Errors
    /// [`KeysError::TokenCapability`] naming the token and what it supports.
    pub fn check_capability(&self, algorithm: KeyAlgorithm) -> Result<(), KeysError> {
        let info = self
            .module
            .token_info(self.slot)
            .map_err(|e| super::calls::failed(self.description(), e, "C_GetTokenInfo"))?;
        if info.write_protected() {
            return Err(KeysError::TokenCapability {
                token: self.description(),
                what: format!("hold new {algorithm} keys"),
                supports: "no new objects: it is write-protected (CKF_WRITE_PROTECTED)".to_string(),
            });
        }
        let report = super::capability::verdict(self.module.context(), self.slot, algorithm)
            .map_err(|e| super::calls::failed(self.description(), e, "C_GetMechanismInfo"))?;
        if report.can_generate && report.can_sign {
            return Ok(());
        }
        Err(KeysError::TokenCapability {
            token: self.description(),
            what: format!(
                "{} {algorithm} keys",
                if report.can_generate {
                    "sign with"
                } else {
                    "generate"
                }
            ),
            supports: report.detail,
        })
    }
}

impl TokenSession {
    /// [`super::TokenRef::check_capability`] for this session's token.
    ///
    /// # Errors
    /// [`KeysError::TokenCapability`].
    pub fn check_capability(&self, algorithm: KeyAlgorithm) -> Result<(), KeysError> {
        self.token.check_capability(algorithm)
    }

    /// Generates a key pair on the token with an explicit template (both halves on the token;
    /// private: private, sensitive, not extractable, sign only; public: verify only; one unique
    /// `CKA_ID` and `CKA_LABEL`; RSA exponent 65537), then audits it. On any failure after the
    /// objects exist, both are destroyed.
    ///
    /// # Errors
    /// [`KeysError::TokenCapability`] before anything is created, [`KeysError::DuplicateObject`],
    /// [`KeysError::KeyAudit`], [`KeysError::Pkcs11`].
    pub fn generate_key_pair(&self, request: &KeyRequest) -> Result<PendingKey<'_>, KeysError> {
        self.check_capability(request.algorithm)?;
        if request.label.is_empty() {
            return Err(KeysError::TokenState {
                token: self.token.description(),
                what: "a key label must not be empty".to_string(),
            });
        }
        let id = match &request.id {
            Some(id) if id.is_empty() => {
                return Err(KeysError::TokenState {
                    token: self.token.description(),
                    what: "a key ID must not be empty".to_string(),
                });
            }
            Some(id) => id.clone(),
            None => random_id()?,
        };
        self.ensure_unused(&id, &request.label)?;

        let label = request.label.as_bytes().to_vec();
        let mut public_template = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label.clone()),
        ];
        let private_template = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label),
        ];
        let mechanism = match request.algorithm.rsa_bits() {
            Some(bits) => {
                public_template.push(Attribute::ModulusBits((bits as u64).into()));
                public_template.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                Mechanism::RsaPkcsKeyPairGen
            }
            None => {
                let params = if request.algorithm == KeyAlgorithm::P256 {
                    P256_PARAMS.to_vec()
                } else {
                    P384_PARAMS.to_vec()
                };
                public_template.push(Attribute::EcParams(params));
                Mechanism::EccKeyPairGen
            }
        };
        let generate = |public: &[Attribute], private: &[Attribute]| {
            self.serialized(|s| {
                let start = Instant::now();
                let generated = s.generate_key_pair(&mechanism, public, private);
                (generated, start.elapsed())
            })
        };
        let (mut generated, mut generation_time) = generate(&public_template, &private_template);
        // CKR_GENERAL_ERROR says nothing of why: a module that refuses the template says it
        // again, a passing fault (SoftHSM's file store under another process) does not. Only a
        // refusal said twice leaves the usage to the module.
        if let Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::GeneralError, _)) =
            &generated
        {
            self.destroy_leftovers(&id)?;
            (generated, generation_time) = generate(&public_template, &private_template);
        }
        let mut usage_left_to_module = false;
        if let Err(e) = &generated
            && template_refused(e)
        {
            // Some modules cannot narrow a key's usage (a TPM key signs and decrypts): try once
            // more without the usage restrictions, leaving them to the module; the audit then
            // says what the key may do. Whatever the failed call left behind goes first.
            tracing::info!(
                "{}: C_GenerateKeyPair refused the sign-only template ({}); trying again with the module's usage defaults",
                self.token.description(),
                super::calls::ckr_name(e)
            );
            self.destroy_leftovers(&id)?;
            let narrowing = |a: &Attribute| {
                matches!(
                    a,
                    Attribute::Decrypt(false)
                        | Attribute::Unwrap(false)
                        | Attribute::Derive(false)
                        | Attribute::Encrypt(false)
                        | Attribute::Wrap(false)
                )
            };
            let public: Vec<Attribute> = public_template
                .iter()
                .filter(|a| !narrowing(a))
                .cloned()
                .collect();
            let private: Vec<Attribute> = private_template
                .iter()
                .filter(|a| !narrowing(a))
                .cloned()
                .collect();
            (generated, generation_time) = generate(&public, &private);
            usage_left_to_module = true;
        }
        let (public, private) = match generated {
            Ok(pair) => pair,
            Err(e) => {
                let _ = self.destroy_leftovers(&id);
                return Err(self.error(e, "C_GenerateKeyPair"));
            }
        };

        // From here on, every failure destroys both halves.
        let audit = match self.audit(private, public) {
            Ok(mut audit) => {
                audit.usage_left_to_module = usage_left_to_module;
                audit
            }
            Err(e) => {
                let _ = self.destroy(&[private, public]);
                return Err(e);
            }
        };
        let failures = audit.failures(request.algorithm);
        if !failures.is_empty() {
            self.destroy(&[private, public])?;
            return Err(KeysError::KeyAudit {
                token: self.token.description(),
                failures,
            });
        }
        let key = match self.key_from_private(private) {
            Ok(key) => key,
            Err(e) => {
                let _ = self.destroy(&[private, public]);
                return Err(e);
            }
        };
        if key.public != Some(public) || key.id != id || key.algorithm != request.algorithm {
            self.destroy(&[private, public])?;
            return Err(KeysError::KeyAudit {
                token: self.token.description(),
                failures: vec![format!(
                    "the new key's halves could not be paired by CKA_ID {}",
                    hex(&id)
                )],
            });
        }
        Ok(PendingKey {
            key: Some(key),
            audit,
            generation_time,
        })
    }

    /// Reads the audit of an existing key again (e.g. a key found on the token after a crash
    /// between its generation and the caller's record of it).
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`].
    pub fn audit_key(&self, key: &TokenKey<'_>) -> Result<KeyAudit, KeysError> {
        self.audit(key.private, key.public.unwrap_or(key.private))
    }

    /// Destroys every object carrying `id`, the fresh ID of a key-pair call that failed: a
    /// module may leave half a pair behind (`CKR_GENERAL_ERROR` allows a partial success).
    fn destroy_leftovers(&self, id: &[u8]) -> Result<(), KeysError> {
        let leftovers = self.find(&[Attribute::Id(id.to_vec())])?;
        if !leftovers.is_empty() {
            tracing::warn!(
                "{}: removing {} object(s) a failed C_GenerateKeyPair left behind",
                self.token.description(),
                leftovers.len()
            );
        }
        self.destroy(&leftovers)
    }

    fn audit(&self, private: ObjectHandle, public: ObjectHandle) -> Result<KeyAudit, KeysError> {
        let attrs = self.attributes(
            private,
            &[
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::AlwaysSensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::Local,
                AttributeType::Sign,
                AttributeType::Decrypt,
                AttributeType::Unwrap,
                AttributeType::Derive,
                AttributeType::Modulus,
                AttributeType::EcParams,
            ],
        )?;
        let mut audit = KeyAudit {
            token: None,
            private: None,
            sensitive: None,
            always_sensitive: None,
            extractable: None,
            never_extractable: None,
            local: None,
            sign: None,
            decrypt: None,
            unwrap: None,
            derive: None,
            modulus_bits: None,
            curve: None,
            usage_left_to_module: false,
        };
        for attr in attrs {
            match attr {
                Attribute::Token(v) => audit.token = Some(v),
                Attribute::Private(v) => audit.private = Some(v),
                Attribute::Sensitive(v) => audit.sensitive = Some(v),
                Attribute::AlwaysSensitive(v) => audit.always_sensitive = Some(v),
                Attribute::Extractable(v) => audit.extractable = Some(v),
                Attribute::NeverExtractable(v) => audit.never_extractable = Some(v),
                Attribute::Local(v) => audit.local = Some(v),
                Attribute::Sign(v) => audit.sign = Some(v),
                Attribute::Decrypt(v) => audit.decrypt = Some(v),
                Attribute::Unwrap(v) => audit.unwrap = Some(v),
                Attribute::Derive(v) => audit.derive = Some(v),
                Attribute::Modulus(m) => {
                    audit.modulus_bits = Some(crate::spki::unsigned_bit_length(&m))
                }
                Attribute::EcParams(p) => {
                    let curve = super::key::curve_from_params(&p);
                    audit.curve = Some(match curve {
                        NamedCurve::Other(_) => format!("unknown ({})", hex(&p)),
                        named => named.name().to_string(),
                    });
                }
                _ => {}
            }
        }
        // Some tokens report the modulus only on the public half.
        if audit.modulus_bits.is_none()
            && let Some(Attribute::Modulus(m)) = self.attribute(public, AttributeType::Modulus)?
        {
            audit.modulus_bits = Some(crate::spki::unsigned_bit_length(&m));
        }
        Ok(audit)
    }
}

/// A fresh random 16-byte `CKA_ID`.
///
/// # Errors
/// [`KeysError::Randomness`].
pub fn random_id() -> Result<Vec<u8>, KeysError> {
    let mut id = vec![0u8; 16];
    SysRng
        .try_fill_bytes(&mut id)
        .map_err(|_| KeysError::Randomness)?;
    Ok(id)
}
