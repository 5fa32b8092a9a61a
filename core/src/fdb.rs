//! Desired VXLAN forwarding database of one network on one node.
//!
//! The VXLAN device runs `nolearning`: the agent writes every entry. An
//! all-zero MAC entry per remote VTEP makes broadcast/unknown traffic flood
//! to every other node hosting the network (`bridge fdb append
//! 00:00:00:00:00:00 dev vx dst <vtep>`); a unicast entry per remote
//! endpoint sends its frames straight to its node. Nothing for local
//! endpoints: the bridge knows them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use thiserror::Error;

use super::mac::format_mac;

/// The flood (broadcast, unknown unicast, multicast) MAC.
pub const FLOOD_MAC: [u8; 6] = [0; 6];

/// One `bridge fdb` entry on the VXLAN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdbEntry {
    /// Destination MAC; [`FLOOD_MAC`] for flooding.
    pub mac: [u8; 6],
    /// VTEP of the node to send to.
    pub dst: Ipv4Addr,
}

impl FdbEntry {
    /// A flood entry towards `dst`.
    pub fn flood(dst: Ipv4Addr) -> Self {
        Self {
            mac: FLOOD_MAC,
            dst,
        }
    }

    /// Whether this is a flood (all-zero MAC) entry.
    pub fn is_flood(&self) -> bool {
        self.mac == FLOOD_MAC
    }
}

/// An endpoint of the network and the node it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEndpoint {
    /// The endpoint's MAC.
    pub mac: [u8; 6],
    /// Its address.
    pub ip: Ipv4Addr,
    /// Name of the node hosting it.
    pub node: String,
}

/// An ARP answer the local bridge gives for a remote endpoint, so a
/// container's first packet to it does not wait for an ARP exchange across
/// the mesh: a permanent neighbour entry on the bridge (address → MAC) and a
/// bridge FDB entry sending the MAC to the VXLAN port, whose
/// `neigh_suppress` makes the bridge reply from its neighbour table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArpAnswer {
    /// The remote endpoint's address.
    pub ip: Ipv4Addr,
    /// Its MAC.
    pub mac: [u8; 6],
}

/// The ARP answers for `self_node`: one per endpoint on another node.
/// Validity (unicast MACs, no MAC on two nodes) is [`desired_fdb`]'s to
/// check: both come from the same endpoints.
pub fn arp_answers(self_node: &str, endpoints: &[RemoteEndpoint]) -> BTreeSet<ArpAnswer> {
    endpoints
        .iter()
        .filter(|e| e.node != self_node)
        .map(|e| ArpAnswer {
            ip: e.ip,
            mac: e.mac,
        })
        .collect()
}

/// Errors of FDB computation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FdbError {
    /// An endpoint's node does not host the network (no known VTEP).
    #[error(
        "failed to compute FDB: endpoint {} is on node {node}, which has no VTEP for this network",
        format_mac(mac)
    )]
    UnknownNode {
        /// The endpoint's MAC.
        mac: [u8; 6],
        /// Its node.
        node: String,
    },
    /// The same MAC is reported on two nodes.
    #[error(
        "failed to compute FDB: MAC {} is on both {first} and {second}",
        format_mac(mac)
    )]
    DuplicateMac {
        /// The MAC.
        mac: [u8; 6],
        /// First node.
        first: String,
        /// Second node.
        second: String,
    },
    /// An endpoint MAC is zero or multicast.
    #[error(
        "failed to compute FDB: endpoint MAC {} on {node} is not unicast",
        format_mac(mac)
    )]
    NotUnicast {
        /// The MAC.
        mac: [u8; 6],
        /// Its node.
        node: String,
    },
}

/// Desired entries for `self_node`: `hosts` maps every node hosting the
/// network to its VTEP; `endpoints` lists the network's endpoints (local
/// ones are allowed and skipped).
pub fn desired_fdb(
    self_node: &str,
    hosts: &BTreeMap<String, Ipv4Addr>,
    endpoints: &[RemoteEndpoint],
) -> Result<BTreeSet<FdbEntry>, FdbError> {
    let mut entries: BTreeSet<FdbEntry> = hosts
        .iter()
        .filter(|(node, _)| *node != self_node)
        .map(|(_, vtep)| FdbEntry {
            mac: FLOOD_MAC,
            dst: *vtep,
        })
        .collect();
    let mut seen: BTreeMap<[u8; 6], &str> = BTreeMap::new();
    for ep in endpoints {
        if ep.mac == FLOOD_MAC || ep.mac[0] & 1 == 1 {
            return Err(FdbError::NotUnicast {
                mac: ep.mac,
                node: ep.node.clone(),
            });
        }
        if let Some(first) = seen.insert(ep.mac, &ep.node)
            && first != ep.node
        {
            return Err(FdbError::DuplicateMac {
                mac: ep.mac,
                first: first.to_owned(),
                second: ep.node.clone(),
            });
        }
        if ep.node == self_node {
            continue;
        }
        let dst = *hosts.get(&ep.node).ok_or_else(|| FdbError::UnknownNode {
            mac: ep.mac,
            node: ep.node.clone(),
        })?;
        entries.insert(FdbEntry { mac: ep.mac, dst });
    }
    Ok(entries)
}

/// `(to_add, to_remove)` from current to desired. Apply removals first: a
/// moved MAC appears in both with different destinations.
pub fn diff(
    current: &BTreeSet<FdbEntry>,
    desired: &BTreeSet<FdbEntry>,
) -> (BTreeSet<FdbEntry>, BTreeSet<FdbEntry>) {
    (
        desired.difference(current).copied().collect(),
        current.difference(desired).copied().collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vtep(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(100, 64, 0, i)
    }

    fn hosts() -> BTreeMap<String, Ipv4Addr> {
        [("a", 1), ("b", 2), ("c", 3)]
            .into_iter()
            .map(|(n, i)| (n.to_string(), vtep(i)))
            .collect()
    }

    fn ep(last: u8, node: &str) -> RemoteEndpoint {
        RemoteEndpoint {
            ip: Ipv4Addr::new(10, 240, 0, last),
            mac: [6, 0, 10, 240, 0, last],
            node: node.into(),
        }
    }

    #[test]
    fn flood_to_remote_vteps_and_unicast_to_remote_endpoints() {
        let eps = [ep(2, "a"), ep(3, "b"), ep(4, "c"), ep(5, "b")];
        let got = desired_fdb("a", &hosts(), &eps).unwrap();
        let want: BTreeSet<FdbEntry> = [
            FdbEntry {
                mac: FLOOD_MAC,
                dst: vtep(2),
            },
            FdbEntry {
                mac: FLOOD_MAC,
                dst: vtep(3),
            },
            FdbEntry {
                mac: ep(3, "b").mac,
                dst: vtep(2),
            },
            FdbEntry {
                mac: ep(5, "b").mac,
                dst: vtep(2),
            },
            FdbEntry {
                mac: ep(4, "c").mac,
                dst: vtep(3),
            },
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
        assert!(got.iter().all(|e| e.dst != vtep(1)), "never the local node");
    }

    #[test]
    fn alone_on_the_network_means_empty() {
        let only_a: BTreeMap<_, _> = [("a".to_string(), vtep(1))].into_iter().collect();
        assert!(desired_fdb("a", &only_a, &[ep(2, "a")]).unwrap().is_empty());
    }

    #[test]
    fn arp_answers_cover_the_remote_endpoints_only() {
        let answers = arp_answers("a", &[ep(2, "a"), ep(3, "b"), ep(4, "c")]);
        let ips: Vec<Ipv4Addr> = answers.iter().map(|a| a.ip).collect();
        assert_eq!(
            ips,
            [Ipv4Addr::new(10, 240, 0, 3), Ipv4Addr::new(10, 240, 0, 4)]
        );
        assert!(answers.iter().all(|a| a.mac[5] == a.ip.octets()[3]));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            desired_fdb("a", &hosts(), &[ep(2, "zz")]),
            Err(FdbError::UnknownNode { node, .. }) if node == "zz"
        ));
        assert!(matches!(
            desired_fdb("a", &hosts(), &[ep(2, "b"), ep(2, "c")]),
            Err(FdbError::DuplicateMac { .. })
        ));
        let multicast = RemoteEndpoint {
            mac: [1, 0, 0x5e, 0, 0, 1],
            ip: Ipv4Addr::new(10, 240, 0, 9),
            node: "b".into(),
        };
        assert!(matches!(
            desired_fdb("a", &hosts(), &[multicast]),
            Err(FdbError::NotUnicast { .. })
        ));
    }

    #[test]
    fn diff_handles_moved_mac() {
        let before = desired_fdb("a", &hosts(), &[ep(3, "b")]).unwrap();
        let after = desired_fdb("a", &hosts(), &[ep(3, "c")]).unwrap();
        let (add, remove) = diff(&before, &after);
        assert_eq!(
            add,
            [FdbEntry {
                mac: ep(3, "c").mac,
                dst: vtep(3)
            }]
            .into_iter()
            .collect()
        );
        assert_eq!(
            remove,
            [FdbEntry {
                mac: ep(3, "b").mac,
                dst: vtep(2)
            }]
            .into_iter()
            .collect()
        );
        let (add, remove) = diff(&after, &after);
        assert!(add.is_empty() && remove.is_empty());
    }
}
