//! The shared tokens of the module suite (`crates/cli/tests/module_suite.rs`): opencryptoki's
//! software token and tpm2-pkcs11 over a software TPM, each brought up by its script in
//! `xtask/tokens/` before the tests and taken down after them, whatever the tests did.
//!
//! A module whose parts are missing (or, for opencryptoki, when not root) is not run: its tests are
//! filtered out and named as not run, never counted as passed. Under CI (`CI` set) every module
//! must come up.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The Debian packages of the shared modules (installed by `test` when it runs as root).
pub const PACKAGES: &[&str] = &[
    "opencryptoki",
    "swtpm",
    "swtpm-tools",
    "tpm2-tools",
    "tpm2-abrmd",
    "libtss2-tcti-tabrmd0",
    "dbus",
    "libtpm2-pkcs11-1",
    "python3-tpm2-pkcs11-tools",
];

/// The modules with a setup script, by the name the suite's tests carry (`<name>::...`).
const SCRIPTED: &[&str] = &["opencryptoki", "tpm2"];

/// The shared modules of one test run. Dropping it takes every module that came up down again.
pub struct SuiteTokens {
    root: PathBuf,
    up: Vec<&'static str>,
    /// Each module that did not come up, with why.
    pub not_run: Vec<(&'static str, String)>,
    /// The variables the tests (and the modules) need: tokens, PINs, the TPM's bus and store.
    pub env: Vec<(String, String)>,
}

fn script(root: &Path, name: &str) -> PathBuf {
    root.join("xtask/tokens").join(format!("{name}.sh"))
}

impl SuiteTokens {
    /// Brings every scripted module up, in `target/suite-tokens/<name>`.
    ///
    /// # Errors
    /// Under CI, a module that did not come up; anywhere, an env file that cannot be read.
    pub fn up(root: &Path) -> Result<SuiteTokens> {
        let mut tokens = SuiteTokens {
            root: root.to_path_buf(),
            up: Vec::new(),
            not_run: Vec::new(),
            env: Vec::new(),
        };
        for name in SCRIPTED {
            let state = tokens.state(name);
            eprintln!("==> module suite: setting up {name}");
            let output = Command::new("bash")
                .arg(script(root, name))
                .arg("up")
                .arg(&state)
                .output()
                .with_context(|| format!("cannot run the {name} setup script"))?;
            if !output.status.success() {
                let said = String::from_utf8_lossy(&output.stderr).trim().to_string();
                // Whatever half came up goes down again.
                tokens.down_one(name);
                tokens.not_run.push((name, said));
                continue;
            }
            tokens.up.push(name);
            let env = std::fs::read_to_string(state.join("env"))
                .with_context(|| format!("{name}: the setup wrote no env file"))?;
            for line in env.lines() {
                if let Some((key, value)) = line.split_once('=') {
                    tokens.env.push((key.to_string(), value.to_string()));
                }
            }
        }
        if std::env::var_os("CI").is_some() && !tokens.not_run.is_empty() {
            let why: Vec<String> = tokens
                .not_run
                .iter()
                .map(|(name, why)| format!("{name}: {why}"))
                .collect();
            bail!(
                "CI runs the module suite on every module, and these did not come up:\n{}",
                why.join("\n")
            );
        }
        Ok(tokens)
    }

    fn state(&self, name: &str) -> PathBuf {
        self.root.join("target/suite-tokens").join(name)
    }

    fn down_one(&self, name: &str) {
        let status = Command::new("bash")
            .arg(script(&self.root, name))
            .arg("down")
            .arg(self.state(name))
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("warning: the {name} token did not come down cleanly");
        }
    }

    /// A nextest filter expression that leaves out the tests of modules that are not up.
    pub fn nextest_filter(&self) -> Option<String> {
        if self.not_run.is_empty() {
            return None;
        }
        let left_out: Vec<String> = self
            .not_run
            .iter()
            .map(|(name, _)| format!("test(/^{name}::/)"))
            .collect();
        Some(format!(
            "not (binary(module_suite) and ({}))",
            left_out.join(" or ")
        ))
    }

    /// `--skip` arguments for libtest (the `cargo test` fallback) with the same effect.
    pub fn libtest_skips(&self) -> Vec<String> {
        self.not_run
            .iter()
            .flat_map(|(name, _)| ["--skip".to_string(), format!("{name}::")])
            .collect()
    }

    /// Says which modules run and which do not, by name.
    pub fn report(&self) {
        let mut ran = vec!["softhsm2"];
        ran.extend(self.up.iter().copied());
        eprintln!("==> module suite runs on: {}", ran.join(", "));
        for (name, why) in &self.not_run {
            eprintln!("==> module suite NOT RUN on {name}: {why}");
        }
    }
}

impl Drop for SuiteTokens {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.up) {
            self.down_one(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_not_up_are_left_out_by_name() {
        let tokens = SuiteTokens {
            root: PathBuf::from("/nonexistent"),
            up: Vec::new(),
            not_run: vec![
                ("opencryptoki", "needs root".to_string()),
                ("tpm2", "swtpm is not installed".to_string()),
            ],
            env: Vec::new(),
        };
        assert_eq!(
            tokens.nextest_filter().as_deref(),
            Some("not (binary(module_suite) and (test(/^opencryptoki::/) or test(/^tpm2::/)))")
        );
        assert_eq!(
            tokens.libtest_skips(),
            ["--skip", "opencryptoki::", "--skip", "tpm2::"]
        );
        let all_up = SuiteTokens {
            root: PathBuf::from("/nonexistent"),
            up: Vec::new(),
            not_run: Vec::new(),
            env: Vec::new(),
        };
        assert_eq!(all_up.nextest_filter(), None);
        assert!(all_up.libtest_skips().is_empty());
    }
}
