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

/// A throwaway SoftHSM2 installation: its own token directory and `SOFTHSM2_CONF` in a temporary
/// directory. Fails the test loudly when SoftHSM2 is not installed.
pub struct SoftHsm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    module: PathBuf,
}

impl Default for SoftHsm {
    fn default() -> Self {
        SoftHsm::new()
    }
}

impl SoftHsm {
    /// A new, empty SoftHSM2 store.
    pub fn new() -> SoftHsm {
        let module = PathBuf::from(
            std::env::var("TEST_PKCS11_MODULE").unwrap_or_else(|_| SOFTHSM_MODULE.to_string()),
        );
        assert!(
            module.exists(),
            "SoftHSM2 is not installed ({} missing): apt-get install -y softhsm2 opensc, or run `cargo xtask test`",
            module.display()
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("token directory");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .expect("write softhsm2.conf");
        SoftHsm { dir, conf, module }
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
            unsafe { std::env::set_var("SOFTHSM2_CONF", &hsm.conf) };
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

    /// The temporary directory holding the store (for test files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
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
    pub fn init_token_with_pin(&self, label: &str, pin: &str) -> String {
        let output = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                pin,
            ])
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run softhsm2-util ({e}): apt-get install -y softhsm2")
            });
        let said = text(&output);
        assert!(
            output.status.success(),
            "softhsm2-util --init-token failed: {said}"
        );
        let output = Command::new("softhsm2-util")
            .args(["--show-slots"])
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .expect("softhsm2-util --show-slots");
        let slots = String::from_utf8_lossy(&output.stdout).into_owned();
        // Find the block of our label, then its serial.
        let mut serial = None;
        let mut in_block = false;
        for line in slots.lines() {
            let line = line.trim();
            if let Some(l) = line.strip_prefix("Label:") {
                in_block = l.trim() == label;
            }
            if let Some(s) = line.strip_prefix("Serial number:")
                && in_block
            {
                serial = Some(s.trim().to_string());
                break;
            }
        }
        serial.unwrap_or_else(|| panic!("token {label} not listed by softhsm2-util:\n{slots}"))
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
