//! `cargo xtask demo`: the whole pipeline on embedded defaults, as a new user first runs it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::process::Command;

#[test]
fn the_demo_runs_the_whole_pipeline_and_says_what_it_did() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("a throwaway SoftHSM token"), "{stdout}");
    assert!(stdout.contains("order ID: 1"), "{stdout}");
    assert!(
        stdout.contains(
            "certificate subject: C=US,ST=Virginia,L=Richmond,O=Example Corp,CN=Example Corp"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("verified: the certificate on the token carries the public key"),
        "{stdout}"
    );
}
