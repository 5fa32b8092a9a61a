//! Bulk TCP across nodes reaches the receiving container in merged frames:
//! the VXLAN device's GRO holds bulk segments for the configured flush
//! timeout, so the bridge, the veth and the container's stack handle one
//! large frame instead of one per packet (docs/ARCHITECTURE.md). The
//! negative control turns the timeout off and sees packet-sized frames.

use crate::common;

use std::process::{Command, Stdio};

use common::Sandbox;

/// (rx bytes, rx packets) of `ifname` in `netns`, from `/proc/net/dev`.
fn rx_counters(sb: &Sandbox, netns: &str, ifname: &str) -> (u64, u64) {
    let out = sb.in_netns(netns, &["cat", "/proc/net/dev"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{ifname}:")))
        .unwrap_or_else(|| panic!("no {ifname} in {netns}:\n{text}"));
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    (fields[0], fields[1])
}

/// Sends `bytes` of bulk TCP from `from` to `to` with iperf3; returns the
/// average size of the frames `to` received meanwhile.
fn average_rx_frame(sb: &Sandbox, from: &str, to: &str, port: u16) -> u64 {
    let dst = sb.container(to);
    let (netns, ip) = (dst["netns"].as_str().unwrap(), dst["ip"].as_str().unwrap());
    let ifname = dst["interface"].as_str().unwrap();
    let mut server = Command::new("ip")
        .args(["netns", "exec", netns, "iperf3", "-s", "-1", "-B", ip])
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::observe::wait_listening(netns, port);
    let before = rx_counters(sb, netns, ifname);
    let out = sb.exec(
        from,
        &["iperf3", "-c", ip, "-p", &port.to_string(), "-n", "40M"],
    );
    let after = rx_counters(sb, netns, ifname);
    if !out.status.success() {
        // A server that never saw its one client would wait forever.
        let _ = server.kill();
    }
    let _ = server.wait();
    assert!(
        out.status.success(),
        "iperf3 {from} -> {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (after.0 - before.0) / (after.1 - before.1).max(1)
}

/// `(network namespace, gro_flush_timeout path)` of `project`'s VXLAN
/// device on every node.
fn gro_knobs(sb: &Sandbox, project: &str) -> Vec<(String, String)> {
    let vni = sb.network(project)["vni"].as_u64().unwrap();
    sb.status()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            (
                format!("{}{vni}", node["networkNetnsPrefix"].as_str().unwrap()),
                format!("/sys/class/net/vx{vni}/gro_flush_timeout"),
            )
        })
        .collect()
}

#[test]
fn bulk_tcp_across_nodes_arrives_in_merged_frames() {
    common::require_root!();
    let sb = Sandbox::up("g", None);
    let (from, to) = ("shop-api-web-1", "shop-api-worker-1");
    assert_ne!(
        sb.container(from)["node"],
        sb.container(to)["node"],
        "the pair must cross nodes"
    );
    let mtu = sb.network("shop")["mtu"].as_u64().unwrap();

    // The agent's default (20 µs) is what the kernel holds on every node.
    let knobs = gro_knobs(&sb, "shop");
    for (netns, knob) in &knobs {
        let value = sb.in_netns(netns, &["cat", knob]);
        assert_eq!(
            String::from_utf8_lossy(&value.stdout).trim(),
            "20000",
            "{netns}"
        );
    }

    let merged = average_rx_frame(&sb, from, to, 5401);
    assert!(
        merged > 2 * mtu,
        "bulk frames should be merged: {merged} bytes on average with MTU {mtu}"
    );

    // Negative control: without the timeout every segment goes up alone.
    for (netns, knob) in &knobs {
        let out = sb.in_netns(netns, &["sh", "-c", &format!("echo 0 > {knob}")]);
        assert!(out.status.success(), "{netns}: {out:?}");
    }
    let single = average_rx_frame(&sb, from, to, 5402);
    eprintln!("average received frame: {merged} B merged, {single} B without the timeout");
    assert!(
        single < mtu + mtu / 2 && merged > 2 * single,
        "without the timeout frames stay packet-sized: {single} bytes on average"
    );
}
