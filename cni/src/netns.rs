//! Netlink handles bound to a network namespace.
//!
//! `setns` changes the namespace of the calling *thread*, so it only ever
//! runs on a short-lived dedicated OS thread, never on a runtime thread: that
//! thread enters the target namespace, opens the netlink socket there (a
//! socket stays bound to the namespace it was created in) and hands it back;
//! the runtime then drives it. The thread's namespace dies with the thread.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

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
        let runtime = tokio::runtime::Handle::current();
        let thread_file = file.try_clone().map_err(|source| NetnsError::Enter {
            path: path.to_path_buf(),
            source,
        })?;
        let owned_path = path.to_path_buf();
        // The dedicated thread: enter, open the socket (registered with our
        // runtime's reactor), return; the namespace switch dies with it.
        let opened = std::thread::spawn(move || {
            setns(thread_file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetnsError::Enter {
                    path: owned_path.clone(),
                    source: e.into(),
                }
            })?;
            let _guard = runtime.enter();
            rtnetlink::new_connection().map_err(|source| NetnsError::Socket {
                path: owned_path,
                source,
            })
        })
        .join()
        .map_err(|_| NetnsError::Socket {
            path: path.to_path_buf(),
            source: io::Error::other("netns thread panicked"),
        })?;
        let (connection, handle, _) = opened?;
        tokio::spawn(connection);
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
