//! Software keys and CSRs made by this crate, judged by OpenSSL; CSRs made by OpenSSL, judged by
//! this crate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use codesign_kit::keys::csr::{self, CsrEncoding};
use codesign_kit::keys::files::Overwrite;
use codesign_kit::keys::spki::SignatureCheck;
use codesign_kit::keys::{KeyAlgorithm, KeySigner, KeysError, SoftwareKey, SubjectDn};
use codesign_testkit::{
    fixture, flip_last_signature_byte, openssl, openssl_csr_signature_ok, openssl_csr_text,
    openssl_with_env, pem_to_der,
};
use secrecy::SecretString;

const SUBJECT: &str = "CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US";

/// What `openssl req -text` must show for each algorithm.
fn expected_text(alg: KeyAlgorithm) -> &'static [&'static str] {
    match alg {
        KeyAlgorithm::Rsa3072 => &["Public-Key: (3072 bit)", "Exponent: 65537"],
        KeyAlgorithm::Rsa4096 => &["Public-Key: (4096 bit)", "Exponent: 65537"],
        KeyAlgorithm::P256 => &["Public-Key: (256 bit)", "NIST CURVE: P-256"],
        KeyAlgorithm::P384 => &["Public-Key: (384 bit)", "NIST CURVE: P-384"],
    }
}

#[test]
fn openssl_verifies_our_csrs_and_reads_our_keys() {
    let dir = tempfile::tempdir().unwrap();
    let subject: SubjectDn = SUBJECT.parse().unwrap();
    for alg in KeyAlgorithm::ALL {
        let key = SoftwareKey::generate(alg).unwrap();
        let key_path = dir.path().join(format!("{}.pem", alg.cli_name()));
        key.write_pem_file(&key_path, None, Overwrite::Refuse)
            .unwrap();
        let csr_path = dir.path().join(format!("{}.csr", alg.cli_name()));
        let request = csr::build(&key, &subject).unwrap();
        std::fs::write(&csr_path, request.pem()).unwrap();

        openssl_csr_signature_ok(&csr_path, false)
            .unwrap_or_else(|said| panic!("{alg}: openssl rejects our CSR: {said}"));
        let text = openssl_csr_text(&csr_path);
        for expected in expected_text(alg) {
            assert!(
                text.contains(expected),
                "{alg}: `{expected}` missing from\n{text}"
            );
        }
        assert!(
            text.contains(&format!(
                "Signature Algorithm: {}",
                alg.signature_algorithm_name()
            )),
            "{alg}: {text}"
        );
        assert!(
            text.contains(
                "Subject: CN = Example Corp, O = Example Corp, L = Richmond, ST = Virginia, C = US"
            ),
            "{alg}: {text}"
        );

        // OpenSSL reads the key file, and its public key is the CSR's.
        let pubkey = openssl(&[
            "pkey",
            "-in",
            key_path.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ]);
        assert!(pubkey.status.success(), "{alg}: openssl pkey failed");
        assert_eq!(pubkey.stdout, key.subject_public_key_info(), "{alg}");
    }
}

#[test]
fn openssl_decrypts_our_encrypted_keys_and_we_read_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let key = SoftwareKey::generate(KeyAlgorithm::P256).unwrap();
    let path = dir.path().join("enc.pem");
    let pass = SecretString::from("s3cret-passphrase".to_string());
    key.write_pem_file(&path, Some(&pass), Overwrite::Refuse)
        .unwrap();
    let out = openssl_with_env(
        &[
            "pkey",
            "-in",
            path.to_str().unwrap(),
            "-passin",
            "env:TEST_PASS",
            "-pubout",
            "-outform",
            "DER",
        ],
        &[("TEST_PASS", "s3cret-passphrase")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, key.subject_public_key_info());

    // A key encrypted by OpenSSL (its defaults) is read back by us.
    let theirs = dir.path().join("theirs.pem");
    let out = openssl_with_env(
        &[
            "pkcs8",
            "-topk8",
            "-in",
            fixture("openssl-p384.key").to_str().unwrap(),
            "-out",
            theirs.to_str().unwrap(),
            "-passout",
            "env:TEST_PASS",
        ],
        &[("TEST_PASS", "s3cret-passphrase")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = SoftwareKey::read_pem_file(&theirs, Some(&pass)).unwrap();
    assert_eq!(read.algorithm(), KeyAlgorithm::P384);
}

#[test]
fn we_accept_and_refuse_openssl_csrs_as_the_rules_say() {
    for (name, alg_ok) in [("openssl-rsa3072.csr", true), ("openssl-p384.csr", true)] {
        let report = csr::inspect(&std::fs::read(fixture(name)).unwrap()).unwrap();
        assert_eq!(report.signature, SignatureCheck::Valid, "{name}");
        assert_eq!(
            report.is_acceptable(),
            alg_ok,
            "{name}: {:?}",
            report.refusal_reasons()
        );
        assert_eq!(report.subject, SUBJECT);
    }
    let report = csr::inspect(&std::fs::read(fixture("openssl-p384.der")).unwrap()).unwrap();
    assert_eq!(report.encoding, CsrEncoding::Der);
    assert!(report.is_acceptable());

    let report = csr::inspect(&std::fs::read(fixture("openssl-rsa2048.csr")).unwrap()).unwrap();
    assert_eq!(
        report.refusal_reasons(),
        ["code signing keys must be RSA-3072 or larger, or ECC P-256/P-384; this key is RSA-2048"]
    );
    let report = csr::inspect(&std::fs::read(fixture("openssl-p521.csr")).unwrap()).unwrap();
    assert!(report.refusal_reasons()[0].ends_with("this key is ECC P-521"));

    let report =
        csr::inspect(&std::fs::read(fixture("openssl-p256-extensions.csr")).unwrap()).unwrap();
    let names: Vec<_> = report
        .requested_extensions
        .iter()
        .map(|e| e.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["subjectAltName", "extKeyUsage"]);
    assert_eq!(
        report.requested_extensions[1].value.as_deref(),
        Some("codeSigning")
    );
}

#[test]
fn a_flipped_signature_byte_fails_both_judges() {
    // The independent judge must be able to fail, or tests that trust it prove nothing.
    let dir = tempfile::tempdir().unwrap();
    for name in ["openssl-rsa3072.csr", "openssl-p384.csr"] {
        let der = pem_to_der(&std::fs::read_to_string(fixture(name)).unwrap());
        let good = dir.path().join("good.der");
        std::fs::write(&good, &der).unwrap();
        openssl_csr_signature_ok(&good, true).unwrap();

        let broken = flip_last_signature_byte(&der);
        let bad = dir.path().join("bad.der");
        std::fs::write(&bad, &broken).unwrap();
        let said = openssl_csr_signature_ok(&bad, true).unwrap_err();
        assert!(said.0.contains("verify failure"), "{name}: {said}");

        let report = csr::inspect(&broken).unwrap();
        assert_eq!(report.signature, SignatureCheck::Invalid, "{name}");
        let err = report.ensure_acceptable().unwrap_err();
        assert!(matches!(err, KeysError::CsrRefused { .. }));
        assert!(err.to_string().contains("does not verify"), "{err}");
    }
}

#[test]
fn weak_openssl_keys_are_refused_when_signing() {
    let err = SoftwareKey::read_pem_file(&fixture("openssl-rsa2048.key"), None).unwrap_err();
    assert!(err.is_policy_refusal(), "{err}");
    assert!(err.to_string().ends_with("this key is RSA-2048"), "{err}");
    let err = SoftwareKey::read_pem_file(&fixture("openssl-p521.key"), None).unwrap_err();
    assert!(err.to_string().ends_with("this key is ECC P-521"), "{err}");
    // OpenSSL's own allowed keys are read and sign CSRs OpenSSL accepts.
    let dir = tempfile::tempdir().unwrap();
    for name in ["openssl-rsa3072.key", "openssl-p384.key"] {
        let key = SoftwareKey::read_pem_file(&fixture(name), None).unwrap();
        let request = csr::build(&key, &SUBJECT.parse().unwrap()).unwrap();
        let path = dir.path().join("r.csr");
        std::fs::write(&path, request.pem()).unwrap();
        openssl_csr_signature_ok(&path, false).unwrap();
    }
}
