//! Names shared by the controller, the webhook and the agent's Kubernetes
//! source: labels, annotations, object names. One place, so the three agree.

/// Field manager of every server-side apply of the controller.
pub const FIELD_MANAGER: &str = "privnet-controller";
/// Field manager of the agent's server-side applies.
pub const AGENT_FIELD_MANAGER: &str = "privnet-agent";

/// Pod label: the application id.
pub const APPLICATION_LABEL: &str = "privnet.io/application";
/// Pod label: the process type (`web`, `worker`, …).
pub const PROCESS_TYPE_LABEL: &str = "privnet.io/process-type";
/// Label on owned objects: the project's name.
pub const PROJECT_LABEL: &str = "privnet.io/project";
/// Label on per-network objects: the network id.
pub const NETWORK_LABEL: &str = "privnet.io/network";
/// Label on claim Leases: what is claimed (`container-number`, `address`).
pub const CLAIM_KIND_LABEL: &str = "privnet.io/claim";
/// Claim kind of the webhook's container-number Leases.
pub const NUMBER_CLAIM_KIND: &str = "container-number";
/// Claim kind of the agents' address Leases.
pub const ADDRESS_CLAIM_KIND: &str = "address";

/// Holder of an address claim: the attachment `node/container-id/ifname`.
pub fn address_claim_owner(node: &str, container_id: &str, ifname: &str) -> String {
    format!("{node}/{container_id}/{ifname}")
}

/// The `(node, container id, ifname)` of an address claim's holder.
pub fn parse_address_claim_owner(holder: &str) -> Option<(&str, &str, &str)> {
    let (node, rest) = holder.split_once('/')?;
    let (container, ifname) = rest.rsplit_once('/')?;
    Some((node, container, ifname))
}

/// Pod annotation set by the webhook: the container number.
pub const CONTAINER_NUMBER_ANNOTATION: &str = "privnet.io/container-number";
/// Pod annotation set by the webhook: the network id.
pub const NETWORK_ID_ANNOTATION: &str = "privnet.io/network-id";
/// Pod annotation set by the webhook: the full private hostname.
pub const HOSTNAME_ANNOTATION: &str = "privnet.io/hostname";
/// Pod annotation set by the webhook: the Lease holding its number.
pub const NUMBER_CLAIM_ANNOTATION: &str = "privnet.io/number-claim";

/// PrivateNetwork annotation written by the controller: when its Project
/// was first seen missing (RFC 3339). The network is deleted only after the
/// orphan grace; a Project restored before that adopts it again.
pub const ORPHANED_SINCE_ANNOTATION: &str = "privnet.io/orphaned-since";

/// Node annotation published by the agent: WireGuard public key (base64).
pub const WG_PUBLIC_KEY_ANNOTATION: &str = "privnet.io/wireguard-public-key";
/// Node annotation published by the agent while it rotates its key: the
/// next WireGuard public key (base64), announced before it is used.
pub const WG_NEXT_PUBLIC_KEY_ANNOTATION: &str = "privnet.io/wireguard-next-public-key";
/// Node annotation published by the agent: the other nodes' announced next
/// keys it has configured (comma-separated base64), its acknowledgement.
pub const WG_ACCEPTED_KEYS_ANNOTATION: &str = "privnet.io/wireguard-accepted-keys";
/// Node annotation published by the agent: WireGuard endpoint `ip:port`.
pub const WG_ENDPOINT_ANNOTATION: &str = "privnet.io/wireguard-endpoint";
/// Node annotation written by the controller: the node's VTEP address.
pub const VTEP_ANNOTATION: &str = "privnet.io/vtep";

/// ConfigMap annotation: the zone's current SOA serial.
pub const ZONE_SERIAL_ANNOTATION: &str = "privnet.io/zone-serial";
/// ConfigMap annotation: digest of the zone's content (serial excluded).
pub const ZONE_DIGEST_ANNOTATION: &str = "privnet.io/zone-digest";

/// Name of the ConfigMap holding the zone of network `network_id`.
pub fn zone_configmap_name(network_id: &str) -> String {
    format!("privnet-zone-{network_id}")
}

/// Key of the zone file in its ConfigMap: `db.<zone origin>`.
pub fn zone_file_key(zone: &str) -> String {
    format!("db.{zone}")
}

/// Name of the NetworkPolicy isolating private process types of a project
/// in one of its namespaces.
pub const PRIVATE_POLICY_NAME: &str = "privnet-private-processes";
