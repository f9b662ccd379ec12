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

pub(crate) fn text(output: &Output) -> String {
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

mod softhsm;
pub use softhsm::{PROCESS_WIDE_TOKENS, SO_PIN, SOFTHSM_MODULE, SoftHsm, USER_PIN};

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
