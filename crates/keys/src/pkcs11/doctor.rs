//! What a token offers for code signing: module and token facts, PIN state, the mechanisms that
//! matter with their key-size ranges, and a verdict per algorithm.

use super::calls::failed;
use super::capability::{AlgorithmVerdict, MECHANISMS, verdict};
use super::module::{TokenRef, TokenSummary};
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

impl TokenRef {
    /// What the token offers for code signing keys. Needs no login.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when the token cannot be queried.
    pub fn report(&self) -> Result<TokenReport, KeysError> {
        let context = self.module.context();
        let failed = |e: cryptoki::error::Error, op: &str| failed(self.description(), e, op);
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
