//! Running code inside another network namespace.
//!
//! `setns` changes the namespace of the calling *thread*, so it only ever
//! runs on a short-lived dedicated OS thread, never on a runtime worker: the
//! thread enters the namespace, runs the closure and ends, and the
//! namespace switch dies with it. A netlink socket opened on such a thread
//! stays bound to that namespace, which is how [`handle_in`] gives the
//! runtime a handle into another namespace.

use std::io;
use std::os::fd::AsFd;

use nix::sched::{CloneFlags, setns};

/// Failures of the namespace thread.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// `setns` refused the descriptor (not a network namespace, no right).
    #[error("failed to enter a network namespace")]
    Enter(#[source] nix::Error),
    /// The thread panicked or vanished before answering.
    #[error("failed to run on a namespace thread: it panicked")]
    ThreadPanicked,
    /// The netlink socket could not be opened inside the namespace.
    #[error("failed to open a netlink socket in a network namespace")]
    Socket(#[source] io::Error),
}

/// Runs `f` on a dedicated OS thread that has entered the namespace `ns`
/// (like `ip netns exec`, for code). Blocks the caller until `f` returns;
/// from async code prefer [`run_in_async`].
pub fn run_in<R: Send + 'static>(
    ns: impl AsFd + Send + 'static,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, NetnsError> {
    std::thread::spawn(move || enter(&ns).map(|()| f()))
        .join()
        .map_err(|_| NetnsError::ThreadPanicked)?
}

/// [`run_in`] without blocking the async runtime: the thread reports through
/// a channel.
pub async fn run_in_async<R: Send + 'static>(
    ns: impl AsFd + Send + 'static,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, NetnsError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(enter(&ns).map(|()| f()));
    });
    rx.await.map_err(|_| NetnsError::ThreadPanicked)?
}

fn enter(ns: &impl AsFd) -> Result<(), NetnsError> {
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(NetnsError::Enter)
}

/// An rtnetlink handle whose socket lives in `ns`, its connection spawned on
/// the current tokio runtime (which must have IO enabled).
pub async fn handle_in(ns: impl AsFd + Send + 'static) -> Result<rtnetlink::Handle, NetnsError> {
    let runtime = tokio::runtime::Handle::current();
    let opened = run_in_async(ns, move || open_socket(runtime)).await?;
    spawn(opened)
}

/// [`handle_in`] for synchronous callers inside a runtime (the CNI plugin).
pub fn handle_in_blocking(ns: impl AsFd + Send + 'static) -> Result<rtnetlink::Handle, NetnsError> {
    let runtime = tokio::runtime::Handle::current();
    let opened = run_in(ns, move || open_socket(runtime))?;
    spawn(opened)
}

/// On the namespace thread: the socket is created here (and registered with
/// the runtime's reactor from here), so it talks to this namespace.
fn open_socket(
    runtime: tokio::runtime::Handle,
) -> io::Result<(impl Future<Output = ()> + Send + 'static, rtnetlink::Handle)> {
    let _entered = runtime.enter();
    rtnetlink::new_connection().map(|(c, h, _)| (c, h))
}

fn spawn<C: Future<Output = ()> + Send + 'static>(
    opened: io::Result<(C, rtnetlink::Handle)>,
) -> Result<rtnetlink::Handle, NetnsError> {
    let (connection, handle) = opened.map_err(NetnsError::Socket)?;
    tokio::spawn(connection);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_that_is_not_a_namespace_is_refused_and_a_namespace_is_entered() {
        // Positive control: our own namespace is entered (setns needs
        // CAP_SYS_ADMIN: without it EPERM still shows setns was reached).
        let own = std::fs::File::open("/proc/self/ns/net").unwrap();
        match run_in(own, || 7) {
            Ok(v) => assert_eq!(v, 7),
            Err(NetnsError::Enter(e)) => assert_eq!(e, nix::Error::EPERM),
            Err(e) => panic!("unexpected {e}"),
        }
        let not_ns = std::fs::File::open("/proc/self/status").unwrap();
        assert!(matches!(
            run_in(not_ns, || 7),
            Err(NetnsError::Enter(nix::Error::EINVAL | nix::Error::EPERM))
        ));
    }
}
