//! Next to the node's primary CNI: a stand-in for Calico's VXLAN overlay (UDP
//! 4789, VNI 4096, static FDB and ARP, over the underlay) joins the sandbox's
//! bare nodes before privnet is installed, and carries traffic before, while
//! and after privnet comes up and converges. A negative control installs the
//! old catch-all host rule (`udp dport 4789 iifname != wg drop`) in a table of
//! the test's own and sees the overlay go dark. Clashes privnet cannot live
//! with (its port and VNIs on the primary's, its WireGuard port taken) stop
//! an agent at start with one line naming the other party and the flag.

use crate::common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Sandbox;
use privnet_core::defaults::{VXLAN_PORT, WIREGUARD_PORT};

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: nb}, spec: {namespaces: [nb]}}
workloads:
  - {project: nb, application: app, processes: {web: 2}}
"#;

/// The primary CNI's VXLAN device on every node (Calico's name, port and VNI).
const PRIMARY: &str = "vxlan.calico";

fn sh(ns: &str, cmd: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn sh_ok(ns: &str, cmd: &str) -> String {
    let out = sh(ns, cmd);
    assert!(
        out.status.success(),
        "`{cmd}` in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node as the test sees it: namespace, underlay address, overlay address and MAC.
struct Node {
    netns: String,
    underlay: String,
    overlay: String,
    mac: String,
    wg: String,
}

fn nodes(sb: &Sandbox) -> Vec<Node> {
    sb.status()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, n)| Node {
            netns: n["netns"].as_str().unwrap().into(),
            underlay: n["underlayAddress"].as_str().unwrap().into(),
            overlay: format!("10.244.0.{}", i + 1),
            mac: format!("66:cc:00:00:00:{:02x}", i + 1),
            wg: n["wireguardInterface"].as_str().unwrap().into(),
        })
        .collect()
}

/// What Calico VXLAN sets up on a node: `vxlan.calico` (VNI 4096, UDP 4789, no
/// learning) on the underlay device, and static FDB and ARP entries per peer.
fn primary_overlay(nodes: &[Node]) {
    for me in nodes {
        sh_ok(
            &me.netns,
            &format!(
                "ip link add {PRIMARY} type vxlan id 4096 dstport 4789 local {} dev eth0 nolearning && \
                 ip link set {PRIMARY} address {} && ip addr add {}/24 dev {PRIMARY} && \
                 ip link set {PRIMARY} up",
                me.underlay, me.mac, me.overlay
            ),
        );
        for peer in nodes.iter().filter(|p| p.netns != me.netns) {
            sh_ok(
                &me.netns,
                &format!(
                    "bridge fdb append {} dev {PRIMARY} dst {} && \
                     ip neigh replace {} lladdr {} dev {PRIMARY} nud permanent",
                    peer.mac, peer.underlay, peer.overlay, peer.mac
                ),
            );
        }
    }
}

/// (sent, received) of `ping -c count` from `from` to `to` over the primary overlay.
fn ping(from: &Node, to: &Node, count: u32) -> (u32, u32) {
    let out = sh(
        &from.netns,
        &format!("ping -n -q -c {count} -i 0.05 -W 1 {}", to.overlay),
    );
    summary(&String::from_utf8_lossy(&out.stdout))
}

/// "N packets transmitted, M received" of a ping summary.
fn summary(text: &str) -> (u32, u32) {
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {text:?}"));
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// A ping over the primary overlay running in the background (`-D`: timestamped replies).
struct Stream(Child);

impl Stream {
    fn start(from: &Node, to: &Node) -> Self {
        Stream(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &from.netns,
                    "ping",
                    "-n",
                    "-D",
                    "-i",
                    "0.05",
                ])
                .arg(&to.overlay)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// Stops it (SIGINT: ping prints its summary); returns (sent, received, longest
    /// silence between two replies).
    fn stop(mut self) -> (u32, u32, f64) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let out = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let stamps: Vec<f64> = text
            .lines()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
            .collect();
        let gap = stamps.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        let (sent, received) = summary(&text);
        (sent, received, gap)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a throwaway `privnet agent` in `node`'s namespace with `extra` flags and returns
/// its stderr once it exits; fails if it is still running after 15 s (it should refuse to
/// start at once).
fn agent_refuses(sb: &Sandbox, node: &Node, tag: &str, extra: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("{}-{tag}", sb.name));
    std::fs::create_dir_all(dir.join("source")).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .arg(common::bin("privnet"))
        .args(["agent", "--node", "clash", "--source-dir"])
        .arg(dir.join("source"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--socket")
        .arg(dir.join("agent.sock"))
        .args(["--netns-prefix", &format!("{}-clash-", sb.name)])
        .args(["--wg-ifname", &format!("{}x", &node.wg)])
        .args(["--endpoint", &format!("{}:{WIREGUARD_PORT}", node.underlay)])
        .args(["--wireguard", &sb.wireguard_backend()])
        .args(["--no-dns-forward", "--metrics-addr", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            panic!("the agent started despite the clash ({extra:?})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "the agent must exit with an error");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn primary_overlay_keeps_working_while_privnet_comes_up() {
    common::require_root!();
    let sb = Sandbox::up_without_agents("nb", Some(SCENARIO));
    let n = nodes(&sb);
    assert_eq!(n.len(), 2);
    primary_overlay(&n);

    // Before: the primary overlay carries traffic on bare nodes.
    let (sent, got) = ping(&n[0], &n[1], 20);
    assert!(got + 1 >= sent, "before privnet: {got}/{sent} replies");

    // During: privnet is installed (agents, WireGuard, node guard, networks, containers,
    // convergence) under a continuous stream over the primary overlay.
    let stream = Stream::start(&n[0], &n[1]);
    std::thread::sleep(Duration::from_millis(300));
    let out = sb.privnet(&["start-agents"]);
    assert!(
        out.status.success(),
        "start-agents failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // After: privnet is up beside it (its node guard, its own VXLAN port, cross-node
    // traffic) while the stream still runs, and the primary overlay still answers.
    for node in &n {
        sh_ok(&node.netns, "nft list table inet privnet-guard");
    }
    let vni = sb.network("nb")["vni"].as_u64().unwrap();
    let net_ns = format!("{}-net-{vni}", n[0].netns);
    let vx = sh_ok(&net_ns, &format!("ip -d link show vx{vni}"));
    assert!(vx.contains(&format!("dstport {VXLAN_PORT} ")), "{vx}");
    let peer_ip = sb.container("app-web-2")["ip"]
        .as_str()
        .unwrap()
        .to_string();
    sb.exec_ok("app-web-1", &["ping", "-c3", "-i0.2", "-w4", &peer_ip]);
    let (sent, got, gap) = stream.stop();
    eprintln!(
        "primary overlay while privnet came up: {got}/{sent} replies, longest silence {gap:.3} s"
    );
    assert!(sent >= 10, "the stream ran through start-up ({sent} sent)");
    assert!(
        got * 20 >= sent * 19 && gap < 2.0,
        "while privnet came up and converged: {got}/{sent} replies, longest silence {gap:.2} s"
    );
    let (sent, got) = ping(&n[0], &n[1], 20);
    assert!(
        got + 1 >= sent,
        "after privnet converged: {got}/{sent} replies"
    );

    // Negative control: the old catch-all rule, in a table of the test's own, cuts the
    // primary overlay; removing it brings the overlay back.
    let old = format!(
        "table inet e2e-old-guard {{\n\
         chain input {{ type filter hook input priority filter - 10; policy accept; \
         udp dport 4789 iifname != \"{wg}\" drop; }}\n\
         chain output {{ type filter hook output priority filter - 10; policy accept; \
         udp dport 4789 oifname != \"{wg}\" drop; }}\n}}\n",
        wg = n[1].wg
    );
    sh_ok(&n[1].netns, &format!("nft -f - <<'EOF'\n{old}EOF"));
    let (sent, got) = ping(&n[0], &n[1], 10);
    sh_ok(&n[1].netns, "nft delete table inet e2e-old-guard");
    assert_eq!(
        (sent, got),
        (10, 0),
        "negative control: the old rule must cut the primary overlay"
    );
    let (sent, got) = ping(&n[0], &n[1], 10);
    assert!(got + 1 >= sent, "the overlay is back: {got}/{sent}");

    // Clashes are refused at start, naming the other party and the flag (the sandbox's
    // own agents, with the defaults, are the positive control: they run on these nodes).
    let err = agent_refuses(
        &sb,
        &n[0],
        "vni",
        &["--vxlan-port", "4789", "--vni-range", "4096-5000"],
    );
    assert!(
        err.contains(PRIMARY) && err.contains("VNI 4096") && err.contains("--vxlan-port"),
        "{err}"
    );
    eprintln!("{}", err.trim());
    let err = agent_refuses(&sb, &n[0], "wg", &[]);
    eprintln!("{}", err.trim());
    assert!(
        err.contains(&format!("UDP port {WIREGUARD_PORT}")) && err.contains("--wg-port"),
        "{err}"
    );
}
