//! Named network namespaces under `/run/netns` (what `ip netns add/del/list/exec` do).
//!
//! Every namespace switch happens on a dedicated, short-lived OS thread (`privnet_sys::netns`,
//! shared with the CNI plugin): `setns` changes only the calling thread, so the agent's own
//! threads (and tokio workers) never leave the agent's namespace.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// Where named namespaces are bind-mounted, as `ip netns` does.
pub const NETNS_RUN_DIR: &str = "/run/netns";
/// `statfs` magic of nsfs: a namespace bind mount (`NSFS_MAGIC`).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Errors of namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A namespace name that cannot be a file name under `/run/netns`.
    #[error("failed to accept network namespace name {0:?}")]
    InvalidName(String),
    /// A file system or mount operation failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path concerned.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A namespace system call failed.
    #[error("failed to {action}")]
    Sys {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: nix::Error,
    },
    /// The helper thread panicked or vanished.
    #[error("failed to run on a namespace thread: it panicked")]
    ThreadPanicked,
    /// Entering the namespace on its dedicated thread, or opening a socket there, failed.
    #[error(transparent)]
    Thread(#[from] privnet_sys::netns::NetnsError),
    /// A command run inside a namespace failed.
    #[error("failed to run `{command}` in a network namespace: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr (or why it could not start).
        stderr: String,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> NetnsError + use<> {
    let path = path.display().to_string();
    move |source| NetnsError::Io {
        action,
        path,
        source,
    }
}

fn sys_err(action: &'static str) -> impl FnOnce(nix::Error) -> NetnsError {
    move |source| NetnsError::Sys { action, source }
}

/// An open network namespace (a file descriptor on its nsfs inode): cheap to clone, valid
/// even if the namespace's name is later deleted.
#[derive(Clone, Debug)]
pub struct NetnsFd(Arc<OwnedFd>);

impl NetnsFd {
    /// The namespace of the calling thread (`/proc/thread-self/ns/net`). Call it at agent start
    /// from the main thread to capture "the agent's own namespace" (which may itself be a node
    /// namespace entered with `ip netns exec`).
    pub fn current() -> Result<Self, NetnsError> {
        Self::open_path(Path::new("/proc/thread-self/ns/net"))
    }

    /// The named namespace `/run/netns/<name>`.
    pub fn named(name: &str) -> Result<Self, NetnsError> {
        Self::open_path(&path_of(name)?)
    }

    /// The namespace mounted or linked at `path` (a container's `CNI_NETNS`).
    pub fn open_path(path: &Path) -> Result<Self, NetnsError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        Ok(Self(Arc::new(OwnedFd::from(file))))
    }

    /// The nsfs inode of the namespace (its identity: a namespace deleted
    /// and created again under the same name has another).
    pub fn inode(&self) -> Option<u64> {
        nix::sys::stat::fstat(self).ok().map(|st| st.st_ino)
    }

    /// The raw descriptor, e.g. for `ip link set … netns <fd>` through rtnetlink's `setns_by_fd`.
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

impl std::os::fd::AsFd for NetnsFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// `/run/netns/<name>`, rejecting names that could escape the directory.
pub fn path_of(name: &str) -> Result<PathBuf, NetnsError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    if !valid {
        return Err(NetnsError::InvalidName(name.to_string()));
    }
    Ok(Path::new(NETNS_RUN_DIR).join(name))
}

/// Whether `/run/netns/<name>` is a live namespace mount (not a stale empty file).
pub fn exists(name: &str) -> bool {
    path_of(name).is_ok_and(|p| is_nsfs(&p))
}

fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Creates the named namespace if it does not exist (`ip netns add <name>`, idempotent).
///
/// The new namespace is made by `unshare(CLONE_NEWNET)` on a dedicated thread and bind-mounted
/// from that thread's `/proc/thread-self/ns/net`; the caller's namespace never changes.
pub fn create(name: &str) -> Result<(), NetnsError> {
    let path = path_of(name)?;
    if is_nsfs(&path) {
        return Ok(());
    }
    ensure_run_dir()?;
    // A stale file left by an interrupted create is reused as the mount point.
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("create", &path))?;
    let target = path.clone();
    let mounted = on_thread(move || -> Result<(), NetnsError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(sys_err("unshare a new network namespace"))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys_err("bind-mount a new network namespace"))
    })
    .and_then(|r| r);
    if mounted.is_err() && !is_nsfs(&path) {
        let _ = fs::remove_file(&path);
    }
    mounted
}

/// Makes `/run/netns` a shared mount point, as `ip netns add` does, so namespaces mounted
/// there propagate to mount namespaces created later.
fn ensure_run_dir() -> Result<(), NetnsError> {
    let dir = Path::new(NETNS_RUN_DIR);
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    if mount(None::<&str>, dir, None::<&str>, shared, None::<&str>).is_ok() {
        return Ok(());
    }
    mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys_err("bind-mount /run/netns on itself"))?;
    mount(None::<&str>, dir, None::<&str>, shared, None::<&str>)
        .map_err(sys_err("make /run/netns shared"))
}

/// Deletes the named namespace (`ip netns del <name>`, idempotent). The kernel destroys it,
/// and every device inside, once no process or descriptor holds it any more.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    let path = path_of(name)?;
    if !path.exists() {
        return Ok(());
    }
    if is_nsfs(&path) {
        umount2(&path, MntFlags::MNT_DETACH).map_err(sys_err("unmount a network namespace"))?;
    }
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
        _ => Ok(()),
    }
}

/// Names of the live namespaces under `/run/netns` starting with `prefix`, sorted.
pub fn list(prefix: &str) -> Result<Vec<String>, NetnsError> {
    let dir = Path::new(NETNS_RUN_DIR);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && exists(n))
        .collect();
    names.sort();
    Ok(names)
}

fn on_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, NetnsError> {
    std::thread::spawn(f)
        .join()
        .map_err(|_| NetnsError::ThreadPanicked)
}

/// Runs `f` on a dedicated OS thread that has entered `ns` (like `ip netns exec`, for code).
/// Blocks the caller until `f` returns; from async code prefer [`run_in_async`].
pub fn run_in<R: Send + 'static>(
    ns: &NetnsFd,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, NetnsError> {
    Ok(privnet_sys::netns::run_in(ns.0.clone(), f)?)
}

/// [`run_in`] without blocking the async runtime.
pub async fn run_in_async<R: Send + 'static>(
    ns: &NetnsFd,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, NetnsError> {
    Ok(privnet_sys::netns::run_in_async(ns.0.clone(), f).await?)
}

/// Runs a program inside `ns` (`ip netns exec <ns> program args…`) feeding `stdin`, and
/// returns its output when it exits with status 0. The child is forked from a thread that
/// entered `ns`, so it starts there.
pub async fn command_in(
    ns: &NetnsFd,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output, NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let program = program.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.map(str::to_string);
    let output = run_in_async(ns, move || run_command(&program, &args, stdin.as_deref())).await?;
    match output {
        Ok(out) if out.status.success() => Ok(out),
        Ok(out) => Err(NetnsError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Err(e) => Err(NetnsError::Command {
            command,
            stderr: e.to_string(),
        }),
    }
}

fn run_command(program: &str, args: &[String], stdin: Option<&str>) -> io::Result<Output> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    child.wait_with_output()
}

/// Opens an rtnetlink connection bound to `ns` and spawns it on the current tokio runtime
/// (see `privnet_sys::netns::handle_in`).
pub async fn handle_in(ns: &NetnsFd) -> Result<rtnetlink::Handle, NetnsError> {
    Ok(privnet_sys::netns::handle_in(ns.0.clone()).await?)
}

/// Writes a sysctl inside `ns` (`ip netns exec <ns> sysctl -w key=value`); `key` is a path
/// under `/proc/sys`, e.g. `net/ipv4/ip_forward`. `/proc/sys/net` follows the writing
/// thread's namespace.
pub async fn sysctl_in(ns: &NetnsFd, key: &str, value: &str) -> Result<(), NetnsError> {
    let path = Path::new("/proc/sys").join(key);
    let value = value.to_string();
    let p = path.clone();
    run_in_async(ns, move || fs::write(&p, value))
        .await?
        .map_err(io_err("write", &path))
}

/// Writes `value` to `/sys/<rel>` as seen from inside `ns`. A thread inside `ns` creates a
/// sysfs instance of its own (`fsopen`/`fsmount`: sysfs shows the devices of the creating
/// thread's namespace) that is never attached to any mount point and goes away with its
/// descriptor, so nothing is mounted and the agent's `/sys`, which shows another namespace
/// under `nsenter --net`, is not relied on.
pub async fn sysfs_write_in(ns: &NetnsFd, rel: &str, value: &str) -> Result<(), NetnsError> {
    let path = Path::new("/sys").join(rel);
    let (rel, value) = (rel.to_string(), value.to_string());
    run_in_async(ns, move || {
        let file = open_in_private_sysfs(&rel, rustix::fs::OFlags::WRONLY)?;
        rustix::io::write(&file, value.as_bytes()).map(drop)
    })
    .await?
    .map_err(|e| io_err("write", &path)(e.into()))
}

/// Reads `/sys/<rel>` as seen from inside `ns` (trimmed); see [`sysfs_write_in`].
pub async fn sysfs_read_in(ns: &NetnsFd, rel: &str) -> Result<String, NetnsError> {
    let path = Path::new("/sys").join(rel);
    let rel = rel.to_string();
    let text = run_in_async(ns, move || {
        let file = open_in_private_sysfs(&rel, rustix::fs::OFlags::RDONLY)?;
        let mut buf = [0u8; 256];
        let n = rustix::io::read(&file, &mut buf)?;
        Ok::<_, rustix::io::Errno>(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    })
    .await?
    .map_err(|e| io_err("read", &path)(e.into()))?;
    Ok(text)
}

fn open_in_private_sysfs(rel: &str, mode: rustix::fs::OFlags) -> rustix::io::Result<OwnedFd> {
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
    let fs = rustix::mount::fsopen("sysfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    rustix::mount::fsconfig_create(&fs)?;
    let root = rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOEXEC | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )?;
    rustix::fs::openat(
        &root,
        rel,
        mode | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )
}

/// Reads a sysctl inside `ns` (trimmed).
pub async fn sysctl_get(ns: &NetnsFd, key: &str) -> Result<String, NetnsError> {
    let path = Path::new("/proc/sys").join(key);
    let p = path.clone();
    let text = run_in_async(ns, move || fs::read_to_string(&p))
        .await?
        .map_err(io_err("read", &path))?;
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_the_directory_are_rejected() {
        for bad in ["", ".", "..", "a/b", "../x", "a\0b"] {
            assert!(path_of(bad).is_err(), "{bad:?}");
        }
        assert_eq!(path_of("pn-7").unwrap(), Path::new("/run/netns/pn-7"));
    }
}
