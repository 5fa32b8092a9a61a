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
        .find(|(c, _)| c == "from-mesh")
        .unwrap()
        .1;
    rules[0] = rules[0].replace("02:70:00:00:00:64", "02:70:00:00:00:ff");
    let p = compare(&want, Some(&t), |_| true);
    assert!(p.len() == 1 && p[0].contains("rule 1 differs"), "{p:?}");
    // A port's element dropped from a set.
    let mut t = kernel_ports();
    t.set_elements.retain(|(set, _)| set != "port-ip");
    let p = compare(&want, Some(&t), |_| true);
    assert_eq!(
        p,
        ["table bridge privnet-ports: pv1a . 10.240.0.5 is not in the set port-ip"]
    );
    // A retired port awaiting the purge is fine while its veth is gone, not otherwise.
    let mut t = kernel_ports();
    t.set_elements
        .push(("port-mac".into(), "pv2b . 0a:58:01:02:03:05".into()));
    t.set_elements
        .push(("port-ip".into(), "pv2b . 10.240.0.6".into()));
    assert!(compare(&want, Some(&t), |name| name == "pv2b").is_empty());
    let p = compare(&want, Some(&t), |_| false);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].contains("pv2b . 0a:58:01:02:03:05 is in the set port-mac but not guarded"),
        "{p:?}"
    );
    // An extra chain is seen.
    let mut t = kernel_ports();
    t.chains.push(("port-pv2b".into(), Vec::new()));
    let p = compare(&want, Some(&t), |_| true);
    assert_eq!(
        p,
        ["table bridge privnet-ports: unexpected chain port-pv2b"]
    );
}
