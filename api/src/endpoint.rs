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
// The number is compared as an int, not spliced in with `string()`: the API
// server cannot bound the length of `string(int)`, so a rule building a
// string from it is estimated as unbounded and the CRD refused.
#[x_kube(validation = Rule::new(r"self.hostname.matches('^[1-9][0-9]{0,9}[.]') && int(self.hostname.substring(0, self.hostname.indexOf('.'))) == self.containerNumber && self.hostname.substring(self.hostname.indexOf('.') + 1).startsWith(self.processType + '.' + self.applicationId + '.' + self.networkId + '.')").message("hostname must be <number>.<type>.<application>.<network>.<domain>"))]
#[serde(rename_all = "camelCase")]
pub struct PrivateEndpointSpec {
    /// Network id `pn-<uuid>`.
    #[schemars(length(max = 63), regex(pattern = r"^pn-[a-z0-9-]{1,60}$"))]
    pub network_id: String,
    /// Application id (a DNS label).
    #[schemars(
        length(max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    )]
    pub application_id: String,
    /// Process type (`web`, `worker`, …; a DNS label).
    #[schemars(
        length(max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    )]
    pub process_type: String,
    /// Container number: lowest free positive integer per (app, type).
    #[schemars(range(min = 1))]
    pub container_number: u32,
    /// Full private hostname.
    #[schemars(length(max = 253))]
    pub hostname: String,
    /// Private IPv4 address.
    #[schemars(length(max = 15), extend("format" = "ipv4"))]
    pub ip: String,
    /// MAC of the private interface.
    #[schemars(length(max = 17), regex(pattern = r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$"))]
    pub mac: String,
    /// Node hosting the container.
    #[schemars(length(max = 253))]
    pub node: String,
    /// Runtime container id.
    #[schemars(length(max = 256))]
    pub container_id: String,
    /// Interface name inside the container (at most 15 bytes, IFNAMSIZ).
    #[schemars(length(max = 15))]
    pub interface: String,
}
