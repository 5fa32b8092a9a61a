//! privnet's defaults on a node, in one place: the clap defaults of
//! `privnet agent`/`privnet controller`, the sandbox and the chart's
//! `values.yaml` all point here (`api/tests/chart_defaults.rs` fails when the
//! chart drifts).
//!
//! privnet runs beside the node's primary CNI, so none of these may be a
//! value a common CNI takes by default (docs/ARCHITECTURE.md, decision 16):
//!
//! | what | privnet | taken by |
//! |------|---------|----------|
//! | VXLAN UDP port | 4796 | 4789: Calico VXLAN, Antrea, OpenShift SDN, Kube-OVN, Docker overlay; 8472: Flannel, Cilium, the kernel's own default; 4790: VXLAN-GPE; 4791: RoCEv2; 6081: Geneve (OVN-Kubernetes, Antrea, Cilium) |
//! | WireGuard UDP port | 4797 | 51820: Calico, Kilo, Flannel, Antrea, Talos KubeSpan; 51821: Calico IPv6, Flannel IPv6; 51871: Cilium |
//! | VNI range | 1048576–16777215 | 1: Flannel; 4096/4097: Calico IPv4/IPv6 (and Flannel on Windows); < 65536: Cilium's cluster-local identities |
//! | mesh CIDR | 198.19.0.0/16 | 100.64.0.0/10: CGNAT, Tailscale; 100.64.0.0/16: OVN-Kubernetes and Kube-OVN join networks; 10.0.0.0/8: Cilium's cluster pool; 10.244/16, 10.42/16, 10.43/16, 10.96/12, 10.128/14, 10.32/12, 10.4/16: Flannel/kubeadm, k3s/RKE2, services, OpenShift, Weave, Kilo; 172.17/16 and up: Docker; 192.168/16: Calico's default pool |
//!
//! Both ports sit below the Linux ephemeral range (32768–60999), so an
//! outgoing connection can never hold them when the agent (re)binds.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;

/// Namespace of the controller and the agents (`helm install -n`).
pub const NAMESPACE: &str = "privnet-system";

/// UDP port of privnet's VXLAN devices. It only ever carries traffic inside
/// WireGuard, but its socket lives in the node's namespace beside the
/// primary CNI's.
pub const VXLAN_PORT: u16 = 4796;

/// UDP port of privnet's WireGuard interface (open it between nodes).
pub const WIREGUARD_PORT: u16 = 4797;

/// VNIs the controller assigns to private networks (and the agents guard):
/// 2^20 upwards, clear of every small id other overlays pick.
pub const VNI_RANGE: RangeInclusive<u32> = (1 << 20)..=crate::vni::MAX_VNI;

/// Mesh (VTEP) addresses: a /16 of RFC 2544's 198.18.0.0/15, reserved for
/// lab use and never routed, so no cluster, cloud or CGNAT uses it for pods,
/// services or nodes; 65 534 nodes.
pub const MESH_CIDR: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(198, 19, 0, 0), 16) {
    Ok(net) => net,
    Err(_) => panic!("valid constant"),
};
