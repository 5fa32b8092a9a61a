//! Root test: the bridge answers a container's ARP request for a remote
//! endpoint from the agent's entries, and the request does not cross the
//! overlay port. A stand-in "remote" namespace sits behind a veth port set
//! up as the agent sets up a network's VXLAN port (learning off,
//! `neigh_suppress` on) and does not answer ARP itself (`arp off`), so the
//! container can only learn its MAC from the bridge. An nft counter on the
//! overlay port counts the ARP frames that leave through it.

use crate::datapath_support;

use std::collections::BTreeSet;
use std::process::Command;

use privnet_agent::datapath::arp_answers::{self, ArpAnswer};
use privnet_agent::datapath::links;
use privnet_agent::datapath::netns::{self, NetnsFd};

/// Deletes the namespaces, even when the test panics.
struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = netns::delete(ns);
        }
    }
}

fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip -n {ns} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let json: serde_json::Value =
        serde_json::from_str(&ip(ns, &["-j", "link", "show", dev])).unwrap();
    privnet_core::mac::parse_mac(json[0]["address"].as_str().unwrap()).unwrap()
}

/// ARP frames that left through the overlay port so far.
fn arp_out(ns: &str) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "-j", "list", "table", "bridge", "probe",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get("rule"))
        .flat_map(|r| r["expr"].as_array().cloned().unwrap_or_default())
        .find_map(|e| e.get("counter").map(|c| c["packets"].as_u64().unwrap()))
        .unwrap()
}

fn ping_ok(ns: &str, dst: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c1", "-W1", dst])
        .output()
        .unwrap();
    out.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_answers_arp_for_remote_endpoints_without_crossing_the_overlay() {
    datapath_support::require_root!();
    let p = format!("parp{}", std::process::id());
    let (net, a, c) = (format!("{p}n"), format!("{p}a"), format!("{p}c"));
    let _cleanup = Cleanup(vec![a.clone(), c.clone(), net.clone()]);
    for ns in [&net, &a, &c] {
        netns::create(ns).unwrap();
    }
    ip(&net, &["link", "add", "br0", "type", "bridge"]);
    ip(&net, &["addr", "add", "10.9.0.1/24", "dev", "br0"]);
    ip(&net, &["link", "set", "br0", "up"]);
    for (port, peer) in [("pa", &a), ("px", &c)] {
        ip(
            &net,
            &[
                "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", peer,
            ],
        );
        ip(&net, &["link", "set", port, "master", "br0", "up"]);
    }
    for (ns, addr) in [(&a, "10.9.0.2/24"), (&c, "10.9.0.3/24")] {
        ip(ns, &["addr", "add", addr, "dev", "eth0"]);
        ip(ns, &["link", "set", "eth0", "up"]);
    }
    // The remote end never answers ARP; it knows the container already.
    ip(&c, &["link", "set", "eth0", "arp", "off"]);
    let a_mac = privnet_core::mac::format_mac(&mac_of(&a, "eth0"));
    ip(
        &c,
        &[
            "neigh",
            "replace",
            "10.9.0.2",
            "lladdr",
            &a_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    );
    let nft = Command::new("ip")
        .args(["netns", "exec", &net, "nft", "add table bridge probe; add chain bridge probe post { type filter hook postrouting priority 0; }; add rule bridge probe post oifname \"px\" ether type arp counter"])
        .status()
        .unwrap();
    assert!(nft.success());
    let ns = NetnsFd::named(&net).unwrap();
    let h = netns::handle_in(&ns).await.unwrap();
    let br = links::get(&h, "br0").await.unwrap().unwrap().index;
    let px = links::get(&h, "px").await.unwrap().unwrap().index;
    links::set_overlay_port(&h, px).await.unwrap();

    // Negative control: without an answer the request crosses (the counter
    // sees it) and nothing resolves the remote end.
    let before = arp_out(&net);
    assert!(
        !ping_ok(&a, "10.9.0.3"),
        "only the bridge can answer for 10.9.0.3"
    );
    assert!(
        arp_out(&net) > before,
        "the unanswered request went out the overlay port"
    );

    // The answer: the bridge replies, nothing ARP leaves through px.
    let answer = ArpAnswer {
        ip: "10.9.0.3".parse().unwrap(),
        mac: mac_of(&c, "eth0"),
    };
    let desired: BTreeSet<ArpAnswer> = [answer].into();
    let changed = arp_answers::sync(&h, br, px, &desired).await.unwrap();
    assert_eq!(changed.add_neighbours, [answer]);
    assert_eq!(
        arp_answers::read(&h, br, px).await.unwrap().neighbours,
        desired
    );
    ip(&a, &["neigh", "flush", "dev", "eth0"]);
    let before = arp_out(&net);
    assert!(
        ping_ok(&a, "10.9.0.3"),
        "the bridge answered for the remote end"
    );
    assert_eq!(arp_out(&net), before, "no ARP crossed the overlay port");
    assert!(
        arp_answers::sync(&h, br, px, &desired)
            .await
            .unwrap()
            .is_empty(),
        "a second sync changes nothing"
    );

    // Gone from the desired set: both entries go.
    arp_answers::sync(&h, br, px, &BTreeSet::new())
        .await
        .unwrap();
    let left = arp_answers::read(&h, br, px).await.unwrap();
    assert!(
        left.neighbours.is_empty() && left.macs.is_empty(),
        "{left:?}"
    );
    drop(h);
}
