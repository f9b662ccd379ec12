//! What a token offers for code signing: module and token facts, PIN state, the mechanisms that
//! matter with their key-size ranges, and a verdict per algorithm.

use super::calls::failed;
use super::capability::{AlgorithmVerdict, MECHANISMS, verdict};
use super::module::{TokenRef, TokenSummary};
use super::raw::TokenClock;
use crate::storage::{DigicertToken, HARDWARE_KEY_RULE, KeyStorage, is_safenet_etoken};
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

/// The PIN lengths a token accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PinLength {
    /// Shortest.
    pub min: u64,
    /// Longest.
    pub max: u64,
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
    /// The user PIN must be changed before the token lets it work (`CKF_USER_PIN_TO_BE_CHANGED`).
    pub user_pin_to_be_changed: bool,
    /// The token accepts no writes: no key can be made on it.
    pub write_protected: bool,
    /// The token needs a login for private objects.
    pub login_required: bool,
    /// The PIN lengths the token accepts, as it states them.
    pub pin_length: PinLength,
    /// At most this many sessions at once (`None`: no limit stated).
    pub max_sessions: Option<u64>,
    /// At most this many read-write sessions at once (`None`: no limit stated).
    pub max_rw_sessions: Option<u64>,
    /// Hardware version.
    pub hardware_version: String,
    /// Firmware version.
    pub firmware_version: String,
    /// The token's clock; a malformed one is reported, never fatal.
    pub clock: TokenClock,
    /// The mechanisms that matter for code signing keys.
    pub mechanisms: Vec<MechanismReport>,
    /// One verdict per algorithm.
    pub verdicts: Vec<AlgorithmVerdict>,
    /// Whether, and with which algorithms, the token can hold a DigiCert code signing key.
    pub digicert: DigicertVerdict,
}

/// Whether a token can hold a DigiCert code signing key, and with which algorithms.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DigicertVerdict {
    /// `software` (a key file or known software token: never, for a publicly trusted CA),
    /// `safenet-etoken` (the family of DigiCert's supported tokens), or `hardware` (anything
    /// else: DigiCert takes it if it is certified, which the token does not say).
    pub storage: &'static str,
    /// The DigiCert token model named by the caller, if any.
    pub model: Option<DigicertToken>,
    /// The algorithms the token can make that DigiCert takes on it (none for software).
    pub algorithms: Vec<KeyAlgorithm>,
    /// Why, in words.
    pub detail: String,
}

impl DigicertVerdict {
    fn new(
        token: &TokenRef,
        model: Option<DigicertToken>,
        verdicts: &[AlgorithmVerdict],
    ) -> DigicertVerdict {
        let usable = verdicts
            .iter()
            .filter(|v| v.can_generate && v.can_sign)
            .map(|v| v.algorithm)
            .filter(|a| model.is_none_or(|m| m.check(*a).is_ok()));
        let algorithms: Vec<KeyAlgorithm> = usable.collect();
        let names = |algs: &[KeyAlgorithm]| {
            if algs.is_empty() {
                "none".to_string()
            } else {
                algs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let summary = &token.summary;
        if let KeyStorage::SoftwareToken(name) = token.storage() {
            return DigicertVerdict {
                storage: "software",
                model,
                algorithms: Vec::new(),
                detail: format!(
                    "{name} is software: no; {HARDWARE_KEY_RULE}. Its keys are for the local emulator and private CAs"
                ),
            };
        }
        let etoken = is_safenet_etoken(&summary.manufacturer, &summary.model);
        let detail = match (model, etoken) {
            (Some(m), _) => format!(
                "as a {m}: {}; of those, the token offers: {}",
                match m.algorithms() {
                    Some(list) => format!("DigiCert takes {}", names(list)),
                    None => "DigiCert states no key types for it".to_string(),
                },
                names(&algorithms)
            ),
            (None, true) => format!(
                "a SafeNet eToken, the family DigiCert supports (5110 CC: RSA-4096 and ECC P-256; 5110 FIPS: ECC P-256 and P-384; 5110+ FIPS): name its model with --digicert-token to check; the token offers: {}",
                names(&algorithms)
            ),
            (None, false) => format!(
                "yes if the device is certified FIPS 140-2 Level 2+ or Common Criteria EAL 4+ (a token does not say; check the module's certificate); algorithms it can make: {}",
                names(&algorithms)
            ),
        };
        DigicertVerdict {
            storage: if etoken { "safenet-etoken" } else { "hardware" },
            model,
            algorithms,
            detail,
        }
    }
}

impl TokenRef {
    /// What the token offers for code signing keys. Needs no login. `model` names the DigiCert
    /// token model the token is, when the caller knows it (a token does not say).
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when the token cannot be queried.
    pub fn report(&self, model: Option<DigicertToken>) -> Result<TokenReport, KeysError> {
        let context = self.module.context();
        let failed = |e: cryptoki::error::Error, op: &str| failed(self.description(), e, op);
        let info = self
            .module
            .token_info(self.slot)
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
        let digicert = DigicertVerdict::new(self, model, &verdicts);
        Ok(TokenReport {
            module_path: self.module.path().display().to_string(),
            module: self.module.description(),
            token: self.summary.clone(),
            user_pin_initialized: info.user_pin_initialized(),
            user_pin_count_low: info.user_pin_count_low(),
            user_pin_final_try: info.user_pin_final_try(),
            user_pin_locked: info.user_pin_locked(),
            protected_authentication_path: info.protected_authentication_path(),
            user_pin_to_be_changed: info.user_pin_to_be_changed(),
            write_protected: info.write_protected(),
            login_required: info.login_required(),
            pin_length: PinLength {
                min: info.min_pin_len,
                max: info.max_pin_len,
            },
            max_sessions: info.max_session_count,
            max_rw_sessions: info.max_rw_session_count,
            hardware_version: info.hardware_version,
            firmware_version: info.firmware_version,
            clock: info.clock,
            mechanisms,
            verdicts,
            digicert,
        })
    }
}
