//! What the datapath read-back found different from what the agent set:
//! the vocabulary shared by the observers ([`super::NodeDatapath::observe_mesh`],
//! [`super::NodeDatapath::observe_network`]) and the agent's repair planner.
//! Plain data, no I/O.

use std::fmt;

/// Which part of the datapath drifted (also the `what` label of
/// `privnet_agent_repairs_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum What {
    /// The userspace WireGuard daemon does not answer (it died).
    WireguardDaemon,
    /// The WireGuard link is missing, down, or lost its address or MTU.
    WireguardLink,
    /// WireGuard peers differ from the mesh.
    Peers,
    /// The node guard table is missing or empty, or lost rules.
    NodeGuard,
    /// A network's namespace is gone.
    Namespace,
    /// A network's nft tables are missing or empty.
    NetworkGuard,
    /// A chain of a network's guard lost (or gained) rules, or its port map
    /// lost an element.
    GuardRules,
    /// The bridge is missing, down, or lost its MAC or MTU.
    Bridge,
    /// The gateway address on the bridge is missing or has company.
    Gateway,
    /// The VXLAN device is missing, changed, off the bridge or down.
    Vxlan,
    /// IPv4 forwarding got turned on in the network namespace.
    Forwarding,
    /// FDB entries are missing or extra.
    Fdb,
    /// A container port is off the bridge or down.
    Port,
    /// A container's host veth is gone (its container lost its interface).
    PortGone,
    /// The network's DNS responder stopped.
    Dns,
}

impl What {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            What::WireguardDaemon => "wireguard_daemon",
            What::WireguardLink => "wireguard_link",
            What::Peers => "wireguard_peers",
            What::NodeGuard => "node_guard",
            What::Namespace => "network_namespace",
            What::NetworkGuard => "network_guard",
            What::GuardRules => "guard_rules",
            What::Bridge => "bridge",
            What::Gateway => "gateway",
            What::Vxlan => "vxlan",
            What::Forwarding => "forwarding",
            What::Fdb => "fdb",
            What::Port => "port",
            What::PortGone => "port_gone",
            What::Dns => "dns",
        }
    }
}

/// One thing found wrong: what, on which object (a device, a table, a
/// port; identifies it across checks), and the detail for the log.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Drift {
    /// Which part.
    pub what: What,
    /// The object concerned (stable across checks).
    pub subject: String,
    /// What was wrong, for the log.
    pub detail: String,
}

impl Drift {
    /// A drift of `what` on `subject`.
    pub fn new(what: What, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            what,
            subject: subject.into(),
            detail: detail.into(),
        }
    }

    /// Whether `self` and `other` are the same problem (the detail may differ).
    pub fn same(&self, other: &Drift) -> bool {
        self.what == other.what && self.subject == other.subject
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.what.label(), self.subject, self.detail)
    }
}

/// What to redo in one network's namespace (the seam's part of a repair;
/// the FDB and the DNS responder are redone by the agent through
/// [`super::NodeDatapath::sync_fdb`] and [`super::NodeDatapath::start_dns`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkRepair {
    /// Namespace, bridge, VXLAN, gateway, sysctls (fixed where they differ).
    pub devices: bool,
    /// The guard tables, rewritten whole for the live ports.
    pub guard: bool,
    /// The guard's drifted chains and missing set elements, put back alone.
    pub guard_rules: bool,
    /// Container ports to put back on the bridge and up.
    pub ports: Vec<String>,
}

impl NetworkRepair {
    /// Nothing to do in the namespace.
    pub fn is_empty(&self) -> bool {
        !self.devices && !self.guard && !self.guard_rules && self.ports.is_empty()
    }
}
