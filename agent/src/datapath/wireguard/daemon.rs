//! The userspace backend's daemon: `wireguard-go`, started as a separate, detached process
//! (own process group, pid recorded in the state dir) so the tunnel survives agent restarts
//! and `kill -9`; reaped by a thread while the agent lives; stopped only on node teardown.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::super::netns;
use super::{UAPI_DIR, Wireguard, WireguardError};

impl Wireguard {
    /// The pid of the userspace daemon, as recorded when it was started.
    pub fn daemon_pid(&self) -> Option<i32> {
        fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub(super) fn socket_path(&self) -> PathBuf {
        Path::new(UAPI_DIR).join(format!("{}.sock", self.config.ifname))
    }

    fn pid_file(&self) -> PathBuf {
        self.config
            .state_dir
            .join(format!("wireguard-go-{}.pid", self.config.ifname))
    }

    pub(super) async fn uapi_answers(&self) -> bool {
        self.socket_path().exists() && self.read_host().await.is_ok()
    }

    /// `wireguard-go <ifname>` in the agent namespace, detached in its own process group,
    /// in the foreground of that detached process so its pid is the daemon's.
    pub(super) async fn start_daemon(&self) -> Result<(), WireguardError> {
        let ifname = self.config.ifname.clone();
        let fail = |reason: String| WireguardError::Daemon {
            ifname: ifname.clone(),
            reason,
        };
        let binary = [
            "/usr/bin/wireguard-go",
            "/usr/sbin/wireguard-go",
            "/usr/local/bin/wireguard-go",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or(WireguardError::MissingWireguardGo)?;
        let _ = fs::remove_file(self.socket_path());
        let name = ifname.clone();
        let child = netns::run_in_async(&self.ns, move || {
            Command::new(binary)
                .arg(&name)
                .env("WG_PROCESS_FOREGROUND", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
        })
        .await?
        .map_err(|e| fail(e.to_string()))?;
        let pid = child.id();
        // Reap it if it dies while we live; it outlives us otherwise (reparented to init).
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        fs::create_dir_all(&self.config.state_dir).map_err(|e| fail(e.to_string()))?;
        fs::write(self.pid_file(), format!("{pid}\n")).map_err(|e| fail(e.to_string()))?;
        for _ in 0..100 {
            if self.uapi_answers().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(fail("its UAPI socket never answered".into()))
    }

    /// SIGTERM to the recorded daemon (by pid), then its socket and pid file are removed.
    pub(super) async fn stop_daemon(&self) {
        if let Some(pid) = self.daemon_pid() {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok() {
                // Give it up to 3 s to close its tun device and socket.
                for _ in 0..60 {
                    if nix::sys::signal::kill(pid, None).is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let _ = fs::remove_file(self.socket_path());
        let _ = fs::remove_file(self.pid_file());
    }
}
