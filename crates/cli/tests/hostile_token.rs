//! A hostile or failing token, played by the shim module (`crates/p11shim`) in front of a real
//! SoftHSM2: a new key that comes back with a wrong attribute is destroyed whole; a locked PIN and
//! a PIN on its final try are refused before any `C_Login`. pkcs11-tool, on the real module,
//! judges what is left on the token; the shim's call log counts the calls made.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::path::Path;
use std::process::{Command, Output};

use codesign_testkit::{SoftHsm, USER_PIN, p11shim};

/// The CLI with the token's module replaced by the shim in front of it, and the shim set up by
/// `shim_env`; the shim logs its calls to `calls`.
fn cli_through_shim(
    hsm: &SoftHsm,
    args: &[&str],
    calls: &Path,
    shim_env: &[(&str, &str)],
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_codesign-kit"));
    command.args(args).env("PKCS11_PIN", USER_PIN);
    for (k, v) in hsm.env() {
        command.env(k, v);
    }
    command
        .env("PKCS11_MODULE", p11shim())
        .env("P11SHIM_MODULE", hsm.module())
        .env("P11SHIM_CALLS", calls);
    for (k, v) in shim_env {
        command.env(k, v);
    }
    command.output().expect("run the CLI")
}

fn shim_uri(label: &str) -> String {
    format!("pkcs11:token={label}?module-path={}", p11shim().display())
}

fn calls(path: &Path, call: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == call)
        .count()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A key the token reports extractable, not sensitive, or not made on the token fails its audit:
/// both halves are destroyed (two `C_DestroyObject`), the error names the attribute, exit 1, and
/// the token holds nothing afterwards. The same keygen without the forgery succeeds, so the
/// shim in between is not what fails.
#[test]
fn a_new_key_with_a_wrong_attribute_is_destroyed_whole() {
    let hsm = SoftHsm::new();
    hsm.init_token("hostile");
    let dir = tempfile::tempdir().unwrap();
    for (forged, says) in [
        ("extractable", "CKA_EXTRACTABLE is true, must be false"),
        ("not_sensitive", "CKA_SENSITIVE is false, must be true"),
        ("not_local", "CKA_LOCAL is false, must be true"),
    ] {
        let log = dir.path().join(format!("{forged}.calls"));
        let out = cli_through_shim(
            &hsm,
            &[
                "keygen",
                "--alg",
                "p256",
                "--pkcs11",
                &shim_uri("hostile"),
                "--label",
                forged,
            ],
            &log,
            &[("P11SHIM_FORGE", forged)],
        );
        assert_eq!(out.status.code(), Some(1), "{forged}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("failed its audit and was destroyed") && stderr.contains(says),
            "{forged}: {}",
            text(&out)
        );
        assert_eq!(calls(&log, "C_GenerateKeyPair"), 1, "{forged}");
        assert_eq!(calls(&log, "C_DestroyObject"), 2, "{forged}");
        assert_eq!(
            hsm.object_count("hostile"),
            0,
            "{forged}: {}",
            hsm.list_objects("hostile")
        );
    }
    let log = dir.path().join("honest.calls");
    let out = cli_through_shim(
        &hsm,
        &[
            "keygen",
            "--alg",
            "p256",
            "--pkcs11",
            &shim_uri("hostile"),
            "--label",
            "honest",
        ],
        &log,
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(calls(&log, "C_DestroyObject"), 0);
    assert_eq!(hsm.object_count("hostile"), 2);
}

/// A token whose user PIN is locked, or on its final try, is refused by name before any
/// `C_Login` (a login would lock it for good, or fail on a locked token), exit 1, and nothing is
/// made. A token with a low count (tries were lost, but not down to the last) is logged in once.
#[test]
fn a_locked_or_final_try_pin_is_refused_before_any_login() {
    let hsm = SoftHsm::new();
    hsm.init_token("guarded");
    let dir = tempfile::tempdir().unwrap();
    for (flags, says) in [
        ("user_pin_locked", "locked"),
        ("user_pin_final_try", "final try"),
        ("user_pin_locked,user_pin_final_try", "locked"),
    ] {
        let log = dir.path().join(format!("{flags}.calls"));
        let out = cli_through_shim(
            &hsm,
            &[
                "keygen",
                "--alg",
                "p256",
                "--pkcs11",
                &shim_uri("guarded"),
                "--label",
                "never",
            ],
            &log,
            &[("P11SHIM_TOKEN_FLAGS", flags)],
        );
        assert_eq!(out.status.code(), Some(1), "{flags}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(stderr.contains(says), "{flags}: {}", text(&out));
        assert_eq!(calls(&log, "C_Login"), 0, "{flags}: a login was tried");
        assert_eq!(calls(&log, "C_GenerateKeyPair"), 0, "{flags}");
    }
    assert_eq!(hsm.object_count("guarded"), 0);

    let log = dir.path().join("count-low.calls");
    let out = cli_through_shim(
        &hsm,
        &[
            "keygen",
            "--alg",
            "p256",
            "--pkcs11",
            &shim_uri("guarded"),
            "--label",
            "low",
        ],
        &log,
        &[("P11SHIM_TOKEN_FLAGS", "user_pin_count_low")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(calls(&log, "C_Login"), 1);
}
