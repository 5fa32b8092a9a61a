//! The ARP answers a network's bridge gives for remote endpoints
//! ([`privnet_core::fdb::ArpAnswer`]): a permanent neighbour entry on the
//! bridge (`ip neigh replace <ip> lladdr <mac> dev br0 nud permanent`) and an
//! externally learned bridge FDB entry sending the MAC to the VXLAN port
//! (`bridge fdb replace <mac> dev vx… master extern_learn`). The VXLAN port
//! has `neigh_suppress` on ([`super::links::set_overlay_port`]): an ARP
//! request from a container for an address the bridge holds both entries
//! for is answered by the bridge itself and not sent across the mesh, so a
//! container's first packet to another node waits for no ARP exchange over
//! the tunnel. Requests for anything else (no entry yet) are flooded as
//! before. With the suppression, gratuitous ARPs and address probes
//! (sender 0.0.0.0 or sender = target) from local containers stay on their
//! node: every node answers from the agent's entries instead.
//!
//! The FDB entry is `extern_learn`, not `static`: it never ages out, and a
//! frame from the same MAC on a local port (an address that moved here)
//! takes it over at once, as learning does for any dynamic entry; it also
//! sends unicast frames to a remote MAC to the VXLAN port only, where the
//! bridge (no learning on that port) used to flood them to every port.
//! Both kinds of entry are the agent's alone on its bridge (nothing else
//! adds permanent neighbours there or externally learned FDB entries),
//! which is how they are read back.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::fdb::{FdbError, send};
pub use privnet_core::fdb::ArpAnswer;

/// What to change, from the kernel's entries to the desired answers (pure).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArpDiff {
    /// Neighbour entries to delete.
    pub remove_neighbours: Vec<ArpAnswer>,
    /// Neighbour entries to add (or correct).
    pub add_neighbours: Vec<ArpAnswer>,
    /// FDB entries (MACs) to delete.
    pub remove_macs: Vec<[u8; 6]>,
    /// FDB entries (MACs) to add.
    pub add_macs: Vec<[u8; 6]>,
}

impl ArpDiff {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove_neighbours.is_empty()
            && self.add_neighbours.is_empty()
            && self.remove_macs.is_empty()
            && self.add_macs.is_empty()
    }
}

/// The kernel's answers: permanent neighbours on the bridge, externally
/// learned MACs on the VXLAN port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// (address, MAC) of the bridge's permanent neighbours.
    pub neighbours: BTreeSet<ArpAnswer>,
    /// MACs of the VXLAN port's externally learned FDB entries.
    pub macs: BTreeSet<[u8; 6]>,
}

/// The diff from `installed` to `desired` (pure).
pub fn diff(installed: &Installed, desired: &BTreeSet<ArpAnswer>) -> ArpDiff {
    let macs: BTreeSet<[u8; 6]> = desired.iter().map(|a| a.mac).collect();
    ArpDiff {
        remove_neighbours: installed.neighbours.difference(desired).copied().collect(),
        add_neighbours: desired.difference(&installed.neighbours).copied().collect(),
        remove_macs: installed.macs.difference(&macs).copied().collect(),
        add_macs: macs.difference(&installed.macs).copied().collect(),
    }
}

fn neighbour(bridge: u32, answer: &ArpAnswer) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = bridge;
    msg.header.state = NeighbourState::Permanent;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            answer.ip,
        )));
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(answer.mac.to_vec()));
    msg
}

fn bridge_fdb(vxlan: u32, mac: &[u8; 6]) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = vxlan;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Controller | NeighbourFlags::ExtLearned;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    msg
}

fn mac_of(msg: &NeighbourMessage) -> Option<[u8; 6]> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(l.as_slice()).ok(),
        _ => None,
    })
}

fn ip_of(msg: &NeighbourMessage) -> Option<Ipv4Addr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })
}

/// Reads the answers installed on `bridge` and `vxlan` (ifindexes of the
/// namespace `handle` is bound to).
pub async fn read(
    handle: &rtnetlink::Handle,
    bridge: u32,
    vxlan: u32,
) -> Result<Installed, FdbError> {
    let err = |source| FdbError::Netlink {
        action: "read ARP answers",
        source,
    };
    let mut out = Installed::default();
    let mut dump = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute();
    while let Some(msg) = dump.try_next().await.map_err(err)? {
        if msg.header.ifindex == bridge
            && msg.header.state == NeighbourState::Permanent
            && let (Some(ip), Some(mac)) = (ip_of(&msg), mac_of(&msg))
        {
            out.neighbours.insert(ArpAnswer { ip, mac });
        }
    }
    let mut dump = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute();
    while let Some(msg) = dump.try_next().await.map_err(err)? {
        if msg.header.ifindex == vxlan && msg.header.flags.contains(NeighbourFlags::ExtLearned) {
            out.macs.extend(mac_of(&msg));
        }
    }
    Ok(out)
}

/// Makes `desired` the answers of `bridge` and `vxlan`: reads what is
/// installed and changes only the difference; returns it.
pub async fn sync(
    handle: &rtnetlink::Handle,
    bridge: u32,
    vxlan: u32,
    desired: &BTreeSet<ArpAnswer>,
) -> Result<ArpDiff, FdbError> {
    let changes = diff(&read(handle, bridge, vxlan).await?, desired);
    let fail = |action| move |source| FdbError::Netlink { action, source };
    for a in &changes.remove_neighbours {
        let msg = RouteNetlinkMessage::DelNeighbour(neighbour(bridge, a));
        send(handle, msg, 0)
            .await
            .map_err(fail("delete an ARP answer"))?;
    }
    for mac in &changes.remove_macs {
        let msg = RouteNetlinkMessage::DelNeighbour(bridge_fdb(vxlan, mac));
        send(handle, msg, 0)
            .await
            .map_err(fail("delete an ARP answer's FDB entry"))?;
    }
    for mac in &changes.add_macs {
        let msg = RouteNetlinkMessage::NewNeighbour(bridge_fdb(vxlan, mac));
        send(handle, msg, NLM_F_CREATE | NLM_F_REPLACE)
            .await
            .map_err(fail("add an ARP answer's FDB entry"))?;
    }
    for a in &changes.add_neighbours {
        let msg = RouteNetlinkMessage::NewNeighbour(neighbour(bridge, a));
        send(handle, msg, NLM_F_CREATE | NLM_F_REPLACE)
            .await
            .map_err(fail("add an ARP answer"))?;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(last: u8) -> ArpAnswer {
        ArpAnswer {
            ip: Ipv4Addr::new(10, 240, 0, last),
            mac: [6, 0x10, 10, 240, 0, last],
        }
    }

    #[test]
    fn only_the_difference_changes() {
        let installed = Installed {
            neighbours: [a(2), a(3)].into(),
            macs: [a(2).mac, a(3).mac].into(),
        };
        let same: BTreeSet<_> = [a(2), a(3)].into();
        assert!(diff(&installed, &same).is_empty());
        let d = diff(&installed, &[a(3), a(4)].into());
        assert_eq!(d.remove_neighbours, [a(2)]);
        assert_eq!(d.add_neighbours, [a(4)]);
        assert_eq!(d.remove_macs, [a(2).mac]);
        assert_eq!(d.add_macs, [a(4).mac]);
        // A lost FDB entry alone is put back alone.
        let half = Installed {
            neighbours: [a(2)].into(),
            macs: BTreeSet::new(),
        };
        let d = diff(&half, &[a(2)].into());
        assert!(d.add_neighbours.is_empty() && d.remove_neighbours.is_empty());
        assert_eq!(d.add_macs, [a(2).mac]);
    }

    #[test]
    fn messages_are_a_permanent_neighbour_and_an_external_bridge_entry() {
        let n = neighbour(7, &a(5));
        assert_eq!(n.header.family, AddressFamily::Inet);
        assert_eq!(n.header.state, NeighbourState::Permanent);
        assert_eq!((ip_of(&n), mac_of(&n)), (Some(a(5).ip), Some(a(5).mac)));
        let f = bridge_fdb(9, &a(5).mac);
        assert_eq!(
            (f.header.family, f.header.ifindex),
            (AddressFamily::Bridge, 9)
        );
        assert!(f.header.flags.contains(NeighbourFlags::Controller));
        assert!(f.header.flags.contains(NeighbourFlags::ExtLearned));
    }
}
