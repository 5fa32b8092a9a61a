//! `PrivateNetwork`: the L2 network of one project.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use privnet_core::ipam::gateway_of;
use privnet_core::naming::zone_origin;

use super::Condition;

/// Default subnet of every private network (overlap across networks is normal).
pub const DEFAULT_SUBNET: &str = "10.240.0.0/22";

/// A private network, owned by one project.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "privnet.io",
    version = "v1alpha1",
    kind = "PrivateNetwork",
    derive = "PartialEq",
    shortname = "pn",
    category = "privnet",
    status = "PrivateNetworkStatus",
    cel,
    printcolumn = r#"{"name":"Project","type":"string","jsonPath":".spec.project"}"#,
    printcolumn = r#"{"name":"Id","type":"string","jsonPath":".status.id"}"#,
    printcolumn = r#"{"name":"Subnet","type":"string","jsonPath":".spec.subnet"}"#,
    printcolumn = r#"{"name":"VNI","type":"integer","jsonPath":".status.vni"}"#,
    printcolumn = r#"{"name":"Endpoints","type":"integer","jsonPath":".status.endpoints"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PrivateNetworkSpec {
    /// Name of the owning `Project`.
    #[x_kube(validation = Rule::new("self == oldSelf").message("project is immutable"))]
    #[schemars(length(min = 1, max = 253))]
    pub project: String,
    /// IPv4 subnet in CIDR form, /8 to /30.
    #[serde(default = "default_subnet")]
    #[schemars(
        length(max = 18),
        regex(pattern = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/([89]|[12][0-9]|30)$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("subnet is immutable: create a new network to renumber"))]
    // One bounded regex, not `split()`: the API server cannot bound the parts
    // `split` returns, so a rule over them is estimated as unbounded.
    #[x_kube(validation = Rule::new(SUBNET_OCTETS_RULE).message("subnet octets must be 0-255"))]
    pub subnet: String,
    /// MTU of the private interfaces (default: computed from the underlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1280, max = 9000))]
    pub mtu: Option<u32>,
}

/// CEL rule: every octet of a subnet is 0-255, without leading zeros.
pub(crate) const SUBNET_OCTETS_RULE: &str = "self.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/')";

fn default_subnet() -> String {
    DEFAULT_SUBNET.to_string()
}

/// Observed state of a private network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateNetworkStatus {
    /// Network id `pn-<uuid>` (from the object's UID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Cluster-unique VXLAN network identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Gateway address (first host of the subnet): DNS of the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// DNS zone `<id>.private-network.internal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Effective MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Number of attached endpoints.
    #[serde(default)]
    pub endpoints: u32,
    /// Nodes hosting at least one endpoint.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Generation last acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `VniAllocated`, …
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl PrivateNetworkStatus {
    /// Sets what a network's identity decides — id, VNI, gateway (first host
    /// of `spec.subnet`, none when it does not parse), zone
    /// `<id>.<domain>` and MTU — leaving counts and conditions alone. The one
    /// rule the controller and the sandbox both apply.
    pub fn set_identity(&mut self, id: &str, vni: u32, spec: &PrivateNetworkSpec, domain: &str) {
        let subnet: Option<ipnet::Ipv4Net> = spec.subnet.parse().ok();
        self.id = Some(id.to_string());
        self.vni = Some(vni);
        self.gateway = subnet.map(|s| gateway_of(s).to_string());
        self.zone = Some(zone_origin(id, domain));
        self.mtu = spec.mtu;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_names_gateway_and_zone_from_id_and_subnet() {
        let spec = PrivateNetworkSpec {
            project: "p".into(),
            subnet: "10.9.0.77/24".into(),
            mtu: Some(1400),
        };
        let mut status = PrivateNetworkStatus {
            endpoints: 3,
            ..Default::default()
        };
        status.set_identity("pn-1", 42, &spec, "private-network.internal");
        assert_eq!(status.id.as_deref(), Some("pn-1"));
        assert_eq!(status.vni, Some(42));
        assert_eq!(status.gateway.as_deref(), Some("10.9.0.1"));
        assert_eq!(
            status.zone.as_deref(),
            Some("pn-1.private-network.internal")
        );
        assert_eq!(status.mtu, Some(1400));
        assert_eq!(status.endpoints, 3, "counts are left alone");
        let bad = PrivateNetworkSpec {
            subnet: "nope".into(),
            ..spec
        };
        status.set_identity("pn-1", 42, &bad, "private-network.internal");
        assert_eq!(status.gateway, None, "no gateway without a subnet");
    }
}
