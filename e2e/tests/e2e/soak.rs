//! The soak's leak check, short (`bench-soak --cycles 10000` is the long
//! run, docs/BENCHMARKS.md): ADD/DEL cycles over three networks against the
//! real agent of a sandbox node, sequential and parallel; the agent's RSS,
//! fds and threads grow at most 5 % from the start, and everything made per
//! container (records, claims, ports, guard map elements and chains, nft
//! rules, endpoints, zone entries, network namespaces, child processes) is
//! back to its idle value. The positive control: one ADD left without its
//! DEL breaks the same verdict.

use crate::common;

use privnet_e2e::bench::soak::{self, SoakConfig};

#[test]
fn add_del_cycles_leak_nothing() {
    common::require_root!();
    let report = soak::run(&SoakConfig {
        privnet: common::bin("privnet"),
        cycles: 300,
        parallel: 4,
        limit: 0.05,
    })
    .expect("the soak runs");
    println!("{}", report.render());
    let ran = report
        .latency
        .iter()
        .filter_map(|(add, _)| *add)
        .map(|s| s.count)
        .sum::<usize>();
    assert!(ran > 200, "the cycles after the warm-up ran: {ran}");
    for what in [
        "records",
        "claims",
        "map elements",
        "port chains",
        "ports",
        "endpoints",
        "zone entries",
    ] {
        assert!(
            report
                .control
                .iter()
                .any(|b| b.0.starts_with(&format!("{what} at leak"))),
            "the leak control must show in {what}: {:?}",
            report.control
        );
    }
    assert_eq!(
        report.failures.0, 0,
        "failed calls: {:?}",
        report.failures.1
    );
    assert!(
        report.broken.is_empty(),
        "limits broken: {:?}",
        report.broken
    );
}
