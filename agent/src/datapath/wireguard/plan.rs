//! The pure peer plan: the desired mesh peers against what the interface
//! reports, diffed by `privnet_core::mesh::diff_peers` (the one, tested,
//! peer diff). This module only translates defguard's `Peer` to and from
//! the core's `WgPeer`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::net::IpAddrMask;
use defguard_wireguard_rs::peer::Peer;
use ipnet::Ipv4Net;
use privnet_core::mesh::{WgPeer, diff_peers};

use super::{MeshPeer, WireguardError};

/// Stands for "no endpoint known" on the interface: no desired peer has it.
const NO_ENDPOINT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
/// Stands for an allowed IP privnet never sets (IPv6): no desired peer has it,
/// so a peer carrying one is rewritten.
const FOREIGN_ALLOWED_IP: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0);

/// Peers to (re)configure and to remove; unchanged peers appear in neither.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PeerPlan {
    /// Peers added or whose endpoint/allowed IPs/keepalive differ (updated in place),
    /// in the order they were desired.
    pub configure: Vec<Key>,
    /// Peers no longer wanted.
    pub remove: Vec<Key>,
}

/// The `Peer` configured for one mesh peer: its VTEP /32 is the only allowed IP (none for
/// a standby key).
pub fn desired_peer(p: &MeshPeer) -> Result<Peer, WireguardError> {
    let key = Key::try_from(p.public_key.as_str())
        .map_err(|_| WireguardError::BadKey(p.public_key.clone()))?;
    let mut peer = Peer::new(key);
    peer.endpoint = p.endpoint;
    if !p.standby {
        peer.persistent_keepalive_interval = p.keepalive;
        peer.allowed_ips = vec![IpAddrMask::new(IpAddr::V4(p.vtep), 32)];
    }
    Ok(peer)
}

/// The peer diff: endpoint (when one is wanted), allowed IPs (as a set) and keepalive (0 is off).
pub fn plan_peers(current: &HashMap<Key, Peer>, desired: &[Peer]) -> PeerPlan {
    let have: Vec<WgPeer> = current.values().map(|p| as_wg(p, None)).collect();
    let want: Vec<WgPeer> = desired
        .iter()
        // A desired peer without an endpoint accepts whatever the interface has.
        .map(|p| as_wg(p, current.get(&p.public_key).and_then(|c| c.endpoint)))
        .collect();
    let diff = diff_peers(&have, &want);
    let changed: HashSet<&str> = diff
        .add
        .iter()
        .chain(&diff.update)
        .map(|p| p.public_key.as_str())
        .collect();
    let configure = desired
        .iter()
        .filter(|p| changed.contains(p.public_key.to_string().as_str()))
        .map(|p| p.public_key.clone())
        .collect();
    let remove = diff
        .remove
        .iter()
        .filter_map(|k| current.keys().find(|c| c.to_string() == *k).cloned())
        .collect();
    PeerPlan { configure, remove }
}

fn as_wg(p: &Peer, fallback_endpoint: Option<SocketAddr>) -> WgPeer {
    WgPeer {
        public_key: p.public_key.to_string(),
        endpoint: p.endpoint.or(fallback_endpoint).unwrap_or(NO_ENDPOINT),
        allowed_ips: p
            .allowed_ips
            .iter()
            .map(|a| match a.address {
                IpAddr::V4(ip) => Ipv4Net::new(ip, a.cidr).unwrap_or(FOREIGN_ALLOWED_IP),
                IpAddr::V6(_) => FOREIGN_ALLOWED_IP,
            })
            .collect(),
        persistent_keepalive: p.persistent_keepalive_interval,
    }
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
            standby: false,
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
    fn what_the_interface_reports_differently_but_means_the_same_is_unchanged() {
        let mut want = peer(1, 51820);
        want.persistent_keepalive_interval = None;
        let mut have = want.clone();
        have.persistent_keepalive_interval = Some(0);
        let current: HashMap<Key, Peer> = [(Key::new([1; 32]), have.clone())].into();
        assert_eq!(plan_peers(&current, &[want.clone()]), PeerPlan::default());
        // No endpoint wanted: the interface's is fine.
        let mut roaming = want.clone();
        roaming.endpoint = None;
        assert_eq!(plan_peers(&current, &[roaming]), PeerPlan::default());
        // Positive control: an extra (IPv6) allowed IP is a change.
        have.allowed_ips
            .push(IpAddrMask::new("fd00::1".parse().unwrap(), 128));
        let current: HashMap<Key, Peer> = [(Key::new([1; 32]), have)].into();
        assert_eq!(
            plan_peers(&current, &[want]).configure,
            vec![Key::new([1; 32])]
        );
    }

    #[test]
    fn allowed_ips_are_the_vtep_only() {
        assert_eq!(
            peer(7, 1).allowed_ips,
            vec![IpAddrMask::new(IpAddr::V4(Ipv4Addr::new(10, 99, 0, 7)), 32)]
        );
    }
}
