//! Netlink handles bound to a network namespace: the namespace is entered
//! only on `privnet_sys::netns`'s dedicated thread, never on a runtime
//! thread; the socket opened there stays bound to it.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use privnet_sys::netns::NetnsError as SysNetnsError;

/// Failures opening a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The path does not exist.
    #[error("failed to open netns {0}: no such file")]
    Missing(PathBuf),
    /// The path exists but is not a network namespace (or cannot be entered).
    #[error("failed to enter netns {path}: {source}")]
    Enter {
        /// Namespace path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Opening the netlink socket failed.
    #[error("failed to open a netlink socket in {path}: {source}")]
    Socket {
        /// Namespace path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// A netlink handle whose socket lives in one network namespace.
pub struct Netns {
    path: PathBuf,
    file: File,
    /// rtnetlink handle operating inside that namespace.
    pub handle: rtnetlink::Handle,
}

impl Netns {
    /// Opens `path` (e.g. `/var/run/netns/x`, `/proc/<pid>/ns/net`). Must be
    /// called inside a tokio runtime with IO enabled.
    pub fn open(path: &Path) -> Result<Netns, NetnsError> {
        let file = File::open(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => NetnsError::Missing(path.to_path_buf()),
            _ => NetnsError::Enter {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let thread_file = file.try_clone().map_err(|source| NetnsError::Enter {
            path: path.to_path_buf(),
            source,
        })?;
        let handle = privnet_sys::netns::handle_in_blocking(thread_file).map_err(|e| {
            let path = path.to_path_buf();
            match e {
                SysNetnsError::Enter(e) => NetnsError::Enter {
                    path,
                    source: e.into(),
                },
                SysNetnsError::Socket(source) => NetnsError::Socket { path, source },
                SysNetnsError::ThreadPanicked => NetnsError::Socket {
                    path,
                    source: io::Error::other("netns thread panicked"),
                },
            }
        })?;
        Ok(Netns {
            path: path.to_path_buf(),
            file,
            handle,
        })
    }

    /// Like [`open`](Self::open) but a missing path or a path that is no
    /// longer a namespace (the runtime tore it down) is `None`.
    pub fn open_if_present(path: &Path) -> Result<Option<Netns>, NetnsError> {
        match Self::open(path) {
            Ok(ns) => Ok(Some(ns)),
            Err(NetnsError::Missing(_)) => Ok(None),
            Err(NetnsError::Enter { source, .. })
                if source.raw_os_error() == Some(nix::libc::EINVAL) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The namespace path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File descriptor of the namespace (for `IFLA_NET_NS_FD`); valid while
    /// `self` lives.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
