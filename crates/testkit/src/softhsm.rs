//! Throwaway SoftHSM2 stores and tokens, and pkcs11-tool as a judge of what is on them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::text;

/// Where Debian puts the SoftHSM2 module; `TEST_PKCS11_MODULE` overrides it.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// How many tokens the process-wide store holds.
pub const PROCESS_WIDE_TOKENS: usize = 8;
/// The user PIN of every test token.
pub const USER_PIN: &str = "4711-user";
/// The security officer PIN of every test token.
pub const SO_PIN: &str = "0815-so";

/// A throwaway SoftHSM2 installation: its own token directory and `SOFTHSM2_CONF`, in a temporary
/// directory ([`SoftHsm::create`]) or one of the caller's ([`SoftHsm::create_in`]). The tests use
/// [`SoftHsm::new`], which fails the test loudly when SoftHSM2 is not installed; the demo and the
/// benchmarks use the fallible constructors and say so.
pub struct SoftHsm {
    _temporary: Option<tempfile::TempDir>,
    root: PathBuf,
    conf: PathBuf,
    module: PathBuf,
}

impl Default for SoftHsm {
    fn default() -> Self {
        SoftHsm::new()
    }
}

impl SoftHsm {
    /// A new, empty SoftHSM2 store in a temporary directory; fails the test when SoftHSM2 is not
    /// installed.
    pub fn new() -> SoftHsm {
        SoftHsm::create().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new, empty SoftHSM2 store in a temporary directory, removed when dropped.
    ///
    /// # Errors
    /// Why not: SoftHSM2 not installed, or the directory cannot be made.
    pub fn create() -> Result<SoftHsm, String> {
        let temporary =
            tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        let mut hsm = SoftHsm::create_in(temporary.path())?;
        hsm._temporary = Some(temporary);
        Ok(hsm)
    }

    /// A new, empty SoftHSM2 store in `root` (its `tokens/` and `softhsm2.conf`), kept.
    ///
    /// # Errors
    /// Why not: SoftHSM2 not installed (the module or `softhsm2-util` missing), or the files
    /// cannot be written.
    pub fn create_in(root: &Path) -> Result<SoftHsm, String> {
        let module = PathBuf::from(
            std::env::var("TEST_PKCS11_MODULE").unwrap_or_else(|_| SOFTHSM_MODULE.to_string()),
        );
        let util = Command::new("softhsm2-util").arg("--version").output();
        if !module.exists() || !util.is_ok_and(|o| o.status.success()) {
            return Err(format!(
                "SoftHSM2 is not installed ({} or softhsm2-util missing): apt-get install -y softhsm2 opensc, or run `cargo xtask test`",
                module.display()
            ));
        }
        let tokens = root.join("tokens");
        std::fs::create_dir_all(&tokens)
            .map_err(|e| format!("{}: cannot make it: {e}", tokens.display()))?;
        let conf = root.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .map_err(|e| format!("{}: cannot write it: {e}", conf.display()))?;
        Ok(SoftHsm {
            _temporary: None,
            root: root.to_path_buf(),
            conf,
            module,
        })
    }

    /// Points this process's SoftHSM at this store, for in-process use of the module.
    ///
    /// # Safety
    /// Sets `SOFTHSM2_CONF` in the environment: call it before any other thread runs or reads
    /// the environment, and before this process loads the module (SoftHSM reads its
    /// configuration once).
    pub unsafe fn use_in_this_process(&self) {
        // SAFETY: the caller guarantees no other thread reads or writes the environment.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &self.conf) };
    }

    /// The process-wide store for in-process tests. SoftHSM reads `SOFTHSM2_CONF` and scans its
    /// tokens once, when this process initializes the module, so the store is shared and its
    /// tokens are made up front; each test takes its own with [`SoftHsm::claim_token`]. (Under
    /// nextest every test is its own process anyway.)
    pub fn process_wide() -> &'static SoftHsm {
        static SHARED: std::sync::OnceLock<SoftHsm> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let hsm = SoftHsm::new();
            for n in 0..PROCESS_WIDE_TOKENS {
                hsm.init_token(&format!("inproc-{n}"));
            }
            // SAFETY: set once, before this process initializes the module; tests that use SoftHSM
            // in-process all come through here first.
            unsafe { hsm.use_in_this_process() };
            hsm
        })
    }

    /// The label of a token of the process-wide store that no other test of this process uses.
    pub fn claim_token() -> String {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        SoftHsm::process_wide();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(
            n < PROCESS_WIDE_TOKENS,
            "more than {PROCESS_WIDE_TOKENS} in-process SoftHSM tests in one binary: raise PROCESS_WIDE_TOKENS"
        );
        format!("inproc-{n}")
    }

    /// The module path.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// The `SOFTHSM2_CONF` file.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The directory holding the store (for test files).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Environment for a child process using this store.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SOFTHSM2_CONF", self.conf.display().to_string()),
            ("PKCS11_MODULE", self.module.display().to_string()),
        ]
    }

    /// Initializes a new token with `label`, the user PIN [`USER_PIN`] and SO PIN [`SO_PIN`], using
    /// `softhsm2-util`. Returns the token's serial number.
    pub fn init_token(&self, label: &str) -> String {
        self.init_token_with_pin(label, USER_PIN)
    }

    /// Initializes a new token with `label` and the user PIN `pin`; returns its serial number.
    /// Fails the test when it cannot.
    pub fn init_token_with_pin(&self, label: &str, pin: &str) -> String {
        self.try_init_token(label, SO_PIN, pin)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Initializes a new token with `label`, the SO PIN `so_pin` and the user PIN `pin`, using
    /// `softhsm2-util`; returns its serial number.
    ///
    /// # Errors
    /// What `softhsm2-util` said when it failed.
    pub fn try_init_token(&self, label: &str, so_pin: &str, pin: &str) -> Result<String, String> {
        let output = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                so_pin,
                "--pin",
                pin,
            ])
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .map_err(|e| format!("cannot run softhsm2-util ({e}): apt-get install -y softhsm2"))?;
        if !output.status.success() {
            return Err(format!(
                "softhsm2-util --init-token failed: {}",
                text(&output)
            ));
        }
        let output = Command::new("softhsm2-util")
            .args(["--show-slots"])
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .map_err(|e| format!("cannot run softhsm2-util --show-slots: {e}"))?;
        let slots = String::from_utf8_lossy(&output.stdout).into_owned();
        // Find the block of our label, then its serial.
        let mut in_block = false;
        for line in slots.lines() {
            let line = line.trim();
            if let Some(l) = line.strip_prefix("Label:") {
                in_block = l.trim() == label;
            }
            if let Some(s) = line.strip_prefix("Serial number:")
                && in_block
            {
                return Ok(s.trim().to_string());
            }
        }
        Err(format!(
            "token {label} not listed by softhsm2-util:\n{slots}"
        ))
    }

    /// A `pkcs11:` URI for the token `label`, with this store's module path.
    pub fn uri(&self, label: &str, extra: &str) -> String {
        format!(
            "pkcs11:token={}{extra}?module-path={}",
            label.replace(' ', "%20"),
            self.module.display()
        )
    }

    /// Runs `pkcs11-tool` (OpenSC) on this store's module, logged in with [`USER_PIN`].
    pub fn pkcs11_tool(&self, token_label: &str, args: &[&str]) -> Output {
        let output = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&self.module)
            .args(["--token-label", token_label, "--login", "--pin", USER_PIN])
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| panic!("cannot run pkcs11-tool ({e}): apt-get install -y opensc"));
        assert!(
            output.status.success(),
            "pkcs11-tool {args:?} failed: {}",
            text(&output)
        );
        output
    }

    /// The objects `pkcs11-tool -O` lists on the token, as its text.
    pub fn list_objects(&self, token_label: &str) -> String {
        String::from_utf8_lossy(&self.pkcs11_tool(token_label, &["-O"]).stdout).into_owned()
    }

    /// How many objects `pkcs11-tool -O` lists on the token.
    pub fn object_count(&self, token_label: &str) -> usize {
        self.list_objects(token_label)
            .lines()
            .filter(|l| {
                l.starts_with("Private Key Object")
                    || l.starts_with("Public Key Object")
                    || l.starts_with("Certificate Object")
                    || l.starts_with("Data object")
                    || l.starts_with("Secret Key Object")
            })
            .count()
    }

    /// Path of OpenSC's PKCS#11 spy module, which logs every call to the real module.
    pub fn spy_module() -> PathBuf {
        let found = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("pkcs11/pkcs11-spy.so"))
            .chain([PathBuf::from("/usr/lib/pkcs11/pkcs11-spy.so")])
            .find(|p| p.exists());
        found.expect("pkcs11-spy.so missing: apt-get install -y opensc")
    }
}

/// How many objects of `kind` (`"Private Key Object"`, `"Certificate Object"`, ...) a
/// `pkcs11-tool -O` listing holds with a label: a key generation killed inside SoftHSM may leave
/// an object without one, which the tool leaves alone (it cannot tell it is its own).
pub fn count_labelled(listing: &str, kind: &str) -> usize {
    listing
        .split(kind)
        .skip(1)
        .filter(|block| {
            // The object's own lines, up to the next object.
            let own = block
                .lines()
                .skip(1)
                .take_while(|l| l.starts_with(' ') || l.starts_with('\t'));
            own.into_iter().any(|l| {
                l.trim_start()
                    .strip_prefix("label:")
                    .is_some_and(|label| !label.trim().is_empty())
            })
        })
        .count()
}

/// The lines of each object of `kind` in a `pkcs11-tool -O` listing, its own lines alone.
fn objects_of<'l>(listing: &'l str, kind: &str) -> Vec<Vec<&'l str>> {
    listing
        .split(kind)
        .skip(1)
        .map(|block| {
            block
                .lines()
                .skip(1)
                .take_while(|l| l.starts_with(' ') || l.starts_with('\t'))
                .collect()
        })
        .collect()
}

/// How many objects of `kind` carry a `CKA_ID`: keys and the certificates installed beside them
/// (the chain's authority certificates carry none).
pub fn count_with_id(listing: &str, kind: &str) -> usize {
    objects_of(listing, kind)
        .iter()
        .filter(|lines| lines.iter().any(|l| l.trim_start().starts_with("ID:")))
        .count()
}

/// The labels of the certificates without a `CKA_ID`: the authority certificates a chain put on
/// the token.
pub fn authority_certificates(listing: &str) -> Vec<String> {
    objects_of(listing, "Certificate Object")
        .iter()
        .filter(|lines| !lines.iter().any(|l| l.trim_start().starts_with("ID:")))
        .map(|lines| {
            lines
                .iter()
                .find_map(|l| l.trim_start().strip_prefix("label:"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect()
}
