//! The calls this crate makes itself instead of through cryptoki: the two informational ones,
//! `C_GetInfo` and `C_GetTokenInfo`, and `C_SetAttributeValue` for the one attribute cryptoki 0.12
//! has no variant for (`CKA_CERTIFICATE_CATEGORY`).
//!
//! cryptoki 0.12 turns their answers into its own types eagerly and fails the whole call on a
//! field it cannot parse: a token that sets `CKF_CLOCK_ON_TOKEN` with a `utcTime` that is not 16
//! ASCII digits (opencryptoki's software token; HSMs with a clock that is not set), or a module
//! whose `CK_INFO.flags` is not zero. A field that only informs must never stop work, so these
//! calls go to the module's function list directly and every field is decoded tolerantly
//! ([`TokenInfo::from_raw`], [`LibraryInfo::from_raw`]); an unreadable optional field is shown as
//! unknown.
//!
//! This is the crate's only unsafe code: loading the module file a second time (the dynamic loader
//! hands back the instance cryptoki already loaded and initialized) and three calls through its
//! function list, each with a buffer of the size the PKCS#11 headers give.
#![allow(
    unsafe_code,
    reason = "FFI calls to the PKCS#11 functions cryptoki 0.12 cannot make or parse as needed"
)]

use std::fmt;
use std::path::Path;

use cryptoki::context::Function;
use cryptoki::error::{Error, Rv};
use cryptoki::slot::Slot;
use cryptoki_sys::{
    CK_ATTRIBUTE, CK_ATTRIBUTE_TYPE, CK_C_CreateObject, CK_C_GetInfo, CK_C_GetTokenInfo, CK_FLAGS,
    CK_FUNCTION_LIST, CK_INFO, CK_OBJECT_HANDLE, CK_SESSION_HANDLE, CK_TOKEN_INFO, CK_ULONG,
    CK_UNAVAILABLE_INFORMATION, CK_VERSION, CKR_OK,
};

/// The module's own entry points for the two calls.
pub(crate) struct RawCalls {
    /// Keeps the module mapped while the function pointers are used.
    _library: cryptoki_sys::Pkcs11,
    get_info: CK_C_GetInfo,
    get_token_info: CK_C_GetTokenInfo,
    create_object: CK_C_CreateObject,
}

impl fmt::Debug for RawCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawCalls")
    }
}

impl RawCalls {
    /// Finds `C_GetInfo` and `C_GetTokenInfo` in the function list of the module at `path`, which
    /// cryptoki has loaded already.
    pub(crate) fn load(path: &Path) -> Result<RawCalls, String> {
        // SAFETY: the file is the PKCS#11 module cryptoki has just loaded from the same path, so
        // the loader returns that same instance and runs no new initialisers.
        let library = unsafe { cryptoki_sys::Pkcs11::new(path) }
            .map_err(|e| format!("cannot load it as a shared library ({e})"))?;
        if library.C_GetFunctionList.is_err() {
            return Err("it does not export C_GetFunctionList".to_string());
        }
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: C_GetFunctionList writes one pointer to the module's static function list.
        let rv = unsafe { library.C_GetFunctionList(&mut list) };
        if rv != CKR_OK || list.is_null() {
            return Err(format!("C_GetFunctionList failed (0x{rv:x})"));
        }
        // SAFETY: `list` points to the module's function list, valid while the module is loaded;
        // every PKCS#11 version starts it with the same 2.x entries, these two among them.
        let (get_info, get_token_info, create_object) = unsafe {
            (
                (*list).C_GetInfo,
                (*list).C_GetTokenInfo,
                (*list).C_CreateObject,
            )
        };
        Ok(RawCalls {
            _library: library,
            get_info,
            get_token_info,
            create_object,
        })
    }

    /// `C_GetTokenInfo`, decoded tolerantly.
    pub(crate) fn token_info(&self, slot: Slot) -> Result<TokenInfo, Error> {
        let call = self.get_token_info.ok_or(Error::NullFunctionPointer)?;
        let mut raw = CK_TOKEN_INFO::default();
        // SAFETY: the module writes one CK_TOKEN_INFO into `raw`, which is one.
        let rv = unsafe { call(slot.id(), &mut raw) };
        Rv::from(rv).into_result(Function::GetTokenInfo)?;
        Ok(TokenInfo::from_raw(&raw))
    }

    /// `C_CreateObject` with a template of raw values (each attribute's bytes as PKCS#11 lays
    /// them out), in the session whose handle cryptoki gives.
    pub(crate) fn create_object(
        &self,
        session: CK_SESSION_HANDLE,
        template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> Result<CK_OBJECT_HANDLE, Error> {
        let call = self.create_object.ok_or(Error::NullFunctionPointer)?;
        let mut values: Vec<Vec<u8>> = template.iter().map(|(_, v)| v.clone()).collect();
        let mut attributes: Vec<CK_ATTRIBUTE> = template
            .iter()
            .zip(values.iter_mut())
            .map(|((kind, _), value)| CK_ATTRIBUTE {
                type_: *kind,
                pValue: value.as_mut_ptr().cast(),
                ulValueLen: value.len() as CK_ULONG,
            })
            .collect();
        let mut object: CK_OBJECT_HANDLE = 0;
        // SAFETY: every attribute points into `values`, which outlives the call and holds each
        // value at its length; `object` takes the one handle the module writes.
        let rv = unsafe {
            call(
                session,
                attributes.as_mut_ptr(),
                attributes.len() as CK_ULONG,
                &mut object,
            )
        };
        Rv::from(rv).into_result(Function::CreateObject)?;
        Ok(object)
    }

    /// `C_GetInfo`, decoded tolerantly.
    pub(crate) fn library_info(&self) -> Result<LibraryInfo, Error> {
        let call = self.get_info.ok_or(Error::NullFunctionPointer)?;
        let mut raw = CK_INFO::default();
        // SAFETY: the module writes one CK_INFO into `raw`, which is one.
        let rv = unsafe { call(&mut raw) };
        Rv::from(rv).into_result(Function::GetInfo)?;
        Ok(LibraryInfo::from_raw(&raw))
    }
}

/// A blank-padded PKCS#11 text field: UTF-8 where it is, replacement characters where it is not,
/// trailing blanks and NULs removed (some modules pad with NUL against the spec).
fn padded_text(field: &[u8]) -> String {
    String::from_utf8_lossy(field)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

fn version(v: CK_VERSION) -> String {
    format!("{}.{}", v.major, v.minor)
}

/// A counter the token may not know.
fn count(value: CK_ULONG) -> Option<u64> {
    // Some modules give ULONG_MAX - 1 or similar for "no limit": no real token counts that high.
    (value != CK_UNAVAILABLE_INFORMATION && value < u64::from(u32::MAX)).then_some(value)
}

/// The token's clock, as `CK_TOKEN_INFO.utcTime` gives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "value")]
pub enum TokenClock {
    /// The token has no clock (`CKF_CLOCK_ON_TOKEN` clear).
    None,
    /// `YYYY-MM-DD hh:mm:ss` UTC, from 16 digits.
    Time(String),
    /// The token says it has a clock but its field is not 16 digits: the field in hex.
    Unreadable(String),
}

impl TokenClock {
    fn from_raw(flags: CK_FLAGS, field: &[u8; 16]) -> TokenClock {
        if flags & cryptoki_sys::CKF_CLOCK_ON_TOKEN == 0 {
            return TokenClock::None;
        }
        // YYYYMMDDhhmmss, then two reserved characters ('0' by the spec; blanks or NULs seen).
        let reserved_ok = |b: &u8| b.is_ascii_digit() || *b == b' ' || *b == 0;
        if field[..14].iter().all(u8::is_ascii_digit) && field[14..].iter().all(reserved_ok) {
            let s = |r: std::ops::Range<usize>| String::from_utf8_lossy(&field[r]).into_owned();
            return TokenClock::Time(format!(
                "{}-{}-{} {}:{}:{}",
                s(0..4),
                s(4..6),
                s(6..8),
                s(8..10),
                s(10..12),
                s(12..14)
            ));
        }
        TokenClock::Unreadable(crate::text::hex(field))
    }
}

impl fmt::Display for TokenClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenClock::None => f.write_str("none"),
            TokenClock::Time(t) => write!(f, "{t} UTC"),
            TokenClock::Unreadable(raw) => write!(f, "unknown (the token gives {raw} in hex)"),
        }
    }
}

/// What `C_GetTokenInfo` says of a token, every field decoded without failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenInfo {
    pub(crate) label: String,
    pub(crate) manufacturer: String,
    pub(crate) model: String,
    pub(crate) serial: String,
    pub(crate) flags: CK_FLAGS,
    pub(crate) max_session_count: Option<u64>,
    pub(crate) max_rw_session_count: Option<u64>,
    pub(crate) min_pin_len: u64,
    pub(crate) max_pin_len: u64,
    pub(crate) hardware_version: String,
    pub(crate) firmware_version: String,
    pub(crate) clock: TokenClock,
}

impl TokenInfo {
    /// Decodes a raw `CK_TOKEN_INFO`; never fails.
    pub(crate) fn from_raw(raw: &CK_TOKEN_INFO) -> TokenInfo {
        TokenInfo {
            label: padded_text(&raw.label),
            manufacturer: padded_text(&raw.manufacturerID),
            model: padded_text(&raw.model),
            serial: padded_text(&raw.serialNumber),
            flags: raw.flags,
            // 0 means "no limit" (CK_EFFECTIVELY_INFINITE) for the maxima.
            max_session_count: count(raw.ulMaxSessionCount).filter(|n| *n != 0),
            max_rw_session_count: count(raw.ulMaxRwSessionCount).filter(|n| *n != 0),
            min_pin_len: raw.ulMinPinLen,
            max_pin_len: raw.ulMaxPinLen,
            hardware_version: version(raw.hardwareVersion),
            firmware_version: version(raw.firmwareVersion),
            clock: TokenClock::from_raw(raw.flags, &raw.utcTime),
        }
    }

    fn flag(&self, flag: CK_FLAGS) -> bool {
        self.flags & flag != 0
    }

    pub(crate) fn token_initialized(&self) -> bool {
        self.flag(cryptoki_sys::CKF_TOKEN_INITIALIZED)
    }
    pub(crate) fn user_pin_initialized(&self) -> bool {
        self.flag(cryptoki_sys::CKF_USER_PIN_INITIALIZED)
    }
    pub(crate) fn user_pin_count_low(&self) -> bool {
        self.flag(cryptoki_sys::CKF_USER_PIN_COUNT_LOW)
    }
    pub(crate) fn user_pin_final_try(&self) -> bool {
        self.flag(cryptoki_sys::CKF_USER_PIN_FINAL_TRY)
    }
    pub(crate) fn user_pin_locked(&self) -> bool {
        self.flag(cryptoki_sys::CKF_USER_PIN_LOCKED)
    }
    pub(crate) fn user_pin_to_be_changed(&self) -> bool {
        self.flag(cryptoki_sys::CKF_USER_PIN_TO_BE_CHANGED)
    }
    pub(crate) fn protected_authentication_path(&self) -> bool {
        self.flag(cryptoki_sys::CKF_PROTECTED_AUTHENTICATION_PATH)
    }
    pub(crate) fn write_protected(&self) -> bool {
        self.flag(cryptoki_sys::CKF_WRITE_PROTECTED)
    }
    pub(crate) fn login_required(&self) -> bool {
        self.flag(cryptoki_sys::CKF_LOGIN_REQUIRED)
    }
}

/// What `C_GetInfo` says of a module, decoded without failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LibraryInfo {
    pub(crate) cryptoki_version: String,
    pub(crate) manufacturer: String,
    pub(crate) description: String,
    pub(crate) version: String,
}

impl LibraryInfo {
    /// Decodes a raw `CK_INFO`; never fails (cryptoki 0.12 refuses non-zero `flags`).
    pub(crate) fn from_raw(raw: &CK_INFO) -> LibraryInfo {
        LibraryInfo {
            cryptoki_version: version(raw.cryptokiVersion),
            manufacturer: padded_text(&raw.manufacturerID),
            description: padded_text(&raw.libraryDescription),
            version: version(raw.libraryVersion),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded<const N: usize>(text: &[u8]) -> [u8; N] {
        let mut field = [b' '; N];
        field[..text.len()].copy_from_slice(text);
        field
    }

    /// opencryptoki 3.8's soft token as it answers: clock flag set, `utcTime` not digits.
    fn opencryptoki_soft_token() -> CK_TOKEN_INFO {
        CK_TOKEN_INFO {
            label: padded(b"ock-suite"),
            manufacturerID: padded(b"IBM Corp."),
            model: padded(b"IBM SoftTok"),
            serialNumber: padded(b"123"),
            flags: cryptoki_sys::CKF_RNG
                | cryptoki_sys::CKF_LOGIN_REQUIRED
                | cryptoki_sys::CKF_USER_PIN_INITIALIZED
                | cryptoki_sys::CKF_CLOCK_ON_TOKEN
                | cryptoki_sys::CKF_TOKEN_INITIALIZED,
            ulMaxSessionCount: CK_UNAVAILABLE_INFORMATION,
            ulMaxRwSessionCount: 0,
            ulMaxPinLen: 8,
            ulMinPinLen: 4,
            utcTime: *b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            ..CK_TOKEN_INFO::default()
        }
    }

    #[test]
    fn cryptoki_refuses_what_this_reads() {
        let raw = opencryptoki_soft_token();
        // The failure this module exists for: cryptoki's own conversion gives up on the clock.
        assert!(cryptoki::slot::TokenInfo::try_from(raw).is_err());
        let info = TokenInfo::from_raw(&raw);
        assert_eq!(info.label, "ock-suite");
        assert_eq!(info.serial, "123");
        assert_eq!(info.model, "IBM SoftTok");
        assert!(info.token_initialized() && info.user_pin_initialized());
        assert!(!info.user_pin_locked() && !info.protected_authentication_path());
        assert_eq!(info.min_pin_len, 4);
        assert_eq!(info.max_pin_len, 8);
        assert_eq!(info.max_session_count, None);
        assert_eq!(info.max_rw_session_count, None);
        assert!(matches!(info.clock, TokenClock::Unreadable(_)));
        assert!(info.clock.to_string().starts_with("unknown"));
    }

    #[test]
    fn clocks_are_read_when_they_are_digits() {
        let mut raw = opencryptoki_soft_token();
        raw.utcTime = *b"2026112920581700";
        assert_eq!(
            TokenInfo::from_raw(&raw).clock,
            TokenClock::Time("2026-11-29 20:58:17".to_string())
        );
        raw.utcTime = *b"20261129205817  ";
        assert_eq!(
            TokenInfo::from_raw(&raw).clock,
            TokenClock::Time("2026-11-29 20:58:17".to_string())
        );
        raw.utcTime = *b"2026-11-29 20:58";
        assert!(matches!(
            TokenInfo::from_raw(&raw).clock,
            TokenClock::Unreadable(_)
        ));
        raw.flags &= !cryptoki_sys::CKF_CLOCK_ON_TOKEN;
        assert_eq!(TokenInfo::from_raw(&raw).clock, TokenClock::None);
    }

    #[test]
    fn text_fields_survive_nul_padding_and_bad_utf8() {
        let mut raw = opencryptoki_soft_token();
        raw.label = [0u8; 32];
        raw.label[..4].copy_from_slice(b"tok\xff");
        raw.serialNumber = [0u8; 16];
        let info = TokenInfo::from_raw(&raw);
        assert_eq!(info.label, "tok\u{fffd}");
        assert_eq!(info.serial, "");
    }

    #[test]
    fn library_info_with_flags_is_read() {
        let raw = CK_INFO {
            cryptokiVersion: CK_VERSION {
                major: 2,
                minor: 40,
            },
            manufacturerID: padded(b"Vendor"),
            flags: 1,
            libraryDescription: padded(b"A module"),
            libraryVersion: CK_VERSION { major: 3, minor: 8 },
        };
        assert!(cryptoki::context::Info::try_from(raw).is_err());
        let info = LibraryInfo::from_raw(&raw);
        assert_eq!(info.manufacturer, "Vendor");
        assert_eq!(info.description, "A module");
        assert_eq!(info.version, "3.8");
        assert_eq!(info.cryptoki_version, "2.40");
    }
}
