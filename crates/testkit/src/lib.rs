//! Shared test fixtures and independent judges for codesign-kit's tests.
//!
//! Judges are tools nobody here wrote (OpenSSL today; pkcs11-tool with the PKCS#11 work). A missing
//! tool makes the test fail loudly with the command to install it, never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the workspace root")
        .to_path_buf()
}

/// A file of `tests/fixtures/` (see its README for how each was made).
pub fn fixture(name: &str) -> PathBuf {
    let path = workspace_root().join("tests/fixtures").join(name);
    assert!(path.exists(), "missing fixture {}", path.display());
    path
}

/// Runs `openssl` with `args`; panics (failing the test) when OpenSSL is not installed.
pub fn openssl(args: &[&str]) -> Output {
    openssl_with_env(args, &[])
}

/// Runs `openssl` with `args` and extra environment variables.
pub fn openssl_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("openssl");
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap_or_else(|e| {
        panic!("cannot run openssl ({e}); install it: apt-get install -y openssl (or run `cargo xtask test`)")
    })
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// OpenSSL's verdict on a CSR's self-signature, judged by its words.
///
/// OpenSSL 3.0's `openssl req -verify` exits 0 even when the signature does not verify; it only
/// prints "verify failure" instead of "verify OK". So the words decide, not the exit status.
pub fn openssl_csr_signature_ok(csr: &Path, der: bool) -> Result<(), String> {
    let path = csr.to_str().expect("UTF-8 path");
    let mut args = vec!["req", "-in", path, "-verify", "-noout"];
    if der {
        args.extend(["-inform", "DER"]);
    }
    let output = openssl(&args);
    let said = text(&output);
    if said.contains("verify OK") && !said.contains("verify failure") {
        Ok(())
    } else {
        Err(said)
    }
}

/// `openssl req -text -noout` of a CSR (PEM), asserting that OpenSSL could read it.
pub fn openssl_csr_text(csr: &Path) -> String {
    let output = openssl(&[
        "req",
        "-in",
        csr.to_str().expect("UTF-8 path"),
        "-noout",
        "-text",
    ]);
    assert!(
        output.status.success(),
        "openssl could not read {}: {}",
        csr.display(),
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns `der` with one bit flipped in the last byte, which for a CSR lies in the signature value.
pub fn flip_last_signature_byte(der: &[u8]) -> Vec<u8> {
    let mut copy = der.to_vec();
    let last = copy.len() - 1;
    copy[last] ^= 0x01;
    copy
}

/// PEM text to DER, for tests that need to tamper with bytes.
pub fn pem_to_der(pem_text: &str) -> Vec<u8> {
    let body: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64_decode(&body)
}

/// DER to PEM with the given label and LF line ends.
pub fn der_to_pem(label: &str, der: &[u8]) -> String {
    let encoded = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
    {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .unwrap_or_else(|| panic!("not base64: {c}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for len in 0..10 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            assert_eq!(pem_to_der(&der_to_pem("X", &data)), data);
        }
    }
}

/// Where Debian puts the SoftHSM2 module; `TEST_PKCS11_MODULE` overrides it.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
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

    /// The process-wide store for in-process tests: `SOFTHSM2_CONF` is read when the module is
    /// initialized, once per process, so every in-process test shares this one (give each test its
    /// own token label). Under nextest every test is its own process.
    pub fn process_wide() -> &'static SoftHsm {
        static SHARED: std::sync::OnceLock<SoftHsm> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let hsm = SoftHsm::new();
            // SAFETY: set once, before this process initializes the module; tests that use SoftHSM
            // in-process all come through here first.
            unsafe { std::env::set_var("SOFTHSM2_CONF", &hsm.conf) };
            hsm
        })
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
        let output = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                USER_PIN,
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
            if in_block {
                if let Some(s) = line.strip_prefix("Serial number:") {
                    serial = Some(s.trim().to_string());
                    break;
                }
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
