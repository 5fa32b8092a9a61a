//! nftables guard rules: generated as text by pure functions, applied with `nft -f -`.
//!
//! Each table is replaced whole in one transaction (`table X {}` + `delete table X` +
//! `table X {…}`), so re-applying is atomic and idempotent, and nothing but the agent's own
//! `privnet-*` tables is ever touched.
//!
//! - Agent namespace, `inet privnet-guard`: privnet's own VXLAN (its port with one of its
//!   VNIs, or its port to one of its VTEPs) only in from and out to the WireGuard interface,
//!   so no private byte leaves in clear text and a dead tunnel fails closed. Nothing else on
//!   the node matches: the primary CNI's VXLAN (another port, or the same port with another
//!   VNI and no VTEP of ours) passes untouched.
//! - Network namespace, `bridge privnet-ports`: per container port anti-spoofing (source MAC,
//!   IPv4 source, ARP sender MAC/IP, no VLAN tags, no DHCP-server replies, no IPv6 RAs), and
//!   the gateway MAC kept off the VXLAN port in both directions: every node answers for the
//!   gateway locally with the same MAC, so the gateway must never be seen across the overlay.
//! - Network namespace, `inet privnet-gw`: only DNS, ICMP and replies reach the gateway.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;

use super::netns::{self, NetnsError, NetnsFd};

/// Table of the agent namespace (VXLAN only through WireGuard).
pub const AGENT_TABLE: &str = "inet privnet-guard";
/// Bridge table of a network namespace (anti-spoofing, gateway MAC off the overlay).
pub const PORTS_TABLE: &str = "bridge privnet-ports";
/// [`PORTS_TABLE`]'s name alone (netlink names the family apart).
pub const PORTS_TABLE_NAME: &str = "privnet-ports";
/// Input table of a network namespace (what may reach the gateway).
pub const GATEWAY_TABLE: &str = "inet privnet-gw";

/// Errors of the guard rules.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// An interface name that cannot be quoted safely in nft syntax.
    #[error("failed to accept interface name {0:?} in a guard rule")]
    InvalidIfname(String),
    /// `nft` refused or failed.
    #[error("failed to apply nftables guard rules")]
    Nft(#[source] NetnsError),
}

/// Set of the (port, source MAC) pairs a container port may send from.
pub const PORT_MACS: &str = "port-mac";
/// Set of the (port, IPv4 source) pairs a container port may send from.
pub const PORT_IPS: &str = "port-ip";

/// Chain of frames entering from the VXLAN port.
const FROM_MESH: &str = "from-mesh";
/// Chain of frames entering from a container port.
const FROM_PORT: &str = "from-port";
/// Chain of frames leaving through the VXLAN port.
const TO_MESH: &str = "to-mesh";

/// Prefix of every container port name on a network bridge (`pv…`): the
/// guard drops frames from any such port it does not know.
pub const PORT_PREFIX: &str = "pv";

/// One container port of a network's bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardedPort {
    /// The bridge-side veth name (in the network namespace).
    pub host_ifname: String,
    /// The container interface's MAC.
    pub mac: [u8; 6],
    /// The container interface's IPv4 address.
    pub ip: Ipv4Addr,
}

/// What the guard of one network namespace needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkGuard {
    /// The VXLAN bridge port.
    pub vxlan: String,
    /// The gateway MAC (same on every node).
    pub gateway_mac: [u8; 6],
    /// The container ports attached to the bridge.
    pub ports: Vec<GuardedPort>,
}

pub use privnet_core::mac::format_mac;

/// A quoted interface name, refusing anything that is not a plain Linux ifname.
fn ifname(name: &str) -> Result<String, GuardError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(format!("\"{name}\""))
    } else {
        Err(GuardError::InvalidIfname(name.to_string()))
    }
}

/// `table T {}` + `delete table T`: an idempotent "drop this table" in one transaction.
fn reset(table: &str) -> String {
    format!("table {table} {{}}\ndelete table {table}\n")
}

/// What identifies privnet's own VXLAN traffic in the node's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeGuard {
    /// The WireGuard interface: the only way in or out for privnet's VXLAN.
    pub wg_ifname: String,
    /// privnet's VXLAN UDP port.
    pub vxlan_port: u16,
    /// The VNIs privnet's networks use (the controller's range).
    pub vnis: RangeInclusive<u32>,
    /// The mesh CIDR: every VTEP address is in it.
    pub mesh: Ipv4Net,
}

/// The agent-namespace guard (`inet privnet-guard`). With `disabled`, the table is only
/// removed (negative-control tests prove the guard is what blocks clear-text VXLAN).
///
/// A packet is privnet's when it goes to privnet's VXLAN port and either carries one of
/// privnet's VNIs (the VXLAN header's VNI: transport header bits 96..120) or is addressed
/// to a VTEP. Such a packet is dropped unless it comes from (input) or goes to (output)
/// the WireGuard interface. The VNI match is what stops clear-text injection to the node's
/// underlay address (privnet's VXLAN socket listens on every address); the VTEP match
/// catches a VTEP routed around the tunnel whatever the VNI.
pub fn agent_ruleset(guard: &NodeGuard, disabled: bool) -> Result<String, GuardError> {
    let wg = ifname(&guard.wg_ifname)?;
    let mut text = reset(AGENT_TABLE);
    if disabled {
        return Ok(text);
    }
    let (port, mesh) = (guard.vxlan_port, guard.mesh.trunc());
    let vnis = match (guard.vnis.start(), guard.vnis.end()) {
        (a, b) if a == b => a.to_string(),
        (a, b) => format!("{a}-{b}"),
    };
    let _ = write!(
        text,
        "table {AGENT_TABLE} {{\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter - 10; policy accept;\n\
         \t\tudp dport {port} @th,96,24 {vnis} iifname != {wg} drop\n\
         \t\tip daddr {mesh} udp dport {port} iifname != {wg} drop\n\
         \t}}\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority filter - 10; policy accept;\n\
         \t\tudp dport {port} @th,96,24 {vnis} oifname != {wg} drop\n\
         \t\tip daddr {mesh} udp dport {port} oifname != {wg} drop\n\
         \t}}\n\
         }}\n"
    );
    Ok(text)
}

/// A container port's name, refused unless it is a plain ifname with the
/// container-port prefix (anything else could never match `pv*`).
fn port_ifname(port: &GuardedPort) -> Result<String, GuardError> {
    let quoted = ifname(&port.host_ifname)?;
    if !port.host_ifname.starts_with(PORT_PREFIX) {
        return Err(GuardError::InvalidIfname(port.host_ifname.clone()));
    }
    Ok(quoted)
}

/// A port's `port-mac` element as nft writes it (`"pv1a" . 0a:58:…`).
pub fn mac_element(port: &GuardedPort) -> Result<String, GuardError> {
    Ok(format!(
        "{} . {}",
        port_ifname(port)?,
        format_mac(&port.mac)
    ))
}

/// A port's `port-ip` element as nft writes it (`"pv1a" . 10.240.0.5`).
pub fn ip_element(port: &GuardedPort) -> Result<String, GuardError> {
    Ok(format!("{} . {}", port_ifname(port)?, port.ip))
}

/// `set NAME { type …; elements = { … }; }` on one line (no `elements`
/// clause when empty: nft refuses an empty list).
fn set_line(name: &str, key_type: &str, elements: &[String]) -> String {
    if elements.is_empty() {
        format!("\tset {name} {{ type {key_type}; }}\n")
    } else {
        format!(
            "\tset {name} {{ type {key_type}; elements = {{ {} }}; }}\n",
            elements.join(", ")
        )
    }
}

/// The network-namespace guard: `bridge privnet-ports` and `inet privnet-gw`.
pub fn network_ruleset(guard: &NetworkGuard) -> Result<String, GuardError> {
    let vx = ifname(&guard.vxlan)?;
    let gw = format_mac(&guard.gateway_mac);
    // One chain for every container port: a frame passes only if its
    // (port, source) pair is in the port sets, so a port gets its guard by
    // two set elements, added over netlink on the ADD path without a
    // ruleset change (see [`ports_update`]). A port the agent has not
    // registered yet has no element and is dropped: fail closed. Only IPv4,
    // ARP and IPv6 pass; anything else (VLAN tags, other L2 protocols) falls
    // to the final drop. Ordered for the common frame: an IPv4 one leaves
    // after four rules.
    let macs = guard
        .ports
        .iter()
        .map(mac_element)
        .collect::<Result<Vec<_>, _>>()?;
    let ips = guard
        .ports
        .iter()
        .map(ip_element)
        .collect::<Result<Vec<_>, _>>()?;
    let mut text = reset(PORTS_TABLE);
    text.push_str(&format!("table {PORTS_TABLE} {{\n"));
    text.push_str(&set_line(PORT_MACS, "ifname . ether_addr", &macs));
    text.push_str(&set_line(PORT_IPS, "ifname . ipv4_addr", &ips));
    let _ = write!(
        text,
        "\tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority filter; policy accept;\n\
         \t\tiifname {vx} jump {FROM_MESH}\n\
         \t\tiifname \"{PORT_PREFIX}*\" jump {FROM_PORT}\n\
         \t}}\n\
         \tchain {FROM_MESH} {{\n\
         \t\tether saddr {gw} drop\n\
         \t\taccept\n\
         \t}}\n\
         \tchain {FROM_PORT} {{\n\
         \t\tiifname . ether saddr != @{PORT_MACS} drop\n\
         \t\tether type ip iifname . ip saddr != @{PORT_IPS} drop\n\
         \t\tether type ip udp sport 67 drop\n\
         \t\tether type ip accept\n\
         \t\tether type arp iifname . arp saddr ether != @{PORT_MACS} drop\n\
         \t\tether type arp arp saddr ip 0.0.0.0 accept\n\
         \t\tether type arp iifname . arp saddr ip != @{PORT_IPS} drop\n\
         \t\tether type arp accept\n\
         \t\tether type ip6 icmpv6 type nd-router-advert drop\n\
         \t\tether type ip6 accept\n\
         \t\tdrop\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype filter hook postrouting priority filter; policy accept;\n\
         \t\toifname {vx} jump {TO_MESH}\n\
         \t}}\n\
         \tchain {TO_MESH} {{\n\
         \t\tether saddr {gw} drop\n\
         \t\tether daddr {gw} drop\n\
         \t}}\n\
         }}\n"
    );
    text.push_str(&reset(GATEWAY_TABLE));
    let _ = write!(
        text,
        "table {GATEWAY_TABLE} {{\n\
         \tchain raw-prerouting {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tudp dport 53 notrack\n\
         \t}}\n\
         \tchain raw-output {{\n\
         \t\ttype filter hook output priority raw; policy accept;\n\
         \t\tudp sport 53 notrack\n\
         \t}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy drop;\n\
         \t\tiif \"lo\" accept\n\
         \t\tudp dport 53 accept\n\
         \t\tct state established,related accept\n\
         \t\ttcp dport 53 accept\n\
         \t\tmeta l4proto {{ icmp, ipv6-icmp }} accept\n\
         \t}}\n\
         }}\n"
    );
    Ok(text)
}

/// The container ports as they are in the kernel's port sets: the live
/// ones, and retired ones whose elements are still there. Removing
/// elements is a commit that waits for an RCU grace period and holds up
/// network-device unregistration in the namespace meanwhile, so
/// retirements are batched ([`retire_change`]) instead of paid on every
/// detach. A retired element is harmless: its interface name no longer
/// exists, and a port that comes back under the same name with another
/// MAC or address has the old elements removed first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortTable {
    /// Ports guarded now.
    pub live: Vec<GuardedPort>,
    /// Departed ports whose elements are still in the sets, by name.
    pub retired: std::collections::BTreeMap<String, GuardedPort>,
}

/// Elements to take out of and put into the port sets, in one transaction
/// (removals first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortChange {
    /// Ports whose elements go.
    pub remove: Vec<GuardedPort>,
    /// Ports whose elements come.
    pub add: Vec<GuardedPort>,
}

impl PortChange {
    /// Nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Every port of the change passes [`port_ifname`].
    pub fn validate(&self) -> Result<(), GuardError> {
        for port in self.remove.iter().chain(&self.add) {
            port_ifname(port)?;
        }
        Ok(())
    }

    /// The change as nft text (`delete element` / `add element`), for
    /// `nft -f` where netlink is not used (tests, the doctor's fix hints).
    pub fn text(&self) -> Result<String, GuardError> {
        let mut text = String::new();
        for (verb, ports) in [("delete", &self.remove), ("add", &self.add)] {
            if ports.is_empty() {
                continue;
            }
            for (set, element) in [
                (PORT_MACS, mac_element as fn(&GuardedPort) -> _),
                (PORT_IPS, ip_element),
            ] {
                let elements = ports.iter().map(element).collect::<Result<Vec<_>, _>>()?;
                let _ = writeln!(
                    text,
                    "{verb} element {PORTS_TABLE} {set} {{ {} }}",
                    elements.join(", ")
                );
            }
        }
        Ok(text)
    }
}

/// The incremental change to a table built by [`network_ruleset`] that
/// makes `desired` live: new or changed ports get their elements (a port
/// whose name is still in the sets with another MAC or address loses the
/// old ones in the same commit), departed ones are only retired. Chains are
/// never touched. Returns the change and the table afterwards.
pub fn ports_update(
    table: &PortTable,
    desired: &[GuardedPort],
) -> Result<(PortChange, PortTable), GuardError> {
    let mut change = PortChange::default();
    let mut retired = table.retired.clone();
    for port in desired.iter().filter(|p| !table.live.contains(p)) {
        port_ifname(port)?;
        let stale = table
            .live
            .iter()
            .filter(|p| p.host_ifname == port.host_ifname)
            .chain(retired.get(&port.host_ifname))
            .filter(|p| *p != port);
        change.remove.extend(stale.cloned());
        retired.remove(&port.host_ifname);
        change.add.push(port.clone());
    }
    for port in &table.live {
        let kept = desired.iter().any(|p| p.host_ifname == port.host_ifname);
        if !kept {
            retired.insert(port.host_ifname.clone(), port.clone());
        }
    }
    let after = PortTable {
        live: desired.to_vec(),
        retired,
    };
    Ok((change, after))
}

/// Removes retired ports' elements, in one transaction.
pub fn retire_change(
    retired: &std::collections::BTreeMap<String, GuardedPort>,
) -> Result<PortChange, GuardError> {
    let change = PortChange {
        remove: retired.values().cloned().collect(),
        add: Vec::new(),
    };
    change.validate()?;
    Ok(change)
}

// DNS over UDP to the gateway is stateless: `notrack` keeps it out of
// conntrack (cheaper per query, no table to exhaust from a container).

/// Applies a ruleset atomically in `ns` (`ip netns exec <ns> nft -f -`).
pub async fn apply(ns: &NetnsFd, ruleset: &str) -> Result<(), GuardError> {
    netns::command_in(ns, "nft", &["-f", "-"], Some(ruleset))
        .await
        .map_err(GuardError::Nft)?;
    Ok(())
}

/// Checks a ruleset against the kernel without committing it (`nft -c -f -`).
pub async fn check(ns: &NetnsFd, ruleset: &str) -> Result<(), GuardError> {
    netns::command_in(ns, "nft", &["-c", "-f", "-"], Some(ruleset))
        .await
        .map_err(GuardError::Nft)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> NetworkGuard {
        NetworkGuard {
            vxlan: "vx100".into(),
            gateway_mac: [0x02, 0x70, 0, 0, 0, 100],
            ports: vec![GuardedPort {
                host_ifname: "pv1a".into(),
                mac: [0x0a, 0x58, 1, 2, 3, 4],
                ip: Ipv4Addr::new(10, 240, 0, 5),
            }],
        }
    }

    fn node(wg: &str) -> NodeGuard {
        NodeGuard {
            wg_ifname: wg.into(),
            vxlan_port: 4796,
            vnis: 1_048_576..=16_777_215,
            mesh: "198.19.0.0/16".parse().unwrap(),
        }
    }

    #[test]
    fn agent_guard_confines_only_privnets_vxlan_to_the_tunnel() {
        let text = agent_ruleset(&node("wg0"), false).unwrap();
        assert!(text.starts_with("table inet privnet-guard {}\ndelete table inet privnet-guard\n"));
        for want in [
            "udp dport 4796 @th,96,24 1048576-16777215 iifname != \"wg0\" drop",
            "ip daddr 198.19.0.0/16 udp dport 4796 iifname != \"wg0\" drop",
            "udp dport 4796 @th,96,24 1048576-16777215 oifname != \"wg0\" drop",
            "ip daddr 198.19.0.0/16 udp dport 4796 oifname != \"wg0\" drop",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // Every drop names privnet's VNIs or its VTEPs: no catch-all on a port.
        for rule in text.lines().filter(|l| l.ends_with("drop")) {
            assert!(
                rule.contains("@th,96,24 1048576-16777215")
                    || rule.contains("ip daddr 198.19.0.0/16"),
                "{rule:?} matches more than privnet's own traffic"
            );
        }
        let mut one = node("wg0");
        one.vnis = 5000..=5000;
        assert!(
            agent_ruleset(&one, false)
                .unwrap()
                .contains("@th,96,24 5000 iifname")
        );
    }

    #[test]
    fn the_ports_table_name_is_the_tables_own() {
        assert_eq!(PORTS_TABLE, format!("bridge {PORTS_TABLE_NAME}"));
    }

    #[test]
    fn disabled_agent_guard_only_removes_the_table() {
        let text = agent_ruleset(&node("wg0"), true).unwrap();
        assert_eq!(
            text,
            "table inet privnet-guard {}\ndelete table inet privnet-guard\n"
        );
    }

    #[test]
    fn port_rules_pin_mac_ip_and_arp() {
        let text = network_ruleset(&guard()).unwrap();
        for want in [
            "\tset port-mac { type ifname . ether_addr; elements = { \"pv1a\" . 0a:58:01:02:03:04 }; }\n",
            "\tset port-ip { type ifname . ipv4_addr; elements = { \"pv1a\" . 10.240.0.5 }; }\n",
            "\t\tiifname \"vx100\" jump from-mesh\n\t\tiifname \"pv*\" jump from-port\n",
            "chain from-mesh {\n\t\tether saddr 02:70:00:00:00:64 drop\n\t\taccept\n",
            "chain from-port {\n\t\tiifname . ether saddr != @port-mac drop\n\
             \t\tether type ip iifname . ip saddr != @port-ip drop\n\
             \t\tether type ip udp sport 67 drop\n\
             \t\tether type ip accept\n\
             \t\tether type arp iifname . arp saddr ether != @port-mac drop\n\
             \t\tether type arp arp saddr ip 0.0.0.0 accept\n\
             \t\tether type arp iifname . arp saddr ip != @port-ip drop\n\
             \t\tether type arp accept\n\
             \t\tether type ip6 icmpv6 type nd-router-advert drop\n\
             \t\tether type ip6 accept\n\
             \t\tdrop\n\t}",
            "oifname \"vx100\" jump to-mesh",
            "chain to-mesh {\n\t\tether saddr 02:70:00:00:00:64 drop\n\t\tether daddr 02:70:00:00:00:64 drop\n",
            "policy drop;",
            "udp dport 53 accept",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(text.contains("delete table bridge privnet-ports\n"));
        assert!(text.contains("delete table inet privnet-gw\n"));
    }

    #[test]
    fn port_changes_add_and_retire_without_deleting() {
        let a = guard().ports[0].clone();
        let mut b = a.clone();
        b.host_ifname = "pv2b".into();
        b.ip = "10.240.0.6".parse().unwrap();
        let t0 = PortTable {
            live: vec![a.clone()],
            retired: Default::default(),
        };
        let (none, same) = ports_update(&t0, std::slice::from_ref(&a)).unwrap();
        assert!(none.is_empty());
        assert_eq!(same, t0);
        let (add, t1) = ports_update(&t0, &[a.clone(), b.clone()]).unwrap();
        assert_eq!(add.add, vec![b.clone()]);
        assert!(add.remove.is_empty());
        assert_eq!(
            add.text().unwrap(),
            "add element bridge privnet-ports port-mac { \"pv2b\" . 0a:58:01:02:03:04 }\n\
             add element bridge privnet-ports port-ip { \"pv2b\" . 10.240.0.6 }\n"
        );
        // Detaching only retires: no commit at all.
        let (none, t2) = ports_update(&t1, std::slice::from_ref(&b)).unwrap();
        assert!(none.is_empty());
        assert!(t2.retired.contains_key("pv1a") && t2.live == vec![b.clone()]);
        // The same port coming back only adds its elements again.
        let (back, t3) = ports_update(&t2, &[a.clone(), b.clone()]).unwrap();
        assert_eq!((back.remove, back.add), (vec![], vec![a.clone()]));
        assert!(t3.retired.is_empty());
        // A changed address takes the old elements out in the same commit.
        let mut moved = b.clone();
        moved.ip = "10.240.0.7".parse().unwrap();
        let (changed, _) = ports_update(&t3, &[a.clone(), moved.clone()]).unwrap();
        assert_eq!(
            (changed.remove, changed.add),
            (vec![b.clone()], vec![moved.clone()])
        );
        // So does a retired name coming back as another container.
        let (reused, _) = ports_update(&t2, &[moved.clone()]).unwrap();
        assert_eq!(reused.remove, vec![b.clone()], "{reused:?}");
        let (reused, _) = ports_update(
            &t2,
            &[GuardedPort {
                ip: "10.240.0.9".parse().unwrap(),
                ..a.clone()
            }],
        )
        .unwrap();
        assert_eq!(reused.remove, vec![a.clone()]);
        // Retirements go in one batch, deletions first.
        let text = retire_change(&t2.retired).unwrap().text().unwrap();
        assert_eq!(
            text,
            "delete element bridge privnet-ports port-mac { \"pv1a\" . 0a:58:01:02:03:04 }\n\
             delete element bridge privnet-ports port-ip { \"pv1a\" . 10.240.0.5 }\n"
        );
        assert!(retire_change(&Default::default()).unwrap().is_empty());
        let vx: std::collections::BTreeMap<String, GuardedPort> = [(
            "vx100".to_string(),
            GuardedPort {
                host_ifname: "vx100".into(),
                ..a.clone()
            },
        )]
        .into();
        assert!(
            retire_change(&vx).is_err(),
            "only container ports are ever in the sets"
        );
    }

    #[test]
    fn no_ports_still_guards_the_gateway() {
        let mut g = guard();
        g.ports.clear();
        let text = network_ruleset(&g).unwrap();
        assert!(!text.contains("pv1a"));
        assert!(
            text.contains("\tset port-mac { type ifname . ether_addr; }\n"),
            "empty sets: every container port is dropped"
        );
        assert!(text.contains("iifname \"pv*\" jump from-port"));
        assert!(text.contains("oifname \"vx100\" jump to-mesh"));
    }

    #[test]
    fn hostile_interface_names_are_refused() {
        let mut g = guard();
        g.ports[0].host_ifname = "x\" accept #".into();
        assert!(matches!(
            network_ruleset(&g),
            Err(GuardError::InvalidIfname(_))
        ));
        assert!(agent_ruleset(&node("averyveryverylongname"), false).is_err());
    }
}
