//! Persistence of attachments (the IPAM state), keyed by (container id,
//! ifname). A small trait with a disk implementation and an in-memory fake:
//! the book is tested only against the fake.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use privnet_core::rpc::AttachmentKey;
use serde::{Deserialize, Serialize};

/// One attachment as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRecord {
    /// CNI key.
    pub key: AttachmentKey,
    /// Network id.
    pub network_id: String,
    /// Address with the network prefix.
    pub address: Ipv4Net,
    /// Container MAC.
    pub mac: String,
    /// Application id.
    pub application_id: String,
    /// Process type.
    pub process_type: String,
    /// Container number.
    pub container_number: u32,
    /// Container netns path.
    pub netns: String,
    /// veth end on the bridge.
    pub host_ifname: String,
}

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An atomic file write failed.
    #[error(transparent)]
    Write(#[from] privnet_sys::file::WriteError),
    /// File I/O failed.
    #[error("failed to access attachment state {path}")]
    Io {
        /// File concerned.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A key cannot be stored (characters outside the CNI container-id alphabet).
    #[error("invalid attachment key {0:?}: container id and ifname must match [A-Za-z0-9_.-]+")]
    InvalidKey(String),
}

impl StoreError {
    /// Whether the file system is full (`ENOSPC`, `EDQUOT`): transient, the
    /// same write works once there is room.
    pub fn is_no_space(&self) -> bool {
        let io = match self {
            StoreError::Write(e) => &e.source,
            StoreError::Io { source, .. } => source,
            StoreError::InvalidKey(_) => return false,
        };
        matches!(
            io.raw_os_error(),
            Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT
        )
    }
}

/// Where attachment records live.
pub trait AttachmentStore: Send + 'static {
    /// Every record.
    fn load(&self) -> Result<Vec<AttachmentRecord>, StoreError>;
    /// Creates or replaces a record.
    fn put(&mut self, record: &AttachmentRecord) -> Result<(), StoreError>;
    /// Removes a record (idempotent).
    fn remove(&mut self, key: &AttachmentKey) -> Result<(), StoreError>;
    /// Keys of records set aside as corrupted: their addresses stay claimed.
    fn quarantined(&self) -> Vec<AttachmentKey> {
        Vec::new()
    }
}

/// In-memory fake.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Records by key.
    pub records: BTreeMap<AttachmentKey, AttachmentRecord>,
}

impl AttachmentStore for MemoryStore {
    fn load(&self) -> Result<Vec<AttachmentRecord>, StoreError> {
        Ok(self.records.values().cloned().collect())
    }
    fn put(&mut self, record: &AttachmentRecord) -> Result<(), StoreError> {
        self.records.insert(record.key.clone(), record.clone());
        Ok(())
    }
    fn remove(&mut self, key: &AttachmentKey) -> Result<(), StoreError> {
        self.records.remove(key);
        Ok(())
    }
}

/// One JSON file per attachment under `<state>/attachments/`, written with
/// temp file + rename so a crash never leaves a torn record.
#[derive(Debug, Clone)]
pub struct DiskStore {
    dir: PathBuf,
}

impl DiskStore {
    /// Store under `state_dir/attachments` (created 0700).
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = state_dir.join("attachments");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io(&dir, e))?;
        Ok(Self { dir })
    }

    fn path(&self, key: &AttachmentKey) -> Result<PathBuf, StoreError> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && s != "."
                && s != ".."
        };
        if !ok(&key.container_id) || !ok(&key.ifname) {
            return Err(StoreError::InvalidKey(format!(
                "{}/{}",
                key.container_id, key.ifname
            )));
        }
        Ok(self
            .dir
            .join(format!("{}+{}.json", key.container_id, key.ifname)))
    }
}

impl AttachmentStore for DiskStore {
    fn load(&self) -> Result<Vec<AttachmentRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let path = entry.map_err(|e| io(&self.dir, e))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            match serde_json::from_str(&text) {
                Ok(record) => out.push(record),
                // A truncated or corrupted record must not keep the agent
                // down: it is moved aside (kept for inspection, never read
                // again) and said so. Its address stays claimed in the
                // cluster under the container's owner, so no new attachment
                // can be given it (the claim's compare-and-swap fences it).
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::warn!(
                        record = %path.display(),
                        moved_to = %aside.display(),
                        error = %e,
                        "dropping a corrupted attachment record"
                    );
                    std::fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
                }
            }
        }
        out.sort_by(|a: &AttachmentRecord, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn put(&mut self, record: &AttachmentRecord) -> Result<(), StoreError> {
        let path = self.path(&record.key)?;
        let text = serde_json::to_vec(record).expect("records serialize");
        Ok(privnet_sys::file::write_atomic(&path, text)?)
    }

    fn quarantined(&self) -> Vec<AttachmentKey> {
        let names = std::fs::read_dir(&self.dir).into_iter().flatten().flatten();
        names
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let (cid, ifname) = name.strip_suffix(".json.corrupt")?.split_once('+')?;
                Some(AttachmentKey {
                    container_id: cid.into(),
                    ifname: ifname.into(),
                })
            })
            .collect()
    }

    fn remove(&mut self, key: &AttachmentKey) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path, e)),
            _ => Ok(()),
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cid: &str) -> AttachmentRecord {
        AttachmentRecord {
            key: AttachmentKey {
                container_id: cid.into(),
                ifname: "eth1".into(),
            },
            network_id: "pn-a".into(),
            address: "10.240.0.2/22".parse().unwrap(),
            mac: "02:00:00:00:00:02".into(),
            application_id: "app".into(),
            process_type: "web".into(),
            container_number: 1,
            netns: "/run/netns/x".into(),
            host_ifname: "pv0001".into(),
        }
    }

    #[test]
    fn disk_store_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DiskStore::open(dir.path()).unwrap();
        store.put(&record("b")).unwrap();
        store.put(&record("a")).unwrap();
        store.remove(&record("b").key).unwrap();
        store.remove(&record("b").key).unwrap();
        let again = DiskStore::open(dir.path()).unwrap();
        assert_eq!(again.load().unwrap(), vec![record("a")]);
    }

    #[test]
    fn a_corrupted_record_is_moved_aside_and_the_rest_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DiskStore::open(dir.path()).unwrap();
        store.put(&record("a")).unwrap();
        store.put(&record("b")).unwrap();
        let b = dir.path().join("attachments/b+eth1.json");
        let text = std::fs::read_to_string(&b).unwrap();
        std::fs::write(&b, &text[..text.len() / 2]).unwrap();
        assert_eq!(store.load().unwrap(), vec![record("a")]);
        assert!(!b.exists());
        let aside = dir.path().join("attachments/b+eth1.json.corrupt");
        assert_eq!(
            std::fs::read_to_string(aside).unwrap(),
            text[..text.len() / 2]
        );
        // Control: nothing else was touched, and a second load agrees.
        assert_eq!(store.load().unwrap(), vec![record("a")]);
        assert_eq!(store.quarantined(), vec![record("b").key]);
    }

    #[test]
    fn a_full_file_system_is_told_apart() {
        let full = StoreError::Io {
            path: "x".into(),
            source: std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
        };
        assert!(full.is_no_space());
        let denied = StoreError::Io {
            path: "x".into(),
            source: std::io::Error::from_raw_os_error(nix::libc::EACCES),
        };
        assert!(!denied.is_no_space(), "control: another I/O error");
    }

    #[test]
    fn path_traversal_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DiskStore::open(dir.path()).unwrap();
        let err = store.put(&record("../../etc")).unwrap_err();
        assert!(matches!(err, StoreError::InvalidKey(_)), "{err}");
    }
}
