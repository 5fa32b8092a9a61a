//! The UAPI/netlink adapter: the few operations the agent needs, over both
//! `WGApi` flavours (`Kernel` speaks generic netlink, `Userspace` the
//! wireguard-go socket under `/var/run/wireguard`), always run on a thread
//! inside the agent namespace.

use defguard_wireguard_rs::error::WireguardInterfaceError;
use defguard_wireguard_rs::host::Host;
use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::{Kernel, Userspace, WGApi};

use super::super::netns;
use super::api::{KernelOps, WgOps};
use super::{Backend, Wireguard, WireguardError};

impl Wireguard {
    /// Switches the userspace interface to `key` and nothing else (`wg set <if> private-key
    /// …`): wireguard-go's `SetPrivateKey` expires every peer's sending keypairs (new
    /// handshakes start, with the new key, on the next packet) and keeps their receiving
    /// ones, so what peers still send on the old sessions arrives. The library's host write
    /// would send `replace_peers=true` (every session torn down), so this is one line over the
    /// UAPI socket.
    pub async fn switch_key(&mut self, key: &Key) -> Result<(), WireguardError> {
        let request = format!("set=1\nprivate_key={}\n\n", key.to_lower_hex());
        let path = self.socket_path();
        let ifname = self.config.ifname.clone();
        let reply = tokio::task::spawn_blocking(move || uapi_request(&path, &request))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        match reply {
            Ok(reply) if reply.lines().any(|l| l == "errno=0") => {
                self.public_key = key.public_key().to_string();
                Ok(())
            }
            Ok(reply) => Err(WireguardError::Api {
                action: "switch the private key",
                ifname,
                reason: reply.trim().replace('\n', " "),
            }),
            Err(e) => Err(WireguardError::Api {
                action: "switch the private key",
                ifname,
                reason: e.to_string(),
            }),
        }
    }

    pub(super) async fn read_host(&self) -> Result<Host, WireguardError> {
        self.call("read the interface", |api| api.read()).await
    }

    /// Runs `f` against the right `WGApi` on a thread inside the agent namespace (the kernel
    /// API speaks generic netlink, bound to the caller's namespace).
    pub(super) async fn call<R: Send + 'static>(
        &self,
        action: &'static str,
        f: impl FnOnce(&dyn WgOps) -> Result<R, WireguardInterfaceError> + Send + 'static,
    ) -> Result<R, WireguardError> {
        call_in(&self.ns, self.backend, &self.config.ifname, action, f).await
    }
}

/// Runs `f` against the `WGApi` of `backend` for `ifname`, on a thread inside `ns`.
pub(super) async fn call_in<R: Send + 'static>(
    ns: &netns::NetnsFd,
    backend: Backend,
    ifname: &str,
    action: &'static str,
    f: impl FnOnce(&dyn WgOps) -> Result<R, WireguardInterfaceError> + Send + 'static,
) -> Result<R, WireguardError> {
    let (ifname, name) = (ifname.to_string(), ifname.to_string());
    netns::run_in_async(ns, move || match backend {
        Backend::Kernel => f(&KernelOps(WGApi::<Kernel>::new(ifname)?)),
        Backend::Userspace => f(&WGApi::<Userspace>::new(ifname)?),
    })
    .await?
    .map_err(api_err(action, &name))
}

fn api_err(
    action: &'static str,
    ifname: &str,
) -> impl FnOnce(WireguardInterfaceError) -> WireguardError + use<> {
    let ifname = ifname.to_string();
    move |e| WireguardError::Api {
        action,
        ifname,
        reason: e.to_string(),
    }
}

/// One UAPI exchange on wireguard-go's socket: the request, then its reply up to the blank line.
fn uapi_request(path: &std::path::Path, request: &str) -> std::io::Result<String> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    stream.write_all(request.as_bytes())?;
    let mut reply = String::new();
    let mut lines = std::io::BufReader::new(stream).lines();
    while let Some(line) = lines.next().transpose()? {
        if line.is_empty() {
            break;
        }
        reply.push_str(&line);
        reply.push('\n');
    }
    Ok(reply)
}
