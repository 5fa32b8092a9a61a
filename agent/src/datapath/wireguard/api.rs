//! The calls the tunnel makes to defguard_wireguard_rs, over both backends.
//!
//! The userspace flavour speaks wireguard-go's UAPI socket; the kernel flavour generic netlink.
//! The kernel one cannot run on a machine without the module, so it goes through
//! [`KernelLib`], a seam small enough that tests record exactly what would be sent to the
//! kernel (see the tests below), and [`sync_peers`]/[`fix_key_and_port`] hold what is decided
//! for both backends, tested against that recording.

use std::collections::HashMap;

use defguard_wireguard_rs::error::WireguardInterfaceError;
use defguard_wireguard_rs::host::Host;
use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::peer::Peer;
use defguard_wireguard_rs::{
    InterfaceConfiguration, Kernel, Userspace, WGApi, WireguardInterfaceApi,
};

use super::{PeerPlan, plan_peers};

/// The few UAPI/netlink operations used, over both `WGApi` flavours.
pub(super) trait WgOps {
    fn read(&self) -> Result<Host, WireguardInterfaceError>;
    fn write(&self, host: &Host) -> Result<(), WireguardInterfaceError>;
    fn peer(&self, peer: &Peer) -> Result<(), WireguardInterfaceError>;
    fn unpeer(&self, key: &Key) -> Result<(), WireguardInterfaceError>;
}

impl WgOps for WGApi<Userspace> {
    fn read(&self) -> Result<Host, WireguardInterfaceError> {
        self.read_interface_data()
    }
    fn write(&self, host: &Host) -> Result<(), WireguardInterfaceError> {
        Ok(self.write_host(host)?)
    }
    fn peer(&self, peer: &Peer) -> Result<(), WireguardInterfaceError> {
        self.configure_peer(peer)
    }
    fn unpeer(&self, key: &Key) -> Result<(), WireguardInterfaceError> {
        self.remove_peer(key)
    }
}

/// The library calls of the kernel backend (each one generic netlink to the module).
pub(super) trait KernelLib {
    fn read_interface_data(&self) -> Result<Host, WireguardInterfaceError>;
    fn configure_interface(
        &self,
        config: &InterfaceConfiguration,
    ) -> Result<(), WireguardInterfaceError>;
    fn configure_peer(&self, peer: &Peer) -> Result<(), WireguardInterfaceError>;
    fn remove_peer(&self, key: &Key) -> Result<(), WireguardInterfaceError>;
}

impl KernelLib for WGApi<Kernel> {
    fn read_interface_data(&self) -> Result<Host, WireguardInterfaceError> {
        WireguardInterfaceApi::read_interface_data(self)
    }
    fn configure_interface(
        &self,
        config: &InterfaceConfiguration,
    ) -> Result<(), WireguardInterfaceError> {
        WireguardInterfaceApi::configure_interface(self, config)
    }
    fn configure_peer(&self, peer: &Peer) -> Result<(), WireguardInterfaceError> {
        WireguardInterfaceApi::configure_peer(self, peer)
    }
    fn remove_peer(&self, key: &Key) -> Result<(), WireguardInterfaceError> {
        WireguardInterfaceApi::remove_peer(self, key)
    }
}

/// The kernel backend's [`WgOps`] over any [`KernelLib`].
pub(super) struct KernelOps<L>(pub(super) L);

impl<L: KernelLib> WgOps for KernelOps<L> {
    fn read(&self) -> Result<Host, WireguardInterfaceError> {
        self.0.read_interface_data()
    }
    /// The kernel API has no "write host": key, port and peers go as one interface
    /// configuration. No addresses and no MTU: those are the link's, set by `ensure` over
    /// rtnetlink after this call (the library flushes the interface's addresses here).
    fn write(&self, host: &Host) -> Result<(), WireguardInterfaceError> {
        self.0.configure_interface(&InterfaceConfiguration {
            name: String::new(),
            prvkey: host
                .private_key
                .as_ref()
                .map(Key::to_string)
                .unwrap_or_default(),
            addresses: Vec::new(),
            port: host.listen_port,
            peers: host.peers.values().cloned().collect(),
            mtu: None,
            fwmark: None,
        })
    }
    fn peer(&self, peer: &Peer) -> Result<(), WireguardInterfaceError> {
        self.0.configure_peer(peer)
    }
    fn unpeer(&self, key: &Key) -> Result<(), WireguardInterfaceError> {
        self.0.remove_peer(key)
    }
}

/// The host to write when the interface's key or port differ from ours (its peers kept);
/// `None` when both already match.
pub(super) fn fix_key_and_port(current: Host, key: &Key, port: u16) -> Option<Host> {
    if current.private_key.as_ref() == Some(key) && current.listen_port == port {
        return None;
    }
    let mut fixed = Host::new(port, key.clone());
    fixed.peers = current.peers;
    Some(fixed)
}

/// Reads the peers, diffs them against `desired` and sends only the difference.
pub(super) fn sync_peers(
    api: &dyn WgOps,
    desired: Vec<Peer>,
) -> Result<PeerPlan, WireguardInterfaceError> {
    let current: HashMap<Key, Peer> = api.read()?.peers;
    let plan = plan_peers(&current, &desired);
    for p in desired
        .iter()
        .filter(|p| plan.configure.contains(&p.public_key))
    {
        api.peer(p)?;
    }
    for k in &plan.remove {
        api.unpeer(k)?;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use defguard_wireguard_rs::net::IpAddrMask;

    use super::super::{MeshPeer, desired_peer};
    use super::*;

    /// What the kernel backend would have sent, in order.
    #[derive(Debug, PartialEq)]
    enum Sent {
        Read,
        /// `configure_interface`: private key, port, peers' keys, addresses, MTU, fwmark.
        Interface {
            prvkey: String,
            port: u16,
            peers: Vec<String>,
            addresses: Vec<IpAddrMask>,
            mtu: Option<u32>,
            fwmark: Option<u32>,
        },
        /// `configure_peer`: key, endpoint, allowed IPs, keepalive.
        Peer(String, Option<SocketAddr>, Vec<IpAddrMask>, Option<u16>),
        RemovePeer(String),
    }

    /// A recording stand-in for the kernel module: answers reads with `host`.
    struct Recorder {
        host: Host,
        sent: RefCell<Vec<Sent>>,
    }

    impl KernelLib for Recorder {
        fn read_interface_data(&self) -> Result<Host, WireguardInterfaceError> {
            self.sent.borrow_mut().push(Sent::Read);
            Ok(self.host.clone())
        }
        fn configure_interface(
            &self,
            c: &InterfaceConfiguration,
        ) -> Result<(), WireguardInterfaceError> {
            let mut peers: Vec<String> = c.peers.iter().map(|p| p.public_key.to_string()).collect();
            peers.sort();
            self.sent.borrow_mut().push(Sent::Interface {
                prvkey: c.prvkey.clone(),
                port: c.port,
                peers,
                addresses: c.addresses.clone(),
                mtu: c.mtu,
                fwmark: c.fwmark,
            });
            Ok(())
        }
        fn configure_peer(&self, p: &Peer) -> Result<(), WireguardInterfaceError> {
            self.sent.borrow_mut().push(Sent::Peer(
                p.public_key.to_string(),
                p.endpoint,
                p.allowed_ips.clone(),
                p.persistent_keepalive_interval,
            ));
            Ok(())
        }
        fn remove_peer(&self, key: &Key) -> Result<(), WireguardInterfaceError> {
            self.sent
                .borrow_mut()
                .push(Sent::RemovePeer(key.to_string()));
            Ok(())
        }
    }

    fn mesh_peer(n: u8, port: u16) -> Peer {
        desired_peer(&MeshPeer {
            public_key: Key::new([n; 32]).to_string(),
            endpoint: Some(SocketAddr::from(([192, 0, 2, n], port))),
            vtep: Ipv4Addr::new(10, 99, 0, n),
            keepalive: Some(25),
            standby: false,
        })
        .unwrap()
    }

    fn kernel_with(host: Host) -> KernelOps<Recorder> {
        KernelOps(Recorder {
            host,
            sent: RefCell::new(Vec::new()),
        })
    }

    #[test]
    fn a_new_key_and_port_go_to_the_kernel_as_one_configuration_keeping_the_peers() {
        let key = Key::new([9; 32]);
        let mut current = Host::new(51820, Key::new([8; 32]));
        current.peers.insert(Key::new([1; 32]), mesh_peer(1, 51820));
        let api = kernel_with(current.clone());
        let fixed = fix_key_and_port(api.read().unwrap(), &key, 41820).expect("needs a fix");
        api.write(&fixed).unwrap();
        assert_eq!(
            *api.0.sent.borrow(),
            vec![
                Sent::Read,
                Sent::Interface {
                    prvkey: key.to_string(),
                    port: 41820,
                    peers: vec![Key::new([1; 32]).to_string()],
                    // The link's addresses and MTU are set over rtnetlink, not here.
                    addresses: vec![],
                    mtu: None,
                    fwmark: None,
                },
            ]
        );
    }

    #[test]
    fn a_matching_key_and_port_send_nothing() {
        let key = Key::new([9; 32]);
        assert!(fix_key_and_port(Host::new(51820, key.clone()), &key, 51820).is_none());
        // Control: the same host with another port does need a write.
        assert!(fix_key_and_port(Host::new(51820, key.clone()), &key, 51821).is_some());
    }

    #[test]
    fn the_peer_diff_goes_to_the_kernel_as_peer_calls_only() {
        let mut current = Host::new(51820, Key::new([9; 32]));
        current.peers.insert(Key::new([1; 32]), mesh_peer(1, 51820)); // unchanged
        current.peers.insert(Key::new([3; 32]), mesh_peer(3, 51820)); // gone
        current.peers.insert(Key::new([4; 32]), mesh_peer(4, 51820)); // moved
        let api = kernel_with(current);
        let plan = sync_peers(
            &api,
            vec![
                mesh_peer(1, 51820),
                mesh_peer(2, 51820),
                mesh_peer(4, 51999),
            ],
        )
        .unwrap();
        let vtep = |n| vec![IpAddrMask::new(IpAddr::V4(Ipv4Addr::new(10, 99, 0, n)), 32)];
        assert_eq!(
            *api.0.sent.borrow(),
            vec![
                Sent::Read,
                Sent::Peer(
                    Key::new([2; 32]).to_string(),
                    Some(SocketAddr::from(([192, 0, 2, 2], 51820))),
                    vtep(2),
                    Some(25)
                ),
                Sent::Peer(
                    Key::new([4; 32]).to_string(),
                    Some(SocketAddr::from(([192, 0, 2, 4], 51999))),
                    vtep(4),
                    Some(25)
                ),
                Sent::RemovePeer(Key::new([3; 32]).to_string()),
            ]
        );
        assert_eq!(plan.remove, vec![Key::new([3; 32])]);
    }
}
