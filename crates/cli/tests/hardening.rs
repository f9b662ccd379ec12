//! What a careless or unlucky user does, run as they run it: a wrong PIN on a many-job plan,
//! outputs over inputs and devices, endless inputs, labels that fail late, two runs on one token,
//! a plan edited between a kill and `--resume`, an order run twice. Each test names the promise
//! it backs (SECURITY.md lists them).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use certcentral_emulator::{ApprovalMode, Emulator, EmulatorConfig, Settings};
use codesign_testkit::{SoftHsm, USER_PIN, fixture};

const KEY: &str = "hardening-key-RECOGNIZABLE-3b9c";
const SUBJECT: &str = "CN=Example Corp,O=Example Corp,C=US";
const EMAIL_BODY: &str = r#"{"certificate": {"signature_hash": "sha256"}, "cs_provisioning_method": "email",
  "order_validity": {"years": 1}, "skip_approval": true, "organization": {"id": 123456}}"#;

fn emulator(settings: Settings) -> Emulator {
    let mut config = EmulatorConfig::new(KEY);
    config.settings = settings;
    Emulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn quick() -> Settings {
    Settings {
        polls_until_issued: 0,
        ..Settings::default()
    }
}

/// The CLI with the emulator's URL and API key, and the SoftHSM store's environment if given.
fn xtask(emu: Option<&Emulator>, hsm: Option<&SoftHsm>, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command
        .args(args)
        .env_remove("DIGICERT_API_KEY")
        .env_remove("PKCS11_PIN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(emu) = emu {
        command
            .env("DIGICERT_API_KEY", KEY)
            .env("CERTCENTRAL_BASE_URL", emu.api_base());
    }
    if let Some(hsm) = hsm {
        for (k, v) in hsm.env() {
            command.env(k, v);
        }
    }
    command
}

fn run(mut command: impl std::borrow::BorrowMut<Command>) -> Output {
    command.borrow_mut().output().expect("run the CLI")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
    assert!(!stdout(o).contains(KEY) && !stderr(o).contains(KEY));
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A plan in `dir` with `[[keys]]` groups given as TOML.
fn write_plan(dir: &Path, keys: &str) -> PathBuf {
    std::fs::write(dir.join("body.json"), EMAIL_BODY).unwrap();
    let plan = dir.join("plan.toml");
    std::fs::write(
        &plan,
        format!("[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n{keys}"),
    )
    .unwrap();
    plan
}

fn token_group(count: u32, token_uri: &str, label: &str) -> String {
    format!(
        "[[keys]]\ncount = {count}\nalgorithm = \"p256\"\ntoken = \"{token_uri}\"\nlabel = \"{label}\"\nsubject = \"{SUBJECT}\"\n"
    )
}

fn file_group(count: u32, directory: &str, label: &str) -> String {
    format!(
        "[[keys]]\ncount = {count}\nalgorithm = \"p256\"\ndirectory = \"{directory}\"\nlabel = \"{label}\"\nsubject = \"{SUBJECT}\"\n"
    )
}

/// Runs `provision` of a plan through pkcs11-spy and returns the output and the spy's log.
fn provision_through_spy(
    hsm: &SoftHsm,
    emu: &Emulator,
    plan: &Path,
    workers: &str,
) -> (Output, String) {
    let log = plan.with_extension("spy.log");
    let out = run(xtask(
        Some(emu),
        Some(hsm),
        &[
            "provision",
            "--plan",
            p(plan),
            "--workers",
            workers,
            "--wait",
            "20s",
        ],
    )
    .env("PKCS11SPY", hsm.module())
    .env("PKCS11SPY_OUTPUT", &log));
    (out, std::fs::read_to_string(&log).unwrap())
}

fn logins(spy_log: &str) -> usize {
    spy_log.lines().filter(|l| l.contains("C_Login")).count()
}

/// Promise: a wrong PIN costs one try of the token's counter per run, however many jobs and
/// workers; that token's jobs stop, said once; other tokens' jobs go on.
#[test]
fn a_wrong_pin_is_tried_once_per_token_whatever_the_jobs_and_workers() {
    for workers in ["1", "3"] {
        let hsm = SoftHsm::new();
        hsm.init_token("wrong-pin");
        hsm.init_token("right-pin");
        let emu = emulator(quick());
        let dir = tempfile::tempdir().unwrap();
        let wrong = dir.path().join("wrong.pin");
        std::fs::write(&wrong, "0000-wrong\n").unwrap();
        let right = dir.path().join("right.pin");
        std::fs::write(&right, USER_PIN).unwrap();
        let spy = SoftHsm::spy_module();
        let uri = |token: &str, pin: &Path| {
            format!(
                "pkcs11:token={token}?module-path={}&pin-source=file:{}",
                spy.display(),
                pin.display()
            )
        };

        // 10 jobs on the token with the wrong PIN: one C_Login.
        let alone = dir.path().join("alone");
        std::fs::create_dir(&alone).unwrap();
        let plan = write_plan(
            &alone,
            &token_group(10, &uri("wrong-pin", &wrong), "cs-{n:02}"),
        );
        let (out, spy_log) = provision_through_spy(&hsm, &emu, &plan, workers);
        assert_exit(&out, 1);
        assert_eq!(
            logins(&spy_log),
            1,
            "{workers} worker(s), 10 jobs: {spy_log}"
        );
        assert_eq!(spy_log.matches("CKR_PIN_INCORRECT").count(), 1);
        assert!(
            stdout(&out).contains("10 job(s): 0 done, 0 pending, 10 failed"),
            "{}",
            stdout(&out)
        );

        // Beside a token with the right PIN: one C_Login each; the right one's jobs are done.
        let mixed = dir.path().join("mixed");
        std::fs::create_dir(&mixed).unwrap();
        let plan = write_plan(
            &mixed,
            &format!(
                "{}{}",
                token_group(10, &uri("wrong-pin", &wrong), "cs-{n:02}"),
                token_group(2, &uri("right-pin", &right), "ok-{n}")
            ),
        );
        let (out, spy_log) = provision_through_spy(&hsm, &emu, &plan, workers);
        assert_exit(&out, 1);
        assert_eq!(logins(&spy_log), 2, "{workers} worker(s), 2 tokens");
        assert_eq!(spy_log.matches("CKR_PIN_INCORRECT").count(), 1, "{workers}");
        let err = stderr(&out);
        assert_eq!(
            err.matches("cannot log in, so none of its jobs runs now")
                .count(),
            1,
            "said once: {err}"
        );
        assert!(err.contains("token \"wrong-pin\""), "{err}");
        assert!(!err.contains("0000-wrong"));
        assert!(
            stdout(&out).contains("12 job(s): 2 done, 0 pending, 10 failed"),
            "{}",
            stdout(&out)
        );
        assert_eq!(hsm.object_count("wrong-pin"), 0);
        assert_eq!(emu.order_count(), 2);
    }
}

/// Promise: an output never replaces an input, an existing file without --force, or anything
/// but a regular file; `-` is standard input and output.
#[test]
fn outputs_never_destroy_an_input_or_a_non_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    assert_exit(
        &run(xtask(
            None,
            None,
            &["keygen", "--alg", "p256", "--out", p(&key)],
        )),
        0,
    );
    let key_pem = std::fs::read(&key).unwrap();
    let csr = |out: &Path, force: bool| {
        let mut args = vec![
            "csr",
            "--key",
            p(&key),
            "--subject",
            SUBJECT,
            "--out",
            p(out),
        ];
        if force {
            args.push("--force");
        }
        run(xtask(None, None, &args))
    };
    // The only copy of the key, named as the output: refused even with --force.
    for force in [false, true] {
        let out = csr(&key, force);
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("is the input")
                && stderr(&out).contains("refusing to write over it"),
            "{}",
            stderr(&out)
        );
        assert_eq!(std::fs::read(&key).unwrap(), key_pem);
    }
    // Through another name for the same file too.
    let alias = dir.path().join("alias.pem");
    std::fs::hard_link(&key, &alias).unwrap();
    assert_exit(&csr(&alias, true), 2);
    assert_eq!(std::fs::read(&key).unwrap(), key_pem);

    let request = dir.path().join("r.csr");
    assert_exit(&csr(&request, false), 0);
    let first = std::fs::read(&request).unwrap();
    let out = csr(&request, false);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("the file exists"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&request).unwrap(), first);
    assert_exit(&csr(&request, true), 0);
    assert_ne!(std::fs::read(&request).unwrap(), first, "ECDSA signs anew");

    // A symbolic link, a FIFO, a directory: never replaced, even with --force.
    let link = dir.path().join("link.csr");
    std::os::unix::fs::symlink(&request, &link).unwrap();
    let fifo = dir.path().join("fifo.csr");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let subdir = dir.path().join("sub");
    std::fs::create_dir(&subdir).unwrap();
    for target in [&link, &fifo, &subdir] {
        let out = csr(target, true);
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains("not a regular file; refusing to replace it"),
            "{}: {}",
            target.display(),
            stderr(&out)
        );
    }
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());

    // `-`: the CSR to standard output, read back from standard input by inspect.
    let out = run(xtask(
        None,
        None,
        &["csr", "--key", p(&key), "--subject", SUBJECT, "--out", "-"],
    ));
    assert_exit(&out, 0);
    assert!(stdout(&out).starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert!(
        stderr(&out).contains("to standard output"),
        "{}",
        stderr(&out)
    );
    let mut inspect = xtask(None, None, &["inspect", "-", "--json"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    inspect
        .stdin
        .take()
        .unwrap()
        .write_all(&out.stdout)
        .unwrap();
    let inspected = inspect.wait_with_output().unwrap();
    assert_exit(&inspected, 0);
    let report: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(report["signature_valid"], true, "{report}");

    // A key from standard input.
    let mut from_stdin = xtask(
        None,
        None,
        &["csr", "--key", "-", "--subject", SUBJECT, "--out", "-"],
    )
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    from_stdin
        .stdin
        .take()
        .unwrap()
        .write_all(&key_pem)
        .unwrap();
    let from_stdin = from_stdin.wait_with_output().unwrap();
    assert_exit(&from_stdin, 0);
    assert!(stdout(&from_stdin).starts_with("-----BEGIN CERTIFICATE REQUEST-----"));

    // Two inputs cannot both be standard input.
    let out = run(xtask(
        None,
        None,
        &[
            "order",
            "--product",
            "code-signing-ev",
            "--request",
            "-",
            "--csr",
            "-",
            "--dry-run",
        ],
    ));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--request and --csr all read standard input"));
}

/// Promise: `download --out` refuses an existing file without --force and anything but a
/// regular file with it.
#[test]
fn download_never_replaces_what_it_must_not() {
    let emu = emulator(quick());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body.json"), EMAIL_BODY).unwrap();
    let out = run(xtask(
        Some(&emu),
        None,
        &[
            "order",
            "--product",
            "code-signing-ev",
            "--request",
            p(&dir.path().join("body.json")),
            "--csr",
            p(&fixture("openssl-p384.csr")),
            "--json",
        ],
    ));
    assert_exit(&out, 0);
    let placed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let order_id = placed["order_id"].as_u64().unwrap().to_string();
    // Issued on the first poll.
    assert_exit(&run(xtask(Some(&emu), None, &["status", &order_id])), 0);
    let download = |out: &Path, force: bool| {
        let mut args = vec!["download", &order_id, "--by-order", "--out", p(out)];
        if force {
            args.push("--force");
        }
        run(xtask(Some(&emu), None, &args))
    };
    let chain = dir.path().join("chain.pem");
    std::fs::write(&chain, "keep me").unwrap();
    let out = download(&chain, false);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("the file exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&chain).unwrap(), "keep me");
    assert_exit(&download(&chain, true), 0);
    assert!(
        std::fs::read_to_string(&chain)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    // A link to a device: the link is not replaced (as root, the device would not be either).
    let device_link = dir.path().join("full");
    std::os::unix::fs::symlink("/dev/full", &device_link).unwrap();
    let out = download(&device_link, true);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert!(
        std::fs::symlink_metadata(&device_link)
            .unwrap()
            .is_symlink()
    );

    let out = download(Path::new("-"), false);
    assert_exit(&out, 0);
    assert!(stdout(&out).starts_with("-----BEGIN CERTIFICATE-----"));
}

/// Promise: every file read is capped by what it holds; `/dev/zero` is refused by name, at once.
#[test]
fn every_input_is_read_with_a_cap() {
    let hsm = SoftHsm::new();
    hsm.init_token("cap-token");
    let emu = emulator(quick());
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), &file_group(1, "keys", "capped"));
    let body = dir.path().join("body.json");
    let zero_pin_uri = format!(
        "pkcs11:token=cap-token?module-path={}&pin-source=file:/dev/zero",
        hsm.module().display()
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["inspect", "/dev/zero"], "the limit for the CSR"),
        (
            vec![
                "csr",
                "--key",
                "/dev/zero",
                "--subject",
                SUBJECT,
                "--out",
                "-",
            ],
            "the limit for the private key file",
        ),
        (
            vec![
                "order",
                "--product",
                "code-signing-ev",
                "--request",
                "/dev/zero",
                "--dry-run",
            ],
            "the limit for the order request body",
        ),
        (
            vec![
                "order",
                "--product",
                "code-signing-ev",
                "--request",
                p(&body),
                "--csr",
                "/dev/zero",
                "--dry-run",
            ],
            "the limit for the CSR",
        ),
        (
            vec!["provision", "--plan", "/dev/zero"],
            "the limit for the plan",
        ),
        (
            vec!["status", "1", "--api-key-file", "/dev/zero"],
            "the limit for the API key file",
        ),
        (
            vec!["provision", "--plan", p(&plan), "--record-key", "/dev/zero"],
            "the limit for the private key file",
        ),
        (
            vec![
                "keygen",
                "--alg",
                "p256",
                "--pkcs11",
                &zero_pin_uri,
                "--label",
                "never",
            ],
            "the limit for the PIN file",
        ),
    ];
    for (args, says) in cases {
        let started = std::time::Instant::now();
        let out = run(&mut xtask(Some(&emu), Some(&hsm), &args));
        assert_exit(&out, 1);
        assert!(
            stderr(&out).contains(says) && stderr(&out).contains("/dev/zero: larger than"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{args:?} read on"
        );
    }
    assert_eq!(hsm.object_count("cap-token"), 0);
    assert!(!plan.with_extension("journal.sqlite").exists());
    assert_eq!(emu.order_count(), 0);
}

/// Promise: usage errors exit 2 before anything is made; a run refused before it starts leaves
/// no journal, so the corrected run starts afresh.
#[test]
fn a_run_refused_before_it_starts_leaves_nothing() {
    let emu = emulator(quick());
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), &file_group(2, "keys", "early-{n}"));
    let journal = plan.with_extension("journal.sqlite");
    for (workers, wait) in [
        ("0", "0s"),
        ("65", "0s"),
        ("1000000", "0s"),
        ("18446744073709551615", "0s"),
        ("1", "10x"),
        ("1", "99999999999999999999d"),
    ] {
        let out = run(xtask(
            Some(&emu),
            None,
            &[
                "provision",
                "--plan",
                p(&plan),
                "--workers",
                workers,
                "--wait",
                wait,
            ],
        ));
        assert_exit(&out, 2);
        assert!(!journal.exists(), "--workers {workers} --wait {wait}");
    }
    // No API key.
    let out = run(xtask(None, None, &["provision", "--plan", p(&plan)])
        .env("CERTCENTRAL_BASE_URL", emu.api_base()));
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("no CertCentral API key"),
        "{}",
        stderr(&out)
    );
    assert!(!journal.exists());
    // A token that is not there: refused before any job, and the journal it opened is gone.
    let hsm = SoftHsm::new();
    let token_plan = dir.path().join("token-plan.toml");
    std::fs::write(
        &token_plan,
        format!(
            "[order]\nproduct = \"code_signing_ev\"\nbody = \"body.json\"\n\n{}",
            token_group(
                1,
                &format!("pkcs11:token=absent?module-path={}", hsm.module().display()),
                "x"
            )
        ),
    )
    .unwrap();
    let out = run(xtask(
        Some(&emu),
        Some(&hsm),
        &["provision", "--plan", p(&token_plan)],
    ));
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("no token has label"),
        "{}",
        stderr(&out)
    );
    assert!(!token_plan.with_extension("journal.sqlite").exists());
    assert!(!dir.path().join("token-plan.journal.sqlite-wal").exists());
    // The corrected run starts without --resume.
    let out = run(xtask(Some(&emu), None, &["provision", "--plan", p(&plan)]));
    assert_exit(&out, 0);
    assert_eq!(emu.order_count(), 2);
}

/// Promise: what fails late (a label too long for a file name, a control character, an escape
/// from the plan's folder) is refused before the first key or order.
#[test]
fn labels_and_paths_are_refused_before_anything_is_made() {
    let emu = emulator(quick());
    let dir = tempfile::tempdir().unwrap();
    let long = "l".repeat(250);
    for (keys, says) in [
        (file_group(1, "keys", &long), "a label may have at most 128"),
        (
            file_group(1, "keys", "evil\\ncs-001: Done"),
            "labels may not hold",
        ),
        (
            file_group(2, "keys", "a{n}b{n}"),
            "holds {n} more than once",
        ),
        (
            file_group(1, "../../escape", "x"),
            "must stay inside the plan's directory",
        ),
    ] {
        let plan = write_plan(dir.path(), &keys);
        let out = run(xtask(Some(&emu), None, &["provision", "--plan", p(&plan)]));
        assert_exit(&out, 1);
        assert!(stderr(&out).contains(says), "{says}: {}", stderr(&out));
        assert!(!stderr(&out).contains("\ncs-001: Done"), "{}", stderr(&out));
        assert!(!stderr(&out).contains("\ncs-001: done"), "{}", stderr(&out));
        assert!(!plan.with_extension("journal.sqlite").exists());
        assert!(!dir.path().join("keys").exists());
        assert_eq!(emu.order_count(), 0);
    }
}

/// Promise: two runs on one token never make two key pairs (nor two orders) for one label.
#[test]
fn two_runs_with_the_same_labels_on_one_token_make_one_key_per_label() {
    let hsm = SoftHsm::new();
    hsm.init_token("shared");
    let emu = emulator(quick());
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let locks = tempfile::tempdir().unwrap();
    let uri = format!("pkcs11:token=shared?module-path={}", hsm.module().display());
    let run = |dir: &Path, resume: bool| {
        let plan = write_plan(dir, &token_group(10, &uri, "same-{n:02}"));
        let mut args = vec![
            "provision",
            "--plan",
            p(&plan),
            "--workers",
            "2",
            "--wait",
            "20s",
            "--lock-dir",
            p(locks.path()),
        ];
        if resume {
            args.push("--resume");
        }
        xtask(Some(&emu), Some(&hsm), &args)
            .env("PKCS11_PIN", USER_PIN)
            .spawn()
            .unwrap()
    };
    let spawn = |dir: &Path| run(dir, false);
    let first = spawn(a.path());
    let second = spawn(b.path());
    // SoftHSM's file store lets a process that starts while another writes the token see no
    // token at all ("tokens present: none"), or fail to read it (C_GetTokenInfo:
    // CKR_GENERAL_ERROR): such a run is refused before any job (its empty journal removed), and
    // is run again.
    // The same race may fail a job of a run that did start (CKR_GENERAL_ERROR): that run is
    // resumed, so that it finishes its own jobs.
    let settle = |output: Output, dir: &Path| {
        let mut output = output;
        for _ in 0..3 {
            let said = stderr(&output);
            let raced = said.contains("tokens present: none") || said.contains("CKR_GENERAL_ERROR");
            if !raced {
                break;
            }
            output = if stdout(&output).contains("job(s):") {
                run(dir, true).wait_with_output().unwrap()
            } else {
                let _ = std::fs::remove_file(dir.join("plan.journal.sqlite"));
                spawn(dir).wait_with_output().unwrap()
            };
        }
        output
    };
    let first = settle(first.wait_with_output().unwrap(), a.path());
    let second = settle(second.wait_with_output().unwrap(), b.path());
    let done = |o: &Output| -> u32 {
        let text = stdout(o);
        let line = text
            .lines()
            .find(|l| l.contains("job(s):"))
            .unwrap_or_else(|| panic!("no summary: {text}{}", stderr(o)));
        line.split(": ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        done(&first) + done(&second),
        10,
        "every label done by exactly one run:\n{}\n{}\n{}\n{}",
        stdout(&first),
        stderr(&first),
        stdout(&second),
        stderr(&second)
    );
    let listing = hsm.list_objects("shared");
    for n in 1..=10 {
        let label = format!("label:      same-{n:02}");
        assert_eq!(
            listing.matches(&label).count(),
            3,
            "one key pair and one certificate for same-{n:02}:\n{listing}"
        );
    }
    assert_eq!(
        listing.matches("Private Key Object").count(),
        10,
        "{listing}"
    );
    assert_eq!(emu.order_count(), 10);
    for o in [&first, &second] {
        for line in stderr(o).lines().chain(stdout(o).lines()) {
            if line.contains("failed after") || line.contains(" failed ") {
                continue;
            }
            assert!(!line.contains("panicked"), "{line}");
        }
    }
}

/// Promise: a plan edited between a kill and `--resume` is not silently followed: a job that
/// vanished while in flight, or whose spec changed, is reported and left as it was.
#[test]
fn a_plan_edited_before_resume_is_reported_not_followed() {
    let emu = emulator(Settings {
        approval: ApprovalMode::OneStep,
        ..quick()
    });
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), &file_group(5, "keys", "edit-{n}"));
    let out = run(xtask(Some(&emu), None, &["provision", "--plan", p(&plan)]));
    assert_eq!(out.status.code(), Some(75), "pending is not success");
    assert!(
        stderr(&out).contains("5 job(s) wait for CertCentral"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("5 job(s): 0 done, 5 pending, 0 failed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(emu.order_count(), 5);

    // count 5 -> 3: edit-4 and edit-5 have keys and orders; they are reported, not dropped.
    write_plan(dir.path(), &file_group(3, "keys", "edit-{n}"));
    let out = run(xtask(
        Some(&emu),
        None,
        &["provision", "--plan", p(&plan), "--resume"],
    ));
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("5 job(s): 0 done, 3 pending, 2 failed"),
        "{text}"
    );
    for job in ["edit-4", "edit-5"] {
        let line = text.lines().find(|l| l.contains(job)).unwrap_or("");
        assert!(
            line.contains("no longer in the plan") && line.contains("order "),
            "{job}: {text}"
        );
    }

    // The algorithm of edit-1 changed: reported, not run with the old spec nor the new one.
    std::fs::write(
        &plan,
        std::fs::read_to_string(&plan).unwrap().replace(
            "count = 3\nalgorithm = \"p256\"",
            "count = 1\nalgorithm = \"p384\"",
        ) + &file_group(4, "keys", "edit-{n}").replace("count = 4", "count = 4\nstart = 2"),
    )
    .unwrap();
    let out = run(xtask(
        Some(&emu),
        None,
        &["provision", "--plan", p(&plan), "--resume"],
    ));
    assert_exit(&out, 1);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.contains("edit-1")).unwrap_or("");
    assert!(
        line.contains("the plan changed since this job began (algorithm p256 -> p384)"),
        "{text}"
    );
    assert!(
        text.contains("5 job(s): 0 done, 4 pending, 1 failed"),
        "{text}"
    );
    assert_eq!(emu.order_count(), 5, "nothing ordered anew");
}

/// Promise: `order` run twice (after a timeout, say) buys once: the alternative order ID is
/// derived from the request, and a given ID used by another order is refused.
#[test]
fn an_order_run_twice_buys_once() {
    let emu = emulator(quick());
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, EMAIL_BODY).unwrap();
    let order = |csr: &str, extra: &[&str]| {
        let csr = fixture(csr);
        let mut args = vec![
            "order",
            "--product",
            "code-signing-ev",
            "--request",
            p(&body),
            "--csr",
            p(&csr),
        ];
        args.extend_from_slice(extra);
        run(xtask(Some(&emu), None, &args))
    };
    let dry = order("openssl-p384.csr", &["--dry-run"]);
    assert_exit(&dry, 0);
    let doc: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    let derived = doc["alternative_order_id"].as_str().unwrap().to_string();
    let first = order("openssl-p384.csr", &[]);
    assert_exit(&first, 0);
    assert!(
        stdout(&first).contains(&format!("(alternative order ID {derived})")),
        "{}",
        stdout(&first)
    );
    let order_id = stdout(&first)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    let second = order("openssl-p384.csr", &[]);
    assert_exit(&second, 0);
    assert!(
        stdout(&second).contains(&format!("found existing order {order_id}")),
        "{}",
        stdout(&second)
    );
    assert_eq!(emu.order_count(), 1);

    // Another CSR under the ID of the first order: refused, nothing ordered.
    let taken = order("openssl-rsa3072.csr", &["--alternative-order-id", &derived]);
    assert_exit(&taken, 1);
    assert!(
        stderr(&taken).contains(&format!("is already used by order {order_id}"))
            && stderr(&taken).contains("another CSR"),
        "{}",
        stderr(&taken)
    );
    assert_eq!(emu.order_count(), 1);
    // A free ID of one's own is taken as given.
    let own = order("openssl-rsa3072.csr", &["--alternative-order-id", "mine42"]);
    assert_exit(&own, 0);
    assert_eq!(emu.orders_with_alternative_id("mine42"), 1);
}

/// Promise: untrusted text (paths, labels, subjects) reaches the terminal escaped: no control or
/// bidirectional character fakes a line or reorders one.
#[test]
fn control_and_bidi_characters_in_errors_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let tricky = dir.path().join("gpj.\u{202e}exe\n.csr");
    let out = run(xtask(None, None, &["inspect", p(&tricky)]));
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("\\u{202e}") && err.contains("\\u{000a}"),
        "{err}"
    );
    assert!(!err.contains('\u{202e}'), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let out = run(xtask(
        None,
        None,
        &[
            "csr",
            "--key",
            "k.pem",
            "--subject",
            "CN=a\u{1b}[2Jb",
            "--out",
            "-",
        ],
    ));
    assert_exit(&out, 1);
    assert!(!stderr(&out).contains('\u{1b}'), "{}", stderr(&out));
}

/// Promise: an encrypted record-signing key asks for its passphrase by the flag `provision` has.
#[test]
fn an_encrypted_record_key_names_the_flag_provision_has() {
    let emu = emulator(quick());
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("record.pem");
    assert_exit(
        &run(xtask(
            None,
            None,
            &[
                "keygen",
                "--alg",
                "p256",
                "--out",
                p(&key),
                "--passphrase-env",
                "RK",
            ],
        )
        .env("RK", "record-pass-77")),
        0,
    );
    let plan = write_plan(dir.path(), &file_group(1, "keys", "signed"));
    let out = run(xtask(
        Some(&emu),
        None,
        &["provision", "--plan", p(&plan), "--record-key", p(&key)],
    ));
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("--record-key-passphrase-env"),
        "{}",
        stderr(&out)
    );
    assert!(!plan.with_extension("journal.sqlite").exists());
    let out = run(xtask(
        Some(&emu),
        None,
        &[
            "provision",
            "--plan",
            p(&plan),
            "--record-key",
            p(&key),
            "--record-key-passphrase-env",
            "RK",
        ],
    )
    .env("RK", "record-pass-77"));
    assert_exit(&out, 0);
    assert!(dir.path().join("records/signed.json.sig").exists());
}

/// Promise: a key file this plan's journal did not make is never taken for the job's key.
#[test]
fn a_key_file_made_elsewhere_is_refused() {
    let emu = emulator(quick());
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let foreign = keys.join("taken.pem");
    assert_exit(
        &run(xtask(
            None,
            None,
            &["keygen", "--alg", "p256", "--out", p(&foreign)],
        )),
        0,
    );
    let before = std::fs::read(&foreign).unwrap();
    let plan = write_plan(dir.path(), &file_group(1, "keys", "taken"));
    let out = run(xtask(Some(&emu), None, &["provision", "--plan", p(&plan)]));
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("this plan's journal did not make it"),
        "{}",
        stdout(&out)
    );
    assert_eq!(std::fs::read(&foreign).unwrap(), before);
    assert_eq!(emu.order_count(), 0);
}
