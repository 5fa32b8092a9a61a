//! The agent RPC protocol: what `privnet-cni` asks the node agent over its
//! unix socket (`/run/privnet/agent.sock`).
//!
//! Framing: one request per connection, a single JSON object terminated by a
//! newline, answered by a single JSON object terminated by a newline. One
//! round trip per CNI verb keeps ADD fast; the agent does IPAM, creates the
//! network's namespace/bridge on demand and publishes the endpoint, the
//! plugin only wires the veth pair.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Default path of the agent socket.
pub const DEFAULT_SOCKET: &str = "/run/privnet/agent.sock";

/// Identity of one attachment: the CNI key (container id, interface name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentKey {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

/// How the plugin names the private network to join.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSelector {
    /// Explicit network id (`pn-<uuid>`) from the network config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    /// Kubernetes pod namespace (`K8S_POD_NAMESPACE`): the agent resolves the
    /// project owning that namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// Kubernetes pod name (`K8S_POD_NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
}

/// What the workload says about itself (CNI_ARGS / pod annotations). Missing
/// fields are filled by the agent (container number: lowest free).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Application id (a DNS label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    /// Process type (`web`, `worker`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_type: Option<String>,
    /// Container number, when already assigned (admission webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_number: Option<u32>,
}

/// ADD: reserve an address and everything the plugin needs to wire it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachRequest {
    /// The attachment key.
    pub key: AttachmentKey,
    /// `CNI_NETNS` (path of the container's network namespace).
    pub netns: String,
    /// Which network.
    pub network: NetworkSelector,
    /// Workload identity.
    #[serde(default)]
    pub workload: Workload,
    /// Two answers on the connection: `Attached` as soon as the address is
    /// taken and the network is up, so the plugin wires the veth meanwhile,
    /// then `PortReady` once the port's guard is in place (or an error,
    /// with everything the agent did undone). An older plugin leaves it
    /// out and gets the one answer, after the guard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_early: bool,
}

/// The agent's answer to ADD/CHECK: one attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The attachment key.
    pub key: AttachmentKey,
    /// Network id (`pn-<uuid>`).
    pub network_id: String,
    /// Container address with the network's prefix length.
    pub address: Ipv4Net,
    /// Gateway (`.1`): DNS resolver of the network; no default route.
    pub gateway: Ipv4Addr,
    /// Container MAC (locally administered, stable for the attachment).
    pub mac: String,
    /// MTU to set on the container interface and the host end.
    pub mtu: u32,
    /// Path of the network's namespace (holds the bridge).
    pub network_netns: String,
    /// Bridge name inside the network namespace.
    pub bridge: String,
    /// Name of the veth end attached to the bridge.
    pub host_ifname: String,
    /// Private hostname of the container.
    pub hostname: String,
    /// DNS settings for the CNI result.
    pub dns: Dns,
}

/// DNS block of the CNI result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    /// Resolver addresses (the network gateway).
    pub nameservers: Vec<String>,
    /// Search domains.
    pub search: Vec<String>,
}

/// One request from the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Is the agent ready?
    Status,
    /// ADD.
    Attach(AttachRequest),
    /// DEL (idempotent: unknown keys succeed).
    Release(AttachmentKey),
    /// CHECK: return the recorded attachment.
    Check(AttachmentKey),
    /// GC: release every attachment not listed (optionally of one network).
    #[serde(rename_all = "camelCase")]
    Gc {
        /// Restrict to this network id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network_id: Option<String>,
        /// Attachments to keep.
        valid: Vec<AttachmentKey>,
    },
    /// What the node's datapath should be (read-only, for `privnet doctor`).
    Expected,
}

/// Error kinds the agent reports; the plugin maps them to CNI codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorKind {
    /// Agent not ready yet (CNI 11 / 50).
    NotReady,
    /// The network could not be resolved (CNI 7: invalid config).
    UnknownNetwork,
    /// Address pool exhausted (CNI 11 try later is wrong; plugin-specific 102).
    Exhausted,
    /// Bad request field (CNI 7).
    Invalid,
    /// The key is not attached (CHECK).
    NotFound,
    /// The pod was not admitted by privnet's webhook: not a privnet workload
    /// (chained mode passes `prevResult` through; otherwise CNI 7).
    NotAdmitted,
    /// The node's state directory is full: nothing was attached, a later
    /// try works once there is room (CNI 11).
    NoSpace,
    /// Anything else (CNI 999).
    Internal,
}

/// One response from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Response {
    /// Status: ready.
    Ready,
    /// Attach/Check: the attachment.
    Attached(Box<Attachment>),
    /// Attach with `answerEarly`, first answer: the attachment to wire now;
    /// the final answer (`PortReady` or an error) follows on the connection.
    Wire(Box<Attachment>),
    /// Attach with `answerEarly`, final answer: the port's guard is in
    /// place and the record persisted.
    PortReady,
    /// Release/Gc done; number of attachments freed.
    Released {
        /// How many attachments were freed.
        freed: usize,
    },
    /// Expected: the agent's desired view of the node.
    Expected(Box<crate::expected::ExpectedState>),
    /// Failure.
    Error {
        /// Kind, mapped to a CNI code by the plugin.
        kind: ErrorKind,
        /// Message for the user.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrip_is_tagged() {
        let r = Request::Gc {
            network_id: Some("pn-1".into()),
            valid: vec![],
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"op":"gc","networkId":"pn-1","valid":[]}"#);
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
    }
}
