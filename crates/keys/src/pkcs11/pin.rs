//! Where a token's PIN comes from: the URI, else a [`PinSource`] the caller gives. The PIN is a
//! secret: never printed, logged or put in an error.

use std::fmt;

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

    /// The PIN the URI holds: its `pin-value`, or the first line of its `pin-source` file
    /// (`file:/path` or a path); `None` when it names none. `token` names the token in errors.
    ///
    /// # Errors
    /// [`KeysError::PinUnavailable`] when the `pin-source` file cannot be read or is empty.
    pub fn from_uri(uri: &Pkcs11Uri, token: &str) -> Result<Option<Pin>, KeysError> {
        let unavailable = |reason: String| KeysError::PinUnavailable {
            token: token.to_string(),
            reason,
        };
        if let Some(pin) = &uri.pin_value {
            return Ok(Some(Pin(pin.clone())));
        }
        let Some(source) = &uri.pin_source else {
            return Ok(None);
        };
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
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| unavailable(format!("the pin-source file {path} is not UTF-8 text")))?;
        let pin = text.lines().next().unwrap_or("");
        if pin.is_empty() {
            return Err(unavailable(format!("the pin-source file {path} is empty")));
        }
        Ok(Some(Pin(SecretString::from(pin.to_string()))))
    }

    /// The PIN for a token: the URI's own ([`Pin::from_uri`]), else what `fallback` gives (the
    /// caller decides where: an environment variable, a prompt, a secret store).
    ///
    /// # Errors
    /// As [`Pin::from_uri`], or the fallback's error.
    pub fn resolve(
        uri: &Pkcs11Uri,
        token: &str,
        fallback: &dyn PinSource,
    ) -> Result<Pin, KeysError> {
        match Pin::from_uri(uri, token)? {
            Some(pin) => Ok(pin),
            None => fallback.pin_for(token),
        }
    }
}

/// Where a PIN comes from when a token's URI names none. The library asks it at most once per
/// token and run; it never reads the environment or a terminal itself.
pub trait PinSource: Send + Sync {
    /// The PIN for `token` (described for a person: label and serial).
    ///
    /// # Errors
    /// [`KeysError::PinUnavailable`] when there is none.
    fn pin_for(&self, token: &str) -> Result<Pin, KeysError>;
}

/// A PIN source that has none: a URI without its own PIN is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPinSource;

impl PinSource for NoPinSource {
    fn pin_for(&self, token: &str) -> Result<Pin, KeysError> {
        Err(KeysError::PinUnavailable {
            token: token.to_string(),
            reason: "its URI names no PIN (pin-value or pin-source) and no other source was given"
                .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn the_uri_pin_sources_come_first_and_are_never_shown() {
        let uri: Pkcs11Uri = "pkcs11:token=t?pin-value=9876".parse().unwrap();
        let pin = Pin::resolve(&uri, "token t", &NoPinSource).unwrap();
        assert_eq!(pin.secret().expose_secret(), "9876");
        assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pin");
        std::fs::write(&file, "5555\nsecond line ignored\n").unwrap();
        let uri: Pkcs11Uri = format!("pkcs11:token=t?pin-source=file:{}", file.display())
            .parse()
            .unwrap();
        assert_eq!(
            Pin::resolve(&uri, "t", &NoPinSource)
                .unwrap()
                .secret()
                .expose_secret(),
            "5555"
        );

        std::fs::write(&file, "").unwrap();
        let err = Pin::resolve(&uri, "t", &NoPinSource).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let uri: Pkcs11Uri = "pkcs11:token=t?pin-source=/nonexistent/pin"
            .parse()
            .unwrap();
        let err = Pin::resolve(&uri, "t", &NoPinSource).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot read the pin-source file /nonexistent/pin"),
            "{err}"
        );
    }
}
