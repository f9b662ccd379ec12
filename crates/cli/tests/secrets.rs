//! Secret hygiene: with recognizable PINs, API keys and passphrases, run the CLI commands, the
//! pipeline (its successes and its failures: a wrong PIN file, HTTP 401, 5xx, a wrong record-key
//! passphrase), with the most verbose logging there is (`RUST_LOG=trace`), and find
//! none of them, in any form they could leak in (as is, hex, base64, `Debug` bytes), in any
//! output, error, journal, record or state file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use certcentral_emulator::{Emulator, EmulatorConfig, Fault, FaultRule, Route, Settings};
use codesign_testkit::{SoftHsm, find_secret, fixture};

const PIN: &str = "PIN-SECRET-3f1a9c";
const WRONG_PIN: &str = "PIN-SECRET-WRONG-77e2";
const PIN_IN_URI: &str = "PIN-VALUE-SECRET-51b0";
const API_KEY: &str = "APIKEY-SECRET-c4d8e2";
const WRONG_API_KEY: &str = "APIKEY-SECRET-WRONG-a90b";
const PASSPHRASE: &str = "PASSPHRASE-SECRET-6d2f";
const WRONG_PASSPHRASE: &str = "PASSPHRASE-SECRET-WRONG-0e4c";

const SECRETS: [&str; 7] = [
    PIN,
    WRONG_PIN,
    PIN_IN_URI,
    API_KEY,
    WRONG_API_KEY,
    PASSPHRASE,
    WRONG_PASSPHRASE,
];

struct Run {
    outputs: Vec<(String, Output)>,
}

impl Run {
    fn cli(&mut self, hsm: &SoftHsm, emu: &Emulator, env: &[(&str, &str)], args: &[&str]) -> i32 {
        let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
        command
            .args(args)
            .env("RUST_LOG", "trace")
            .env("RUST_BACKTRACE", "1")
            .env("CERTCENTRAL_BASE_URL", emu.api_base())
            .env_remove("DIGICERT_API_KEY")
            .env_remove("PKCS11_PIN");
        for (k, v) in hsm.env() {
            command.env(k, v);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command.output().unwrap();
        let code = output.status.code().unwrap_or(-1);
        self.outputs.push((args.join(" "), output));
        code
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_secret_appears_in_any_output_journal_or_record() {
    let hsm = SoftHsm::new();
    hsm.init_token_with_pin("secret-token", PIN);
    let mut config = EmulatorConfig::new(API_KEY);
    config.settings = Settings {
        polls_until_issued: 0,
        ..Settings::default()
    };
    let emu = Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    // Files that hold a secret on purpose; everything else under `work` is scanned.
    let secret_files = tempfile::tempdir().unwrap();
    let pin_file = secret_files.path().join("pin");
    std::fs::write(&pin_file, PIN).unwrap();
    let api_key_file = secret_files.path().join("api-key");
    std::fs::write(&api_key_file, API_KEY).unwrap();

    let token = format!(
        "pkcs11:token=secret-token?module-path={}",
        hsm.module().display()
    );
    let mut run = Run {
        outputs: Vec::new(),
    };
    let pass = [("KEY_PASS", PASSPHRASE)];
    let wrong_pass = [("KEY_PASS", WRONG_PASSPHRASE)];
    let pin = [("PKCS11_PIN", PIN)];
    let wrong_pin = [("PKCS11_PIN", WRONG_PIN)];
    let api = [("DIGICERT_API_KEY", API_KEY)];
    let wrong_api = [("DIGICERT_API_KEY", WRONG_API_KEY)];
    let subject = "CN=Example Corp,C=US";

    // Keys and CSRs, software: right and wrong passphrase.
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &pass,
            &[
                "keygen",
                "--alg",
                "p256",
                "--out",
                &w("k.pem"),
                "--passphrase-env",
                "KEY_PASS",
                "--json"
            ]
        ),
        0
    );
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &wrong_pass,
            &[
                "csr",
                "--key",
                &w("k.pem"),
                "--passphrase-env",
                "KEY_PASS",
                "--subject",
                subject,
                "--out",
                &w("r.csr")
            ]
        ),
        1
    );
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &pass,
            &[
                "csr",
                "--key",
                &w("k.pem"),
                "--passphrase-env",
                "KEY_PASS",
                "--subject",
                subject,
                "--out",
                &w("r.csr"),
                "--json"
            ]
        ),
        0
    );
    assert_eq!(
        run.cli(&hsm, &emu, &[], &["inspect", &w("r.csr"), "--json"]),
        0
    );
    // Keys and CSRs on the token: right PIN, wrong PIN, a PIN in the URI of a missing token.
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &pin,
            &[
                "keygen", "--alg", "p384", "--pkcs11", &token, "--label", "s1", "--json"
            ]
        ),
        0
    );
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &wrong_pin,
            &[
                "keygen", "--alg", "p384", "--pkcs11", &token, "--label", "s2"
            ]
        ),
        1
    );
    let with_pin = format!(
        "pkcs11:token=no-such-token?module-path={}&pin-value={PIN_IN_URI}",
        hsm.module().display()
    );
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &[],
            &["keygen", "--alg", "p384", "--pkcs11", &with_pin]
        ),
        1
    );
    let bad_uri = format!("pkcs11:token=x;bogus=1?pin-value={PIN_IN_URI}");
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &[],
            &["keygen", "--alg", "p384", "--pkcs11", &bad_uri]
        ),
        2
    );
    let key_uri = format!(
        "pkcs11:token=secret-token;object=s1?module-path={}",
        hsm.module().display()
    );
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &pin,
            &[
                "csr",
                "--key",
                &key_uri,
                "--subject",
                subject,
                "--out",
                &w("t.csr")
            ]
        ),
        0
    );
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &wrong_pin,
            &[
                "csr",
                "--key",
                &key_uri,
                "--subject",
                subject,
                "--out",
                &w("t2.csr")
            ]
        ),
        1
    );
    assert_eq!(
        run.cli(&hsm, &emu, &[], &["doctor", "--pkcs11", &token, "--json"]),
        0
    );

    // CertCentral: right key, wrong key, key file.
    let body = w("body.json");
    std::fs::write(
        &body,
        r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
            "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#,
    )
    .unwrap();
    let csr_fixture = fixture("openssl-p384.csr");
    let csr_arg = csr_fixture.to_str().unwrap();
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &api,
            &[
                "order",
                "--product",
                "code-signing-ev",
                "--request",
                &body,
                "--csr",
                csr_arg,
                "--dry-run"
            ]
        ),
        0
    );
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &wrong_api,
            &[
                "order",
                "--product",
                "code-signing-ev",
                "--request",
                &body,
                "--csr",
                csr_arg
            ]
        ),
        1
    );
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &[],
            &[
                "order",
                "--product",
                "code-signing-ev",
                "--request",
                &body,
                "--csr",
                csr_arg,
                "--json",
                "--api-key-file",
                api_key_file.to_str().unwrap()
            ]
        ),
        0
    );
    assert_eq!(
        run.cli(&hsm, &emu, &api, &["status", "100001", "--json"]),
        0
    );
    assert_eq!(run.cli(&hsm, &emu, &wrong_api, &["status", "100001"]), 1);
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &api,
            &["download", "100003", "--out", &w("chain.pem")]
        ),
        0
    );

    // The pipeline: a token job and a software job, records signed.
    std::fs::write(
        work.path().join("plan.toml"),
        format!(
            "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n\
             [[keys]]\nalgorithm = \"p256\"\ntoken = \"pkcs11:token=secret-token?module-path={}&pin-source=file:{}\"\nlabel = \"pipe-1\"\nsubject = \"{subject}\"\n\n\
             [[keys]]\nalgorithm = \"p256\"\ndirectory = \"keys\"\nlabel = \"pipe-2\"\nsubject = \"{subject}\"\n",
            hsm.module().display(),
            pin_file.display()
        ),
    )
    .unwrap();
    let plan = w("plan.toml");
    assert_eq!(
        run.cli(&hsm, &emu, &api, &["provision", "--plan", &plan, "--json"]),
        0
    );
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &wrong_api,
            &["provision", "--plan", &plan, "--resume"]
        ),
        0,
        "all done: nothing to send"
    );

    assert_no_secret_in(&run, work.path(), &SECRETS);
}

/// Nothing printed by any run, nor any file under `dir`, holds one of `secrets` in any form.
fn assert_no_secret_in(run: &Run, dir: &Path, secrets: &[&str]) {
    for (command, output) in &run.outputs {
        for stream in [&output.stdout, &output.stderr] {
            for secret in secrets {
                if let Some(form) = find_secret(stream, secret) {
                    panic!(
                        "`{command}` printed {secret} ({form}):\n{}",
                        String::from_utf8_lossy(stream)
                    );
                }
            }
        }
    }
    let mut files = Vec::new();
    files_under(dir, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "sqlite")),
        "the journal was scanned"
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        for secret in secrets {
            if let Some(form) = find_secret(&bytes, secret) {
                panic!("{} holds {secret} ({form})", file.display());
            }
        }
    }
}

/// The pipeline's failure paths, at the most verbose logging: a PIN file with the wrong PIN, a
/// wrong API key (401), CertCentral failing (503 until the retries run out), a record-signing
/// key with the wrong passphrase and then the right one. (The `emulator`, `demo` and `bench`
/// commands are the xtask binary's: `xtask/tests/secrets.rs`.)
#[test]
fn no_secret_appears_on_the_pipelines_failure_paths() {
    let hsm = SoftHsm::new();
    hsm.init_token_with_pin("failing-token", PIN);
    let mut config = EmulatorConfig::new(API_KEY);
    config.settings = Settings {
        polls_until_issued: 0,
        rate_limits: false,
        ..Settings::default()
    };
    let emu = Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let secret_files = tempfile::tempdir().unwrap();
    let wrong_pin_file = secret_files.path().join("wrong-pin");
    std::fs::write(&wrong_pin_file, WRONG_PIN).unwrap();
    let pin_file = secret_files.path().join("pin");
    std::fs::write(&pin_file, PIN).unwrap();
    let mut run = Run {
        outputs: Vec::new(),
    };
    std::fs::write(
        work.path().join("body.json"),
        r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
            "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#,
    )
    .unwrap();
    let plan = |name: &str, pin_source: &Path| {
        let path = work.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n\
                 [[keys]]\nalgorithm = \"p256\"\ntoken = \"pkcs11:token=failing-token?module-path={}&pin-source=file:{}\"\nlabel = \"{name}-{{n}}\"\ncount = 2\nsubject = \"CN=Example Corp,C=US\"\n",
                hsm.module().display(),
                pin_source.display()
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    let api = [("DIGICERT_API_KEY", API_KEY)];
    let wrong_api = [("DIGICERT_API_KEY", WRONG_API_KEY)];

    // A wrong PIN in the PIN file: the token refuses the login, the jobs fail.
    let wrong = plan("wrong-pin", &wrong_pin_file);
    assert_eq!(
        run.cli(&hsm, &emu, &api, &["provision", "--plan", &wrong]),
        1
    );
    // A wrong API key: 401 at the first order.
    let refused = plan("refused", &pin_file);
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &wrong_api,
            &["provision", "--plan", &refused, "--json"]
        ),
        1
    );
    // CertCentral failing: 503 on every order until the retries run out.
    emu.add_fault(FaultRule {
        route: Route::CreateOrder,
        fault: Fault::Status { status: 503 },
        count: 1_000,
    });
    let failing = plan("failing", &pin_file);
    assert_eq!(
        run.cli(&hsm, &emu, &api, &["provision", "--plan", &failing]),
        1
    );
    emu.clear_faults();
    // Signed records: a wrong passphrase for the signing key, then the right one.
    let signer = work.path().join("signer.pem");
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &[("KEY_PASS", PASSPHRASE)],
            &[
                "keygen",
                "--alg",
                "p256",
                "--out",
                signer.to_str().unwrap(),
                "--passphrase-env",
                "KEY_PASS"
            ]
        ),
        0
    );
    let signed = plan("signed", &pin_file);
    let with_record_key = |plan: &str| {
        vec![
            "provision".to_string(),
            "--plan".to_string(),
            plan.to_string(),
            "--record-key".to_string(),
            signer.to_str().unwrap().to_string(),
            "--record-key-passphrase-env".to_string(),
            "KEY_PASS".to_string(),
        ]
    };
    let args = with_record_key(&signed);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &[
                ("DIGICERT_API_KEY", API_KEY),
                ("KEY_PASS", WRONG_PASSPHRASE)
            ],
            &args
        ),
        1
    );
    assert_eq!(
        run.cli(
            &hsm,
            &emu,
            &[("DIGICERT_API_KEY", API_KEY), ("KEY_PASS", PASSPHRASE)],
            &args
        ),
        0
    );

    assert_no_secret_in(&run, work.path(), &SECRETS);
}
