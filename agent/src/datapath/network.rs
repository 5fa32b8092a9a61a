//! One private network on a node: its own network namespace holding a bridge, the VXLAN
//! port and the gateway address.
//!
//! ```text
//!  agent netns                 network netns "<prefix>-<vni>"
//!  ┌──────────┐   VXLAN UDP    ┌──────────────────────────────────────────────┐
//!  │ wg iface │◄──(socket stays│ vx<vni> ─┐                                    │
//!  │ (VTEP)   │   in agent ns) │          br0 (gateway .1/prefix, gateway MAC) │
//!  └──────────┘                │ veths  ──┘   ip_forward=0                     │
//!                              └──────────────────────────────────────────────┘
//! ```
//!
//! The gateway is the bridge itself: its address is `.1` and its MAC is the network's fixed
//! gateway MAC, identical on every node, so each node answers for the gateway locally. The
//! `bridge privnet-ports` guard (see [`super::guard`]) drops frames with the gateway MAC as
//! source entering from, or as source/destination leaving through, the VXLAN port, so that MAC
//! is never learned or answered across the overlay. With forwarding off and no other
//! interface in the namespace, containers reach nothing outside their network.
//!
//! [`ensure`] adopts what exists (restart safety): it only creates what is missing and fixes
//! what differs (MTU, MAC, master, up, addresses, VXLAN parameters); it never flushes.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::BridgeStpState;
use rtnetlink::{Handle, LinkBridge, LinkVxlan};

use super::guard::{self, GuardError, GuardedPort, NetworkGuard};
use super::links::{self, LinkError};
use super::netns::{self, NetnsError, NetnsFd};

/// Errors of network datapath handling.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A namespace operation failed.
    #[error("failed to prepare the network namespace")]
    Netns(#[from] NetnsError),
    /// A link operation failed.
    #[error("failed to configure a network device")]
    Link(#[from] LinkError),
    /// The guard rules could not be applied.
    #[error("failed to apply the network guard")]
    Guard(#[from] GuardError),
    /// The VXLAN device's FDB could not be read.
    #[error("failed to read the VXLAN FDB")]
    Fdb(#[from] super::fdb::FdbError),
    /// A device the spec relies on is missing.
    #[error("failed to find device {0}")]
    Missing(String),
    /// A spec that cannot be realised.
    #[error("failed to accept network spec: {0}")]
    Invalid(String),
    /// Another VXLAN device of the node's namespace has this VNI on this port.
    #[error(
        "failed to create VXLAN device {device}: another VXLAN device of the node's namespace \
         already has VNI {vni} on UDP port {port}; give privnet another --vxlan-port (chart value \
         vxlan.port) or another --vni-range (vxlan.vniRange)"
    )]
    VniTaken {
        /// privnet's device.
        device: String,
        /// The VNI.
        vni: u32,
        /// The port.
        port: u16,
    },
    /// The VXLAN port is held by a socket that cannot share it.
    #[error(
        "failed to bring up VXLAN device {device}: UDP port {port} is held in the node's \
         namespace by a socket that cannot share it; give privnet another --vxlan-port (chart \
         value vxlan.port)"
    )]
    PortInUse {
        /// privnet's device.
        device: String,
        /// The port.
        port: u16,
    },
}

/// Desired datapath of one private network on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkDatapath {
    /// Name of the network namespace, e.g. `privnet-100`.
    pub netns: String,
    /// VXLAN network identifier (cluster-unique).
    pub vni: u32,
    /// Bridge name inside the namespace, e.g. `br0`.
    pub bridge: String,
    /// VXLAN device name; created in the agent's namespace first, so it must be unique there
    /// ([`vxlan_name`] gives `vx<vni>`).
    pub vxlan: String,
    /// Gateway address with the subnet prefix, e.g. `10.240.0.1/22`.
    pub gateway: Ipv4Net,
    /// Gateway MAC, the same on every node.
    pub gateway_mac: [u8; 6],
    /// MTU of every device of the network.
    pub mtu: u32,
    /// Local VTEP: this node's WireGuard address.
    pub vtep: Ipv4Addr,
    /// VXLAN UDP port (`--vxlan-port`).
    pub vxlan_port: u16,
    /// The WireGuard interface carrying VXLAN.
    pub underlay_dev: String,
    /// How long the VXLAN device's GRO may hold a bulk TCP segment to merge it with the next
    /// ones (`gro_flush_timeout`, ns; 0 = flush after every packet). See [`tune_receive`].
    pub gro_flush_timeout_ns: u32,
}

/// `vx<vni>`: at most 10 characters for a 24-bit VNI, unique per VNI in the agent namespace.
pub fn vxlan_name(vni: u32) -> String {
    format!("vx{vni}")
}

impl NetworkDatapath {
    fn validate(&self) -> Result<(), NetworkError> {
        let bad = |m: &str| Err(NetworkError::Invalid(m.to_string()));
        if self.vxlan.len() > 15 || self.bridge.len() > 15 {
            return bad("device names must be at most 15 characters");
        }
        if self.vni == 0 || self.vni >= 1 << 24 {
            return bad("VNI must be in 1..2^24");
        }
        if self.gateway_mac[0] & 1 == 1 {
            return bad("gateway MAC must be unicast");
        }
        Ok(())
    }

    /// The guard of this network for the given container ports.
    pub fn guard(&self, ports: &[GuardedPort]) -> NetworkGuard {
        NetworkGuard {
            vxlan: self.vxlan.clone(),
            gateway_mac: self.gateway_mac,
            ports: ports.to_vec(),
        }
    }
}

/// Converges the network's datapath on this node; safe to call any number of times.
///
/// `agent_ns` is the agent's own namespace (holding `underlay_dev`), `ports` the container
/// ports currently attached (their guard rules are re-applied atomically).
/// iproute2 equivalent: `ip netns add`, `ip link add br0 type bridge stp_state 0` (VLAN
/// filtering is off by default, and setting it at all fails with EOPNOTSUPP on kernels built
/// without `CONFIG_BRIDGE_VLAN_FILTERING`, like this one), `ip link add vx… type vxlan id VNI local VTEP dstport PORT dev wg
/// nolearning`, `ip link set vx… netns …`, `ip link set vx… master br0`, `bridge link set
/// dev vx… learning off`, `ip addr add GW dev br0`, `sysctl net.ipv4.ip_forward=0`, `nft -f`.
pub async fn ensure(
    agent_ns: &NetnsFd,
    spec: &NetworkDatapath,
    ports: &[GuardedPort],
) -> Result<(), NetworkError> {
    ensure_devices(agent_ns, spec).await?;
    set_ports(spec, ports).await
}

/// [`ensure`] without the guard: namespace, bridge, VXLAN port, gateway address and sysctls,
/// each fixed only where it differs (the repair of a device leaves the guard alone).
pub async fn ensure_devices(
    agent_ns: &NetnsFd,
    spec: &NetworkDatapath,
) -> Result<(), NetworkError> {
    spec.validate()?;
    netns::create(&spec.netns)?;
    let ns = NetnsFd::named(&spec.netns)?;
    let h = netns::handle_in(&ns).await?;

    let lo = links::get(&h, "lo")
        .await?
        .ok_or_else(|| NetworkError::Missing("lo".into()))?;
    if !lo.up {
        links::set_up(&h, lo.index).await?;
    }
    let bridge = ensure_bridge(&h, spec).await?;
    ensure_vxlan(agent_ns, &ns, &h, spec, bridge).await?;
    links::ensure_only_ipv4(&h, bridge, spec.gateway).await?;
    if netns::sysctl_get(&ns, "net/ipv4/ip_forward").await? != "0" {
        netns::sysctl_in(&ns, "net/ipv4/ip_forward", "0").await?;
    }
    // A tuning knob the kernel lacks (no fsopen before 5.2, no br_netfilter
    // sysctls in some sandboxes) costs throughput, not correctness.
    if let Err(e) = tune_receive(&ns, spec).await {
        tracing::warn!(netns = %spec.netns, error = %crate::error_chain(&e), "receive path left untuned");
    }
    Ok(())
}

/// Puts container ports back on the bridge and up (`ip link set <port> master br0 up`);
/// ports that no longer exist are left to their release.
pub async fn reattach_ports(spec: &NetworkDatapath, names: &[String]) -> Result<(), NetworkError> {
    let ns = NetnsFd::named(&spec.netns)?;
    let h = netns::handle_in(&ns).await?;
    let bridge = links::get(&h, &spec.bridge)
        .await?
        .ok_or_else(|| NetworkError::Missing(spec.bridge.clone()))?;
    for name in names {
        let Some(port) = links::get(&h, name).await? else {
            continue;
        };
        if port.controller != Some(bridge.index) {
            links::set_controller(&h, port.index, bridge.index).await?;
        }
        if !port.up {
            links::set_up(&h, port.index).await?;
        }
    }
    Ok(())
}

/// Settings of `br_netfilter` (present only when that module is loaded, as on most
/// Kubernetes nodes) that would run every bridged frame through the IP hooks and conntrack.
pub const BRIDGE_NF_SYSCTLS: [&str; 3] = [
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/bridge/bridge-nf-call-arptables",
];

/// Makes the receive path cheap per packet; both settings are local to the network.
///
/// - `br_netfilter` off in this namespace: the guard is `bridge`-family nftables and needs no
///   IP hooks on bridged frames; with them on, every frame also went through conntrack.
/// - GRO flush timeout on the VXLAN device: the userspace tunnel hands packets to the kernel
///   one `write` at a time, so GRO otherwise flushes after each and every frame then crosses
///   the bridge, the veth and the container's stack alone (and is ACKed alone). Holding bulk
///   TCP segments for a few tens of µs merges them; segments with PSH, and anything GRO does
///   not merge (UDP, ICMP, ARP), still go up at once.
///
/// Each setting is tried on its own; the first failure is returned after all were tried.
pub async fn tune_receive(ns: &NetnsFd, spec: &NetworkDatapath) -> Result<(), NetworkError> {
    let mut first_error = None;
    for key in BRIDGE_NF_SYSCTLS {
        let result = match netns::sysctl_get(ns, key).await {
            Ok(v) if v == "0" => Ok(()),
            Ok(_) => netns::sysctl_in(ns, key, "0").await,
            // No br_netfilter: nothing to turn off.
            Err(NetnsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    let knob = gro_flush_timeout_path(&spec.vxlan);
    let want = spec.gro_flush_timeout_ns.to_string();
    let gro = match netns::sysfs_read_in(ns, &knob).await {
        Ok(v) if v == want => Ok(()),
        Ok(_) => netns::sysfs_write_in(ns, &knob, &want).await,
        Err(e) => Err(e),
    };
    if let Err(e) = gro {
        first_error.get_or_insert(e);
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

/// `class/net/<dev>/gro_flush_timeout`, relative to `/sys`.
pub fn gro_flush_timeout_path(dev: &str) -> String {
    format!("class/net/{dev}/gro_flush_timeout")
}

/// Makes `desired` the live ports of the network's guard incrementally
/// (see [`guard::ports_update`]): one nfnetlink batch of set elements (this
/// is on the ADD path); returns the table afterwards.
pub async fn update_ports(
    spec: &NetworkDatapath,
    table: &guard::PortTable,
    desired: &[GuardedPort],
) -> Result<guard::PortTable, NetworkError> {
    let (change, after) = guard::ports_update(table, desired)?;
    if !change.is_empty() {
        super::nft_elements::apply(&NetnsFd::named(&spec.netns)?, &change)
            .await
            .map_err(|e| NetworkError::Guard(guard::GuardError::Nft(e)))?;
    }
    Ok(after)
}

/// Deletes the retired ports' elements of the network's guard in one transaction.
pub async fn purge_retired_ports(
    spec: &NetworkDatapath,
    table: &guard::PortTable,
) -> Result<(), NetworkError> {
    let change = guard::retire_change(&table.retired)?;
    if !change.is_empty() {
        super::nft_elements::apply(&NetnsFd::named(&spec.netns)?, &change)
            .await
            .map_err(|e| NetworkError::Guard(guard::GuardError::Nft(e)))?;
    }
    Ok(())
}

/// Re-applies the network's guard for a new list of container ports (atomic table swap).
pub async fn set_ports(spec: &NetworkDatapath, ports: &[GuardedPort]) -> Result<(), NetworkError> {
    let ns = NetnsFd::named(&spec.netns)?;
    guard::apply(&ns, &guard::network_ruleset(&spec.guard(ports))?).await?;
    Ok(())
}

/// Puts back the guard's chains that lost or gained rules and its missing
/// set elements, read back now against the rendering for `ports`, in one
/// transaction that touches nothing else (`flush chain` + the chain again,
/// `add element`; see [`super::guard_drift`]).
pub async fn repair_guard_rules(
    spec: &NetworkDatapath,
    ports: &[GuardedPort],
) -> Result<(), NetworkError> {
    let ns = NetnsFd::named(&spec.netns)?;
    let installed = super::observe::installed_ruleset(&ns).await?;
    let rendered = super::guard_drift::parse(&guard::network_ruleset(&spec.guard(ports))?);
    if let Some(text) = super::guard_drift::repair_text(&rendered, &installed) {
        guard::apply(&ns, &text).await?;
    }
    Ok(())
}

async fn ensure_bridge(h: &Handle, spec: &NetworkDatapath) -> Result<u32, NetworkError> {
    let existing = links::get(h, &spec.bridge).await?;
    let state = match existing {
        Some(s) if s.kind.as_deref() == Some("bridge") => s,
        other => {
            if let Some(wrong) = other {
                links::delete(h, wrong.index).await?;
            }
            let msg = LinkBridge::new(&spec.bridge)
                .mtu(spec.mtu)
                .address(spec.gateway_mac.to_vec())
                .stp_state(BridgeStpState::Disabled)
                .build();
            h.link()
                .add(msg)
                .execute()
                .await
                .map_err(links::err("create bridge", &spec.bridge))?;
            links::get(h, &spec.bridge)
                .await?
                .ok_or_else(|| NetworkError::Missing(spec.bridge.clone()))?
        }
    };
    if state.mtu != spec.mtu {
        links::set_mtu(h, state.index, spec.mtu).await?;
    }
    if state.mac != spec.gateway_mac {
        links::set_mac(h, state.index, spec.gateway_mac).await?;
    }
    if !state.up {
        links::set_up(h, state.index).await?;
    }
    Ok(state.index)
}

/// Whether an existing VXLAN device is the one `spec` asks for, on the current underlay
/// device (`lower`: a WireGuard link that was recreated has a new index, and a VXLAN device
/// still bound to the old one sends nothing).
pub fn vxlan_matches(state: &links::LinkState, spec: &NetworkDatapath, lower: Option<u32>) -> bool {
    state.kind.as_deref() == Some("vxlan")
        && state.vxlan == Some((spec.vni, Some(spec.vtep), spec.vxlan_port, false))
        && (lower.is_none() || state.vxlan_lower == lower)
}

/// Index of the underlay (WireGuard) device in the agent namespace, if it exists.
pub async fn underlay_index(
    agent_ns: &NetnsFd,
    spec: &NetworkDatapath,
) -> Result<Option<u32>, NetworkError> {
    let a = netns::handle_in(agent_ns).await?;
    Ok(links::get(&a, &spec.underlay_dev).await?.map(|l| l.index))
}

async fn ensure_vxlan(
    agent_ns: &NetnsFd,
    ns: &NetnsFd,
    h: &Handle,
    spec: &NetworkDatapath,
    bridge: u32,
) -> Result<(), NetworkError> {
    let mut state = links::get(h, &spec.vxlan).await?;
    let lower = underlay_index(agent_ns, spec).await?;
    if let Some(s) = state.as_ref().filter(|s| !vxlan_matches(s, spec, lower)) {
        links::delete(h, s.index).await?;
        state = None;
    }
    let state = match state {
        Some(s) => s,
        None => {
            create_vxlan_in_agent_ns(agent_ns, ns, spec).await?;
            links::get(h, &spec.vxlan)
                .await?
                .ok_or_else(|| NetworkError::Missing(spec.vxlan.clone()))?
        }
    };
    if state.mtu != spec.mtu {
        links::set_mtu(h, state.index, spec.mtu).await?;
    }
    if state.controller != Some(bridge) {
        links::set_controller(h, state.index, bridge).await?;
    }
    let port = links::get(h, &spec.vxlan)
        .await?
        .map(|s| (s.port_learning, s.port_neigh_suppress));
    if port != Some((Some(false), Some(true))) {
        links::set_overlay_port(h, state.index).await?;
    }
    if !state.up {
        links::set_up(h, state.index).await.map_err(|e| {
            if links::failed_with(&e, nix::errno::Errno::EADDRINUSE) {
                NetworkError::PortInUse {
                    device: spec.vxlan.clone(),
                    port: spec.vxlan_port,
                }
            } else {
                e.into()
            }
        })?;
    }
    Ok(())
}

/// Creates the VXLAN device in the agent namespace (so its UDP socket, and thus its underlay,
/// is the WireGuard address there) and moves it into the network namespace.
async fn create_vxlan_in_agent_ns(
    agent_ns: &NetnsFd,
    ns: &NetnsFd,
    spec: &NetworkDatapath,
) -> Result<(), NetworkError> {
    let a = netns::handle_in(agent_ns).await?;
    let wg = links::get(&a, &spec.underlay_dev)
        .await?
        .ok_or_else(|| NetworkError::Missing(spec.underlay_dev.clone()))?;
    // A leftover from an interrupted earlier attempt is not trusted.
    if let Some(stale) = links::get(&a, &spec.vxlan).await? {
        links::delete(&a, stale.index).await?;
    }
    let msg = LinkVxlan::new(&spec.vxlan, spec.vni)
        .dev(wg.index)
        .local(spec.vtep)
        .port(spec.vxlan_port)
        .learning(false)
        .mtu(spec.mtu)
        .build();
    a.link()
        .add(msg)
        .execute()
        .await
        .map_err(links::err("create vxlan", &spec.vxlan))
        .map_err(|e| {
            if links::failed_with(&e, nix::errno::Errno::EEXIST) {
                NetworkError::VniTaken {
                    device: spec.vxlan.clone(),
                    vni: spec.vni,
                    port: spec.vxlan_port,
                }
            } else {
                e.into()
            }
        })?;
    let vx = links::get(&a, &spec.vxlan)
        .await?
        .ok_or_else(|| NetworkError::Missing(spec.vxlan.clone()))?;
    if let Err(e) = links::move_to_netns(&a, vx.index, ns.as_raw_fd()).await {
        let _ = links::delete(&a, vx.index).await;
        return Err(e.into());
    }
    Ok(())
}

/// The VXLAN device's interface index inside the network namespace (for [`super::fdb`]) and a
/// handle bound to that namespace.
pub async fn vxlan_handle(spec: &NetworkDatapath) -> Result<(Handle, u32), NetworkError> {
    let ns = NetnsFd::named(&spec.netns)?;
    let h = netns::handle_in(&ns).await?;
    let vx = links::get(&h, &spec.vxlan)
        .await?
        .ok_or_else(|| NetworkError::Missing(spec.vxlan.clone()))?;
    Ok((h, vx.index))
}

/// A handle in the network's namespace with its bridge's and VXLAN
/// device's ifindexes.
pub async fn bridge_and_vxlan(spec: &NetworkDatapath) -> Result<(Handle, u32, u32), NetworkError> {
    let (h, vx) = vxlan_handle(spec).await?;
    let br = links::get(&h, &spec.bridge)
        .await?
        .ok_or_else(|| NetworkError::Missing(spec.bridge.clone()))?;
    Ok((h, br.index, vx))
}

/// Removes the network from this node (`ip netns del`): the devices inside go with the
/// namespace once nothing else (a DNS server socket, an open [`NetnsFd`]) holds it. Also
/// removes a VXLAN device left in the agent namespace by an interrupted [`ensure`].
pub async fn remove(agent_ns: &NetnsFd, spec: &NetworkDatapath) -> Result<(), NetworkError> {
    // A namespace is destroyed asynchronously once its last reference goes
    // (the kernel's cleanup work, a socket or process still in it): until
    // then its VXLAN device holds (port, VNI) and a network brought back at
    // once failed with "another VXLAN device already has VNI …" (the soak
    // found it). Deleting the device is synchronous.
    if netns::exists(&spec.netns) {
        let h = netns::handle_in(&NetnsFd::named(&spec.netns)?).await?;
        if let Some(vx) = links::get(&h, &spec.vxlan).await? {
            links::delete(&h, vx.index).await?;
        }
    }
    netns::delete(&spec.netns)?;
    let a = netns::handle_in(agent_ns).await?;
    if let Some(stale) = links::get(&a, &spec.vxlan).await?
        && stale.kind.as_deref() == Some("vxlan")
    {
        links::delete(&a, stale.index).await?;
    }
    Ok(())
}

/// Names of the network namespaces that exist with this prefix (what to adopt at start).
pub fn list_networks(prefix: &str) -> Result<Vec<String>, NetworkError> {
    Ok(netns::list(prefix)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_names_derive_from_the_vni() {
        assert_eq!(vxlan_name(16_777_215), "vx16777215");
    }
}
