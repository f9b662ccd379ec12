//! What a token offers for code signing: module and token facts, PIN state, the mechanisms that
//! matter with their key-size ranges, and a verdict per algorithm.

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::MechanismType;
use cryptoki::slot::Slot;

use super::keygen::keygen_mechanism;
use super::{TokenRef, TokenSummary, rv_name};
use crate::{KeyAlgorithm, KeysError};

/// One mechanism and what the token says of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MechanismReport {
    /// `CKM_...` name.
    pub name: &'static str,
    /// Offered at all.
    pub offered: bool,
    /// Minimum key size (bits, as the token reports it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_key_size: Option<usize>,
    /// Maximum key size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_key_size: Option<usize>,
}

/// Whether the token can make and sign with one algorithm.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlgorithmVerdict {
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// Key-pair generation is offered for this size or curve.
    pub can_generate: bool,
    /// A signing mechanism for it is offered.
    pub can_sign: bool,
    /// Why, in words.
    pub detail: String,
}

/// `doctor`'s findings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenReport {
    /// The module file.
    pub module_path: String,
    /// The module's manufacturer, description and version.
    pub module: String,
    /// The token.
    pub token: TokenSummary,
    /// Token flags that matter before a login.
    pub user_pin_initialized: bool,
    /// The user PIN has had failed attempts.
    pub user_pin_count_low: bool,
    /// The next wrong PIN locks the token.
    pub user_pin_final_try: bool,
    /// The user PIN is locked.
    pub user_pin_locked: bool,
    /// The token has a PIN pad.
    pub protected_authentication_path: bool,
    /// The mechanisms that matter for code signing keys.
    pub mechanisms: Vec<MechanismReport>,
    /// One verdict per algorithm.
    pub verdicts: Vec<AlgorithmVerdict>,
}

const MECHANISMS: [(MechanismType, &str); 8] = [
    (
        MechanismType::RSA_PKCS_KEY_PAIR_GEN,
        "CKM_RSA_PKCS_KEY_PAIR_GEN",
    ),
    (MechanismType::SHA256_RSA_PKCS, "CKM_SHA256_RSA_PKCS"),
    (MechanismType::RSA_PKCS, "CKM_RSA_PKCS"),
    (MechanismType::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"),
    (MechanismType::ECDSA, "CKM_ECDSA"),
    (MechanismType::ECDSA_SHA256, "CKM_ECDSA_SHA256"),
    (MechanismType::ECDSA_SHA384, "CKM_ECDSA_SHA384"),
    (MechanismType::SHA256, "CKM_SHA256"),
];

fn key_size_needed(algorithm: KeyAlgorithm) -> usize {
    algorithm.rsa_bits().unwrap_or(match algorithm {
        KeyAlgorithm::P256 => 256,
        _ => 384,
    })
}

/// The verdict for one algorithm on one slot.
pub(crate) fn verdict(
    context: &Pkcs11,
    slot: Slot,
    algorithm: KeyAlgorithm,
) -> Result<AlgorithmVerdict, cryptoki::error::Error> {
    let offered = context.get_mechanism_list(slot)?;
    let keygen = keygen_mechanism(algorithm);
    let needed = key_size_needed(algorithm);
    let (can_generate, gen_detail) = if offered.contains(&keygen) {
        let info = context.get_mechanism_info(slot, keygen)?;
        let (min, max) = (info.min_key_size(), info.max_key_size());
        if info.generate_key_pair() && min <= needed && needed <= max {
            (true, format!("key-pair generation {min}..{max} bits"))
        } else if !info.generate_key_pair() {
            (
                false,
                "its key-pair mechanism is not flagged for key-pair generation".to_string(),
            )
        } else {
            (
                false,
                format!("key-pair generation for {min}..{max} bits only"),
            )
        }
    } else {
        let name = match algorithm {
            KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => "CKM_RSA_PKCS_KEY_PAIR_GEN",
            _ => "CKM_EC_KEY_PAIR_GEN",
        };
        (false, format!("no {name}"))
    };
    let signers: &[MechanismType] = match algorithm {
        KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
            &[MechanismType::SHA256_RSA_PKCS, MechanismType::RSA_PKCS]
        }
        KeyAlgorithm::P256 => &[MechanismType::ECDSA_SHA256, MechanismType::ECDSA],
        KeyAlgorithm::P384 => &[MechanismType::ECDSA_SHA384, MechanismType::ECDSA],
    };
    let signer = signers.iter().find(|m| offered.contains(m));
    let can_sign = signer.is_some();
    let sign_detail = match signer {
        Some(m) => format!("signs with {}", mechanism_name(*m)),
        None => format!(
            "no signing mechanism (needs {})",
            signers
                .iter()
                .map(|m| mechanism_name(*m))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    };
    Ok(AlgorithmVerdict {
        algorithm,
        can_generate,
        can_sign,
        detail: format!("{gen_detail}; {sign_detail}"),
    })
}

fn mechanism_name(m: MechanismType) -> &'static str {
    MECHANISMS
        .iter()
        .find(|(t, _)| *t == m)
        .map_or("an unnamed mechanism", |(_, n)| n)
}

impl TokenRef {
    /// What the token offers for code signing keys. Needs no login.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when the token cannot be queried.
    pub fn report(&self) -> Result<TokenReport, KeysError> {
        let context = self.module.context();
        let failed = |e: cryptoki::error::Error, op: &str| KeysError::Pkcs11 {
            token: self.description(),
            operation: super::function_name(&e, op),
            code: rv_name(&e),
        };
        let info = context
            .get_token_info(self.slot)
            .map_err(|e| failed(e, "C_GetTokenInfo"))?;
        let offered = context
            .get_mechanism_list(self.slot)
            .map_err(|e| failed(e, "C_GetMechanismList"))?;
        let mut mechanisms = Vec::new();
        for (mechanism, name) in MECHANISMS {
            let (offered, min, max) = if offered.contains(&mechanism) {
                let info = context
                    .get_mechanism_info(self.slot, mechanism)
                    .map_err(|e| failed(e, "C_GetMechanismInfo"))?;
                (true, Some(info.min_key_size()), Some(info.max_key_size()))
            } else {
                (false, None, None)
            };
            mechanisms.push(MechanismReport {
                name,
                offered,
                min_key_size: min,
                max_key_size: max,
            });
        }
        let verdicts = KeyAlgorithm::ALL
            .into_iter()
            .map(|alg| {
                verdict(context, self.slot, alg).map_err(|e| failed(e, "C_GetMechanismInfo"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TokenReport {
            module_path: self.module.path().display().to_string(),
            module: self.module.description(),
            token: self.summary.clone(),
            user_pin_initialized: info.user_pin_initialized(),
            user_pin_count_low: info.user_pin_count_low(),
            user_pin_final_try: info.user_pin_final_try(),
            user_pin_locked: info.user_pin_locked(),
            protected_authentication_path: info.protected_authentication_path(),
            mechanisms,
            verdicts,
        })
    }
}
