//! The node's WireGuard private keys: the current one in
//! `<state_dir>/wireguard.key` (generated on first start), and while a
//! rotation is under way the next one in `wireguard.key.next`. Every write
//! is a 0600 temp file synced and renamed into place; nothing is logged.
//!
//! Crash safety: promotion writes the next key over the current file
//! (atomically) and only then removes the next file, so a restart finds the
//! old key (and resumes the rotation), or the new one (possibly with a
//! leftover next file equal to it, which [`load_next_key`] drops) — never
//! no key.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use defguard_wireguard_rs::key::Key;

use super::WireguardError;

const CURRENT: &str = "wireguard.key";
const NEXT: &str = "wireguard.key.next";

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WireguardError + use<> {
    let path = path.display().to_string();
    move |source| WireguardError::KeyFile {
        action,
        path,
        source,
    }
}

fn write_err(e: privnet_sys::file::WriteError) -> WireguardError {
    WireguardError::KeyFile {
        action: e.action,
        path: e.path.display().to_string(),
        source: e.source,
    }
}

/// Reads a key file; `None` when it does not exist.
fn read_key(path: &Path) -> Result<Option<Key>, WireguardError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .map_err(io("restrict", path))?;
            Key::try_from(text.trim())
                .map(Some)
                .map_err(|_| WireguardError::BadKey(path.display().to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

fn write_key(path: &Path, key: &Key) -> Result<(), WireguardError> {
    privnet_sys::file::write_atomic_private(path, format!("{key}\n")).map_err(write_err)
}

/// Reads the private key from `<state_dir>/wireguard.key`, generating it on first use.
pub fn load_or_create_key(state_dir: &Path) -> Result<Key, WireguardError> {
    let path = state_dir.join(CURRENT);
    if let Some(key) = read_key(&path)? {
        return Ok(key);
    }
    let key = Key::generate();
    write_key(&path, &key)?;
    Ok(key)
}

/// The next key of a rotation under way, if any. A next file equal to the
/// current key is what a crash right after promotion leaves: it is removed.
pub fn load_next_key(state_dir: &Path) -> Result<Option<Key>, WireguardError> {
    let next = read_key(&state_dir.join(NEXT))?;
    if next.is_some() && next == read_key(&state_dir.join(CURRENT))? {
        discard_next_key(state_dir)?;
        return Ok(None);
    }
    Ok(next)
}

/// Generates the next key and writes it to `wireguard.key.next`.
pub fn create_next_key(state_dir: &Path) -> Result<Key, WireguardError> {
    let key = Key::generate();
    write_key(&state_dir.join(NEXT), &key)?;
    Ok(key)
}

/// Makes the next key the current one: written over `wireguard.key`
/// atomically, then the next file removed. Returns the new key.
pub fn promote_next_key(state_dir: &Path) -> Result<Key, WireguardError> {
    let next_path = state_dir.join(NEXT);
    let next = read_key(&next_path)?.ok_or_else(|| {
        io("promote", &next_path)(std::io::Error::from(std::io::ErrorKind::NotFound))
    })?;
    write_key(&state_dir.join(CURRENT), &next)?;
    discard_next_key(state_dir)?;
    Ok(next)
}

/// Drops the next key (an aborted rotation); nothing to drop is fine.
pub fn discard_next_key(state_dir: &Path) -> Result<(), WireguardError> {
    let path = state_dir.join(NEXT);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &path)(e)),
        _ => Ok(()),
    }
}

/// How old the current key is (its file's modification time), for the schedule.
pub fn key_age(state_dir: &Path, now: SystemTime) -> Option<Duration> {
    let modified = fs::metadata(state_dir.join(CURRENT))
        .ok()?
        .modified()
        .ok()?;
    Some(now.duration_since(modified).unwrap_or_default())
}

/// The file an operator creates to ask for a rotation (`touch`); the agent
/// removes it when the rotation starts.
pub fn rotate_request_file(state_dir: &Path) -> PathBuf {
    state_dir.join("rotate-key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_private_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_key(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join("wireguard.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_key(dir.path()).unwrap(), first);
        fs::write(dir.path().join("wireguard.key"), "garbage").unwrap();
        assert!(matches!(
            load_or_create_key(dir.path()),
            Err(WireguardError::BadKey(_))
        ));
    }

    #[test]
    fn a_next_key_is_promoted_or_discarded_and_never_leaves_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let old = load_or_create_key(dir.path()).unwrap();
        assert_eq!(load_next_key(dir.path()).unwrap(), None);
        let next = create_next_key(dir.path()).unwrap();
        assert_ne!(next, old);
        let mode = fs::metadata(dir.path().join(NEXT))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A restart mid-rotation: the old key, the next one pending.
        assert_eq!(load_or_create_key(dir.path()).unwrap(), old);
        assert_eq!(load_next_key(dir.path()).unwrap(), Some(next.clone()));
        // Aborted: the old key stays.
        discard_next_key(dir.path()).unwrap();
        discard_next_key(dir.path()).unwrap();
        assert_eq!(load_next_key(dir.path()).unwrap(), None);
        assert_eq!(load_or_create_key(dir.path()).unwrap(), old);
        // Promoted: the new key, no next.
        let next = create_next_key(dir.path()).unwrap();
        assert_eq!(promote_next_key(dir.path()).unwrap(), next);
        assert_eq!(load_or_create_key(dir.path()).unwrap(), next);
        assert_eq!(load_next_key(dir.path()).unwrap(), None);
        assert!(promote_next_key(dir.path()).is_err(), "nothing to promote");
        // A crash between the write and the removal: the leftover is dropped.
        fs::copy(dir.path().join(CURRENT), dir.path().join(NEXT)).unwrap();
        assert_eq!(load_next_key(dir.path()).unwrap(), None);
        assert!(!dir.path().join(NEXT).exists());
        assert!(key_age(dir.path(), SystemTime::now()).unwrap() < Duration::from_secs(60));
    }
}
