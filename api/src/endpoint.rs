//! `PrivateEndpoint`: one attached container (written by the node agent,
//! owned by its Pod so Kubernetes garbage-collects it).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// One container attached to a private network.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "privnet.io",
    version = "v1alpha1",
    kind = "PrivateEndpoint",
    shortname = "pep",
    category = "privnet",
    namespaced,
    cel,
    printcolumn = r#"{"name":"Hostname","type":"string","jsonPath":".spec.hostname"}"#,
    printcolumn = r#"{"name":"IP","type":"string","jsonPath":".spec.ip"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.hostname.startsWith(string(self.containerNumber) + '.' + self.processType + '.' + self.applicationId + '.' + self.networkId + '.')").message("hostname must be <number>.<type>.<application>.<network>.<domain>"))]
#[serde(rename_all = "camelCase")]
pub struct PrivateEndpointSpec {
    /// Network id `pn-<uuid>`.
    #[schemars(regex(pattern = r"^pn-[a-z0-9-]{1,60}$"))]
    pub network_id: String,
    /// Application id (a DNS label).
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub application_id: String,
    /// Process type (`web`, `worker`, …; a DNS label).
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub process_type: String,
    /// Container number: lowest free positive integer per (app, type).
    #[schemars(range(min = 1))]
    pub container_number: u32,
    /// Full private hostname.
    #[schemars(length(max = 253))]
    pub hostname: String,
    /// Private IPv4 address.
    pub ip: String,
    /// MAC of the private interface.
    #[schemars(regex(pattern = r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$"))]
    pub mac: String,
    /// Node hosting the container.
    pub node: String,
    /// Runtime container id.
    pub container_id: String,
    /// Interface name inside the container.
    pub interface: String,
}
