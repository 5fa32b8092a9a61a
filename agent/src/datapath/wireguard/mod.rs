//! The node's WireGuard interface (one per node) and its peers.
//!
//! Kernel WireGuard when `ip link add … type wireguard` works; otherwise Debian's
//! `wireguard-go`, started as a separate, detached process (own process group, pid recorded
//! in the state dir) so the tunnel survives agent restarts and `kill -9`. An interface whose
//! UAPI socket answers is adopted, never restarted. Configuration goes through
//! defguard_wireguard_rs: `WGApi::<Userspace>` speaks the UAPI socket
//! (`/var/run/wireguard/<ifname>.sock`, shared by all namespaces); its `create_interface` is
//! never called, since that would run boringtun inside the agent.
//!
//! Split by concern: `plan` (the pure peer diff), `key` (the private key file), `daemon`
//! (wireguard-go spawn, reaping, stop), `uapi` (the `WGApi` adapter); the kernel link and the
//! interface's convergence stay here.

mod api;
use api::{fix_key_and_port, sync_peers};
pub use defguard_wireguard_rs::key::Key;
mod daemon;
mod health;
mod key;
mod plan;
mod uapi;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use defguard_wireguard_rs::peer::Peer;
use ipnet::Ipv4Net;
use rtnetlink::LinkWireguard;
use rtnetlink::packet_route::link::LinkMessage;

use super::links::{self, LinkError};
use super::netns::{self, NetnsError, NetnsFd};

pub use key::{
    create_next_key, discard_next_key, key_age, load_next_key, load_or_create_key,
    promote_next_key, rotate_request_file,
};
pub use plan::{PeerPlan, desired_peer, plan_peers};

/// Directory of wireguard-go's UAPI sockets.
pub const UAPI_DIR: &str = "/var/run/wireguard";

/// Errors of WireGuard handling.
#[derive(Debug, thiserror::Error)]
pub enum WireguardError {
    /// The key file could not be read or written.
    #[error("failed to {action} the WireGuard key file {path}")]
    KeyFile {
        /// What was being done.
        action: &'static str,
        /// The key file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file holds no valid key.
    #[error("failed to decode the WireGuard key in {0}")]
    BadKey(String),
    /// `wireguard-go` is not installed.
    #[error("failed to find wireguard-go: install it with `apt-get install -y wireguard-go`")]
    MissingWireguardGo,
    /// The userspace daemon could not be started or never opened its socket.
    #[error("failed to start wireguard-go for {ifname}: {reason}")]
    Daemon {
        /// The interface.
        ifname: String,
        /// Why.
        reason: String,
    },
    /// The WireGuard API refused a request.
    #[error("failed to {action} on WireGuard interface {ifname}: {reason}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The interface.
        ifname: String,
        /// The library's message.
        reason: String,
    },
    /// A namespace operation failed.
    #[error("failed to reach the agent namespace")]
    Netns(#[from] NetnsError),
    /// A link operation failed.
    #[error("failed to configure the WireGuard link")]
    Link(#[from] LinkError),
}

/// Which implementation runs the tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The kernel module.
    Kernel,
    /// `wireguard-go`.
    Userspace,
}

/// How to choose the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// Kernel when it can create a `wireguard` link, else userspace.
    Auto,
    /// Exactly this backend.
    Only(Backend),
}

/// Desired WireGuard interface of this node.
#[derive(Clone, Debug)]
pub struct WireguardConfig {
    /// Interface name (≤ 15 characters, distinct per simulated node: sockets are global).
    pub ifname: String,
    /// UDP listen port.
    pub listen_port: u16,
    /// The node's VTEP with the mesh prefix, e.g. `10.99.0.3/24`.
    pub address: Ipv4Net,
    /// Interface MTU (underlay − 60).
    pub mtu: u32,
    /// Where the key and the daemon pid are kept (e.g. `/var/lib/privnet`).
    pub state_dir: PathBuf,
    /// Backend selection.
    pub backend: BackendChoice,
}

/// A desired peer: another node of the mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshPeer {
    /// The peer's public key (base64).
    pub public_key: String,
    /// Its underlay endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Its VTEP: the only allowed IP (`/32`).
    pub vtep: Ipv4Addr,
    /// Persistent keepalive in seconds.
    pub keepalive: Option<u16>,
    /// An announced next key of the node (see `privnet_core::rotation`): configured with
    /// no allowed IPs and no keepalive, so it can answer a handshake but routes nothing.
    pub standby: bool,
}

/// What the interface reports about a peer (for metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Public key (base64).
    pub public_key: String,
    /// Current endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Time since the last handshake; `None` if there never was one.
    pub last_handshake_age: Option<Duration>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// The node's WireGuard interface, configured and ready.
#[derive(Clone, Debug)]
pub struct Wireguard {
    ns: NetnsFd,
    config: WireguardConfig,
    backend: Backend,
    public_key: String,
}

impl Wireguard {
    /// Converges the interface in `ns` (the agent namespace): adopts or creates it, sets key,
    /// port, address, MTU, up. Peers are left as they are (see [`Wireguard::set_peers`]).
    pub async fn ensure(ns: &NetnsFd, config: WireguardConfig) -> Result<Self, WireguardError> {
        let key = load_or_create_key(&config.state_dir)?;
        let h = netns::handle_in(ns).await?;
        let backend = match (links::get(&h, &config.ifname).await?, config.backend) {
            (Some(l), _) if l.kind.as_deref() == Some("wireguard") => Backend::Kernel,
            (_, BackendChoice::Only(Backend::Userspace)) => Backend::Userspace,
            (_, BackendChoice::Only(Backend::Kernel)) => {
                create_kernel(&h, &config.ifname).await?;
                Backend::Kernel
            }
            (_, BackendChoice::Auto) => match create_kernel(&h, &config.ifname).await {
                Ok(()) => Backend::Kernel,
                Err(_) => Backend::Userspace,
            },
        };
        let wg = Self {
            ns: ns.clone(),
            public_key: key.public_key().to_string(),
            config,
            backend,
        };
        if backend == Backend::Userspace && !wg.uapi_answers().await {
            wg.start_daemon().await?;
        }
        if let Some(fixed) = fix_key_and_port(wg.read_host().await?, &key, wg.config.listen_port) {
            wg.call("configure key and port", move |api| api.write(&fixed))
                .await?;
        }
        let link =
            links::get(&h, &wg.config.ifname)
                .await?
                .ok_or_else(|| WireguardError::Daemon {
                    ifname: wg.config.ifname.clone(),
                    reason: "no link".into(),
                })?;
        if link.mtu != wg.config.mtu {
            links::set_mtu(&h, link.index, wg.config.mtu).await?;
        }
        links::ensure_only_ipv4(&h, link.index, wg.config.address).await?;
        if !link.up {
            links::set_up(&h, link.index).await?;
        }
        Ok(wg)
    }

    /// The node's public key (base64), to publish to the other nodes.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Diff-applies the mesh peers (`wg set <if> peer … allowed-ips VTEP/32 endpoint …`,
    /// `wg set <if> peer … remove`); unchanged peers are not touched. Returns the plan applied.
    pub async fn set_peers(&self, peers: &[MeshPeer]) -> Result<PeerPlan, WireguardError> {
        let desired: Vec<Peer> = peers.iter().map(desired_peer).collect::<Result<_, _>>()?;
        self.call("configure peers", move |api| sync_peers(api, desired))
            .await
    }

    /// Routes to a peer's next key: `wg set <if> peer NEXT allowed-ips VTEP/32 …` (the VTEP
    /// moves to it in one step), then `wg set <if> peer OLD remove`.
    pub async fn promote_standby(&self, peer: &MeshPeer, old: &str) -> Result<(), WireguardError> {
        let routed = desired_peer(&MeshPeer {
            standby: false,
            ..peer.clone()
        })?;
        let old = Key::try_from(old).map_err(|_| WireguardError::BadKey(old.to_string()))?;
        self.call("route to a peer's next key", move |api| {
            api.peer(&routed)?;
            api.unpeer(&old)
        })
        .await
    }

    /// The peers as the interface reports them (`wg show <if> dump`).
    pub async fn read_peers(&self) -> Result<Vec<PeerStatus>, WireguardError> {
        Ok(peers_of(self.read_host().await?, SystemTime::now()))
    }

    /// Stops the tunnel: kills the recorded daemon (by pid) and removes its socket, or deletes
    /// the kernel link. Only for node teardown and tests: agent restarts must not call it.
    pub async fn shutdown(&self) -> Result<(), WireguardError> {
        if self.backend == Backend::Kernel {
            let h = netns::handle_in(&self.ns).await?;
            if let Some(l) = links::get(&h, &self.config.ifname).await? {
                links::delete(&h, l.index).await?;
            }
            return Ok(());
        }
        self.stop_daemon().await;
        Ok(())
    }
}

/// The peers of `ifname` in `ns` as the interface reports them, read only (for
/// `privnet doctor`): the backend is the kernel's when the link is a
/// `wireguard` link, else wireguard-go's UAPI socket.
pub async fn read_peers_in(ns: &NetnsFd, ifname: &str) -> Result<Vec<PeerStatus>, WireguardError> {
    let h = netns::handle_in(ns).await?;
    let backend = match links::get(&h, ifname).await? {
        Some(l) if l.kind.as_deref() == Some("wireguard") => Backend::Kernel,
        _ => Backend::Userspace,
    };
    let host = uapi::call_in(ns, backend, ifname, "read the interface", |api| api.read()).await?;
    Ok(peers_of(host, SystemTime::now()))
}

fn peers_of(host: defguard_wireguard_rs::host::Host, now: SystemTime) -> Vec<PeerStatus> {
    let mut out: Vec<PeerStatus> = host
        .peers
        .into_values()
        .map(|p| PeerStatus {
            public_key: p.public_key.to_string(),
            endpoint: p.endpoint,
            allowed_ips: p.allowed_ips.iter().map(|a| a.to_string()).collect(),
            last_handshake_age: p
                .last_handshake
                .filter(|t| *t > SystemTime::UNIX_EPOCH)
                .map(|t| now.duration_since(t).unwrap_or_default()),
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
        })
        .collect();
    out.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    out
}

/// The rtnetlink message of `ip link add <ifname> type wireguard`.
fn kernel_link(ifname: &str) -> LinkMessage {
    LinkWireguard::new(ifname).build()
}

/// `ip link add <ifname> type wireguard`.
async fn create_kernel(h: &rtnetlink::Handle, ifname: &str) -> Result<(), LinkError> {
    h.link()
        .add(kernel_link(ifname))
        .execute()
        .await
        .map_err(links::err("create wireguard link", ifname))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_link_is_a_wireguard_link_of_that_name() {
        use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
        let msg = kernel_link("pnwg1");
        assert!(
            msg.attributes
                .contains(&LinkAttribute::IfName("pnwg1".into()))
        );
        assert!(msg.attributes.iter().any(|a| matches!(
            a,
            LinkAttribute::LinkInfo(infos) if infos.contains(&LinkInfo::Kind(InfoKind::Wireguard))
        )));
        // Control: another name is not matched.
        assert!(
            !msg.attributes
                .contains(&LinkAttribute::IfName("pnwg2".into()))
        );
    }
}
