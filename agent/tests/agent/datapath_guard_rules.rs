//! Root test: one deleted rule of the port chain and one deleted element of
//! a port set are seen by the read-back (against the rendering, not only
//! "table missing") and put back alone: every other rule keeps its handle,
//! so nothing healthy was flushed or rewritten.

use crate::datapath_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use privnet_agent::datapath::drift::What;
use privnet_agent::datapath::guard::{self, GuardedPort};
use privnet_agent::datapath::netns::{self, NetnsFd};
use privnet_agent::datapath::network::{self, NetworkDatapath};
use privnet_agent::datapath::observe;
use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Deletes the namespace, even when the test panics.
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

fn nft(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nft {args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rule handles per "table chain".
fn handles(ns: &str) -> BTreeMap<String, Vec<u64>> {
    let json: Value = serde_json::from_str(&nft(ns, &["-a", "-j", "list", "ruleset"])).unwrap();
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for item in json["nftables"].as_array().unwrap() {
        if let Some(r) = item.get("rule") {
            let key = format!(
                "{} {} {}",
                r["family"].as_str().unwrap(),
                r["table"].as_str().unwrap(),
                r["chain"].as_str().unwrap()
            );
            out.entry(key)
                .or_default()
                .push(r["handle"].as_u64().unwrap());
        }
    }
    out
}

fn spec(netns: &str) -> NetworkDatapath {
    NetworkDatapath {
        netns: netns.into(),
        vni: 100,
        bridge: "br0".into(),
        vxlan: "vx100".into(),
        gateway: "10.240.0.1/24".parse().unwrap(),
        gateway_mac: [0x02, 0x70, 0, 0, 0, 100],
        mtu: 1390,
        vtep: "198.19.0.1".parse().unwrap(),
        vxlan_port: 4796,
        underlay_dev: "wg0".into(),
        gro_flush_timeout_ns: 0,
    }
}

async fn drifts(ns: &NetnsFd, spec: &NetworkDatapath, ports: &[GuardedPort]) -> Vec<String> {
    let installed = observe::installed_ruleset(ns).await.unwrap();
    let rendered = guard::network_ruleset(&spec.guard(ports)).unwrap();
    let tables = [guard::PORTS_TABLE, guard::GATEWAY_TABLE];
    observe::guard_drifts(
        &installed,
        &rendered,
        &tables,
        What::NetworkGuard,
        What::GuardRules,
    )
    .iter()
    .map(ToString::to_string)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_rule_and_set_element_come_back_alone() {
    datapath_support::require_root!();
    let name = format!(
        "pgr{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    netns::create(&name).unwrap();
    let _cleanup = Cleanup(name.clone());
    let ns = NetnsFd::named(&name).unwrap();
    let spec = spec(&name);
    let ports = [("pv1a", 5), ("pv2b", 6)].map(|(n, last)| GuardedPort {
        host_ifname: n.into(),
        mac: [0x0a, 0x58, 10, 240, 0, last],
        ip: format!("10.240.0.{last}").parse().unwrap(),
    });
    network::set_ports(&spec, &ports).await.unwrap();
    assert_eq!(
        drifts(&ns, &spec, &ports).await,
        Vec::<String>::new(),
        "healthy"
    );
    let before = handles(&name);

    // The fault: one rule of the port chain, and pv1a's address element.
    let victim = before["bridge privnet-ports from-port"][3];
    nft(
        &name,
        &[
            "delete",
            "rule",
            "bridge",
            "privnet-ports",
            "from-port",
            "handle",
            &victim.to_string(),
        ],
    );
    nft(
        &name,
        &[
            "delete",
            "element",
            "bridge",
            "privnet-ports",
            "port-ip",
            "{ \"pv1a\" . 10.240.0.5 }",
        ],
    );
    let found = drifts(&ns, &spec, &ports).await;
    assert_eq!(
        found,
        [
            "guard_rules bridge privnet-ports chain from-port: 10 rules, want 11",
            "guard_rules bridge privnet-ports set port-ip element pv1a . 10.240.0.5: element missing",
        ],
        "the read-back sees a single rule and a single element"
    );

    network::repair_guard_rules(&spec, &ports).await.unwrap();
    assert_eq!(
        drifts(&ns, &spec, &ports).await,
        Vec::<String>::new(),
        "repaired"
    );
    assert!(
        nft(
            &name,
            &["list", "set", "bridge", "privnet-ports", "port-ip"]
        )
        .contains("\"pv1a\" . 10.240.0.5")
    );
    let after = handles(&name);
    // Positive control: the repaired chain was written again (new handles),
    // so the comparison below can see a rewrite.
    let key = "bridge privnet-ports from-port";
    assert_eq!(after[key].len(), 11);
    assert!(
        after[key].iter().all(|h| !before[key].contains(h)),
        "{:?} -> {:?}",
        before[key],
        after[key]
    );
    for (chain, hs) in &before {
        if chain != key {
            assert_eq!(
                &after[chain], hs,
                "{chain} was rewritten: healthy state flushed"
            );
        }
    }
    // A second repair has nothing to do.
    network::repair_guard_rules(&spec, &ports).await.unwrap();
    assert_eq!(handles(&name), after);
}
