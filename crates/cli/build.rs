//! Puts the commit the binary is built from into `--version` (`CODESIGN_KIT_COMMIT`): `git
//! rev-parse` when the source is a git checkout, else `unknown` (a source tarball).

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CODESIGN_KIT_COMMIT={commit}");
    // A commit rewrites the index and moves HEAD's branch. Only files that exist are named:
    // cargo would run the script on every build for one that does not.
    for watched in ["../../.git/HEAD", "../../.git/index"] {
        if std::path::Path::new(watched).exists() {
            println!("cargo:rerun-if-changed={watched}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
