//! Naming a failed PKCS#11 call: its `C_...` function and its `CKR_...` return value.

use cryptoki::error::Error;

use crate::KeysError;

/// The `CKR_...` name of a cryptoki error, or its text.
pub(crate) fn ckr_name(err: &Error) -> String {
    match err {
        Error::Pkcs11(rv, _) => {
            let camel = format!("{rv:?}");
            let mut out = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
        other => other.to_string(),
    }
}

/// The `C_...` name of the function a cryptoki error came from, else `fallback`.
pub(crate) fn function_name(err: &Error, fallback: &str) -> String {
    match err {
        Error::Pkcs11(_, function) => format!("C_{function:?}"),
        _ => fallback.to_string(),
    }
}

/// [`KeysError::Pkcs11`] for a call on `token` that failed with `error`; `fallback` names the
/// call when cryptoki does not.
pub(crate) fn failed(token: String, error: Error, fallback: &str) -> KeysError {
    KeysError::Pkcs11 {
        token,
        function: function_name(&error, fallback),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;
    use cryptoki::error::RvError;

    #[test]
    fn error_names_are_the_ckr_constants() {
        let err = Error::Pkcs11(RvError::PinIncorrect, Function::Login);
        assert_eq!(ckr_name(&err), "CKR_PIN_INCORRECT");
        assert_eq!(function_name(&err, "?"), "C_Login");
        let err = Error::Pkcs11(RvError::MechanismInvalid, Function::GenerateKeyPair);
        assert_eq!(ckr_name(&err), "CKR_MECHANISM_INVALID");
        let kept = failed("token \"t\"".to_string(), err, "?");
        assert_eq!(
            kept.to_string(),
            "token \"t\": C_GenerateKeyPair failed: CKR_MECHANISM_INVALID"
        );
        assert!(matches!(
            kept,
            KeysError::Pkcs11 {
                error: Error::Pkcs11(RvError::MechanismInvalid, Function::GenerateKeyPair),
                ..
            }
        ));
    }
}
