//! The node's WireGuard private key: generated on first start into
//! `<state_dir>/wireguard.key` (written 0600 from the first byte, then
//! renamed into place), reloaded afterwards, never logged.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use defguard_wireguard_rs::key::Key;

use super::WireguardError;

/// Reads the private key from `<state_dir>/wireguard.key`, generating it on first use.
pub fn load_or_create_key(state_dir: &Path) -> Result<Key, WireguardError> {
    let path = state_dir.join("wireguard.key");
    let shown = path.display().to_string();
    let io = |action| {
        let shown = shown.clone();
        move |source| WireguardError::KeyFile {
            action,
            path: shown,
            source,
        }
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .map_err(io("restrict"))?;
            return Key::try_from(text.trim()).map_err(|_| WireguardError::BadKey(shown.clone()));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("read")(e)),
        Err(_) => {}
    }
    let key = Key::generate();
    privnet_sys::file::write_atomic_private(&path, format!("{key}\n"))
        .map_err(|e| io(e.action)(e.source))?;
    Ok(key)
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
}
