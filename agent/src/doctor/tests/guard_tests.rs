//! The guard comparison against the ports table as the real nft prints it.

use super::expected;
use crate::doctor::guard::{self, ExpectedTable, compare, parse_nft_json};
use crate::doctor::readings::TableReading;

/// The ports table of `expected()` as the real nft 1.0 printed it
/// (`nft -j list table bridge privnet-ports` after `nft -f` of the agent's text).
fn kernel_ports() -> TableReading {
    let json = serde_json::from_str(include_str!("../testdata/ports.json")).unwrap();
    parse_nft_json("bridge privnet-ports", &json)
}

fn want_ports() -> ExpectedTable {
    guard::network_tables(&expected().networks[0])
        .unwrap()
        .into_iter()
        .find(|t| t.name == "bridge privnet-ports")
        .unwrap()
}

#[test]
fn the_kernels_form_of_the_ports_table_matches_and_each_change_is_seen() {
    let want = want_ports();
    assert_eq!(
        compare(&want, Some(&kernel_ports()), |_| true),
        Vec::<String>::new()
    );
    // A rule pinning another MAC.
    let mut t = kernel_ports();
    let rules = &mut t
        .chains
        .iter_mut()
        .find(|(c, _)| c == "port-pv1a")
        .unwrap()
        .1;
    rules[0] = rules[0].replace("0a:58:01:02:03:04", "0a:58:01:02:03:ff");
    let p = compare(&want, Some(&t), |_| true);
    assert!(p.len() == 1 && p[0].contains("rule 1 differs"), "{p:?}");
    // A port dropped from the verdict map.
    let mut t = kernel_ports();
    t.map_elements.retain(|e| e != "pv1a");
    let p = compare(&want, Some(&t), |_| true);
    assert!(
        p.iter().any(|p| p.contains("pv1a is not in the ports map")),
        "{p:?}"
    );
    // A retired port awaiting the purge is fine while its veth is gone, not otherwise.
    let mut t = kernel_ports();
    t.map_elements.push("pv2b".into());
    t.chains.push(("port-pv2b".into(), Vec::new()));
    assert!(compare(&want, Some(&t), |name| name == "pv2b").is_empty());
    let p = compare(&want, Some(&t), |_| false);
    assert_eq!(p.len(), 2, "{p:?}");
}
