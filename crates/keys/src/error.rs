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
    #[error("subject \"{subject}\": {reason}")]
    Subject {
        /// The subject string as given (public data).
        subject: String,
        /// Which rule it broke and where.
        reason: String,
    },

    /// A key file would be overwritten without `--force`.
    #[error("{}: file exists; refusing to overwrite a key file (use --force to replace it)", .path.display())]
    KeyFileExists {
        /// The file that exists.
        path: PathBuf,
    },

    /// A file could not be read or written.
    #[error("{}: {action}: {source}", .path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What we were doing ("cannot read", "cannot write", ...).
        action: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// A private key file is not in a format this tool reads.
    #[error("{}: {reason}", .path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The key file is encrypted and no passphrase was given.
    #[error("{}: the key is encrypted; give its passphrase with --passphrase-env VAR", .path.display())]
    PassphraseRequired {
        /// The key file.
        path: PathBuf,
    },

    /// The passphrase does not decrypt the key file.
    #[error("{}: the passphrase does not decrypt this key (wrong passphrase or damaged file)", .path.display())]
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
}

impl KeysError {
    pub(crate) fn io(path: &std::path::Path, action: &'static str, source: std::io::Error) -> Self {
        KeysError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    /// True when the failure is a refusal by the code signing key policy (or a CSR refusal), as
    /// opposed to an operational error. Both exit with status 1 in the CLI.
    pub fn is_policy_refusal(&self) -> bool {
        matches!(self, KeysError::Policy(_) | KeysError::CsrRefused { .. })
    }
}
