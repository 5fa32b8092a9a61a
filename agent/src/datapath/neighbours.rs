//! Living next to the node's primary CNI: find, before touching anything,
//! whether privnet's VXLAN port/VNIs or its WireGuard port are already taken
//! in the node's namespace, and say which flag to change.
//!
//! The kernel refuses a second VXLAN device with the same VNI on the same
//! UDP port in a namespace ("A VXLAN device with the specified VNI already
//! exists"), and a port held by an ordinary socket makes the device (or the
//! WireGuard interface) fail to come up. Found late, either is a network that
//! silently never works; found here, it is one line naming the other party.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;

use super::guard::NodeGuard;
use super::links::{self, LinkError};
use super::netns::{self, NetnsError, NetnsFd};

/// A clash with something else on the node.
#[derive(Debug, thiserror::Error)]
pub enum NeighbourError {
    /// Another VXLAN device uses one of privnet's VNIs on privnet's port.
    #[error(
        "failed to start next to VXLAN device {device}: it uses VNI {vni} on UDP port {port}, \
         which is privnet's --vxlan-port with a VNI in its --vni-range {first}-{last}; give \
         privnet another --vxlan-port (chart value vxlan.port) or, on the controller and the \
         agents alike, another --vni-range (vxlan.vniRange)"
    )]
    VniTaken {
        /// The other device.
        device: String,
        /// Its VNI.
        vni: u32,
        /// The shared port.
        port: u16,
        /// privnet's range.
        first: u32,
        /// privnet's range.
        last: u32,
    },
    /// The WireGuard port is held by another socket.
    #[error(
        "failed to start: UDP port {port} (privnet's --wg-port) is already in use in the node's \
         namespace by another program; give privnet another --wg-port (chart value \
         wireguard.port)"
    )]
    WireguardPortInUse {
        /// The port.
        port: u16,
    },
    /// The namespace could not be inspected.
    #[error("failed to inspect the node's namespace")]
    Netns(#[from] NetnsError),
    /// The links could not be listed.
    #[error("failed to list the node's VXLAN devices")]
    Links(#[from] LinkError),
}

/// A VXLAN device of the node's namespace: name, VNI, UDP port, local address.
pub type VxlanDevice<'a> = (&'a str, u32, u16, Option<Ipv4Addr>);

/// The first VXLAN device (name, VNI) of `devices` that clashes with
/// privnet's port and VNIs. Devices on other ports never clash: the kernel
/// tells VXLAN devices apart by (port, VNI). privnet's own (local address a
/// VTEP of `mesh`: a leftover of an interrupted start) are not a clash.
pub fn vni_clash<'a>(
    devices: impl IntoIterator<Item = VxlanDevice<'a>>,
    port: u16,
    vnis: &RangeInclusive<u32>,
    mesh: Ipv4Net,
) -> Option<(&'a str, u32)> {
    devices
        .into_iter()
        .filter(|(_, _, _, local)| !local.is_some_and(|l| mesh.contains(&l)))
        .find(|(_, vni, p, _)| *p == port && vnis.contains(vni))
        .map(|(name, vni, _, _)| (name, vni))
}

/// Checks the node's namespace `agent_ns` before the agent creates anything:
/// no foreign VXLAN device on the guard's port with one of its VNIs, and,
/// unless privnet's WireGuard interface already exists (a restart: the port
/// is its own), nothing bound to `wg_port`.
pub async fn check(
    agent_ns: &NetnsFd,
    guard: &NodeGuard,
    wg_port: u16,
) -> Result<(), NeighbourError> {
    let (vxlan_port, vnis, wg_ifname) = (guard.vxlan_port, &guard.vnis, guard.wg_ifname.as_str());
    let h = netns::handle_in(agent_ns).await?;
    let devices = links::vxlans(&h).await?;
    let found = devices.iter().filter_map(|(name, s)| {
        s.vxlan
            .map(|(vni, local, port, _)| (name.as_str(), vni, port, local))
    });
    if let Some((device, vni)) = vni_clash(found, vxlan_port, vnis, guard.mesh) {
        return Err(NeighbourError::VniTaken {
            device: device.to_string(),
            vni,
            port: vxlan_port,
            first: *vnis.start(),
            last: *vnis.end(),
        });
    }
    if links::get(&h, wg_ifname).await?.is_none() {
        let bound = netns::run_in_async(agent_ns, move || {
            std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, wg_port)).map(drop)
        })
        .await?;
        if matches!(&bound, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse) {
            return Err(NeighbourError::WireguardPortInUse { port: wg_port });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_privnets_port_with_privnets_vnis_clashes() {
        let vnis = 1_048_576..=16_777_215;
        let mesh: Ipv4Net = "198.19.0.0/16".parse().unwrap();
        let underlay = Some(Ipv4Addr::new(192, 168, 1, 10));
        // Calico VXLAN (4789/4096) and Flannel (8472/1) next to privnet's defaults.
        let node = [
            ("vxlan.calico", 4096, 4789, underlay),
            ("flannel.1", 1, 8472, underlay),
        ];
        assert_eq!(vni_clash(node, 4796, &vnis, mesh), None);
        // Same port, VNIs outside the range: they share the socket, no clash.
        assert_eq!(vni_clash(node, 4789, &vnis, mesh), None);
        // A range that takes Calico's VNI on Calico's port.
        assert_eq!(
            vni_clash(node, 4789, &(4096..=5000), mesh),
            Some(("vxlan.calico", 4096))
        );
        // privnet's own leftover (local address a VTEP) is not a neighbour.
        let own = [(
            "vx1048576",
            1_048_576,
            4796,
            Some(Ipv4Addr::new(198, 19, 0, 1)),
        )];
        assert_eq!(vni_clash(own, 4796, &vnis, mesh), None);
        let foreign = [("vx1048576", 1_048_576, 4796, underlay)];
        assert_eq!(
            vni_clash(foreign, 4796, &vnis, mesh),
            Some(("vx1048576", 1_048_576))
        );
    }
}
