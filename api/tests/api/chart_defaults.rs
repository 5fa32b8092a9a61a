//! The chart's `values.yaml` holds privnet-core's defaults (the same values
//! the flags' defaults and the sandbox use), so the three cannot drift.
//! Needs no Helm: it reads the file itself.

use std::path::PathBuf;

use privnet_core::defaults::{MESH_CIDR, NAMESPACE, VXLAN_PORT, WIREGUARD_PORT};
use privnet_core::vni::DEFAULT_VNI_RANGE;
use serde_yaml::Value;

fn chart_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/privnet")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn values_yaml_holds_the_core_defaults() {
    let values: Value = serde_yaml::from_str(&chart_file("values.yaml")).unwrap();
    let int = |v: &Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("not an integer: {v:?}"))
    };
    assert_eq!(
        values["mesh"]["cidr"].as_str(),
        Some(MESH_CIDR.to_string().as_str())
    );
    assert_eq!(int(&values["vxlan"]["port"]), u64::from(VXLAN_PORT));
    assert_eq!(int(&values["wireguard"]["port"]), u64::from(WIREGUARD_PORT));
    assert_eq!(
        int(&values["vxlan"]["vniRange"]["first"]),
        u64::from(*DEFAULT_VNI_RANGE.start())
    );
    assert_eq!(
        int(&values["vxlan"]["vniRange"]["last"]),
        u64::from(*DEFAULT_VNI_RANGE.end())
    );
    // The namespace is the install command's (`-n`), not a value: the docs say it.
    assert!(chart_file("UPGRADING.md").contains(&format!("-n {NAMESPACE}")));
}

#[test]
fn defaults_stay_clear_of_common_cnis() {
    // Calico VXLAN/Antrea/OpenShift SDN, Flannel/Cilium/kernel default, VXLAN-GPE, RoCEv2, Geneve.
    for taken in [4789, 8472, 4790, 4791, 6081] {
        assert_ne!(VXLAN_PORT, taken);
    }
    // Calico/Kilo/Flannel/Antrea, their IPv6 ports, Cilium.
    for taken in [51820, 51821, 51871] {
        assert_ne!(WIREGUARD_PORT, taken);
    }
    // Flannel's VNI 1, Calico's 4096/4097, Cilium's cluster-local identities.
    for taken in [1, 4096, 4097, 65_535] {
        assert!(!DEFAULT_VNI_RANGE.contains(&taken), "{taken}");
    }
    // CGNAT/Tailscale (and the OVN join networks inside it), Cilium's 10/8, Docker, Calico.
    for taken in [
        "100.64.0.0/10",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
    ] {
        let taken: ipnet::Ipv4Net = taken.parse().unwrap();
        assert!(
            !taken.contains(&MESH_CIDR.network()) && !MESH_CIDR.contains(&taken.network()),
            "{MESH_CIDR} overlaps {taken}"
        );
    }
}
