//! Files replaced atomically: a temp file in the same directory, then
//! `rename`, so a reader (or a restart after a crash) sees the old or the new
//! content, never half of one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A failed atomic write.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} {}", path.display())]
pub struct WriteError {
    /// What was being done.
    pub action: &'static str,
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

/// Writes `contents` to `path` atomically, creating its directory.
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), WriteError> {
    write_with(path, contents.as_ref(), 0o644, false)
}

/// [`write_atomic`] for a secret: the temp file is created `0600` before any
/// byte is written, and synced before the rename.
pub fn write_atomic_private(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), WriteError> {
    write_with(path, contents.as_ref(), 0o600, true)
}

fn write_with(path: &Path, contents: &[u8], mode: u32, sync: bool) -> Result<(), WriteError> {
    let fail = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError {
            action,
            path,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(fail("create the directory", dir))?;
    let tmp = temp_path(dir, path);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(fail("create", &tmp))?;
        file.write_all(contents).map_err(fail("write", &tmp))?;
        if sync {
            file.sync_all().map_err(fail("sync", &tmp))?;
        }
        fs::rename(&tmp, path).map_err(fail("rename into place", path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// `.<name>.<pid>.<n>.tmp` beside the target: distinct per process and per
/// call, so concurrent writers never share a temp file.
fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_creates_the_directory_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.json");
        write_atomic(&path, "one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let left: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec!["c.json"]);
    }

    #[test]
    fn private_files_are_0600_and_failures_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_atomic_private(&path, "secret").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A directory where the file should go: the rename fails, nothing is left behind.
        let blocked = dir.path().join("blocked");
        fs::create_dir_all(blocked.join("inner")).unwrap();
        let err = write_atomic(&blocked, "x").unwrap_err();
        assert_eq!(err.path, blocked);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }
}
