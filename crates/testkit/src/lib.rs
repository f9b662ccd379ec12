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

/// OpenSSL's pkcs11 engine (`libengine-pkcs11-openssl`), which osslsigncode signs through;
/// panics (failing the test) when it is not installed.
pub fn pkcs11_engine() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("engines-3/pkcs11.so"))
        .find(|path| path.exists());
    found.expect(
        "OpenSSL's pkcs11 engine is missing: apt-get install -y libengine-pkcs11-openssl (or run `cargo xtask test`)",
    )
}

/// Runs `osslsigncode` with `args` and extra environment variables; panics (failing the test)
/// when it is not installed.
pub fn osslsigncode(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new("osslsigncode");
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap_or_else(|e| {
        panic!("cannot run osslsigncode ({e}); install it: apt-get install -y osslsigncode (or run `cargo xtask test`)")
    })
}

pub(crate) fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What OpenSSL said when it did not verify a CSR's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpensslRefusal(pub String);

impl std::fmt::Display for OpensslRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "openssl did not verify it: {}", self.0)
    }
}

impl std::error::Error for OpensslRefusal {}

/// OpenSSL's verdict on a CSR's self-signature, judged by its words.
///
/// OpenSSL 3.0's `openssl req -verify` exits 0 even when the signature does not verify; it only
/// prints "verify failure" instead of "verify OK". So the words decide, not the exit status.
///
/// # Errors
/// [`OpensslRefusal`] with what OpenSSL said, when it did not print "verify OK".
pub fn openssl_csr_signature_ok(csr: &Path, der: bool) -> Result<(), OpensslRefusal> {
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
        Err(OpensslRefusal(said))
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
    pem::parse(pem_text)
        .unwrap_or_else(|e| panic!("not PEM: {e}"))
        .into_contents()
}

/// DER to PEM with the given label and LF line ends.
pub fn der_to_pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// A leaf certificate (DER) for `csr_pem`, issued by OpenSSL with a throwaway test CA (the P-384
/// key of `tests/fixtures/openssl-p384.key`) made in `dir`, whose certificate is `dir/ca.pem`.
pub fn openssl_issue_certificate(dir: &Path, csr_pem: &str) -> Vec<u8> {
    let csr_path = dir.join("leaf.csr");
    std::fs::write(&csr_path, csr_pem).expect("write the CSR");
    let ca_key = fixture("openssl-p384.key");
    let ca_cert = dir.join("ca.pem");
    let path = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
    let out = openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &path(&ca_key),
        "-subj",
        "/CN=Test CA",
        "-days",
        "2",
        "-out",
        &path(&ca_cert),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let leaf = dir.join("leaf.der");
    let out = openssl(&[
        "x509",
        "-req",
        "-in",
        &path(&csr_path),
        "-CA",
        &path(&ca_cert),
        "-CAkey",
        &path(&ca_key),
        "-days",
        "1",
        "-outform",
        "DER",
        "-out",
        &path(&leaf),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::read(leaf).expect("read the issued certificate")
}

mod modules;
mod postgres;
mod softhsm;
pub use modules::{SuiteModule, SuiteToken, object_blocks};
pub use postgres::{POSTGRES_USER, Postgres, postgres_bin_dir};
pub use softhsm::{
    PROCESS_WIDE_TOKENS, SO_PIN, SOFTHSM_MODULE, SoftHsm, USER_PIN, authority_certificates,
    count_labelled, count_with_id,
};

/// The PKCS#11 shim module (`crates/p11shim`), built beside the test binaries: it forwards to a
/// real module and crashes, forges or logs on request (see its crate documentation). Fails the
/// test, saying how to build it, when it is missing.
pub fn p11shim() -> PathBuf {
    let exe =
        std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test binary: {e}"));
    // target/<profile>/deps/<test> -> target/<profile>/libcodesign_p11shim.so
    let profile_dir = exe.parent().and_then(Path::parent).unwrap_or_else(|| {
        panic!(
            "the test binary {} is not in target/<profile>/deps",
            exe.display()
        )
    });
    let shim = profile_dir.join("libcodesign_p11shim.so");
    assert!(
        shim.is_file(),
        "{} is missing: build it with `cargo build -p codesign-p11shim` (cargo xtask test does)",
        shim.display()
    );
    shim
}

/// The forms a secret may leak in, to look for in outputs and files: as is; in hex, lower and
/// upper case; as Rust's `Debug` of its bytes (`80, 73, 78`, brackets left off so that it is
/// found inside a longer array); and in base64 at each of the three alignments it can take inside
/// a longer encoded text (the characters its own bits decide).
pub fn secret_forms(secret: &str) -> Vec<(&'static str, String)> {
    use base64::Engine;
    let bytes = secret.as_bytes();
    let lower_hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let debug = format!("{bytes:?}");
    let mut forms = vec![
        ("as is", secret.to_string()),
        ("hex", lower_hex.clone()),
        ("HEX", lower_hex.to_uppercase()),
        ("Debug bytes", debug[1..debug.len() - 1].to_string()),
    ];
    for pad in 0..3usize {
        let mut shifted = vec![0u8; pad];
        shifted.extend_from_slice(bytes);
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&shifted);
        let start = (pad * 8).div_ceil(6);
        let end = (pad + bytes.len()) * 8 / 6;
        forms.push(("base64", encoded[start..end].to_string()));
    }
    forms
}

/// The form in which `secret` occurs in `haystack`, if it does (see [`secret_forms`]).
pub fn find_secret(haystack: &[u8], secret: &str) -> Option<&'static str> {
    secret_forms(secret).into_iter().find_map(|(name, form)| {
        haystack
            .windows(form.len())
            .any(|w| w == form.as_bytes())
            .then_some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        for len in 0..10 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            assert_eq!(pem_to_der(&der_to_pem("X", &data)), data);
        }
    }

    #[test]
    fn a_secret_is_found_in_each_form_it_can_leak_in() {
        use base64::Engine;
        let secret = "PIN-SECRET-3f1a9c";
        for prefix in ["", "x", "xy", "xyz"] {
            let wrapped = format!("{prefix}{secret}!");
            let encoded = base64::engine::general_purpose::STANDARD.encode(wrapped.as_bytes());
            assert_eq!(
                find_secret(encoded.as_bytes(), secret),
                Some("base64"),
                "{prefix}"
            );
        }
        let debug = format!("key: {:?}", [b"ab".as_slice(), secret.as_bytes()].concat());
        assert_eq!(find_secret(debug.as_bytes(), secret), Some("Debug bytes"));
        let hex: String = secret.bytes().map(|b| format!("{b:02X}")).collect();
        assert_eq!(find_secret(hex.as_bytes(), secret), Some("HEX"));
        assert_eq!(find_secret(b"PIN-SECRET-3f1a9", secret), None);
    }

    #[test]
    fn objects_without_a_label_are_not_counted() {
        let listing = "Private Key Object; EC\n  label:      \n  Usage:      sign\nPrivate Key Object; EC\n  label:      job-1\n  ID:         01\nPublic Key Object; EC  EC_POINT 256 bits\n  label:      job-1\n";
        assert_eq!(count_labelled(listing, "Private Key Object"), 1);
        assert_eq!(count_labelled(listing, "Public Key Object"), 1);
        assert_eq!(count_labelled(listing, "Certificate Object"), 0);
    }
}
