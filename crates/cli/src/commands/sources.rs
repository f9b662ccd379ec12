//! Where the CLI finds what the libraries are handed: a token's PIN when its URI names none
//! (`PKCS11_PIN`, else a prompt on a terminal), the default PKCS#11 module (`--module`, else
//! `PKCS11_MODULE`). The libraries read no environment and open no terminal themselves.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use codesign_kit::keys::KeysError;
use codesign_kit::keys::pkcs11::{Pin, PinSource};
use secrecy::SecretString;

/// `PKCS11_PIN`, else the terminal's answer to a prompt naming the token.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvOrPrompt;

impl PinSource for EnvOrPrompt {
    fn pin_for(&self, token: &str) -> Result<Pin, KeysError> {
        let unavailable = |reason: String| KeysError::PinUnavailable {
            token: token.to_string(),
            reason,
        };
        if let Ok(pin) = std::env::var("PKCS11_PIN") {
            if pin.is_empty() {
                return Err(unavailable("PKCS11_PIN is set but empty".to_string()));
            }
            return Ok(Pin::new(SecretString::from(pin)));
        }
        if std::io::stdin().is_terminal() {
            let pin = rpassword::prompt_password(format!("PIN for {token}: "))
                .map_err(|e| unavailable(format!("cannot read it from the terminal: {e}")))?;
            return Ok(Pin::new(SecretString::from(pin)));
        }
        Err(unavailable(
            "set PKCS11_PIN, add pin-source=file:... to the URI, or run on a terminal to be asked"
                .to_string(),
        ))
    }
}

/// The module for URIs without `module-path`: `--module`, else `PKCS11_MODULE`.
pub fn default_module(arg: Option<&Path>) -> Option<PathBuf> {
    arg.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("PKCS11_MODULE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}
