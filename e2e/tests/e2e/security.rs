//! Nothing in clear text on the underlay, fail-closed guard (with a negative
//! control), VXLAN injected from the underlay reaches no bridge, spoofing
//! from a container is dropped.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Sandbox;
use common::observe::{UnderlayCapture, spawn_until_stderr, wait_for};
use privnet_core::defaults::{VXLAN_PORT, WIREGUARD_PORT};

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: sec}, spec: {namespaces: [sec]}}
workloads:
  - {project: sec, application: app, processes: {web: 2, worker: 1}}
"#;

/// tcpdump on the underlay bridge (started once it listens), counting
/// packets per filter when stopped.
struct Capture(UnderlayCapture);

impl Capture {
    fn start(sb: &Sandbox, tag: &str) -> Self {
        Capture(UnderlayCapture::start(sb, tag))
    }

    fn count(mut self, filters: &[&str]) -> Vec<usize> {
        self.0.stop_and_count(filters)
    }
}

/// Stops the agent of `node` (`kill -9`), so that a guard a negative
/// control removes stays removed (a running agent repairs it within a resync).
fn stop_agent(sb: &Sandbox, node: &str) {
    let out = sb.privnet(&["agent", node, "kill"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        // The agents' watches of the API server (TLS to 192.168.213.1:6443)
        // are the only TCP the underlay may carry.
        "tcp and not port 6443",
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

    // Negative control: without the guard the same traffic leaks in clear
    // (the agent stopped first, or it would put the guard back).
    stop_agent(&sb, c1["node"].as_str().unwrap());
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
/// for 4 s at most, returned once it listens; its stdout is empty when
/// nothing arrived.
fn watch_bridge_for_injected_arp(netns: &str) -> Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "timeout", "4"])
        .args([
            "tcpdump",
            "--immediate-mode",
            "-i",
            "br0",
            "-n",
            "-c",
            "1",
            "arp host 10.240.0.99",
        ])
        .stdout(Stdio::piped());
    spawn_until_stderr(cmd, "listening on", Duration::from_secs(10))
}

#[test]
fn injected_vxlan_and_spoofed_frames_are_dropped() {
    common::require_root!();
    let sb = Sandbox::up("j", Some(SCENARIO));
    let c1 = sb.container("app-web-1");
    let node = c1["node"].as_str().unwrap().to_string();
    let net = sb.network("sec");
    let vni = net["vni"].as_u64().unwrap();
    let node_ip = sb.node(&node)["underlayAddress"]
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

    // Negative control: without the node guard the same packets do reach the
    // bridge (the agent stopped first, or it would put the guard back).
    stop_agent(&sb, &node);
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
    // The agent started again puts the guard back.
    let started = sb.privnet(&["agent", &node, "start"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let guard_back = wait_for(Duration::from_secs(10), || {
        sb.in_netns(&node_ns, &["nft", "list", "table", "inet", "privnet-guard"])
            .status
            .success()
    });
    assert!(
        guard_back.is_some(),
        "the restarted agent restores the node guard"
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
    // The victim has a real entry for the target first.
    sb.exec_ok("app-worker-1", &["ping", "-c1", "-W2", &target]);
    let entry = || neighbour_mac(&sb, "app-worker-1", &target);
    let before = entry().expect("the victim has an entry for the target before the GARP");
    assert_ne!(before, mac);
    let sent = send_garp(&sb, &c1, &mac, &target);
    assert!(
        sent > 0,
        "the GARP frames were sent (seen leaving app-web-1)"
    );
    std::thread::sleep(Duration::from_millis(300)); // let a poisoned update land, if any
    assert_eq!(
        entry(),
        Some(before.clone()),
        "ARP poisoned: the victim's entry for {target} changed"
    );

    // Positive control: with the port guard of app-web-1's node gone (its
    // agent stopped, or it would repair it), the same GARP does poison.
    let c1_node = c1["node"].as_str().unwrap();
    stop_agent(&sb, c1_node);
    let c1_net_ns = format!("{}-{c1_node}-net-{vni}", sb.name);
    assert!(
        sb.in_netns(
            &c1_net_ns,
            &["nft", "delete", "table", "bridge", "privnet-ports"]
        )
        .status
        .success()
    );
    // The kernel ignores updates within `locktime` (1 s) of the last one: retry.
    let poisoned = wait_for(Duration::from_secs(6), || {
        send_garp(&sb, &c1, &mac, &target);
        entry().as_deref() == Some(mac.as_str())
    });
    assert!(
        poisoned.is_some(),
        "positive control: without the guard the GARP poisons the entry ({:?})",
        entry()
    );
}

/// Two gratuitous ARP requests on eth1: "`ip` is at `mac`" (sender and
/// target address both `ip`), broadcast.
const PY_GARP: &str = r#"
import socket, sys
mac, ip = bytes.fromhex(sys.argv[1].replace(":", "")), socket.inet_aton(sys.argv[2])
arp = bytes.fromhex("0001080006040001") + mac + ip + b"\x00" * 6 + ip
frame = b"\xff" * 6 + mac + b"\x08\x06" + arp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth1", 0))
for _ in range(2):
    s.send(frame)
"#;

/// The MAC a container's neighbour table has for `ip` (`ip neigh show`).
fn neighbour_mac(sb: &Sandbox, container: &str, ip: &str) -> Option<String> {
    let out = sb.exec_ok(container, &["ip", "neigh", "show", ip, "dev", "eth1"]);
    let words: Vec<&str> = out.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "lladdr")?;
    Some(words.get(i + 1)?.to_lowercase())
}

/// Sends two gratuitous ARPs from `c` claiming `ip`, with a capture on its
/// interface (started once listening); returns how many left it.
fn send_garp(sb: &Sandbox, c: &serde_json::Value, mac: &str, ip: &str) -> usize {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        c["netns"].as_str().unwrap(),
        "timeout",
        "3",
    ])
    .args([
        "tcpdump",
        "--immediate-mode",
        "-i",
        "eth1",
        "-n",
        "-c",
        "2",
        "-Q",
        "out",
    ])
    .arg(format!("arp and ether src {mac}"))
    .stdout(Stdio::piped());
    let watcher = spawn_until_stderr(cmd, "listening on", Duration::from_secs(10));
    // arping cannot claim an address that is not the container's own (it
    // binds to it), so the frames are built by hand.
    let out = sb.exec(
        c["name"].as_str().unwrap(),
        &["python3", "-c", PY_GARP, mac, ip],
    );
    assert!(
        out.status.success(),
        "GARP sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = watcher.wait_with_output().unwrap();
    String::from_utf8_lossy(&seen.stdout)
        .lines()
        .filter(|l| l.contains(&format!("who-has {ip}")))
        .count()
}
