//! The README's examples, run as written: every `sh` block, in order, in one bash session
//! (`set -euo pipefail`) in an empty directory, with the `codesign-kit` binary first on the PATH.
//! Blocks that call `cargo` are the build's own commands (`cargo xtask test` is this very suite)
//! and are said by name as not run here. The walkthrough's own results are then checked: the
//! signed script, the chain on the token, every job of the plan done.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test (or benchmark) fails by panicking"
)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The README's fenced blocks of language `sh`, each with the line it starts on.
fn sh_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in readme.lines().enumerate() {
        match &mut current {
            None if line.trim_end() == "```sh" => current = Some((n + 1, String::new())),
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "an sh block of README.md is not closed");
    blocks
}

fn calls_cargo(block: &str) -> bool {
    block
        .lines()
        .map(str::trim_start)
        .any(|line| line.starts_with("cargo "))
}

#[test]
fn the_readme_examples_run_as_written() {
    let root = codesign_testkit::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 6, "the walkthrough's blocks: {blocks:?}");
    let mut script = String::from("set -euo pipefail\n");
    for (line, block) in &blocks {
        if calls_cargo(block) {
            eprintln!("README.md:{line}: not run here (calls cargo; CI runs the build's commands)");
            continue;
        }
        script.push_str(&format!("echo '>>> README.md:{line}'\n{block}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_codesign-kit"));
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("LANG", "C.UTF-8")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // The emulator runs in the background of the script: the whole group goes at the end, and
    // a walkthrough that hangs fails instead of holding CI.
    let pid = child.id();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(240) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = status.unwrap_or_else(|| panic!("the walkthrough did not end in 240 s\n{said}"));
    assert!(status.success(), "the README's examples failed\n{said}");

    let stdout = String::from_utf8_lossy(&out.stdout);
    // osslsigncode verified the signature against the emulator's root.
    assert!(stdout.contains("Signature verification: ok"), "{said}");
    // The chain went on the token beside cs-001, and the intermediate as a CA certificate.
    assert!(
        stdout.contains("beside key \"cs-001\"")
            && stdout.contains("intermediate certificates: 1 added"),
        "{said}"
    );
    // The first provision left jobs pending (exit 75); the resumed run finished all three.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("provision exit status: 75"),
        "{said}"
    );
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(run["done"], 3, "{run}");
    for job in run["jobs"].as_array().unwrap() {
        assert_eq!(job["state"], "done", "{run}");
        assert!(
            Path::new(job["chain_file"].as_str().unwrap()).is_file(),
            "{run}"
        );
    }
}

#[test]
fn sh_blocks_are_found_with_their_lines() {
    let text =
        "intro\n```sh\necho one\n```\n```text\nnot this\n```\n```sh\ncargo xtask test\n```\n";
    let blocks = sh_blocks(text);
    assert_eq!(
        blocks,
        vec![
            (2, "echo one\n".to_string()),
            (8, "cargo xtask test\n".to_string())
        ]
    );
    assert!(!calls_cargo(&blocks[0].1));
    assert!(calls_cargo(&blocks[1].1));
}
