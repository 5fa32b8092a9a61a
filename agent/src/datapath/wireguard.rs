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
//! The private key is generated on first start into `<state_dir>/wireguard.key` (created 0600
//! before any byte is written, then renamed into place) and never logged.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use defguard_wireguard_rs::host::Host;
use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::net::IpAddrMask;
use defguard_wireguard_rs::peer::Peer;
use defguard_wireguard_rs::{Kernel, Userspace, WGApi};
use ipnet::Ipv4Net;
use rtnetlink::LinkWireguard;
use rtnetlink::packet_route::link::LinkMessage;

use super::links::{self, LinkError};

mod api;
use super::netns::{self, NetnsError, NetnsFd};
use api::{KernelOps, WgOps, fix_key_and_port, sync_peers};

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

/// Peers to (re)configure and to remove; unchanged peers appear in neither.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PeerPlan {
    /// Peers added or whose endpoint/allowed IPs/keepalive differ (updated in place).
    pub configure: Vec<Key>,
    /// Peers no longer wanted.
    pub remove: Vec<Key>,
}

fn desired_peer(p: &MeshPeer) -> Result<Peer, WireguardError> {
    let key = Key::try_from(p.public_key.as_str())
        .map_err(|_| WireguardError::BadKey(p.public_key.clone()))?;
    let mut peer = Peer::new(key);
    peer.endpoint = p.endpoint;
    peer.persistent_keepalive_interval = p.keepalive;
    peer.allowed_ips = vec![IpAddrMask::new(IpAddr::V4(p.vtep), 32)];
    Ok(peer)
}

/// The pure peer diff: compares endpoint (when one is wanted), allowed IPs and keepalive.
pub fn plan_peers(current: &HashMap<Key, Peer>, desired: &[Peer]) -> PeerPlan {
    let mut plan = PeerPlan::default();
    for want in desired {
        let same = current.get(&want.public_key).is_some_and(|have| {
            (want.endpoint.is_none() || have.endpoint == want.endpoint)
                && have.allowed_ips == want.allowed_ips
                && have.persistent_keepalive_interval.unwrap_or(0)
                    == want.persistent_keepalive_interval.unwrap_or(0)
        });
        if !same {
            plan.configure.push(want.public_key.clone());
        }
    }
    for key in current.keys() {
        if !desired.iter().any(|p| &p.public_key == key) {
            plan.remove.push(key.clone());
        }
    }
    plan.remove.sort_by_key(|k| k.to_string());
    plan
}

/// Reads the private key from `<state_dir>/wireguard.key`, generating it on first use.
pub fn load_or_create_key(state_dir: &Path) -> Result<Key, WireguardError> {
    let path = state_dir.join("wireguard.key");
    let shown = path.display().to_string();
    let io = |action| {
        let shown = shown.clone();
        move |source| WireguardError::KeyFile {
            action,
            path: shown,
            source,
        }
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .map_err(io("restrict"))?;
            return Key::try_from(text.trim()).map_err(|_| WireguardError::BadKey(shown.clone()));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("read")(e)),
        Err(_) => {}
    }
    fs::create_dir_all(state_dir).map_err(io("create the directory of"))?;
    let key = Key::generate();
    let tmp = state_dir.join(format!(".wireguard.key.{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create"))?;
    file.write_all(format!("{key}\n").as_bytes())
        .map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    fs::rename(&tmp, &path).map_err(io("rename"))?;
    Ok(key)
}

fn api_err(
    action: &'static str,
    ifname: &str,
) -> impl FnOnce(defguard_wireguard_rs::error::WireguardInterfaceError) -> WireguardError + use<> {
    let ifname = ifname.to_string();
    move |e| WireguardError::Api {
        action,
        ifname,
        reason: e.to_string(),
    }
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

    /// The peers as the interface reports them (`wg show <if> dump`).
    pub async fn read_peers(&self) -> Result<Vec<PeerStatus>, WireguardError> {
        let now = SystemTime::now();
        let mut out: Vec<PeerStatus> = self
            .read_host()
            .await?
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
        Ok(out)
    }

    /// The pid of the userspace daemon, as recorded when it was started.
    pub fn daemon_pid(&self) -> Option<i32> {
        fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
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
        Ok(())
    }

    fn socket_path(&self) -> PathBuf {
        Path::new(UAPI_DIR).join(format!("{}.sock", self.config.ifname))
    }

    fn pid_file(&self) -> PathBuf {
        self.config
            .state_dir
            .join(format!("wireguard-go-{}.pid", self.config.ifname))
    }

    async fn uapi_answers(&self) -> bool {
        self.socket_path().exists() && self.read_host().await.is_ok()
    }

    async fn read_host(&self) -> Result<Host, WireguardError> {
        self.call("read the interface", |api| api.read()).await
    }

    /// Runs `f` against the right `WGApi` on a thread inside the agent namespace (the kernel
    /// API speaks generic netlink, bound to the caller's namespace).
    async fn call<R: Send + 'static>(
        &self,
        action: &'static str,
        f: impl FnOnce(&dyn WgOps) -> Result<R, defguard_wireguard_rs::error::WireguardInterfaceError>
        + Send
        + 'static,
    ) -> Result<R, WireguardError> {
        let (backend, ifname) = (self.backend, self.config.ifname.clone());
        let name = ifname.clone();
        netns::run_in_async(&self.ns, move || match backend {
            Backend::Kernel => f(&KernelOps(WGApi::<Kernel>::new(ifname)?)),
            Backend::Userspace => f(&WGApi::<Userspace>::new(ifname)?),
        })
        .await?
        .map_err(api_err(action, &name))
    }

    /// `wireguard-go <ifname>` in the agent namespace, detached in its own process group,
    /// in the foreground of that detached process so its pid is the daemon's.
    async fn start_daemon(&self) -> Result<(), WireguardError> {
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

    fn peer(n: u8, port: u16) -> Peer {
        desired_peer(&MeshPeer {
            public_key: Key::new([n; 32]).to_string(),
            endpoint: Some(SocketAddr::from(([192, 0, 2, n], port))),
            vtep: Ipv4Addr::new(10, 99, 0, n),
            keepalive: Some(25),
        })
        .unwrap()
    }

    #[test]
    fn unchanged_peers_are_not_reconfigured() {
        let current: HashMap<Key, Peer> = [(Key::new([1; 32]), peer(1, 51820))].into();
        assert_eq!(plan_peers(&current, &[peer(1, 51820)]), PeerPlan::default());
    }

    #[test]
    fn changed_new_and_gone_peers_are_planned() {
        let current: HashMap<Key, Peer> = [
            (Key::new([1; 32]), peer(1, 51820)),
            (Key::new([3; 32]), peer(3, 51820)),
        ]
        .into();
        let plan = plan_peers(&current, &[peer(1, 51821), peer(2, 51820)]);
        assert_eq!(plan.configure, vec![Key::new([1; 32]), Key::new([2; 32])]);
        assert_eq!(plan.remove, vec![Key::new([3; 32])]);
    }

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

    #[test]
    fn allowed_ips_are_the_vtep_only() {
        assert_eq!(
            peer(7, 1).allowed_ips,
            vec![IpAddrMask::new(IpAddr::V4(Ipv4Addr::new(10, 99, 0, 7)), 32)]
        );
    }

    #[test]
    fn key_is_created_private_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_key(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join("wireguard.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_key(dir.path()).unwrap(), first);
        fs::write(dir.path().join("wireguard.key"), "garbage").unwrap();
        assert!(matches!(
            load_or_create_key(dir.path()),
            Err(WireguardError::BadKey(_))
        ));
    }
}
