//! Root test: the port sets' elements changed over nfnetlink land in the
//! namespace's guard exactly as `nft` writes them (the keys' layout is the
//! kernel's), removals go before additions in one transaction, and a
//! removal of elements already gone does not block the additions.

use std::process::Command;

use privnet_agent::datapath::guard::{self, GuardedPort, NetworkGuard, PortChange};
use privnet_agent::datapath::netns::{self, NetnsFd};
use privnet_agent::datapath::nft_elements;

/// Deletes the namespace, even when the test panics.
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

fn nft(ns: &str, args: &[&str], input: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.unwrap_or("").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The elements of a port set, as nft prints them (`pv1a . 0a:58:…`).
fn elements(ns: &str, set: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(&nft(
        ns,
        &["-j", "list", "set", "bridge", "privnet-ports", set],
        None,
    ))
    .unwrap();
    let mut out: Vec<String> = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get("set"))
        .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            e["concat"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(" . ")
        })
        .collect();
    out.sort();
    out
}

fn port(name: &str, last: u8) -> GuardedPort {
    GuardedPort {
        host_ifname: name.into(),
        mac: [0x0a, 0x58, 10, 240, 0, last],
        ip: format!("10.240.0.{last}").parse().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_elements_over_netlink_are_the_ones_nft_writes() {
    privnet_testkit::require_root!();
    let name = format!("pnelem{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    netns::create(&name).unwrap();
    let ns = NetnsFd::named(&name).unwrap();
    let (a, b) = (port("pv1a", 5), port("pv2b", 6));
    // Positive control: the elements nft itself writes for `a`, read back.
    let g = NetworkGuard {
        vxlan: "vx100".into(),
        gateway_mac: [0x02, 0x70, 0, 0, 0, 100],
        ports: vec![a.clone()],
    };
    nft(
        &name,
        &["-f", "-"],
        Some(&guard::network_ruleset(&g).unwrap()),
    );
    let by_nft = (elements(&name, "port-mac"), elements(&name, "port-ip"));
    assert_eq!(by_nft.0, ["pv1a . 0a:58:0a:f0:00:05"]);
    assert_eq!(by_nft.1, ["pv1a . 10.240.0.5"]);

    // The same element removed and `b` added over netlink, in one batch.
    nft_elements::apply(
        &ns,
        &PortChange {
            remove: vec![a.clone()],
            add: vec![b.clone()],
        },
    )
    .await
    .unwrap();
    assert_eq!(elements(&name, "port-mac"), ["pv2b . 0a:58:0a:f0:00:06"]);
    assert_eq!(elements(&name, "port-ip"), ["pv2b . 10.240.0.6"]);

    // `a` back over netlink reads exactly as nft wrote it.
    nft_elements::apply(
        &ns,
        &PortChange {
            remove: Vec::new(),
            add: vec![a.clone()],
        },
    )
    .await
    .unwrap();
    assert!(elements(&name, "port-mac").contains(&by_nft.0[0]));
    assert!(elements(&name, "port-ip").contains(&by_nft.1[0]));

    // Removing what is gone already does not stop the additions.
    let c = port("pv3c", 7);
    nft_elements::apply(
        &ns,
        &PortChange {
            remove: vec![port("pv9z", 9)],
            add: vec![c.clone()],
        },
    )
    .await
    .unwrap();
    assert!(elements(&name, "port-ip").contains(&"pv3c . 10.240.0.7".to_string()));

    // A missing table is an error, and says what failed.
    nft(&name, &["delete", "table", "bridge", "privnet-ports"], None);
    let err = nft_elements::apply(
        &ns,
        &PortChange {
            remove: Vec::new(),
            add: vec![c],
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("port sets"), "{err}");
}
