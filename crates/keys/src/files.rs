//! Reading and writing files safely.
//!
//! - Reading: [`read_input`] reads at most what the kind of input may hold ([`InputKind`]), so a
//!   path that names `/dev/zero` or a runaway file is refused by name instead of filling memory.
//! - Writing: [`write_atomically`] writes a temporary file in the target's directory, flushes it to
//!   disk, then renames (or links, when overwriting is not allowed) it into place. A reader never
//!   sees half a file, and a crash leaves either the old file or the new one. Only regular files
//!   are ever replaced: a device node, a directory, a FIFO or a symbolic link at the target is
//!   refused, whatever the caller allows. The temporary file's name holds the writer's process
//!   ID, so that [`remove_stray_temporaries`] can take away what a killed writer left.

use std::fs::Permissions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::KeysError;

/// Whether an existing file at the target path may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail with [`KeysError::KeyFileExists`] if the file exists.
    Refuse,
    /// Replace the file atomically.
    Replace,
}

/// Mode of private key files: owner read/write only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of public files (CSRs, certificates).
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// What a file read holds, and so the most bytes it may have.
///
/// The caps are generous for the real thing (an RSA-4096 key encrypted in PKCS#8 PEM is about
/// 3.5 KB, a CSR about 2 KB, a code signing chain about 6 KB) and small enough that a wrong path
/// cannot exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A PIN file (first line used).
    Pin,
    /// An API key file (first line used).
    ApiKey,
    /// A private key in PEM.
    PrivateKey,
    /// A CSR, PEM or DER.
    Csr,
    /// An order request body (JSON).
    OrderBody,
    /// A provisioning plan (TOML).
    Plan,
    /// A certificate or a chain of certificates (PEM or PKCS#7).
    Certificates,
    /// A libpq password file (`~/.pgpass`): a line per database.
    PasswordFile,
}

impl InputKind {
    /// The most bytes this kind of input may hold.
    pub fn limit(self) -> u64 {
        match self {
            InputKind::Pin | InputKind::ApiKey => 4 << 10,
            InputKind::PrivateKey | InputKind::Csr => 64 << 10,
            InputKind::OrderBody | InputKind::PasswordFile => 256 << 10,
            InputKind::Plan | InputKind::Certificates => 1 << 20,
        }
    }

    /// What the input is, for messages.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Pin => "PIN file",
            InputKind::ApiKey => "API key file",
            InputKind::PrivateKey => "private key file",
            InputKind::Csr => "CSR",
            InputKind::OrderBody => "order request body",
            InputKind::Plan => "plan",
            InputKind::Certificates => "certificate file",
            InputKind::PasswordFile => "password file",
        }
    }
}

/// Reads all of `source` (named `path` in errors), refusing more than `kind` may hold.
///
/// # Errors
/// [`KeysError::InputTooLarge`] past the cap, [`KeysError::Io`] when reading fails.
pub fn read_limited(source: impl Read, path: &Path, kind: InputKind) -> Result<Vec<u8>, KeysError> {
    let limit = kind.limit();
    let mut bytes = Vec::new();
    source
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| KeysError::io(path, "cannot read it", e))?;
    if bytes.len() as u64 > limit {
        bytes.fill(0);
        return Err(KeysError::InputTooLarge {
            path: path.to_path_buf(),
            what: kind.name(),
            limit,
        });
    }
    Ok(bytes)
}

/// Reads the file at `path`, refusing more than `kind` may hold (see [`InputKind::limit`]).
///
/// ```
/// use codesign_keys::files::{read_input, InputKind};
///
/// let err = read_input(std::path::Path::new("/dev/zero"), InputKind::Plan).unwrap_err();
/// assert!(err.to_string().contains("larger than 1048576 bytes"));
/// ```
///
/// # Errors
/// [`KeysError::InputTooLarge`] past the cap, [`KeysError::Io`] when it cannot be opened or read.
pub fn read_input(path: &Path, kind: InputKind) -> Result<Vec<u8>, KeysError> {
    let file = std::fs::File::open(path).map_err(|e| KeysError::io(path, "cannot read it", e))?;
    read_limited(file, path, kind)
}

/// Whether `a` and `b` name the same existing file (same device and inode), so that writing one
/// would destroy the other.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Refuses a target that exists and is not a regular file (a device node, a directory, a FIFO, a
/// socket or a symbolic link), and one that exists when overwriting is refused.
///
/// # Errors
/// [`KeysError::NotRegularFile`], [`KeysError::KeyFileExists`].
pub fn check_target(path: &Path, overwrite: Overwrite) -> Result<(), KeysError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => Err(KeysError::NotRegularFile {
            path: path.to_path_buf(),
        }),
        Ok(_) if overwrite == Overwrite::Refuse => Err(KeysError::KeyFileExists {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Writes `contents` to `path` atomically with the given mode.
///
/// # Errors
/// [`KeysError::KeyFileExists`] when `overwrite` is [`Overwrite::Refuse`] and the file exists (checked
/// again race-free at the final link), [`KeysError::NotRegularFile`] when something other than a
/// regular file is at `path`, or [`KeysError::Io`].
pub fn write_atomically(
    path: &Path,
    contents: &[u8],
    mode: u32,
    overwrite: Overwrite,
) -> Result<(), KeysError> {
    check_target(path, overwrite)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!("{TEMPORARY_PREFIX}{}-", std::process::id());
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)
        // tempfile's error names its temporary file, which means nothing to the user: the
        // operating system's reason alone is kept.
        .map_err(|e| {
            let said = e.to_string();
            let reason = said
                .split(" at path ")
                .next()
                .unwrap_or_default()
                .to_string();
            let reason = std::io::Error::new(e.kind(), reason);
            KeysError::io(path, "cannot create a file in its directory", reason)
        })?;
    // The mode given at creation is reduced by the umask; set it exactly.
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(|e| KeysError::io(path, "cannot set the file mode", e))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| KeysError::io(path, "cannot write", e))?;
    let persisted = match overwrite {
        Overwrite::Replace => tmp.persist(path),
        Overwrite::Refuse => tmp.persist_noclobber(path),
    };
    if let Err(e) = persisted {
        // Dropping `e.file` removes the temporary file.
        return Err(if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            KeysError::KeyFileExists {
                path: path.to_path_buf(),
            }
        } else {
            KeysError::io(path, "cannot move the new file into place", e.error)
        });
    }
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// How the temporary files of [`write_atomically`] begin; the writer's process ID, a `-`, random
/// characters and `.tmp` follow.
const TEMPORARY_PREFIX: &str = ".codesign-kit-";

/// How old a temporary file without a process ID in its name (written by a release before the
/// IDs) must be to count as left behind.
const UNNAMED_WRITER_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether process `pid` runs now; `true` when this cannot be told (no `/proc`), so that nothing
/// is taken away on a guess.
fn process_runs(pid: u32) -> bool {
    let proc_root = Path::new("/proc");
    !proc_root.join("self").exists() || proc_root.join(pid.to_string()).exists()
}

/// Removes from `dir` the temporary files that a [`write_atomically`] cut short (a process killed
/// between writing and renaming) left: those whose writer, the process ID in the name, no longer
/// runs, and those without an ID that are over an hour old. A file whose writer may still run is
/// left alone, and so is anything that is not a regular file. Such a file may hold a private key
/// (mode 0600), never a finished file: the target was not replaced. Returns the paths removed; a
/// missing directory holds none.
///
/// # Errors
/// [`KeysError::Io`] when the directory cannot be read or a stray file cannot be removed.
pub fn remove_stray_temporaries(dir: &Path) -> Result<Vec<PathBuf>, KeysError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(KeysError::io(dir, "cannot read the directory", e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| KeysError::io(dir, "cannot read the directory", e))?;
        let name = entry.file_name();
        let Some(middle) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMPORARY_PREFIX))
            .and_then(|n| n.strip_suffix(".tmp"))
        else {
            continue;
        };
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let writer = middle
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        let stray = match writer {
            Some(pid) => pid != std::process::id() && !process_runs(pid),
            None => meta
                .modified()
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_some_and(|age| age > UNNAMED_WRITER_AGE),
        };
        if stray {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(KeysError::io(
                        &path,
                        "cannot remove a stray temporary file",
                        e,
                    ));
                }
            }
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A killed writer's temporary files go, a running writer's and anything else stay.
    #[test]
    fn only_the_temporaries_of_writers_gone_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        exited.wait().unwrap();
        let gone = exited.id();
        let path = |name: &str| dir.path().join(name);
        let stray = path(&format!(".codesign-kit-{gone}-AbC123.tmp"));
        let running = path(&format!(".codesign-kit-{}-XyZ789.tmp", std::process::id()));
        let init = path(".codesign-kit-1-Init00.tmp");
        let old_unnamed = path(".codesign-kit-Old000.tmp");
        let new_unnamed = path(".codesign-kit-New000.tmp");
        let other = path("k.pem");
        for file in [&stray, &running, &init, &old_unnamed, &new_unnamed, &other] {
            std::fs::write(file, b"key").unwrap();
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&old_unnamed)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let not_a_file = path(&format!(".codesign-kit-{gone}-Dir000.tmp"));
        std::fs::create_dir(&not_a_file).unwrap();

        let removed = remove_stray_temporaries(dir.path()).unwrap();
        let mut expected = vec![stray.clone(), old_unnamed.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        for kept in [&running, &init, &new_unnamed, &other, &not_a_file] {
            assert!(kept.exists(), "{}", kept.display());
        }
        assert!(!stray.exists() && !old_unnamed.exists());
        assert_eq!(
            remove_stray_temporaries(&dir.path().join("missing")).unwrap(),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn writes_with_the_mode_and_never_clobbers_without_permission() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_atomically(&path, b"one", PRIVATE_FILE_MODE, Overwrite::Refuse).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let err =
            write_atomically(&path, b"two", PRIVATE_FILE_MODE, Overwrite::Refuse).unwrap_err();
        assert!(matches!(err, KeysError::KeyFileExists { .. }), "{err}");
        assert!(
            err.to_string().ends_with("refusing to overwrite it"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"one");

        write_atomically(&path, b"three", PUBLIC_FILE_MODE, Overwrite::Replace).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);

        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn only_regular_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for path in [Path::new("/dev/null"), dir.path(), link.as_path()] {
            let err =
                write_atomically(path, b"x", PUBLIC_FILE_MODE, Overwrite::Replace).unwrap_err();
            assert!(matches!(err, KeysError::NotRegularFile { .. }), "{err}");
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert!(same_file(&target, &link));
        assert!(!same_file(&target, &dir.path().join("absent")));
    }

    #[test]
    fn reads_are_capped_by_kind() {
        let err = read_input(Path::new("/dev/zero"), InputKind::Pin).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/zero: larger than 4096 bytes, the limit for the PIN file; refused"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csr");
        std::fs::write(&path, vec![b'a'; 64 << 10]).unwrap();
        assert_eq!(read_input(&path, InputKind::Csr).unwrap().len(), 64 << 10);
        std::fs::write(&path, vec![b'a'; (64 << 10) + 1]).unwrap();
        assert!(read_input(&path, InputKind::Csr).is_err());
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let err = write_atomically(
            Path::new("/nonexistent-dir-for-test/k.pem"),
            b"x",
            PRIVATE_FILE_MODE,
            Overwrite::Refuse,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent-dir-for-test/k.pem: cannot create"),
            "{err}"
        );
    }
}
