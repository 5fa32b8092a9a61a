//! What the doctor read from the node, as plain data: the verdicts
//! ([`super::verdict`], [`super::guard`]) are pure functions of these and of
//! the agent's [`ExpectedState`]. A reading that failed carries why.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use ipnet::Ipv4Net;
use privnet_core::expected::{ExpectedFdb, ExpectedState};

/// Everything read in one run.
#[derive(Clone, Debug, Default)]
pub struct Readings {
    /// The agent's socket and `/readyz`.
    pub agent: AgentReading,
    /// The agent's desired view (`None`: the socket did not answer it).
    pub expected: Option<ExpectedState>,
    /// The WireGuard interface and the node guard (`None`: not read, no mesh expected).
    pub mesh: Option<MeshReading>,
    /// Each expected network's namespace, in the order of `expected.networks`.
    pub networks: Vec<NetworkReading>,
    /// The API server's clock.
    pub clock: ClockReading,
}

/// The agent's two ways in.
#[derive(Clone, Debug)]
pub struct AgentReading {
    /// The RPC socket's answer to `status`: `Ok(None)` ready, `Ok(Some(why))`
    /// not ready, `Err` no answer.
    pub socket: Result<Option<String>, String>,
    /// `GET /readyz`: `Ok` on 200, else the status and body or the error.
    pub readyz: Result<(), String>,
}

impl Default for AgentReading {
    fn default() -> Self {
        Self {
            socket: Err("not read".into()),
            readyz: Err("not read".into()),
        }
    }
}

/// One network device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkReading {
    /// Name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// IPv4 addresses.
    pub addresses: Vec<Ipv4Net>,
}

/// A WireGuard peer as the interface reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerReading {
    /// Public key (base64).
    pub public_key: String,
    /// Allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Since the last handshake (`None`: never).
    pub handshake_age: Option<Duration>,
}

/// The node's namespace: WireGuard and the node guard.
#[derive(Clone, Debug)]
pub struct MeshReading {
    /// The WireGuard link (`None`: missing).
    pub link: Result<Option<LinkReading>, String>,
    /// The peers (`Err`: the interface did not answer, e.g. wireguard-go is down).
    pub peers: Result<Vec<PeerReading>, String>,
    /// `inet privnet-guard` (`Ok(None)`: missing).
    pub node_table: Result<Option<TableReading>, String>,
}

/// An nft table, as `nft -j list table` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableReading {
    /// `family name`, e.g. `bridge privnet-ports`.
    pub name: String,
    /// Chains in order, each with its rules (each rule's expression as JSON text).
    pub chains: Vec<(String, Vec<String>)>,
    /// Elements of the table's sets: (set, key as `pv1a . 10.240.0.5`).
    pub set_elements: Vec<(String, String)>,
}

/// One network's namespace.
#[derive(Clone, Debug)]
pub struct NetworkReading {
    /// Network id.
    pub id: String,
    /// Whether the namespace exists (nothing else is read when not).
    pub namespace: bool,
    /// Every device of the namespace.
    pub links: Result<Vec<LinkReading>, String>,
    /// The VXLAN device's FDB (`Ok(None)`: no VXLAN device).
    pub fdb: Result<Option<Vec<ExpectedFdb>>, String>,
    /// privnet's tables in the namespace (those present).
    pub tables: Result<Vec<TableReading>, String>,
    /// DNS queries to the gateway, from inside the namespace.
    pub dns: Vec<DnsAnswer>,
    /// The container end of each expected port, by host port name
    /// (`Ok(None)`: the container's namespace or interface is gone).
    pub containers: Vec<(String, Result<Option<LinkReading>, String>)>,
}

/// One A query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The name asked.
    pub name: String,
    /// The addresses (empty: NXDOMAIN or no data), or why there was no answer.
    pub answer: Result<Vec<Ipv4Addr>, String>,
}

/// The API server's `Date` against the local clock.
#[derive(Clone, Debug, Default)]
pub enum ClockReading {
    /// No API configured (files source, no kubeconfig).
    #[default]
    NoApi,
    /// The request failed or sent no usable `Date`.
    Failed(String),
    /// Local time before the request, after the answer, and the server's `Date` (1 s resolution).
    Read {
        /// Before sending.
        before: SystemTime,
        /// After the answer.
        after: SystemTime,
        /// The server's `Date`.
        server: SystemTime,
    },
}
