//! Loading PKCS#11 modules (once per path per process) and finding tokens.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::slot::Slot;

use super::calls::{ckr_name, failed};
use super::raw::{RawCalls, TokenInfo};
use super::uri::Pkcs11Uri;
use crate::KeysError;

/// An initialized PKCS#11 module. Cheap to clone; all clones share one context.
#[derive(Clone)]
pub struct Module {
    path: PathBuf,
    context: Pkcs11,
    /// Set for modules known to fail under concurrent sessions (SoftHSM 2.6 with its file store:
    /// SoftHSMv2 issue 573, `CKR_GENERAL_ERROR` from `C_GenerateKeyPair` while other sessions
    /// work). Every call made through a [`super::session::TokenSession`] then takes this lock.
    write_lock: Option<Arc<Mutex<()>>>,
    /// `C_GetInfo` and `C_GetTokenInfo`, read tolerantly (see [`super::raw`]).
    raw: Arc<RawCalls>,
}

#[derive(Clone)]
struct Loaded {
    context: Pkcs11,
    write_lock: Option<Arc<Mutex<()>>>,
    raw: Arc<RawCalls>,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module").field("path", &self.path).finish()
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Loaded>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Loaded>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Module {
    /// Loads and initializes the module at `path`, or returns the context already made for it in
    /// this process. A module that some other code initialized already is tolerated.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11Module`] when the file is missing or not a PKCS#11 module.
    pub fn load(path: &Path) -> Result<Module, KeysError> {
        let key = std::fs::canonicalize(path).map_err(|e| KeysError::Pkcs11Module {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut loaded = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = loaded.get(&key) {
            return Ok(Module {
                path: key,
                context: known.context.clone(),
                write_lock: known.write_lock.clone(),
                raw: known.raw.clone(),
            });
        }
        let failed = |reason: String| KeysError::Pkcs11Module {
            path: path.to_path_buf(),
            reason,
        };
        let context = Pkcs11::new(&key).map_err(|e| failed(loader_reason(&e)))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(failed(format!("C_Initialize failed: {}", ckr_name(&e)))),
        }
        let raw = Arc::new(RawCalls::load(&key).map_err(failed)?);
        let serialized = raw
            .library_info()
            .map(|info| info.manufacturer.starts_with("SoftHSM"))
            .unwrap_or(false);
        let write_lock = serialized.then(|| Arc::new(Mutex::new(())));
        loaded.insert(
            key.clone(),
            Loaded {
                context: context.clone(),
                write_lock: write_lock.clone(),
                raw: raw.clone(),
            },
        );
        Ok(Module {
            path: key,
            context,
            write_lock,
            raw,
        })
    }

    /// Runs `call` under the module's lock when the module needs one (see the `write_lock` field),
    /// else directly.
    pub(crate) fn serialized<T>(&self, call: impl FnOnce() -> T) -> T {
        match &self.write_lock {
            Some(lock) => {
                let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                call()
            }
            None => call(),
        }
    }

    /// Loads the module the URI names (`module-path`), else `default` (the caller's choice: a
    /// command-line option, an environment variable, a configuration file).
    ///
    /// # Errors
    /// [`KeysError::NoPkcs11Module`] when neither names one; else as [`Module::load`].
    pub fn resolve(uri: &Pkcs11Uri, default: Option<&Path>) -> Result<Module, KeysError> {
        match (&uri.module_path, default) {
            (Some(path), _) => Module::load(Path::new(path)),
            (None, Some(path)) => Module::load(path),
            (None, None) => Err(KeysError::NoPkcs11Module),
        }
    }

    /// The module's file (canonical path).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The calls made through the module's function list directly (see [`super::raw`]).
    pub(crate) fn raw(&self) -> &RawCalls {
        &self.raw
    }

    pub(crate) fn context(&self) -> &Pkcs11 {
        &self.context
    }

    /// The module's description: `manufacturer, description version`.
    pub fn description(&self) -> String {
        match self.raw.library_info() {
            Ok(info) => format!(
                "{} {} {}",
                info.manufacturer, info.description, info.version
            ),
            Err(e) => format!("(C_GetInfo failed: {})", ckr_name(&e)),
        }
    }

    /// `C_GetTokenInfo` for `slot`, every field decoded tolerantly.
    pub(crate) fn token_info(&self, slot: Slot) -> Result<TokenInfo, Error> {
        self.raw.token_info(slot)
    }

    /// Every token present, with its slot.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when the slot list cannot be read.
    pub fn tokens(&self) -> Result<Vec<TokenRef>, KeysError> {
        let failed =
            |e: Error, operation: &str| failed(self.path.display().to_string(), e, operation);
        let slots = self
            .context
            .get_slots_with_token()
            .map_err(|e| failed(e, "C_GetSlotList"))?;
        let mut tokens = Vec::new();
        for slot in slots {
            let info = self
                .token_info(slot)
                .map_err(|e| failed(e, "C_GetTokenInfo"))?;
            if !info.token_initialized() {
                continue;
            }
            tokens.push(TokenRef {
                module: self.clone(),
                slot,
                summary: TokenSummary {
                    label: info.label,
                    serial: info.serial,
                    model: info.model,
                    manufacturer: info.manufacturer,
                },
            });
        }
        Ok(tokens)
    }

    /// The one token matching the URI's token attributes: `token` (label) or `serial` must be
    /// given; `model`, `manufacturer` and `slot-id` narrow further but never select alone.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11Uri`] when neither label nor serial is given,
    /// [`KeysError::TokenNotFound`] listing the tokens present, [`KeysError::TokenAmbiguous`].
    pub fn find_token(&self, uri: &Pkcs11Uri) -> Result<TokenRef, KeysError> {
        if uri.token.is_none() && uri.serial.is_none() {
            return Err(KeysError::Pkcs11Uri {
                reason: "name the token with token=<label> or serial=<serial> (slot numbers change when tokens come and go)".to_string(),
            });
        }
        let tokens = self.tokens()?;
        let wanted = uri.token_description();
        let matches = |t: &TokenRef| {
            let s = &t.summary;
            uri.token.as_ref().is_none_or(|v| *v == s.label)
                && uri.serial.as_ref().is_none_or(|v| *v == s.serial)
                && uri.model.as_ref().is_none_or(|v| *v == s.model)
                && uri
                    .manufacturer
                    .as_ref()
                    .is_none_or(|v| *v == s.manufacturer)
                && uri.slot_id.is_none_or(|id| id == t.slot.id())
        };
        let present: Vec<String> = tokens.iter().map(|t| t.summary.to_string()).collect();
        let mut found: Vec<TokenRef> = tokens.into_iter().filter(matches).collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(KeysError::TokenNotFound { wanted, present }),
            count => Err(KeysError::TokenAmbiguous { wanted, count }),
        }
    }
}

fn loader_reason(e: &Error) -> String {
    match e {
        Error::LibraryLoading(inner) => format!("cannot load it as a shared library ({inner})"),
        Error::MissingSymbol(_) | Error::NullFunctionPointer => {
            "it does not export C_GetFunctionList".to_string()
        }
        other => other.to_string(),
    }
}

/// What identifies a token to a person.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenSummary {
    /// CKA token label.
    pub label: String,
    /// Serial number.
    pub serial: String,
    /// Model.
    pub model: String,
    /// Manufacturer ID.
    pub manufacturer: String,
}

impl fmt::Display for TokenSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token \"{}\" (serial {})", self.label, self.serial)
    }
}

/// A token found in a module.
#[derive(Clone)]
pub struct TokenRef {
    pub(crate) module: Module,
    pub(crate) slot: Slot,
    pub(crate) summary: TokenSummary,
}

impl fmt::Debug for TokenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenRef({})", self.summary)
    }
}

impl TokenRef {
    /// Label, serial, model, manufacturer.
    pub fn summary(&self) -> &TokenSummary {
        &self.summary
    }

    /// `token "label" (serial ...)`, for messages.
    pub fn description(&self) -> String {
        self.summary.to_string()
    }

    /// The module the token is in.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// How many read-write sessions the token allows at once, when it states a limit.
    ///
    /// # Errors
    /// [`KeysError::Pkcs11`] when the token cannot be queried.
    pub fn max_rw_sessions(&self) -> Result<Option<u64>, KeysError> {
        Ok(self
            .module
            .token_info(self.slot)
            .map_err(|e| failed(self.description(), e, "C_GetTokenInfo"))?
            .max_rw_session_count)
    }

    /// Where a key on this token is kept, as the CA's key-storage rule sees it: a known software
    /// implementation by the token's manufacturer and model, else hardware.
    pub fn storage(&self) -> crate::storage::KeyStorage {
        match crate::storage::software_token(&self.summary.manufacturer, &self.summary.model) {
            Some(name) => crate::storage::KeyStorage::SoftwareToken(name),
            None => crate::storage::KeyStorage::Token,
        }
    }
}
