//! One token suite, run on every PKCS#11 module of [`SuiteModule::ALL`]: SoftHSM2,
//! opencryptoki's software token and tpm2-pkcs11 over a software TPM. Each test is named
//! `<module>::<what>`, so the output says which implementation passed what.
//!
//! What a module offers is read from `doctor`, and checked against what is known of each module
//! (the table in `expected_verdicts`, written down in docs/tokens.md); the code under test decides
//! by capability only. pkcs11-tool, pkcs11-spy and OpenSSL are the judges.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::Path;
use std::process::{Command, Output};

use codesign_kit::keys::pkcs11::{KeyRequest, Module, Pin, Pkcs11Uri};
use codesign_kit::keys::{KeyAlgorithm, csr};
use codesign_testkit::{
    SoftHsm, SuiteModule, SuiteToken, object_blocks, openssl, openssl_csr_signature_ok,
    openssl_csr_text, openssl_issue_certificate,
};

const SUBJECT: &str = "CN=Example Corp,O=Example Corp,L=Richmond,ST=Virginia,C=US";

/// What each module is known to offer, as `(algorithm, usable)`: the facts the capability checks
/// must find on their own.
fn expected_verdicts(module: SuiteModule) -> [(&'static str, bool); 4] {
    match module {
        SuiteModule::SoftHsm2 => [
            ("rsa3072", true),
            ("rsa4096", true),
            ("p256", true),
            ("p384", true),
        ],
        // Debian 12's opencryptoki 3.8 soft token: RSA up to 4096, no EC key generation.
        SuiteModule::OpenCryptoki => [
            ("rsa3072", true),
            ("rsa4096", true),
            ("p256", false),
            ("p384", false),
        ],
        // A TPM 2.0 (swtpm): RSA up to 3072, P-256 and P-384.
        SuiteModule::Tpm2 => [
            ("rsa3072", true),
            ("rsa4096", false),
            ("p256", true),
            ("p384", true),
        ],
    }
}

fn token(module: SuiteModule) -> SuiteToken {
    module.token().unwrap_or_else(|e| panic!("{e}"))
}

fn cli(token: &SuiteToken, args: &[&str], pin: &str) -> Output {
    cli_with(token, args, pin, &[])
}

fn cli_with(token: &SuiteToken, args: &[&str], pin: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command.args(args).env("PKCS11_PIN", pin);
    for (k, v) in token.env() {
        command.env(k, v);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run the CLI")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_exit(token: &SuiteToken, o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{}: stdout:\n{}\nstderr:\n{}",
        token.module().name(),
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `doctor --json` of the token.
fn doctor(token: &SuiteToken) -> serde_json::Value {
    let out = cli(token, &["doctor", "--pkcs11", &token.uri(""), "--json"], "");
    assert_exit(token, &out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The algorithms `doctor` finds usable, by CLI name.
fn usable(report: &serde_json::Value) -> Vec<(String, bool)> {
    report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let name = v["algorithm"].as_str().unwrap().to_string();
            let ok = v["can_generate"] == true && v["can_sign"] == true;
            (name, ok)
        })
        .collect()
}

/// pkcs11-spy in front of the token's module; the log of every call goes to `log`.
fn spy_env(token: &SuiteToken, log: &Path) -> (String, Vec<(String, String)>) {
    let spy = SoftHsm::spy_module();
    let uri = format!(
        "pkcs11:token={}?module-path={}",
        token.label(),
        spy.display()
    );
    (
        uri,
        vec![
            (
                "PKCS11SPY".to_string(),
                token.module_path().display().to_string(),
            ),
            ("PKCS11SPY_OUTPUT".to_string(), log.display().to_string()),
        ],
    )
}

/// `keygen --json` of `alg` labelled `label` on the token, which must succeed; its document.
fn keygen_json(token: &SuiteToken, alg: &str, label: &str) -> serde_json::Value {
    let out = cli(
        token,
        &[
            "keygen",
            "--alg",
            alg,
            "--pkcs11",
            &token.uri(""),
            "--label",
            label,
            "--json",
        ],
        token.pin(),
    );
    assert_exit(token, &out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `keygen` through pkcs11-spy with `pin`: its output and the spy's log of every call.
fn keygen_through_spy(
    token: &SuiteToken,
    alg: &str,
    pin: &str,
    log_name: &str,
) -> (Output, String) {
    let log = token.dir().join(log_name);
    let (uri, env) = spy_env(token, &log);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = cli_with(
        token,
        &[
            "keygen",
            "--alg",
            alg,
            "--pkcs11",
            &uri,
            "--label",
            "never-made",
        ],
        pin,
        &env,
    );
    let log = std::fs::read_to_string(&log).expect("the spy wrote its log");
    (out, log)
}

/// An algorithm the token can make, by `doctor`.
fn first_usable(token: &SuiteToken) -> String {
    usable(&doctor(token))
        .into_iter()
        .find(|(_, ok)| *ok)
        .map(|(a, _)| a)
        .expect("the module makes at least one algorithm")
}

fn calls_named(log: &str, function: &str) -> usize {
    log.lines().filter(|l| l.contains(function)).count()
}

fn doctor_reports_what_the_module_offers(module: SuiteModule) {
    let token = token(module);
    let report = doctor(&token);
    assert_eq!(report["token"]["label"], token.label());
    let found = usable(&report);
    let expected: Vec<(String, bool)> = expected_verdicts(module)
        .iter()
        .map(|(n, ok)| (n.to_string(), *ok))
        .collect();
    assert_eq!(found, expected, "{}: {report:#}", module.name());
    // Every verdict says why, in the token's own terms.
    for v in report["verdicts"].as_array().unwrap() {
        assert!(!v["detail"].as_str().unwrap().is_empty());
    }
    // Informational fields never stop a report: the clock is a time, absent, or "unreadable"
    // (opencryptoki's soft token sets the clock flag with a field that is not 16 digits).
    let clock = report["clock"]["state"].as_str().unwrap();
    assert!(["none", "time", "unreadable"].contains(&clock), "{clock}");
    if module == SuiteModule::OpenCryptoki {
        assert_eq!(clock, "unreadable", "{report:#}");
        let ec = report["verdicts"][2]["detail"].as_str().unwrap();
        assert!(ec.contains("no CKM_EC_KEY_PAIR_GEN"), "{ec}");
    }
    assert!(
        report["pin_length"]["max"].as_u64().unwrap()
            >= report["pin_length"]["min"].as_u64().unwrap()
    );
    // The text form too.
    let out = cli(&token, &["doctor", "--pkcs11", &token.uri("")], "");
    assert_exit(&token, &out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdicts:"), "{text}");
    assert!(text.contains("clock"), "{text}");
}

/// The DER SubjectPublicKeyInfo in a CSR, read by OpenSSL.
fn csr_public_key_der(csr: &Path) -> Vec<u8> {
    let pem = openssl(&["req", "-in", p(csr), "-pubkey", "-noout"]);
    assert!(pem.status.success());
    let pem_path = csr.with_extension("pub.pem");
    std::fs::write(&pem_path, &pem.stdout).unwrap();
    let der = openssl(&["pkey", "-pubin", "-in", p(&pem_path), "-outform", "DER"]);
    assert!(der.status.success());
    der.stdout
}

fn block_of(token: &SuiteToken, class: &str, label: &str) -> String {
    object_blocks(&token.list_objects())
        .into_iter()
        .find(|b| b.starts_with(class) && b.contains(&format!("label:      {label}\n")))
        .unwrap_or_else(|| panic!("{}: no {class} labelled {label}", token.module().name()))
}

fn every_offered_algorithm_makes_keys_and_csrs(module: SuiteModule) {
    let token = token(module);
    let report = doctor(&token);
    for (alg, ok) in usable(&report) {
        let label = token.unique(&format!("suite-{alg}"));
        if !ok {
            // Refused before the token is touched: no login, no key-pair call, no object.
            let before = token.object_count();
            let (out, log) =
                keygen_through_spy(&token, &alg, token.pin(), &format!("spy-{alg}.log"));
            assert_exit(&token, &out, 1);
            assert!(stderr(&out).contains("cannot generate"), "{}", stderr(&out));
            assert_eq!(calls_named(&log, "C_Login"), 0, "{alg}: logged in:\n{log}");
            assert_eq!(calls_named(&log, "C_GenerateKeyPair"), 0, "{alg}");
            assert_eq!(token.object_count(), before, "{alg}");
            continue;
        }
        let doc = keygen_json(&token, &alg, &label);
        for flag in [
            "token",
            "private",
            "sensitive",
            "always_sensitive",
            "never_extractable",
            "local",
            "sign",
        ] {
            assert_eq!(doc["audit"][flag], true, "{}: {alg}: {flag}", module.name());
        }
        assert_eq!(doc["audit"]["extractable"], false, "{alg}");
        let generation_ms = doc["generation_ms"].as_f64().unwrap();
        assert!(generation_ms > 0.0, "{alg}: generation_ms {generation_ms}");
        let id = doc["id"].as_str().unwrap().to_string();

        let csr = token.dir().join(format!("{alg}.csr"));
        let out = cli(
            &token,
            &[
                "csr",
                "--key",
                &token.uri(&format!(";object={label}")),
                "--subject",
                SUBJECT,
                "--out",
                p(&csr),
            ],
            token.pin(),
        );
        assert_exit(&token, &out, 0);
        openssl_csr_signature_ok(&csr, false)
            .unwrap_or_else(|e| panic!("{}: {alg}: {e}", module.name()));
        let text = openssl_csr_text(&csr);
        let size = match alg.as_str() {
            "rsa3072" => "Public-Key: (3072 bit)",
            "rsa4096" => "Public-Key: (4096 bit)",
            "p256" => "NIST CURVE: P-256",
            _ => "NIST CURVE: P-384",
        };
        assert!(text.contains(size), "{alg}: {text}");
        let signature = match alg.as_str() {
            "rsa3072" | "rsa4096" => "sha256WithRSAEncryption",
            "p256" => "ecdsa-with-SHA256",
            _ => "ecdsa-with-SHA384",
        };
        assert!(
            text.contains(&format!("Signature Algorithm: {signature}")),
            "{alg}: {text}"
        );

        // pkcs11-tool on the key's protection and on its public key, which must be the CSR's.
        let private = block_of(&token, "Private Key Object", &label);
        assert!(
            private.contains("sensitive, always sensitive, never extractable, local"),
            "{private}"
        );
        assert!(private.contains(&format!("ID:         {id}")), "{private}");
        let usage = private
            .lines()
            .find_map(|l| l.trim().strip_prefix("Usage:"))
            .unwrap_or_else(|| panic!("no usage in {private}"));
        assert!(usage.contains("sign"), "{private}");
        // What the key may do besides signing is the module's choice, and said in the audit.
        for extra in ["decrypt", "unwrap", "derive"] {
            assert_eq!(
                usage.contains(extra),
                doc["audit"][extra] == true,
                "{alg}: {extra}: {private} vs {}",
                doc["audit"]
            );
        }
        let csr_spki = csr_public_key_der(&csr);
        if alg.starts_with("rsa") {
            let pub_der = token.dir().join(format!("{alg}-pub.der"));
            token.pkcs11_tool(&[
                "--read-object",
                "--type",
                "pubkey",
                "--id",
                &id,
                "-o",
                p(&pub_der),
            ]);
            assert_eq!(std::fs::read(&pub_der).unwrap(), csr_spki, "{alg}");
        } else {
            // pkcs11-tool cannot export P-384 keys: compare the EC_POINT it lists.
            let public = block_of(&token, "Public Key Object", &label);
            let listed = public
                .lines()
                .find_map(|l| l.trim().strip_prefix("EC_POINT:"))
                .unwrap_or_else(|| panic!("{alg}: no EC_POINT in {public}"))
                .trim()
                .to_string();
            let point_len = if alg == "p256" { 65 } else { 97 };
            let point: String = csr_spki[csr_spki.len() - point_len..]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(listed, format!("04{point_len:02x}{point}"), "{alg}");
        }
    }
}

fn certificates_are_installed_beside_their_key(module: SuiteModule) {
    let token = module.token_in_process().unwrap_or_else(|e| panic!("{e}"));
    let uri: Pkcs11Uri = token.uri("").parse().unwrap();
    let found = Module::load(token.module_path())
        .unwrap()
        .find_token(&uri)
        .unwrap();
    let session = found
        .login(&Pin::new(token.pin().to_string().into()))
        .unwrap();
    let algorithm = if session.check_capability(KeyAlgorithm::P256).is_ok() {
        KeyAlgorithm::P256
    } else {
        KeyAlgorithm::Rsa3072
    };
    let label = token.unique(&format!("suite-cert-{}", algorithm.cli_name()));
    let (key, _) = session
        .generate_key_pair(&KeyRequest::new(algorithm, label.clone()))
        .unwrap()
        .keep();
    let csr_pem = csr::build(&key, &SUBJECT.parse().unwrap()).unwrap().pem();
    let cert = openssl_issue_certificate(token.dir(), &csr_pem);
    assert_eq!(session.certificate_for(&key).unwrap(), None);
    session.install_certificate(&key, &cert).unwrap();
    assert_eq!(
        session.certificate_for(&key).unwrap().as_deref(),
        Some(&cert[..])
    );
    // pkcs11-tool sees it with the key's ID and label.
    let block = block_of(&token, "Certificate Object", &label);
    let id: String = key.id().iter().map(|b| format!("{b:02x}")).collect();
    assert!(block.contains(&format!("ID:         {id}")), "{block}");
    // The issuer goes beside it as an authority certificate (made through the module's function
    // list: CKA_CERTIFICATE_CATEGORY), once however many keys it signed.
    let ca_pem = std::fs::read_to_string(token.dir().join("ca.pem")).unwrap();
    let ca_der = codesign_testkit::pem_to_der(&ca_pem);
    let before = token.object_count();
    assert!(session.install_authority(&ca_der).unwrap(), "added");
    assert!(!session.install_authority(&ca_der).unwrap(), "not twice");
    assert_eq!(token.object_count(), before + 1);
    let ca_block = block_of(&token, "Certificate Object", "Test CA");
    assert!(ca_block.contains("Test CA"), "{ca_block}");
}

fn a_wrong_pin_is_tried_exactly_once(module: SuiteModule) {
    let token = token(module);
    let before = token.object_count();
    let alg = first_usable(&token);
    // A wrong PIN of a length every module accepts (opencryptoki: 4 to 8).
    let (out, log) = keygen_through_spy(&token, &alg, "9157", "spy.log");
    assert_exit(&token, &out, 1);
    assert!(
        stderr(&out).contains("the PIN is incorrect"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("9157"));
    assert_eq!(
        calls_named(&log, "C_Login"),
        1,
        "exactly one login attempt:\n{log}"
    );
    assert!(log.contains("CKR_PIN_INCORRECT"), "{log}");
    assert_eq!(calls_named(&log, "C_GenerateKeyPair"), 0);
    // pkcs11-tool logs in with the right PIN here, which also resets the token's counter.
    assert_eq!(token.object_count(), before);

    // A PIN longer than the token takes (as it states) costs no try at all.
    let max = doctor(&token)["pin_length"]["max"].as_u64().unwrap();
    let long = "7".repeat(usize::try_from(max).unwrap() + 1);
    let (out, log) = keygen_through_spy(&token, &alg, &long, "spy-long.log");
    assert_exit(&token, &out, 1);
    assert!(
        stderr(&out).contains("no login was attempted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(calls_named(&log, "C_Login"), 0, "{log}");
}

fn refusals_leave_no_objects(module: SuiteModule) {
    let token = token(module);
    let alg = first_usable(&token);
    let taken = token.unique("suite-taken");
    let fresh = token.unique("suite-new");
    let doc = keygen_json(&token, &alg, &taken);
    let id = doc["id"].as_str().unwrap().to_string();
    let before = token.object_count();
    // The label is taken; the ID is taken; the subject is not one the rules allow.
    let refusals: [&[&str]; 2] = [
        &[
            "keygen",
            "--alg",
            &alg,
            "--pkcs11",
            &token.uri(""),
            "--label",
            &taken,
        ],
        &[
            "keygen",
            "--alg",
            &alg,
            "--pkcs11",
            &token.uri(""),
            "--label",
            &fresh,
            "--id",
            &id,
        ],
    ];
    for args in refusals {
        let out = cli(&token, args, token.pin());
        assert_exit(&token, &out, 1);
        assert!(stderr(&out).contains("already"), "{}", stderr(&out));
        assert_eq!(token.object_count(), before, "{args:?}");
    }
    let csr = token.dir().join("refused.csr");
    let out = cli(
        &token,
        &[
            "csr",
            "--key",
            &token.uri(&format!(";object={taken}")),
            "--subject",
            "O=No Common Name",
            "--out",
            p(&csr),
        ],
        token.pin(),
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(!csr.exists());
    assert_eq!(token.object_count(), before);
}

macro_rules! suite {
    ($($module:ident => $variant:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn doctor_reports_what_the_module_offers() {
                super::doctor_reports_what_the_module_offers($variant);
            }

            #[test]
            fn every_offered_algorithm_makes_keys_and_csrs() {
                super::every_offered_algorithm_makes_keys_and_csrs($variant);
            }

            #[test]
            fn certificates_are_installed_beside_their_key() {
                super::certificates_are_installed_beside_their_key($variant);
            }

            #[test]
            fn a_wrong_pin_is_tried_exactly_once() {
                super::a_wrong_pin_is_tried_exactly_once($variant);
            }

            #[test]
            fn refusals_leave_no_objects() {
                super::refusals_leave_no_objects($variant);
            }
        }
    )*};
}

suite! {
    softhsm2 => SuiteModule::SoftHsm2,
    opencryptoki => SuiteModule::OpenCryptoki,
    tpm2 => SuiteModule::Tpm2,
}
