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

/// The verdict map from container port to its chain.
pub const PORTS_MAP: &str = "ports";

/// Chain of frames entering from the VXLAN port.
const FROM_MESH: &str = "from-mesh";
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

/// The per-port chain of a container port: its name and its rules.
fn port_chain(port: &GuardedPort) -> Result<(String, Vec<String>), GuardError> {
    ifname(&port.host_ifname)?;
    if !port.host_ifname.starts_with(PORT_PREFIX) {
        return Err(GuardError::InvalidIfname(port.host_ifname.clone()));
    }
    let (mac, ip) = (format_mac(&port.mac), port.ip);
    // Ordered for the common frame: an IPv4 one leaves after four rules.
    // Only IPv4, ARP and IPv6 pass; anything else (VLAN tags, other L2
    // protocols) falls to the final drop.
    let rules = vec![
        format!("ether saddr != {mac} drop"),
        format!("ether type ip ip saddr != {ip} drop"),
        "ether type ip udp sport 67 drop".to_string(),
        "ether type ip accept".to_string(),
        format!("ether type arp arp saddr ether != {mac} drop"),
        // 0.0.0.0 is an RFC 5227 probe: it claims nothing and poisons no cache.
        format!("ether type arp arp saddr ip != {{ {ip}, 0.0.0.0 }} drop"),
        "ether type arp accept".to_string(),
        "ether type ip6 icmpv6 type nd-router-advert drop".to_string(),
        "ether type ip6 accept".to_string(),
        "drop".to_string(),
    ];
    Ok((format!("port-{}", port.host_ifname), rules))
}

fn chain_block(name: &str, rules: &[String]) -> String {
    let mut text = format!("\tchain {name} {{\n");
    for rule in rules {
        let _ = writeln!(text, "\t\t{rule}");
    }
    text.push_str("\t}\n");
    text
}

/// The network-namespace guard: `bridge privnet-ports` and `inet privnet-gw`.
pub fn network_ruleset(guard: &NetworkGuard) -> Result<String, GuardError> {
    let vx = ifname(&guard.vxlan)?;
    let gw = format_mac(&guard.gateway_mac);
    // Every bridge port dispatches through the verdict map `ports`, one
    // lookup per frame whatever the number of ports: the VXLAN port to
    // `from-mesh`, each container port to a chain of its own. A port the
    // agent has not registered yet matches the final wildcard and is
    // dropped: fail closed. Ports come and go through [`ports_update`].
    let mut chains = String::new();
    let mut elements = vec![format!("{vx} : jump {FROM_MESH}")];
    for port in &guard.ports {
        let (chain, rules) = port_chain(port)?;
        elements.push(format!("{} : jump {chain}", ifname(&port.host_ifname)?));
        chains.push_str(&chain_block(&chain, &rules));
    }
    let elements = elements.join(", ");
    let mut text = reset(PORTS_TABLE);
    let _ = write!(
        text,
        "table {PORTS_TABLE} {{\n\
         \tmap {PORTS_MAP} {{ type ifname : verdict; elements = {{ {elements} }}; }}\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority filter; policy accept;\n\
         \t\tiifname vmap @{PORTS_MAP}\n\
         \t\tiifname {vx} jump {FROM_MESH}\n\
         \t\tiifname \"{PORT_PREFIX}*\" drop\n\
         \t}}\n\
         \tchain {FROM_MESH} {{\n\
         \t\tether saddr {gw} drop\n\
         \t\taccept\n\
         \t}}\n\
         {chains}\
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

/// The container ports as they are in the kernel's `ports` map: the live
/// ones, and retired ones whose element and chain are still there. Removing
/// an element is an RCU-synchronised commit (~15 ms here) that also holds up
/// every network-device unregistration in the namespace, so retirements are
/// batched ([`retire_text`]) instead of paid on every detach. A retired
/// entry is harmless: its interface name no longer exists, and a port that
/// comes back under the same name gets its chain rewritten.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortTable {
    /// Ports guarded now.
    pub live: Vec<GuardedPort>,
    /// Names of departed ports still in the map.
    pub retired: std::collections::BTreeSet<String>,
}

/// The incremental change to a table built by [`network_ruleset`] that
/// makes `desired` live: new or changed ports get their chain (re)written
/// and their map element, departed ones are only retired. Base chains
/// (hooks) are never touched. Returns the nft text (`None`: nothing to
/// commit) and the table afterwards.
pub fn ports_update(
    table: &PortTable,
    desired: &[GuardedPort],
) -> Result<(Option<String>, PortTable), GuardError> {
    let live_names: Vec<&str> = table.live.iter().map(|p| p.host_ifname.as_str()).collect();
    let mut text = String::new();
    let mut chains = String::new();
    let mut elements = Vec::new();
    for port in desired.iter().filter(|p| !table.live.contains(p)) {
        let (chain, rules) = port_chain(port)?;
        if table.retired.contains(&port.host_ifname)
            || live_names.contains(&port.host_ifname.as_str())
        {
            let _ = writeln!(text, "flush chain {PORTS_TABLE} {chain}");
        }
        chains.push_str(&chain_block(&chain, &rules));
        elements.push(format!("{} : jump {chain}", ifname(&port.host_ifname)?));
    }
    let desired_names: Vec<&str> = desired.iter().map(|p| p.host_ifname.as_str()).collect();
    let mut retired: std::collections::BTreeSet<String> = table
        .retired
        .iter()
        .filter(|n| !desired_names.contains(&n.as_str()))
        .cloned()
        .collect();
    retired.extend(
        live_names
            .iter()
            .filter(|n| !desired_names.contains(n))
            .map(|n| n.to_string()),
    );
    let after = PortTable {
        live: desired.to_vec(),
        retired,
    };
    if elements.is_empty() {
        return Ok((None, after));
    }
    let _ = write!(text, "table {PORTS_TABLE} {{\n{chains}}}\n");
    let _ = writeln!(
        text,
        "add element {PORTS_TABLE} {PORTS_MAP} {{ {} }}",
        elements.join(", ")
    );
    Ok((Some(text), after))
}

/// Removes retired ports' elements and chains in one transaction.
pub fn retire_text(
    retired: &std::collections::BTreeSet<String>,
) -> Result<Option<String>, GuardError> {
    if retired.is_empty() {
        return Ok(None);
    }
    let mut elements = Vec::new();
    let mut chains = String::new();
    for name in retired {
        // Only container ports retire: the VXLAN port's element must stay.
        if !name.starts_with(PORT_PREFIX) {
            return Err(GuardError::InvalidIfname(name.clone()));
        }
        elements.push(ifname(name)?);
        let _ = writeln!(chains, "delete chain {PORTS_TABLE} port-{name}");
    }
    Ok(Some(format!(
        "delete element {PORTS_TABLE} {PORTS_MAP} {{ {} }}\n{chains}",
        elements.join(", ")
    )))
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
            "map ports { type ifname : verdict; elements = { \"vx100\" : jump from-mesh, \"pv1a\" : jump port-pv1a }; }",
            // The VXLAN rule only runs if the map ever lost its element.
            "\t\tiifname vmap @ports\n\t\tiifname \"vx100\" jump from-mesh\n\t\tiifname \"pv*\" drop\n",
            "chain from-mesh {\n\t\tether saddr 02:70:00:00:00:64 drop\n\t\taccept\n",
            "chain port-pv1a {\n\t\tether saddr != 0a:58:01:02:03:04 drop\n\
             \t\tether type ip ip saddr != 10.240.0.5 drop\n\
             \t\tether type ip udp sport 67 drop\n\
             \t\tether type ip accept\n\
             \t\tether type arp arp saddr ether != 0a:58:01:02:03:04 drop\n\
             \t\tether type arp arp saddr ip != { 10.240.0.5, 0.0.0.0 } drop\n\
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
        assert_eq!((none, same), (None, t0.clone()));
        let (add, t1) = ports_update(&t0, &[a.clone(), b.clone()]).unwrap();
        let add = add.unwrap();
        assert!(
            add.contains("chain port-pv2b {")
                && add.contains(
                    "add element bridge privnet-ports ports { \"pv2b\" : jump port-pv2b }"
                ),
            "{add}"
        );
        assert!(
            !add.contains("pv1a") && !add.contains("hook") && !add.contains("delete"),
            "{add}"
        );
        // Detaching only retires: no commit at all.
        let (none, t2) = ports_update(&t1, std::slice::from_ref(&b)).unwrap();
        assert_eq!(none, None);
        assert!(t2.retired.contains("pv1a") && t2.live == vec![b.clone()]);
        // The same port coming back rewrites its chain.
        let (back, t3) = ports_update(&t2, &[a.clone(), b.clone()]).unwrap();
        assert!(
            back.unwrap()
                .starts_with("flush chain bridge privnet-ports port-pv1a\n")
        );
        assert!(t3.retired.is_empty());
        // A changed address rewrites the chain in place.
        let mut moved = b.clone();
        moved.ip = "10.240.0.7".parse().unwrap();
        let (changed, _) = ports_update(&t3, &[a.clone(), moved]).unwrap();
        let changed = changed.unwrap();
        assert!(
            changed.starts_with("flush chain bridge privnet-ports port-pv2b")
                && changed.contains("10.240.0.7"),
            "{changed}"
        );
        // Retirements go in one batch.
        let text = retire_text(&t2.retired).unwrap().unwrap();
        assert_eq!(
            text,
            "delete element bridge privnet-ports ports { \"pv1a\" }\ndelete chain bridge privnet-ports port-pv1a\n"
        );
        assert_eq!(retire_text(&Default::default()).unwrap(), None);
        let vx: std::collections::BTreeSet<String> = ["vx100".to_string()].into();
        assert!(
            retire_text(&vx).is_err(),
            "the VXLAN port's element never retires"
        );
    }

    #[test]
    fn no_ports_still_guards_the_gateway() {
        let mut g = guard();
        g.ports.clear();
        let text = network_ruleset(&g).unwrap();
        assert!(!text.contains("pv1a"));
        assert!(
            text.contains("elements = { \"vx100\" : jump from-mesh };"),
            "the VXLAN port is always in the map"
        );
        assert!(
            text.contains("iifname \"pv*\" drop"),
            "unknown ports are dropped"
        );
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
