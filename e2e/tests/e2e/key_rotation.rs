//! A node's WireGuard key is rotated under a steady TCP stream between
//! containers on two nodes: the stream keeps flowing (every byte arrives,
//! the longest gap between received data is reported and bounded), nothing
//! crosses the underlay in clear text (capture running before, with the
//! tunnel's own packets as positive control), the Node's published key
//! changed, and the peer holds only the new key afterwards.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Sandbox;
use common::observe::{UnderlayCapture, spawn_until_stderr, wait_listening};
use privnet_core::defaults::{VXLAN_PORT, WIREGUARD_PORT};

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: rot}, spec: {namespaces: [rot]}}
workloads:
  - {project: rot, application: app, processes: {web: 2}}
"#;

/// Receiver: accepts one connection, timestamps every read, prints the
/// bytes, the longest gap between reads and when it happened (JSON).
const PY_RECV: &str = r#"
import json, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
c, _ = s.accept()
total, gap, gap_at, first = 0, 0.0, 0.0, None
last = time.monotonic()
gaps = []
while True:
    d = c.recv(1 << 16)
    now = time.monotonic()
    if not d:
        break
    if first is None:
        first = now
    elif now - last > gap:
        gap, gap_at = now - last, now - first
    if first is not None and now - last > 0.05:
        gaps.append(round((now - last) * 1000, 1))
    total += len(d); last = now
print(json.dumps({"bytes": total, "max_gap_ms": gap * 1000, "max_gap_at_s": gap_at,
                  "seconds": last - first, "gaps_over_50ms": gaps}))
"#;

/// Sender: a paced stream (a 16 KiB write every 2 ms, ~8 MB/s) for the
/// given seconds; prints "connected" on stderr once established, then the
/// bytes sent and the TCP segments it retransmitted (JSON).
const PY_SEND: &str = r#"
import json, socket, sys, time
def retrans():
    for line in open("/proc/net/snmp"):
        if line.startswith("Tcp:") and "RetransSegs" not in line:
            return int(line.split()[12])
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("connected", file=sys.stderr, flush=True)
r0 = retrans()
chunk = b"x" * 16384
sent, start = 0, time.monotonic()
nxt = start
while time.monotonic() - start < float(sys.argv[3]):
    s.sendall(chunk); sent += len(chunk)
    nxt += 0.002
    pause = nxt - time.monotonic()
    if pause > 0:
        time.sleep(pause)
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print(json.dumps({"bytes": sent, "retransmitted_segments": retrans() - r0}))
"#;

fn json_line(out: &std::process::Output, what: &str) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{what} printed nothing: {out:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"))
}

/// One paced stream of `seconds` from `src` to `dst`; `during` runs once it
/// flows. Returns (sent, received) as the two scripts report them.
fn stream(
    src: &serde_json::Value,
    dst: &serde_json::Value,
    port: u16,
    seconds: u32,
    during: impl FnOnce(),
) -> (serde_json::Value, serde_json::Value) {
    let ip = dst["ip"].as_str().unwrap();
    let netns = dst["netns"].as_str().unwrap();
    let receiver = Command::new("ip")
        .args(["netns", "exec", netns])
        .args(["python3", "-c", PY_RECV, ip, &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(netns, port);
    let mut send = Command::new("ip");
    send.args(["netns", "exec", src["netns"].as_str().unwrap()])
        .args(["python3", "-c", PY_SEND, ip, &port.to_string()])
        .arg(seconds.to_string())
        .stdout(Stdio::piped());
    let sender = spawn_until_stderr(send, "connected", Duration::from_secs(10));
    during();
    let sent = sender.wait_with_output().unwrap();
    assert!(sent.status.success(), "sender: {sent:?}");
    let received = receiver.wait_with_output().unwrap();
    assert!(received.status.success(), "receiver: {received:?}");
    (json_line(&sent, "sender"), json_line(&received, "receiver"))
}

/// The agents' log lines about key rotation (for the report).
fn rotation_log(sb: &Sandbox) -> Vec<String> {
    let status = sb.status();
    let mut out = Vec::new();
    for n in status["nodes"].as_array().unwrap() {
        let text = std::fs::read_to_string(n["agentLog"].as_str().unwrap()).unwrap_or_default();
        out.extend(
            text.lines()
                .filter(|l| l.contains("key"))
                .map(|l| format!("{}: {l}", n["name"].as_str().unwrap())),
        );
    }
    out
}

fn peers_of(sb: &Sandbox, node: &str) -> Vec<String> {
    let out = sb.wg_show(node, &["peers"]);
    assert!(out.status.success(), "wg show {node} peers: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn a_key_rotation_under_a_tcp_stream_loses_nothing_and_leaks_nothing() {
    common::require_root!();
    let sb = Sandbox::up("k", Some(SCENARIO));
    let (from, to) = ("app-web-1", "app-web-2");
    let (src, dst) = (sb.container(from), sb.container(to));
    assert_ne!(src["node"], dst["node"], "the stream must cross nodes");
    let (node, peer) = (
        src["node"].as_str().unwrap().to_string(),
        dst["node"].as_str().unwrap().to_string(),
    );
    let old_key = String::from_utf8_lossy(&sb.wg_show(&node, &["public-key"]).stdout)
        .trim()
        .to_string();
    assert!(peers_of(&sb, &peer).contains(&old_key));

    // Control: the same stream without a rotation, for the figures.
    let (base_sent, base_received) = stream(&src, &dst, 5600, 6, || {});
    eprintln!("without rotation: sent {base_sent}, received {base_received}");
    assert_eq!(base_sent["bytes"], base_received["bytes"]);

    let mut capture = UnderlayCapture::start(&sb, "rotation");
    let mut report = String::new();
    let (sent, received) = stream(&src, &dst, 5601, 10, || {
        // A second of steady stream, then the rotation of the sender's node:
        // its data is what the peer must accept on the new key.
        std::thread::sleep(Duration::from_secs(1));
        let rotated = sb.privnet(&["rotate-key", &node, "--timeout-secs", "30"]);
        report = String::from_utf8_lossy(&rotated.stdout).to_string();
        assert!(
            rotated.status.success(),
            "rotate-key: {report}\n{}",
            String::from_utf8_lossy(&rotated.stderr)
        );
    });
    let counts = capture.stop_and_count(&[
        &format!("udp port {WIREGUARD_PORT}"),
        &format!("udp port {VXLAN_PORT}"),
        "icmp",
        // The agents' watches of the API server are the only TCP the underlay may carry.
        "tcp and not port 6443",
    ]);
    eprintln!("rotation: {}", report.trim());
    eprintln!("with rotation: sent {sent}, received {received}; underlay {counts:?}");
    eprintln!(
        "throughput {:.1} MB/s, longest gap {:.1} ms ({:.1} ms without rotation), {} segments retransmitted ({} without)",
        received["bytes"].as_f64().unwrap() / received["seconds"].as_f64().unwrap() / 1e6,
        received["max_gap_ms"].as_f64().unwrap(),
        base_received["max_gap_ms"].as_f64().unwrap(),
        sent["retransmitted_segments"],
        base_sent["retransmitted_segments"],
    );
    for line in rotation_log(&sb) {
        eprintln!("  {line}");
    }

    // Nothing in clear text, while the capture did see the tunnel.
    assert!(
        counts[0] > 1000,
        "the capture must see the tunnel: {counts:?}"
    );
    assert_eq!(&counts[1..], &[0, 0, 0], "clear text on the underlay");
    // Every byte arrived; the longest stall is bounded.
    assert_eq!(sent["bytes"], received["bytes"], "bytes lost");
    assert!(
        received["bytes"].as_u64().unwrap() > 40_000_000,
        "{received}"
    );
    let stall = received["max_gap_ms"].as_f64().unwrap();
    assert!(stall < 500.0, "the stream stalled {stall} ms");
    // The key changed where it is published, and the peer holds only the new one.
    let new_key = String::from_utf8_lossy(&sb.wg_show(&node, &["public-key"]).stdout)
        .trim()
        .to_string();
    assert_ne!(new_key, old_key);
    let status = sb.status();
    let published = common::node_in(&status, &node)["publicKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(published, new_key);
    let peers = peers_of(&sb, &peer);
    assert!(
        peers.contains(&new_key) && !peers.contains(&old_key),
        "{peers:?}"
    );
    // The tunnel carries traffic on the new key.
    sb.exec_ok(from, &["ping", "-c2", "-W2", dst["ip"].as_str().unwrap()]);
    if status["api"] != "kube" {
        return;
    }
    let annotations = sb.kubectl(
        &[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
        None,
    );
    let annotations = String::from_utf8_lossy(&annotations.stdout).to_string();
    assert!(
        annotations.contains(&new_key) && !annotations.contains("wireguard-next-public-key"),
        "{annotations}"
    );
}
