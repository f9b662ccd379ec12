//! Where a key is kept, as the CA's key-storage rule sees it, and DigiCert's list of supported
//! hardware tokens.
//!
//! Since 1 June 2023 the CA/Browser Forum's code signing baseline requirements let a
//! publicly trusted code signing key live only in hardware certified to FIPS 140-2 Level 2,
//! Common Criteria EAL 4+ or equivalent; DigiCert refuses new orders, renewals and reissues that
//! break the rule since 30 May 2023
//! (<https://knowledge.digicert.com/alerts/code-signings-new-private-key-storage-requirement.html>).
//! A PKCS#11 token does not say whether it is certified, so the tool knows only the negative:
//! a key in a file, or on a token that is a known software implementation, is a software key.
//!
//! DigiCert ships and supports three SafeNet eTokens (knowledge base SO260521210823, "Set Up Your
//! DigiCert Provided eToken": SafeNet 5110 CC, 5110 FIPS, 5110+ FIPS). Its code signing order page
//! gives the key types of two: 5110 CC for RSA 4096 and ECC P-256, 5110 FIPS for ECC P-256 and
//! P-384 (<https://dev.digicert.com/en/certcentral-apis/services-api/orders/order-code-signing-certificate.html>).
//! For the 5110+ FIPS it states none.
//!
//! ```
//! use codesign_keys::storage::DigicertToken;
//! use codesign_keys::KeyAlgorithm;
//!
//! let token = DigicertToken::SafeNet5110Cc;
//! assert!(token.check(KeyAlgorithm::Rsa4096).is_ok());
//! let refused = token.check(KeyAlgorithm::Rsa3072).unwrap_err();
//! assert!(refused.contains("RSA-4096 and ECC P-256 only"));
//! ```

use std::fmt;

use crate::KeyAlgorithm;

/// The rule a software key breaks, for messages.
pub const HARDWARE_KEY_RULE: &str = "publicly trusted code signing keys must be generated and kept in hardware certified to FIPS 140-2 Level 2, Common Criteria EAL 4+ or equivalent (CA/Browser Forum code signing baseline requirements, since 2023-06-01; DigiCert refuses orders that break it since 2023-05-30)";

/// A SafeNet eToken model DigiCert supports for code signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigicertToken {
    /// SafeNet eToken 5110 CC: RSA-4096 and ECC P-256.
    #[serde(rename = "5110-cc")]
    SafeNet5110Cc,
    /// SafeNet eToken 5110 FIPS: ECC P-256 and P-384.
    #[serde(rename = "5110-fips")]
    SafeNet5110Fips,
    /// SafeNet eToken 5110+ FIPS: DigiCert names it but states no key types.
    #[serde(rename = "5110plus-fips")]
    SafeNet5110PlusFips,
}

impl DigicertToken {
    /// Every model of the list.
    pub const ALL: [DigicertToken; 3] = [
        DigicertToken::SafeNet5110Cc,
        DigicertToken::SafeNet5110Fips,
        DigicertToken::SafeNet5110PlusFips,
    ];

    /// The name on the command line and in plans.
    pub fn cli_name(self) -> &'static str {
        match self {
            DigicertToken::SafeNet5110Cc => "5110-cc",
            DigicertToken::SafeNet5110Fips => "5110-fips",
            DigicertToken::SafeNet5110PlusFips => "5110plus-fips",
        }
    }

    /// The algorithms DigiCert issues code signing certificates for on this model; `None` when
    /// DigiCert states none (then the token's own mechanisms decide).
    pub fn algorithms(self) -> Option<&'static [KeyAlgorithm]> {
        match self {
            DigicertToken::SafeNet5110Cc => Some(&[KeyAlgorithm::Rsa4096, KeyAlgorithm::P256]),
            DigicertToken::SafeNet5110Fips => Some(&[KeyAlgorithm::P256, KeyAlgorithm::P384]),
            DigicertToken::SafeNet5110PlusFips => None,
        }
    }

    /// Whether DigiCert takes an `algorithm` key on this model.
    ///
    /// # Errors
    /// What the model takes instead, in words.
    pub fn check(self, algorithm: KeyAlgorithm) -> Result<(), String> {
        match self.algorithms() {
            Some(allowed) if !allowed.contains(&algorithm) => Err(format!(
                "DigiCert issues code signing certificates on a {self} for {} only, not {algorithm}",
                allowed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for DigicertToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DigicertToken::SafeNet5110Cc => "SafeNet eToken 5110 CC",
            DigicertToken::SafeNet5110Fips => "SafeNet eToken 5110 FIPS",
            DigicertToken::SafeNet5110PlusFips => "SafeNet eToken 5110+ FIPS",
        })
    }
}

impl std::str::FromStr for DigicertToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DigicertToken::ALL
            .into_iter()
            .find(|t| t.cli_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "\"{}\" is not a DigiCert code signing token; the list: 5110-cc, 5110-fips, 5110plus-fips",
                    crate::text::escape_unsafe(s, false)
                )
            })
    }
}

/// A token identity known to be a software implementation: `(manufacturer, model)` prefixes as
/// the token reports them in `C_GetTokenInfo`, with the implementation's name.
const SOFTWARE_TOKENS: &[(&str, &str, &str)] = &[
    ("SoftHSM", "SoftHSM", "SoftHSM2"),
    ("IBM", "IBM SoftTok", "opencryptoki's software token"),
    ("IBM", "SW   TPM", "a software TPM (swtpm)"),
    ("IBM", "SW TPM", "a software TPM (swtpm)"),
    ("Kryoptic", "", "kryoptic"),
    ("Mozilla Foundation", "NSS 3", "NSS's software token"),
];

/// The software implementation a token is, if it is a known one.
pub fn software_token(manufacturer: &str, model: &str) -> Option<&'static str> {
    SOFTWARE_TOKENS
        .iter()
        .find(|(m, md, _)| manufacturer.starts_with(m) && model.starts_with(md))
        .map(|(_, _, name)| *name)
}

/// Whether a token reports itself as a SafeNet eToken (the family DigiCert's list is of).
pub fn is_safenet_etoken(manufacturer: &str, model: &str) -> bool {
    let maker = manufacturer.to_ascii_lowercase();
    ["safenet", "gemalto", "thales"]
        .iter()
        .any(|m| maker.starts_with(m))
        && model.to_ascii_lowercase().contains("etoken")
}

/// Where a key is kept, as the key-storage rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStorage {
    /// A key file: software.
    File,
    /// A token that is a known software implementation.
    SoftwareToken(&'static str),
    /// A token not known to be software: hardware whose certification the tool cannot see.
    Token,
}

impl KeyStorage {
    /// Whether the key-storage rule forbids a publicly trusted certificate for this key.
    pub fn is_software(&self) -> bool {
        !matches!(self, KeyStorage::Token)
    }
}

impl fmt::Display for KeyStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyStorage::File => f.write_str("a key file"),
            KeyStorage::SoftwareToken(name) => write!(f, "a software token ({name})"),
            KeyStorage::Token => f.write_str("a hardware token"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_digicerts() {
        use KeyAlgorithm::*;
        let cc = DigicertToken::SafeNet5110Cc;
        assert!(cc.check(Rsa4096).is_ok() && cc.check(P256).is_ok());
        assert!(cc.check(Rsa3072).is_err() && cc.check(P384).is_err());
        let fips = DigicertToken::SafeNet5110Fips;
        assert!(fips.check(P256).is_ok() && fips.check(P384).is_ok());
        assert!(fips.check(Rsa3072).is_err() && fips.check(Rsa4096).is_err());
        for alg in KeyAlgorithm::ALL {
            assert!(DigicertToken::SafeNet5110PlusFips.check(alg).is_ok());
        }
        for t in DigicertToken::ALL {
            assert_eq!(t.cli_name().parse::<DigicertToken>(), Ok(t));
        }
        assert!("5110".parse::<DigicertToken>().is_err());
    }

    #[test]
    fn software_tokens_are_known_by_identity() {
        assert_eq!(
            software_token("SoftHSM project", "SoftHSM v2"),
            Some("SoftHSM2")
        );
        assert_eq!(
            software_token("IBM Corp.", "IBM SoftTok"),
            Some("opencryptoki's software token")
        );
        assert_eq!(
            software_token("IBM", "SW   TPM"),
            Some("a software TPM (swtpm)")
        );
        assert_eq!(software_token("SafeNet, Inc.", "eToken"), None);
        assert_eq!(software_token("Safenet, Inc.", "Luna K7"), None);
        assert!(is_safenet_etoken("SafeNet, Inc.", "eToken"));
        assert!(!is_safenet_etoken("SoftHSM project", "SoftHSM v2"));
        assert!(KeyStorage::File.is_software());
        assert!(!KeyStorage::Token.is_software());
    }
}
