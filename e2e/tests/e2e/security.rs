//! Nothing in clear text on the underlay, fail-closed guard (with a negative
//! control), VXLAN injected from the underlay reaches no bridge, spoofing
//! from a container is dropped.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Sandbox;
use privnet_core::defaults::{VXLAN_PORT, WIREGUARD_PORT};

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: sec}, spec: {namespaces: [sec]}}
workloads:
  - {project: sec, application: app, processes: {web: 2, worker: 1}}
"#;

/// tcpdump on the underlay bridge, writing a pcap.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(sb: &Sandbox, tag: &str) -> Self {
        let file = std::env::temp_dir().join(format!("{}-{tag}.pcap", sb.name));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{}-ul", sb.name),
                "tcpdump",
                "-i",
                "ul0",
                "-n",
                "-U",
                "-w",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump runs (apt-get install tcpdump)");
        std::thread::sleep(Duration::from_millis(700));
        Capture { child, file }
    }

    /// Stops and counts packets matching `filter`.
    fn count(mut self, filters: &[&str]) -> Vec<usize> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = nix_kill(self.child.id());
        let _ = self.child.wait();
        filters
            .iter()
            .map(|f| {
                let out = Command::new("tcpdump")
                    .args(["-n", "-r"])
                    .arg(&self.file)
                    .arg(f)
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).lines().count()
            })
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = std::fs::remove_file(&self.file);
    }
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .map(|_| ())
}

#[test]
fn underlay_sees_only_wireguard_and_the_guard_fails_closed() {
    common::require_root!();
    let sb = Sandbox::up("s", Some(SCENARIO));
    let c1 = sb.container("app-web-1");
    let c2 = sb.container("app-web-2");
    assert_ne!(c1["node"], c2["node"]);
    let (n1, ip2) = (
        format!("{}-{}", sb.name, c1["node"].as_str().unwrap()),
        c2["ip"].as_str().unwrap().to_string(),
    );

    // 1. Normal traffic: only WireGuard on the wire.
    let cap = Capture::start(&sb, "normal");
    sb.exec_ok("app-web-1", &["ping", "-c5", "-i0.2", "-W2", &ip2]);
    let (wg_filter, vxlan_filter) = (
        format!("udp port {WIREGUARD_PORT}"),
        format!("udp port {VXLAN_PORT}"),
    );
    let counts = cap.count(&[
        &wg_filter,
        &vxlan_filter,
        "icmp",
        "tcp",
        "arp and not host 192.168.213.11 and not host 192.168.213.12",
    ]);
    assert!(counts[0] > 0, "the capture must see the tunnel: {counts:?}");
    assert_eq!(
        &counts[1..],
        &[0, 0, 0, 0],
        "clear-text traffic on the underlay: {counts:?}"
    );

    // 2. Tunnel bypass attempt: route the peer's VTEP over the underlay.
    let peer_vtep = sb.status()["nodes"][1]["vtep"]
        .as_str()
        .unwrap()
        .to_string();
    let route = [
        "route",
        "add",
        &format!("{peer_vtep}/32"),
        "via",
        "192.168.213.12",
        "dev",
        "eth0",
    ];
    assert!(
        sb.in_netns(
            &n1,
            &["ip"]
                .iter()
                .chain(route.iter())
                .copied()
                .collect::<Vec<_>>()
        )
        .status
        .success()
    );
    let cap = Capture::start(&sb, "guarded");
    let _ = sb.exec("app-web-1", &["ping", "-c3", "-i0.2", "-W1", &ip2]);
    let guarded = cap.count(&[&vxlan_filter]);
    assert_eq!(
        guarded,
        vec![0],
        "with the guard, VXLAN never leaves outside WireGuard"
    );

    // Negative control: without the guard the same traffic leaks in clear.
    assert!(
        sb.in_netns(&n1, &["nft", "delete", "table", "inet", "privnet-guard"])
            .status
            .success()
    );
    let cap = Capture::start(&sb, "unguarded");
    let _ = sb.exec("app-web-1", &["ping", "-c3", "-i0.2", "-W1", &ip2]);
    let leaked = cap.count(&[&vxlan_filter]);
    assert!(
        leaked[0] > 0,
        "negative control: without the guard VXLAN would leak ({leaked:?})"
    );
}

/// A VXLAN packet (VNI, broadcast ARP who-has inside) sent from the underlay.
const PY_INJECT: &str = r#"
import socket, struct, sys
dst, vni, target, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
vx = struct.pack("!II", 0x08000000, vni << 8)
src_mac = bytes.fromhex("0266000000aa")
eth = b"\xff" * 6 + src_mac + b"\x08\x06"
arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src_mac + socket.inet_aton("10.240.0.99") + b"\x00" * 6 + socket.inet_aton(target)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    s.sendto(vx + eth + arp, (dst, port))
"#;

/// tcpdump on a network's bridge for the injected ARP (sender 10.240.0.99),
/// for 4 s at most; its stdout is empty when nothing arrived.
fn watch_bridge_for_injected_arp(netns: &str) -> Child {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "timeout",
            "4",
            "tcpdump",
            "-i",
            "br0",
            "-n",
            "-c",
            "1",
            "arp host 10.240.0.99",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child
}

#[test]
fn injected_vxlan_and_spoofed_frames_are_dropped() {
    common::require_root!();
    let sb = Sandbox::up("j", Some(SCENARIO));
    let c1 = sb.container("app-web-1");
    let node = c1["node"].as_str().unwrap().to_string();
    let net = sb.network("sec");
    let vni = net["vni"].as_u64().unwrap();
    let node_ip = sb.status()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node.as_str())
        .unwrap()["underlayAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let netns = format!("{}-{node}-net-{vni}", sb.name);

    // Watch the network's bridge for the injected ARP (sender 10.240.0.99).
    let watcher = watch_bridge_for_injected_arp(&netns);
    // The attacker is a plain host on the underlay (removed by `down` with the sandbox prefix).
    let (atk, ul) = (format!("{}-atk", sb.name), format!("{}-ul", sb.name));
    for cmd in [
        vec!["ip", "netns", "add", &atk],
        vec![
            "ip", "-n", &ul, "link", "add", "u-atk", "type", "veth", "peer", "name", "eth0",
            "netns", &atk,
        ],
        vec![
            "ip", "-n", &ul, "link", "set", "u-atk", "master", "ul0", "up",
        ],
        vec![
            "ip",
            "-n",
            &atk,
            "addr",
            "add",
            "192.168.213.200/24",
            "dev",
            "eth0",
        ],
        vec!["ip", "-n", &atk, "link", "set", "eth0", "up"],
    ] {
        assert!(
            Command::new(cmd[0])
                .args(&cmd[1..])
                .status()
                .unwrap()
                .success(),
            "{cmd:?}"
        );
    }
    let out = sb.in_netns(
        &atk,
        &[
            "python3",
            "-c",
            PY_INJECT,
            &node_ip,
            &vni.to_string(),
            c1["ip"].as_str().unwrap(),
            &VXLAN_PORT.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = watcher.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&seen.stdout).trim().is_empty(),
        "injected VXLAN reached the bridge"
    );

    // Negative control: without the node guard the same packets do reach the bridge.
    let node_ns = format!("{}-{node}", sb.name);
    assert!(
        sb.in_netns(
            &node_ns,
            &["nft", "delete", "table", "inet", "privnet-guard"]
        )
        .status
        .success()
    );
    let watcher = watch_bridge_for_injected_arp(&netns);
    let args = [
        node_ip.clone(),
        vni.to_string(),
        c1["ip"].as_str().unwrap().to_string(),
        VXLAN_PORT.to_string(),
    ];
    sb.in_netns(
        &atk,
        &[
            "python3", "-c", PY_INJECT, &args[0], &args[1], &args[2], &args[3],
        ],
    );
    let seen = watcher.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&seen.stdout).trim().is_empty(),
        "negative control: without the guard the injected frame reaches the bridge"
    );

    // Spoofing from a container: a forged source IP, then a forged MAC.
    let target = sb.container("app-web-2")["ip"]
        .as_str()
        .unwrap()
        .to_string();
    sb.exec_ok("app-web-1", &["ping", "-c1", "-w4", &target]);
    sb.exec_ok(
        "app-web-1",
        &["ip", "addr", "add", "10.240.0.77/22", "dev", "eth1"],
    );
    let forged_ip = sb.exec(
        "app-web-1",
        &["ping", "-c2", "-W1", "-I", "10.240.0.77", &target],
    );
    assert!(
        !forged_ip.status.success(),
        "a forged source IP must be dropped"
    );
    sb.exec_ok(
        "app-web-1",
        &["ip", "addr", "del", "10.240.0.77/22", "dev", "eth1"],
    );
    sb.exec_ok(
        "app-web-1",
        &["ip", "link", "set", "eth1", "address", "06:66:66:66:66:66"],
    );
    sb.exec_ok("app-web-1", &["ip", "neigh", "flush", "dev", "eth1"]);
    let forged_mac = sb.exec("app-web-1", &["ping", "-c2", "-W1", &target]);
    assert!(
        !forged_mac.status.success(),
        "a forged source MAC must be dropped"
    );
    // Gratuitous ARP claiming the neighbour's IP does not poison its peers.
    let mac = c1["mac"].as_str().unwrap().to_string();
    sb.exec_ok("app-web-1", &["ip", "link", "set", "eth1", "address", &mac]);
    let _ = sb.exec(
        "app-web-1",
        &["arping", "-c2", "-U", "-I", "eth1", "-s", &target, &target],
    );
    let worker_neigh = sb.exec_ok("app-worker-1", &["ip", "neigh"]);
    assert!(
        !worker_neigh.contains(&mac) || !worker_neigh.contains(&format!("{target} ")),
        "ARP poisoned: {worker_neigh}"
    );
}
