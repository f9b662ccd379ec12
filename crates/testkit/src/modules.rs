//! The PKCS#11 modules the token suite runs on, each an implementation nobody here wrote:
//! SoftHSM2 (a throwaway store per test), opencryptoki's software token and tpm2-pkcs11 over a
//! software TPM (one token each, set up by `cargo xtask test` with `xtask/tokens/*.sh`, which
//! passes the token to the tests in `CODESIGN_TEST_<MODULE>_{MODULE,TOKEN,PIN}`).
//!
//! A module that is not set up makes its tests fail with the reason; `cargo xtask test` does not
//! run them at all then and names them as not run, so nothing missing ever counts as passed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use crate::softhsm::{SoftHsm, USER_PIN};
use crate::text;

/// A PKCS#11 implementation of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteModule {
    /// SoftHSM2 (Debian `softhsm2`).
    SoftHsm2,
    /// opencryptoki's software token (Debian `opencryptoki`, slot daemon `pkcsslotd`).
    OpenCryptoki,
    /// tpm2-pkcs11 over swtpm with the tpm2-abrmd resource manager.
    Tpm2,
}

impl SuiteModule {
    /// Every module of the suite.
    pub const ALL: [SuiteModule; 3] = [
        SuiteModule::SoftHsm2,
        SuiteModule::OpenCryptoki,
        SuiteModule::Tpm2,
    ];

    /// The name the test output and `xtask` use.
    pub fn name(self) -> &'static str {
        match self {
            SuiteModule::SoftHsm2 => "softhsm2",
            SuiteModule::OpenCryptoki => "opencryptoki",
            SuiteModule::Tpm2 => "tpm2",
        }
    }

    fn variable_prefix(self) -> &'static str {
        match self {
            SuiteModule::SoftHsm2 => "CODESIGN_TEST_SOFTHSM2",
            SuiteModule::OpenCryptoki => "CODESIGN_TEST_OPENCRYPTOKI",
            SuiteModule::Tpm2 => "CODESIGN_TEST_TPM2",
        }
    }

    /// Like [`SuiteModule::token`], for a test that loads the module in its own process: for
    /// SoftHSM2, a token of the process-wide store ([`SoftHsm::process_wide`]).
    ///
    /// # Errors
    /// Why the module cannot be used here.
    pub fn token_in_process(self) -> Result<SuiteToken, String> {
        if self != SuiteModule::SoftHsm2 {
            return self.token();
        }
        let hsm = SoftHsm::process_wide();
        let label = SoftHsm::claim_token();
        Ok(SuiteToken {
            module: self,
            module_path: hsm.module().to_path_buf(),
            label,
            pin: USER_PIN.to_string(),
            env: hsm
                .env()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            dir: temporary_dir()?,
            _softhsm: None,
            _turn: None,
        })
    }

    /// The module's token for one test. The shared tokens (every module but SoftHSM2) are held
    /// for the test's whole run by a lock, so tests in one process take turns; nextest runs them
    /// one at a time (`.config/nextest.toml`).
    ///
    /// # Errors
    /// Why the module cannot be used here.
    pub fn token(self) -> Result<SuiteToken, String> {
        match self {
            SuiteModule::SoftHsm2 => {
                let hsm = SoftHsm::create()?;
                hsm.try_init_token("suite", crate::softhsm::SO_PIN, USER_PIN)?;
                Ok(SuiteToken {
                    module: self,
                    module_path: hsm.module().to_path_buf(),
                    label: "suite".to_string(),
                    pin: USER_PIN.to_string(),
                    env: hsm
                        .env()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    dir: temporary_dir()?,
                    _softhsm: Some(hsm),
                    _turn: None,
                })
            }
            SuiteModule::OpenCryptoki | SuiteModule::Tpm2 => {
                let prefix = self.variable_prefix();
                let read = |what: &str| {
                    std::env::var(format!("{prefix}_{what}")).map_err(|_| {
                        format!(
                            "{}: not set up ({prefix}_{what} is unset): `cargo xtask test` sets it up, as root for opencryptoki",
                            self.name()
                        )
                    })
                };
                let module_path = PathBuf::from(read("MODULE")?);
                let label = read("TOKEN")?;
                let pin = read("PIN")?;
                if !module_path.exists() {
                    return Err(format!(
                        "{}: {} is missing",
                        self.name(),
                        module_path.display()
                    ));
                }
                static TURNS: [Mutex<()>; 3] = [Mutex::new(()), Mutex::new(()), Mutex::new(())];
                let turn = TURNS[self as usize]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                Ok(SuiteToken {
                    module: self,
                    module_path,
                    label,
                    pin,
                    env: Vec::new(),
                    dir: temporary_dir()?,
                    _softhsm: None,
                    _turn: Some(turn),
                })
            }
        }
    }
}

fn temporary_dir() -> Result<tempfile::TempDir, String> {
    tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))
}

/// One token of a suite module, ready for a test.
pub struct SuiteToken {
    module: SuiteModule,
    module_path: PathBuf,
    label: String,
    pin: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    _softhsm: Option<SoftHsm>,
    _turn: Option<MutexGuard<'static, ()>>,
}

impl SuiteToken {
    /// Which module.
    pub fn module(&self) -> SuiteModule {
        self.module
    }

    /// The module file.
    pub fn module_path(&self) -> &Path {
        &self.module_path
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The user PIN.
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// `stem` made unique to this process, for labels on a shared token that keeps earlier
    /// runs' objects.
    pub fn unique(&self, stem: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{stem}-{}-{nanos:x}", std::process::id())
    }

    /// A directory for the test's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Environment a child process needs to use the token (SoftHSM2's config; the shared
    /// modules' variables are in this process's environment already).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// A `pkcs11:` URI for the token with `extra` path attributes (e.g. `;object=k1`) and the
    /// module path.
    pub fn uri(&self, extra: &str) -> String {
        format!(
            "pkcs11:token={}{extra}?module-path={}",
            self.label.replace(' ', "%20"),
            self.module_path.display()
        )
    }

    /// Runs `pkcs11-tool` (OpenSC) on the token, logged in; fails the test when it fails.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Output {
        let mut command = Command::new("pkcs11-tool");
        command
            .arg("--module")
            .arg(&self.module_path)
            .args(["--token-label", &self.label, "--login", "--pin", &self.pin])
            .args(args);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run pkcs11-tool ({e}): apt-get install -y opensc"));
        assert!(
            output.status.success(),
            "pkcs11-tool {args:?} on {} failed: {}",
            self.module.name(),
            text(&output)
        );
        output
    }

    /// What `pkcs11-tool -O` lists on the token.
    pub fn list_objects(&self) -> String {
        String::from_utf8_lossy(&self.pkcs11_tool(&["-O"]).stdout).into_owned()
    }

    /// The objects `pkcs11-tool -O` lists whose label is `label`.
    pub fn objects_labelled(&self, label: &str) -> usize {
        object_blocks(&self.list_objects())
            .iter()
            .filter(|b| b.contains(&format!("label:      {label}\n")))
            .count()
    }

    /// How many objects `pkcs11-tool -O` lists on the token.
    pub fn object_count(&self) -> usize {
        object_blocks(&self.list_objects()).len()
    }
}

/// The blocks of a `pkcs11-tool -O` listing, one per object.
pub fn object_blocks(listing: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in listing.lines() {
        if !line.starts_with(' ') {
            if line.contains(" Object") || line.starts_with("Data object") {
                blocks.push(String::new());
            } else {
                continue;
            }
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    blocks
}
