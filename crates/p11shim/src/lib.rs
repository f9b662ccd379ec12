//! A PKCS#11 module for tests, set up through the environment of the process that loads it. It
//! forwards every call to the real module `P11SHIM_MODULE`, and on request:
//!
//! - `P11SHIM_ABORT_AFTER=C_GenerateKeyPair:N` (or `C_CreateObject:N`): the process aborts right
//!   after the N-th successful call returns from the real module, before the caller sees it: a
//!   crash between the token's work and the caller's record of it;
//! - `P11SHIM_TOKEN_FLAGS=user_pin_locked,user_pin_final_try,user_pin_count_low`: `C_GetTokenInfo`
//!   reports these flags too;
//! - `P11SHIM_FORGE=extractable,not_sensitive,not_local`: `C_GetAttributeValue` reports private
//!   keys as extractable, not sensitive, or not generated on the token;
//! - `P11SHIM_CALLS=FILE`: appends the name of every `C_Login`, `C_GenerateKeyPair`,
//!   `C_CreateObject` and `C_DestroyObject` to FILE, one per line, as it is made.
//! - `P11SHIM_DELAY_FIND_MS=N`: `C_FindObjectsInit` waits N milliseconds first: a slow token,
//!   which keeps a job between its claim and its key for a while.
//!
//! It exports `C_GetFunctionList` alone (PKCS#11 2.40 calling convention), which every caller
//! falls back to. This is a test device: a PKCS#11 module is process-global by nature.

// A PKCS#11 module is C ABI through and through: unsafe is what it is made of. Each block says
// what it relies on.
#![allow(unsafe_code)]
#![allow(non_snake_case)]

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use cryptoki_sys::{
    CK_ATTRIBUTE, CK_BBOOL, CK_FALSE, CK_FLAGS, CK_FUNCTION_LIST, CK_MECHANISM, CK_OBJECT_CLASS,
    CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID, CK_TOKEN_INFO, CK_TRUE, CK_ULONG,
    CK_UNAVAILABLE_INFORMATION, CK_USER_TYPE, CK_UTF8CHAR, CKA_CLASS, CKA_EXTRACTABLE, CKA_LOCAL,
    CKA_SENSITIVE, CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED,
    CKO_PRIVATE_KEY, CKR_ARGUMENTS_BAD, CKR_GENERAL_ERROR, CKR_OK,
};

/// What the environment asked for.
#[derive(Debug, Default)]
struct Config {
    abort_after: Option<(String, u64)>,
    token_flags: CK_FLAGS,
    forge_extractable: bool,
    forge_not_sensitive: bool,
    forge_not_local: bool,
    calls_file: Option<String>,
    find_delay: std::time::Duration,
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let mut config = Config::default();
        if let Ok(spec) = std::env::var("P11SHIM_ABORT_AFTER") {
            let (call, count) = spec
                .split_once(':')
                .ok_or_else(|| format!("P11SHIM_ABORT_AFTER={spec}: CALL:N expected"))?;
            let count: u64 = count
                .parse()
                .map_err(|_| format!("P11SHIM_ABORT_AFTER={spec}: N is not a number"))?;
            if !["C_GenerateKeyPair", "C_CreateObject"].contains(&call) {
                return Err(format!("P11SHIM_ABORT_AFTER={spec}: unsupported call"));
            }
            config.abort_after = Some((call.to_string(), count));
        }
        for flag in list("P11SHIM_TOKEN_FLAGS") {
            config.token_flags |= match flag.as_str() {
                "user_pin_locked" => CKF_USER_PIN_LOCKED,
                "user_pin_final_try" => CKF_USER_PIN_FINAL_TRY,
                "user_pin_count_low" => CKF_USER_PIN_COUNT_LOW,
                other => return Err(format!("P11SHIM_TOKEN_FLAGS: unknown flag {other}")),
            };
        }
        for forged in list("P11SHIM_FORGE") {
            match forged.as_str() {
                "extractable" => config.forge_extractable = true,
                "not_sensitive" => config.forge_not_sensitive = true,
                "not_local" => config.forge_not_local = true,
                other => return Err(format!("P11SHIM_FORGE: unknown attribute {other}")),
            }
        }
        config.calls_file = std::env::var("P11SHIM_CALLS").ok();
        if let Ok(ms) = std::env::var("P11SHIM_DELAY_FIND_MS") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| format!("P11SHIM_DELAY_FIND_MS={ms}: not a number"))?;
            config.find_delay = std::time::Duration::from_millis(ms);
        }
        Ok(config)
    }
}

fn list(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

struct Shim {
    /// Keeps the real module mapped.
    _library: cryptoki_sys::Pkcs11,
    real: CK_FUNCTION_LIST,
    ours: CK_FUNCTION_LIST,
    config: Config,
    generated: AtomicU64,
    created: AtomicU64,
}

static SHIM: OnceLock<Result<Shim, String>> = OnceLock::new();

fn load() -> Result<Shim, String> {
    let config = Config::from_env()?;
    let path =
        std::env::var("P11SHIM_MODULE").map_err(|_| "P11SHIM_MODULE is not set".to_string())?;
    // SAFETY: loading a PKCS#11 module runs its initialisers, as any caller of the module would.
    let library = unsafe { cryptoki_sys::Pkcs11::new(&path) }
        .map_err(|e| format!("P11SHIM_MODULE={path}: {e}"))?;
    let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: C_GetFunctionList writes one pointer to the module's static function list.
    let rv = unsafe { library.C_GetFunctionList(&mut list) };
    if rv != CKR_OK || list.is_null() {
        return Err(format!("{path}: C_GetFunctionList failed (0x{rv:x})"));
    }
    // SAFETY: the list is the module's, valid while it is loaded; it is copied, not kept.
    let real = unsafe { *list };
    let mut ours = real;
    // The 2.40 list: the version its callers expect of this struct.
    ours.version.major = 2;
    ours.version.minor = 40;
    ours.C_GetFunctionList = Some(C_GetFunctionList);
    ours.C_GetTokenInfo = Some(get_token_info);
    ours.C_Login = Some(login);
    ours.C_GenerateKeyPair = Some(generate_key_pair);
    ours.C_CreateObject = Some(create_object);
    ours.C_DestroyObject = Some(destroy_object);
    ours.C_GetAttributeValue = Some(get_attribute_value);
    ours.C_FindObjectsInit = Some(find_objects_init);
    Ok(Shim {
        _library: library,
        real,
        ours,
        config,
        generated: AtomicU64::new(0),
        created: AtomicU64::new(0),
    })
}

fn shim() -> Option<&'static Shim> {
    match SHIM.get_or_init(load) {
        Ok(shim) => Some(shim),
        Err(why) => {
            eprintln!("codesign-p11shim: {why}");
            None
        }
    }
}

impl Shim {
    fn log(&self, call: &str) {
        if let Some(path) = &self.config.calls_file
            && let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        {
            let _ = writeln!(file, "{call}");
        }
    }

    /// Counts a successful call, and aborts when it is the one asked for.
    fn after(&self, call: &str, counter: &AtomicU64) {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((abort_call, at)) = &self.config.abort_after
            && abort_call == call
            && *at == n
        {
            self.log(&format!("abort after {call} #{n}"));
            std::process::abort();
        }
    }
}

/// The module's one entry point.
///
/// # Safety
/// `list` must be valid for one pointer write, as PKCS#11 requires of callers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    if list.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let Some(shim) = shim() else {
        return CKR_GENERAL_ERROR;
    };
    // SAFETY: checked non-null above; the list lives in a static for the process's life, and
    // callers only read it (PKCS#11 declares the pointer non-const for old compilers).
    unsafe { *list = std::ptr::from_ref(&shim.ours).cast_mut() };
    CKR_OK
}

/// The real module's function, or a general error when it has none.
macro_rules! real {
    ($shim:expr, $name:ident) => {
        match $shim.real.$name {
            Some(f) => f,
            None => return CKR_GENERAL_ERROR,
        }
    };
}

unsafe extern "C" fn get_token_info(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    let Some(shim) = shim() else {
        return CKR_GENERAL_ERROR;
    };
    // SAFETY: the caller's arguments are passed on unchanged.
    let rv = unsafe { real!(shim, C_GetTokenInfo)(slot, info) };
    if rv == CKR_OK && !info.is_null() {
        // SAFETY: the real module filled the struct the caller gave.
        unsafe { (*info).flags |= shim.config.token_flags };
    }
    rv
}

unsafe extern "C" fn login(
    session: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
) -> CK_RV {
    let Some(shim) = shim() else {
        return CKR_GENERAL_ERROR;
    };
    shim.log("C_Login");
    // SAFETY: the caller's arguments are passed on unchanged.
    unsafe { real!(shim, C_Login)(session, user, pin, pin_len) }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn generate_key_pair(
    session: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    public_template: *mut CK_ATTRIBUTE,
    public_count: CK_ULONG,
    private_template: *mut CK_ATTRIBUTE,
    private_count: CK_ULONG,
    public_key: *mut CK_OBJECT_HANDLE,
    private_key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    let Some(shim) = shim() else {
        return CKR_GENERAL_ERROR;
    };
    shim.log("C_GenerateKeyPair");
    // SAFETY: the caller's arguments are passed on unchanged.
    let rv = unsafe {
        real!(shim, C_GenerateKeyPair)(
            session,
            mechanism,
            public_template,
            public_count,
            private_template,
            private_count,
            public_key,
            private_key,
        )
    };
    if rv == CKR_OK {
        shim.after("C_GenerateKeyPair", &shim.generated);
    }
    rv
}

unsafe extern "C" fn create_object(
    session: CK_SESSION_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    object: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    let Some(shim) = shim() else {
        return CKR_GENERAL_ERROR;
    };
    shim.log("C_CreateObject");
    // SAFETY: the caller's arguments are passed on unchanged.
    let rv = unsafe { real!(shim, C_CreateObject)(session, template, count, object) };
    if rv == CKR_OK {
        shim.after("C_CreateObject", &shim.created);
    }
    rv
}

unsafe extern "C" fn destroy_object(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> CK_RV {
    let Some(shim) = shim() else {
        return CKR_GENERAL_ERROR;
    };
    shim.log("C_DestroyObject");
    // SAFETY: the caller's arguments are passed on unchanged.
    unsafe { real!(shim, C_DestroyObject)(session, object) }
}

unsafe extern "C" fn find_objects_init(
    session: CK_SESSION_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    let Some(shim) = shim() else {
        return CKR_GENERAL_ERROR;
    };
    std::thread::sleep(shim.config.find_delay);
    // SAFETY: the caller's arguments are passed on unchanged.
    unsafe { real!(shim, C_FindObjectsInit)(session, template, count) }
}

unsafe extern "C" fn get_attribute_value(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    let Some(shim) = shim() else {
        return CKR_GENERAL_ERROR;
    };
    let get = real!(shim, C_GetAttributeValue);
    // SAFETY: the caller's arguments are passed on unchanged.
    let rv = unsafe { get(session, object, template, count) };
    let config = &shim.config;
    let forging = config.forge_extractable || config.forge_not_sensitive || config.forge_not_local;
    if !forging || template.is_null() || !is_private_key(get, session, object) {
        return rv;
    }
    // SAFETY: the caller's template of `count` attributes, as the real module just used it.
    let attributes = unsafe { std::slice::from_raw_parts_mut(template, count as usize) };
    for attribute in attributes {
        let forged: Option<CK_BBOOL> = match attribute.type_ {
            CKA_EXTRACTABLE if config.forge_extractable => Some(CK_TRUE),
            CKA_SENSITIVE if config.forge_not_sensitive => Some(CK_FALSE),
            CKA_LOCAL if config.forge_not_local => Some(CK_FALSE),
            _ => None,
        };
        if let Some(value) = forged
            && !attribute.pValue.is_null()
            && attribute.ulValueLen != CK_UNAVAILABLE_INFORMATION
            && attribute.ulValueLen as usize >= std::mem::size_of::<CK_BBOOL>()
        {
            // SAFETY: the caller's buffer of at least one CK_BBOOL, filled by the real module.
            unsafe { *attribute.pValue.cast::<CK_BBOOL>() = value };
        }
    }
    rv
}

/// Whether `object` is a private key, asked of the real module.
fn is_private_key(
    get: unsafe extern "C" fn(
        CK_SESSION_HANDLE,
        CK_OBJECT_HANDLE,
        *mut CK_ATTRIBUTE,
        CK_ULONG,
    ) -> CK_RV,
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
) -> bool {
    let mut class: CK_OBJECT_CLASS = 0;
    let mut attribute = CK_ATTRIBUTE {
        type_: CKA_CLASS,
        pValue: std::ptr::from_mut(&mut class).cast(),
        ulValueLen: std::mem::size_of::<CK_OBJECT_CLASS>() as CK_ULONG,
    };
    // SAFETY: one attribute with a buffer of its size.
    let rv = unsafe { get(session, object, &mut attribute, 1) };
    rv == CKR_OK && class == CKO_PRIVATE_KEY
}
