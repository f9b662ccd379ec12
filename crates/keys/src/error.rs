//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong with keys, subjects and CSRs, said in the user's terms.
///
/// No variant ever carries a secret (passphrase, PIN, private key bytes).
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The key breaks the code signing key rules (see [`crate::policy`]).
    #[error("{0}")]
    Policy(crate::policy::PolicyViolation),

    /// An algorithm name that this tool does not know at all.
    #[error("unknown key algorithm '{given}'; choose one of rsa3072, rsa4096, p256, p384")]
    UnknownAlgorithm {
        /// What the user typed.
        given: String,
    },

    /// The subject distinguished name could not be parsed or breaks a rule.
    #[error("subject \"{}\": {reason}", crate::text::escape_unsafe(.subject, false))]
    Subject {
        /// The subject string as given (public data).
        subject: String,
        /// Which rule it broke and where.
        reason: String,
    },

    /// A file would be overwritten without `--force`.
    #[error("{}: the file exists; refusing to overwrite it", crate::text::shown_path(.path))]
    KeyFileExists {
        /// The file that exists.
        path: PathBuf,
    },

    /// Something other than a regular file is where a file would be written.
    #[error("{}: not a regular file; refusing to replace it", crate::text::shown_path(.path))]
    NotRegularFile {
        /// The path.
        path: PathBuf,
    },

    /// An input is larger than its kind may be.
    #[error("{}: larger than {limit} bytes, the limit for the {what}; refused", crate::text::shown_path(.path))]
    InputTooLarge {
        /// The input.
        path: PathBuf,
        /// What kind of input.
        what: &'static str,
        /// The cap, in bytes.
        limit: u64,
    },

    /// A file could not be read or written.
    #[error("{}: {action}: {cause}", crate::text::shown_path(.path))]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What we were doing ("cannot read", "cannot write", ...).
        action: &'static str,
        /// The operating system's error (said in the message, so not also a `source`).
        cause: std::io::Error,
    },

    /// A private key file is not in a format this tool reads.
    #[error("{}: {reason}", crate::text::shown_path(.path))]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The key file is encrypted and no passphrase was given.
    #[error("{}: the key is encrypted and no passphrase was given", crate::text::shown_path(.path))]
    PassphraseRequired {
        /// The key file.
        path: PathBuf,
    },

    /// The passphrase does not decrypt the key file.
    #[error("{}: the passphrase does not decrypt this key (wrong passphrase or damaged file)", crate::text::shown_path(.path))]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },

    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Randomness,

    /// Key generation failed inside the crypto library.
    #[error("generating the {algorithm} key failed: {reason}")]
    KeyGeneration {
        /// The algorithm asked for.
        algorithm: crate::KeyAlgorithm,
        /// The library's reason.
        reason: String,
    },

    /// The signer could not produce a signature (a token error is kept here, not dropped).
    #[error("signing failed: {0}")]
    Signing(String),

    /// The CSR could not be built.
    #[error("building the CSR failed: {0}")]
    CsrBuild(String),

    /// A freshly built CSR failed its own check (signature or public key mismatch).
    #[error("the CSR just built failed its self-check: {0}")]
    CsrSelfCheck(String),

    /// The input is not a CSR this tool can read (garbage, truncated PEM, bad DER).
    #[error("not a readable PKCS#10 CSR: {0}")]
    CsrParse(String),

    /// The CSR parsed, but it is not acceptable: its signature does not verify or its key breaks
    /// the policy. Every reason is listed.
    #[error("CSR refused: {}", .reasons.join("; "))]
    CsrRefused {
        /// Every reason, in the order found.
        reasons: Vec<String>,
    },

    /// A PKCS#11 URI that cannot be parsed.
    #[error("invalid PKCS#11 URI: {reason}")]
    Pkcs11Uri {
        /// What is wrong (never contains a PIN).
        reason: String,
    },

    /// No PKCS#11 module was named.
    #[error("no PKCS#11 module given: the URI has no module-path and no default module was given")]
    NoPkcs11Module,

    /// The file is not a loadable PKCS#11 module.
    #[error("{}: not a usable PKCS#11 module: {reason}", crate::text::shown_path(.path))]
    Pkcs11Module {
        /// The module path.
        path: PathBuf,
        /// The loader's or C_Initialize's reason.
        reason: String,
    },

    /// No token matches the URI.
    #[error("no token has {wanted}; tokens present: {}", if .present.is_empty() { "none".to_string() } else { .present.join(", ") })]
    TokenNotFound {
        /// What the URI asked for.
        wanted: String,
        /// The tokens that are present, described.
        present: Vec<String>,
    },

    /// More than one token matches the URI.
    #[error("{count} tokens have {wanted}; add serial=... to the URI to choose one")]
    TokenAmbiguous {
        /// What the URI asked for.
        wanted: String,
        /// How many match.
        count: usize,
    },

    /// A PKCS#11 call failed; the cryptoki error and the function are kept.
    #[error("{token}: {function} failed: {}", crate::pkcs11::ckr_name(.error))]
    Pkcs11 {
        /// The token (or module), described.
        token: String,
        /// The `C_...` function.
        function: String,
        /// cryptoki's error, with the module's return value.
        error: cryptoki::error::Error,
    },

    /// The token (or a key on it) is not in a state to do what was asked.
    #[error("{token}: {what}")]
    TokenState {
        /// The token, described.
        token: String,
        /// What is wrong, in words.
        what: String,
    },

    /// C_Login said the PIN is wrong. It is never retried.
    #[error("{token}: the PIN is incorrect (CKR_PIN_INCORRECT); it was tried once and not retried")]
    PinIncorrect {
        /// The token, described.
        token: String,
    },

    /// The user PIN is locked.
    #[error(
        "{token}: the user PIN is locked; it must be unlocked with the security officer PIN before use"
    )]
    PinLocked {
        /// The token, described.
        token: String,
    },

    /// The next wrong PIN would lock the token, so no login is attempted.
    #[error(
        "{token}: the user PIN is on its final try; refusing to log in and risk locking the token (check the PIN, then log in once with the token vendor's tool)"
    )]
    PinFinalTry {
        /// The token, described.
        token: String,
    },

    /// The PIN given is not of a length the token takes, so no login is attempted (a try of the
    /// token's counter would be spent on a PIN that cannot be right).
    #[error(
        "{token}: the PIN given is {length} characters and the token takes {min} to {max}; no login was attempted"
    )]
    PinLength {
        /// The token, described.
        token: String,
        /// The PIN's length in bytes.
        length: usize,
        /// The shortest PIN the token takes.
        min: u64,
        /// The longest.
        max: u64,
    },

    /// The user PIN has expired.
    #[error(
        "{token}: the user PIN has expired (CKR_PIN_EXPIRED); set a new one with the token vendor's tool before use"
    )]
    PinExpired {
        /// The token, described.
        token: String,
    },

    /// Another process is creating a key of this label on the token.
    #[error(
        "{token}: another process is creating a key labelled \"{label}\" on this token right now; refused, so that the label gets one key pair"
    )]
    LabelBusy {
        /// The token, described.
        token: String,
        /// The key label.
        label: String,
    },

    /// No PIN could be obtained.
    #[error("no PIN for {token}: {reason}")]
    PinUnavailable {
        /// The token, described.
        token: String,
        /// Why (never contains the PIN).
        reason: String,
    },

    /// The token cannot make or use the requested key.
    #[error("{token} cannot {what}; it supports: {supports}")]
    TokenCapability {
        /// The token, described.
        token: String,
        /// What was asked ("generate RSA-4096 keys").
        what: String,
        /// What the token does support.
        supports: String,
    },

    /// An object with the same ID or label is on the token already.
    #[error("{token}: an object with {what} already exists; choose another ID or label")]
    DuplicateObject {
        /// The token, described.
        token: String,
        /// `CKA_ID 0102` or `label "x"`.
        what: String,
    },

    /// No key on the token matches.
    #[error("{token}: no private key with {what}")]
    KeyNotFound {
        /// The token, described.
        token: String,
        /// What was looked for.
        what: String,
    },

    /// The URI names more than one key.
    #[error("{token}: {count} private keys match {what}; add id=... to the URI")]
    KeyAmbiguous {
        /// The token, described.
        token: String,
        /// What was looked for.
        what: String,
        /// How many.
        count: usize,
    },

    /// A freshly generated key failed its attribute audit; both halves were destroyed.
    #[error("{token}: the new key failed its audit and was destroyed: {}", .failures.join("; "))]
    KeyAudit {
        /// The token, described.
        token: String,
        /// Every failed check.
        failures: Vec<String>,
    },

    /// Bytes a token gave (an EC point, a signature) are not in the form PKCS#11 says.
    #[error("{0}")]
    TokenData(String),

    /// A public key that cannot be described (malformed, or of an unknown kind).
    #[error("public key refused: {0}")]
    PublicKey(String),

    /// A certificate does not belong to the key or cannot be read.
    #[error("certificate refused: {0}")]
    Certificate(String),
}

impl KeysError {
    pub(crate) fn io(path: &std::path::Path, action: &'static str, cause: std::io::Error) -> Self {
        KeysError::Io {
            path: path.to_path_buf(),
            action,
            cause,
        }
    }

    /// True when the failure is a refusal by the code signing key policy (or a CSR refusal), as
    /// opposed to an operational error. Both exit with status 1 in the CLI.
    pub fn is_policy_refusal(&self) -> bool {
        matches!(self, KeysError::Policy(_) | KeysError::CsrRefused { .. })
    }
}
