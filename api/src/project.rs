//! `Project`: groups applications; owns exactly one `PrivateNetwork`.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Condition;

/// A project: the namespaces whose workloads belong to it. Every project
/// automatically gets one dedicated private network.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "privnet.io",
    version = "v1alpha1",
    kind = "Project",
    derive = "PartialEq",
    shortname = "proj",
    category = "privnet",
    status = "ProjectStatus",
    cel,
    printcolumn = r#"{"name":"Network","type":"string","jsonPath":".status.networkId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSpec {
    /// Namespaces whose workloads belong to this project. A namespace
    /// belongs to at most one project (conflicts are reported as conditions).
    #[serde(default)]
    #[schemars(schema_with = "namespaces_schema")]
    pub namespaces: Vec<String>,
    /// Whether the `web` process type is public (reachable from the cluster
    /// network). Every other process type is always private.
    #[serde(default = "default_true")]
    pub public_web: bool,
    /// Overrides for the project's network (subnet, MTU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<ProjectNetwork>,
}

/// Network settings a project may override.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectNetwork {
    /// IPv4 subnet in CIDR form (default `10.240.0.0/22`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 18),
        regex(pattern = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/([89]|[12][0-9]|30)$")
    )]
    // The network's own rule, here too: a bad override is refused on the
    // Project instead of failing later when its network is created.
    #[x_kube(validation = Rule::new(crate::network::SUBNET_OCTETS_RULE).message("subnet octets must be 0-255"))]
    pub subnet: Option<String>,
    /// MTU of the private interfaces (default: computed from the underlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1280, max = 9000))]
    pub mtu: Option<u32>,
}

/// Most namespaces one project may hold.
pub const MAX_NAMESPACES: usize = 256;

/// The `namespaces` list, bounded so the API server's CEL cost estimate stays
/// small: at most [`MAX_NAMESPACES`] DNS labels of at most 63 characters.
/// Uniqueness is the schema's (`x-kubernetes-list-type: set`, answered with
/// `Duplicate value`), not a quadratic rule; the one rule left runs per item.
fn namespaces_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": MAX_NAMESPACES,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "maxLength": 63,
            "x-kubernetes-validations": [{
                "rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
                "message": "every namespace must be a DNS label (lowercase letters, digits and '-', at most 63 characters)",
            }],
        },
    })
}

fn default_true() -> bool {
    true
}

/// Observed state of a project.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    /// Id of the project's network (`pn-<uuid>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    /// Name of the owned `PrivateNetwork` object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_name: Option<String>,
    /// Generation last acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `NamespaceConflict`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
