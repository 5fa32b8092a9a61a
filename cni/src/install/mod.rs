//! The node installer (`privnet cni-install`, run by the agent DaemonSet):
//! copies the plugin into the runtime's CNI binary directory and either
//! writes privnet's own conflist (Multus mode: Multus reads it for the
//! pods whose networks annotation names privnet) or chains privnet into the
//! node's primary conflist (chained mode, as Istio's install-cni does) and
//! keeps it there: the primary CNI may rewrite its file at any time (on its
//! own restart or upgrade), so the directory is polled and the entry put
//! back; on shutdown the entry is taken out again. Every write is atomic
//! (temp file in the same directory, then rename) and made only when the
//! content changes.

pub mod conflist;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use serde_json::json;

use conflist::{ConflistError, Entry};

/// What the installer does to the CNI configuration directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Write `file` (a conflist named `network` holding only privnet).
    Multus {
        /// File name in the directory (e.g. `privnet.conflist`).
        file: String,
        /// The CNI network name (the NetworkAttachmentDefinition's).
        network: String,
    },
    /// Chain privnet's entry into the primary conflist.
    Chained,
}

/// The installer's settings.
#[derive(Debug, Clone)]
pub struct Install {
    /// Multus or chained.
    pub mode: Mode,
    /// The CNI configuration directory (the primary's in chained mode).
    pub conf_dir: PathBuf,
    /// The runtime's CNI binary directory.
    pub bin_dir: PathBuf,
    /// The plugin binary to copy there.
    pub plugin: PathBuf,
    /// privnet's plugin entry.
    pub entry: Entry,
}

/// Failures of one installer step; the files are left as they were.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file or directory could not be read or written.
    #[error("failed to {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The primary conflist cannot be edited.
    #[error("failed to chain privnet into the primary CNI configuration")]
    Conflist(#[source] ConflistError),
    /// No CNI configuration in the directory yet (the primary CNI has not
    /// written it): retried at the next poll.
    #[error("failed to find a primary CNI configuration in {}: none there yet", .0.display())]
    NoPrimary(PathBuf),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io {
        action,
        path,
        source,
    }
}

/// One change the installer made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The plugin binary was (re)installed.
    Plugin(PathBuf),
    /// privnet's own conflist was written (Multus mode).
    Written(PathBuf),
    /// privnet's entry was put into this conflist.
    Chained(PathBuf),
    /// privnet's entry was taken out of this conflist.
    Unchained(PathBuf),
}

/// Files a runtime loads from a CNI configuration directory (libcni's
/// extensions), sorted by name: the first one is the node's network.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("read the directory", dir))? {
        let path = entry.map_err(io_err("read the directory", dir))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let loaded = [".conf", ".conflist", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext));
        if loaded && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Replaces `path` with `text` atomically, unless it no longer holds
/// `expected` (the primary CNI wrote it meanwhile: its version wins, the
/// next pass edits that one). Returns whether it wrote.
fn replace_if_unchanged(path: &Path, expected: &str, text: &str) -> Result<bool, InstallError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // Hidden and without a loaded extension: no runtime ever reads it.
    let tmp = dir.join(format!(".{name}.privnet-{}.tmp", std::process::id()));
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        file.write_all(text.as_bytes())
            .map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("sync", &tmp))?;
        let now = fs::read_to_string(path).map_err(io_err("read", path))?;
        if now != expected {
            return Ok(false);
        }
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
        Ok(true)
    })();
    if !matches!(written, Ok(true)) {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Writes `text` to `path` atomically when it differs (creating it).
fn write_if_different(path: &Path, text: &[u8], mode: u32) -> Result<bool, InstallError> {
    if fs::read(path).is_ok_and(|now| now == text) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("create the directory", dir))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.privnet-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        file.write_all(text).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("sync", &tmp))?;
        // `mode` is filtered by the umask at creation; set it exactly.
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

impl Install {
    /// The conflist of Multus mode (privnet alone, not chained).
    pub fn multus_conflist(&self, network: &str) -> String {
        let mut plugin = self.entry.to_value();
        let obj = plugin.as_object_mut().expect("an entry is an object");
        obj.remove("chained");
        obj.remove("interfaceName");
        let doc = json!({ "cniVersion": "1.1.0", "name": network, "plugins": [plugin] });
        let mut text = serde_json::to_string_pretty(&doc).expect("serializes");
        text.push('\n');
        text
    }

    /// Copies the plugin binary into the binary directory (0755) if it differs.
    pub fn install_plugin(&self) -> Result<Option<Change>, InstallError> {
        let bytes = fs::read(&self.plugin).map_err(io_err("read", &self.plugin))?;
        let dest = self.bin_dir.join(conflist::PLUGIN_TYPE);
        Ok(write_if_different(&dest, &bytes, 0o755)?.then_some(Change::Plugin(dest)))
    }

    /// One pass over the configuration directory: Multus mode writes
    /// privnet's conflist; chained mode puts the entry into the primary
    /// conflist and takes it out of any other file (a new primary appeared).
    pub fn configure(&self) -> Result<Vec<Change>, InstallError> {
        match &self.mode {
            Mode::Multus { file, network } => {
                let path = self.conf_dir.join(file);
                let text = self.multus_conflist(network);
                Ok(write_if_different(&path, text.as_bytes(), 0o644)?
                    .then_some(Change::Written(path))
                    .into_iter()
                    .collect())
            }
            Mode::Chained => {
                let files = config_files(&self.conf_dir)?;
                let (primary, others) = files
                    .split_first()
                    .ok_or_else(|| InstallError::NoPrimary(self.conf_dir.clone()))?;
                let mut changes = Vec::new();
                let text = fs::read_to_string(primary).map_err(io_err("read", primary))?;
                let name = primary.display().to_string();
                if let Some(new) =
                    conflist::insert(&text, &self.entry, &name).map_err(InstallError::Conflist)?
                    && replace_if_unchanged(primary, &text, &new)?
                {
                    changes.push(Change::Chained(primary.clone()));
                }
                changes.extend(unchain_files(others)?);
                Ok(changes)
            }
        }
    }

    /// Takes privnet's entry out of every conflist of the directory (chained
    /// mode, on shutdown); Multus mode leaves its conflist (the
    /// NetworkAttachmentDefinitions carry the configuration anyway).
    pub fn unconfigure(&self) -> Result<Vec<Change>, InstallError> {
        match self.mode {
            Mode::Multus { .. } => Ok(Vec::new()),
            Mode::Chained => unchain_files(&config_files(&self.conf_dir)?),
        }
    }

    /// Installs, then (unless `once`) keeps the configuration in place every
    /// `poll` until `stop` fires or is dropped, then unconfigures. Each
    /// change and each failed pass goes to `report`; a failed pass is
    /// retried at the next poll.
    pub fn run(
        &self,
        once: bool,
        poll: Duration,
        stop: &Receiver<()>,
        mut report: impl FnMut(Result<Change, InstallError>),
    ) -> Result<(), InstallError> {
        if let Some(change) = self.install_plugin()? {
            report(Ok(change));
        }
        if once {
            for change in self.configure()? {
                report(Ok(change));
            }
            return Ok(());
        }
        loop {
            match self.configure() {
                Ok(changes) => changes.into_iter().for_each(|c| report(Ok(c))),
                Err(e) => report(Err(e)),
            }
            match stop.recv_timeout(poll) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        for change in self.unconfigure()? {
            report(Ok(change));
        }
        Ok(())
    }
}

/// Removes privnet's entry from each of `files` that has one (files that
/// do not parse are not privnet's business and are skipped).
fn unchain_files(files: &[PathBuf]) -> Result<Vec<Change>, InstallError> {
    let mut changes = Vec::new();
    for path in files {
        let text = fs::read_to_string(path).map_err(io_err("read", path))?;
        if !conflist::has_entry(&text) {
            continue;
        }
        let name = path.display().to_string();
        if let Some(new) = conflist::remove(&text, &name).map_err(InstallError::Conflist)?
            && replace_if_unchanged(path, &text, &new)?
        {
            changes.push(Change::Unchained(path.clone()));
        }
    }
    Ok(changes)
}
