//! A spare `nft -f -` per network namespace, started ahead of time.
//!
//! Attach installs a new port's guard before it answers ADD, and running
//! `nft` costs far more to start than to work: a namespace thread, a fork,
//! an exec, loading six shared libraries and initialising (~5 ms of a ~6 ms
//! run on a loaded node) against a parse and one small commit. So each
//! network keeps one `nft -f -` already started inside its namespace,
//! blocked reading its stdin; an update writes the ruleset, closes stdin and
//! waits for the exit status, then a replacement is started off the ADD path.
//!
//! A spare is only used if it still runs in the namespace now mounted under
//! the network's name (same nsfs inode): a network removed and recreated
//! under the same name never gets rules meant for the new one applied to the
//! old one. An idle spare costs one sleeping process; it exits on its own
//! (empty input, nothing applied) when the agent goes away and its stdin
//! closes, and [`NftSpares::discard`] ends it when its network goes.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::netns::{self, NetnsError, NetnsFd};

/// One `nft -f -` waiting for its input.
struct Spare {
    child: Child,
    /// nsfs inode of the namespace it was started in.
    netns_ino: u64,
}

/// The spares, by network namespace name.
#[derive(Default)]
pub struct NftSpares {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    spares: HashMap<String, Spare>,
    /// Bumped by every discard: a spare started before its network went
    /// away is not kept (it would hold the dead namespace and its devices).
    discarded: HashMap<String, u64>,
}

impl Inner {
    fn epoch(&self, name: &str) -> u64 {
        self.discarded.get(name).copied().unwrap_or(0)
    }
}

/// The nsfs inode of a namespace (its identity).
fn inode_of(ns: &NetnsFd) -> Option<u64> {
    ns.inode()
}

fn nft_failed(stderr: String) -> NetnsError {
    NetnsError::Command {
        command: "nft -f -".into(),
        stderr,
    }
}

/// Ends a spare that will not be used and reaps it off the caller's thread.
fn retire(spare: Spare) {
    std::thread::spawn(move || end(spare));
}

/// Ends a spare and waits until it is gone (and its namespace reference with it).
fn end(mut spare: Spare) {
    drop(spare.child.stdin.take());
    let _ = spare.child.kill();
    let _ = spare.child.wait();
}

impl NftSpares {
    /// Applies `ruleset` atomically in the network namespace `name`
    /// (`ip netns exec <name> nft -f -`), through its spare when one is
    /// ready, else by starting `nft` now; then starts the next spare in the
    /// background.
    pub async fn apply(self: &Arc<Self>, name: &str, ruleset: &str) -> Result<(), NetnsError> {
        let ns = NetnsFd::named(name)?;
        let spare = self.take(name, inode_of(&ns));
        let result = match spare {
            Some(spare) => run(spare, ruleset.to_string()).await,
            None => netns::command_in(&ns, "nft", &["-f", "-"], Some(ruleset))
                .await
                .map(drop),
        };
        let spares = Arc::clone(self);
        let name = name.to_string();
        let epoch = self.inner.lock().expect("spares lock").epoch(&name);
        tokio::spawn(async move { spares.refill(&name, ns, epoch).await });
        result
    }

    /// The spare of `name` if it still runs in the namespace `ino`.
    fn take(&self, name: &str, ino: Option<u64>) -> Option<Spare> {
        let mut spare = self
            .inner
            .lock()
            .expect("spares lock")
            .spares
            .remove(name)?;
        let alive = matches!(spare.child.try_wait(), Ok(None));
        if alive && ino.is_some() && ino == Some(spare.netns_ino) {
            Some(spare)
        } else {
            retire(spare);
            None
        }
    }

    /// Starts a spare for `name` unless one is there already, keeping it
    /// only if the network was not discarded since `epoch`.
    async fn refill(&self, name: &str, ns: NetnsFd, epoch: u64) {
        if self
            .inner
            .lock()
            .expect("spares lock")
            .spares
            .contains_key(name)
        {
            return;
        }
        let Some(netns_ino) = inode_of(&ns) else {
            return;
        };
        let started = netns::run_in_async(&ns, || {
            Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        })
        .await;
        let child = match started {
            Ok(Ok(child)) => child,
            Ok(Err(e)) => {
                tracing::debug!(netns = %name, error = %e, "no spare nft started");
                return;
            }
            Err(e) => {
                tracing::debug!(netns = %name, error = %crate::error_chain(&e), "no spare nft started");
                return;
            }
        };
        let spare = Spare { child, netns_ino };
        let mut inner = self.inner.lock().expect("spares lock");
        let unwanted = if inner.epoch(name) != epoch {
            Some(spare)
        } else {
            inner.spares.insert(name.to_string(), spare)
        };
        drop(inner);
        if let Some(unwanted) = unwanted {
            retire(unwanted);
        }
    }

    /// Ends the spare of `name` and waits until it is gone (a killed
    /// process goes at once): its network is going away, and a process
    /// inside a namespace keeps the namespace and its devices (the VXLAN
    /// port, the bridge) alive.
    pub fn discard(&self, name: &str) {
        let spare = {
            let mut inner = self.inner.lock().expect("spares lock");
            *inner.discarded.entry(name.to_string()).or_default() += 1;
            inner.spares.remove(name)
        };
        if let Some(spare) = spare {
            end(spare);
        }
    }
}

/// Feeds `ruleset` to a spare and waits for its verdict.
async fn run(mut spare: Spare, ruleset: String) -> Result<(), NetnsError> {
    let output = tokio::task::spawn_blocking(move || {
        // Input closed (and the child reaped) whatever happens.
        let written = match spare.child.stdin.take() {
            Some(mut stdin) => stdin.write_all(ruleset.as_bytes()),
            None => Ok(()),
        };
        let output = spare.child.wait_with_output();
        written.and(output)
    })
    .await
    .map_err(|_| NetnsError::ThreadPanicked)?
    .map_err(|e| nft_failed(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(nft_failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}
