//! Where a token's PIN comes from. The PIN is a secret: never printed, logged or put in an error.

use std::fmt;
use std::io::IsTerminal;

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::uri::Pkcs11Uri;
use crate::KeysError;

/// A user PIN.
#[derive(Clone)]
pub struct Pin(SecretString);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Pin {
    /// Wraps a PIN held by the caller.
    pub fn new(pin: SecretString) -> Pin {
        Pin(pin)
    }

    pub(crate) fn secret(&self) -> &SecretString {
        &self.0
    }

    /// Finds the PIN, in order: the URI's `pin-value`, the URI's `pin-source` (`file:/path` or a
    /// path; the first line of the file), the `PKCS11_PIN` environment variable, and a prompt when
    /// standard input is a terminal. `token` names the token in the prompt and in errors.
    ///
    /// # Errors
    /// [`KeysError::PinUnavailable`] when no source gives a PIN.
    pub fn resolve(uri: &Pkcs11Uri, token: &str) -> Result<Pin, KeysError> {
        let unavailable = |reason: String| KeysError::PinUnavailable {
            token: token.to_string(),
            reason,
        };
        if let Some(pin) = &uri.pin_value {
            return Ok(Pin(pin.clone()));
        }
        if let Some(source) = &uri.pin_source {
            let path = source.strip_prefix("file:").unwrap_or(source);
            let bytes = Zeroizing::new(
                crate::files::read_input(std::path::Path::new(path), crate::files::InputKind::Pin)
                    .map_err(|e| match e {
                        KeysError::Io { cause, .. } => {
                            unavailable(format!("cannot read the pin-source file {path}: {cause}"))
                        }
                        other => unavailable(format!("pin-source: {other}")),
                    })?,
            );
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                unavailable(format!("the pin-source file {path} is not UTF-8 text"))
            })?;
            let pin = text.lines().next().unwrap_or("");
            if pin.is_empty() {
                return Err(unavailable(format!("the pin-source file {path} is empty")));
            }
            return Ok(Pin(SecretString::from(pin.to_string())));
        }
        if let Ok(pin) = std::env::var("PKCS11_PIN") {
            if pin.is_empty() {
                return Err(unavailable("PKCS11_PIN is set but empty".to_string()));
            }
            return Ok(Pin(SecretString::from(pin)));
        }
        if std::io::stdin().is_terminal() {
            let pin = rpassword::prompt_password(format!("PIN for {token}: "))
                .map_err(|e| unavailable(format!("cannot read it from the terminal: {e}")))?;
            return Ok(Pin(SecretString::from(pin)));
        }
        Err(unavailable(
            "set PKCS11_PIN, add pin-source=file:... to the URI, or run on a terminal to be asked"
                .to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn the_uri_pin_sources_come_first_and_are_never_shown() {
        let uri: Pkcs11Uri = "pkcs11:token=t?pin-value=9876".parse().unwrap();
        let pin = Pin::resolve(&uri, "token t").unwrap();
        assert_eq!(pin.secret().expose_secret(), "9876");
        assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pin");
        std::fs::write(&file, "5555\nsecond line ignored\n").unwrap();
        let uri: Pkcs11Uri = format!("pkcs11:token=t?pin-source=file:{}", file.display())
            .parse()
            .unwrap();
        assert_eq!(
            Pin::resolve(&uri, "t").unwrap().secret().expose_secret(),
            "5555"
        );

        std::fs::write(&file, "").unwrap();
        let err = Pin::resolve(&uri, "t").unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let uri: Pkcs11Uri = "pkcs11:token=t?pin-source=/nonexistent/pin"
            .parse()
            .unwrap();
        let err = Pin::resolve(&uri, "t").unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot read the pin-source file /nonexistent/pin"),
            "{err}"
        );
    }
}
