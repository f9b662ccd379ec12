//! Writing files atomically: a temporary file in the target's directory, flushed to disk, then
//! renamed (or linked, when overwriting is not allowed) into place. A reader never sees half a file,
//! and a crash leaves either the old file or the new one.

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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

/// Writes `contents` to `path` atomically with the given mode.
///
/// # Errors
/// [`KeysError::KeyFileExists`] when `overwrite` is [`Overwrite::Refuse`] and the file exists (checked
/// race-free at the final link), or [`KeysError::Io`].
pub fn write_atomically(
    path: &Path,
    contents: &[u8],
    mode: u32,
    overwrite: Overwrite,
) -> Result<(), KeysError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".codesign-kit-")
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| KeysError::io(path, "cannot create a file in its directory", e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(err.to_string().contains("--force"));
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
