//! Fault injection: with cross-node traffic flowing and a capture on the
//! underlay running before the fault, break one thing of a node's datapath
//! and measure how long the agent takes to repair it (it reads its datapath
//! back every resync, 5 s by default) and how many pings were lost.
//!
//! Must hold for each fault: repaired within one resync (+ a handshake for
//! WireGuard), traffic resumes, DNS answers, and not one clear-text VXLAN
//! packet nor private address on the underlay throughout (with the capture's positive
//! control: it saw the tunnel). A fault the kernel announces (a link,
//! address or FDB entry deleted, a guard table flushed: the agent listens
//! to rtnetlink and nftables in the namespaces it owns) is repaired well
//! before the resync: each fault is
//! injected just after the previous repair, i.e. just after a check, so a
//! repair within [`EVENT_LIMIT`] came from the event.
//!
//! The figures are printed (`--nocapture`) as `FAULT <name>: …` lines.

mod kill_during_adds;
mod state_full;

use crate::common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Sandbox;
use common::observe::{PingStream, UnderlayCapture, wait_for};
use privnet_core::defaults::{VXLAN_PORT, WIREGUARD_PORT};
use serde_json::Value;

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: fault}, spec: {namespaces: [fault]}}
workloads:
  - {project: fault, application: app, processes: {web: 2}}
"#;

/// The agent's default resync.
const RESYNC: Duration = Duration::from_secs(5);
/// Slack for one read-back and repair pass on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);
/// WireGuard's handshake after a restarted daemon (rekey timeout 5 s).
const HANDSHAKE: Duration = Duration::from_secs(6);
/// A fault the kernel announces: event, 100 ms debounce, read-back,
/// repair — and slack for a loaded machine, still well under the ~4.6 s a
/// resync took from the same point.
const EVENT_LIMIT: Duration = Duration::from_secs(3);

/// Where the fault goes.
struct Target {
    node_ns: String,
    net_ns: String,
    vxlan: String,
    gateway: String,
    subnet: String,
    node: String,
    state_dir: String,
    wg_ifname: String,
    peer_ip: String,
    dns_name: String,
}

fn target(sb: &Sandbox) -> Target {
    let (a, b) = (sb.container("app-web-1"), sb.container("app-web-2"));
    assert_ne!(a["node"], b["node"], "the traffic must cross nodes");
    let node = &sb.node(a["node"].as_str().unwrap());
    let net = sb.network("fault");
    let vni = net["vni"].as_u64().unwrap();
    let s = |v: &Value| v.as_str().unwrap().to_string();
    Target {
        node_ns: s(&node["netns"]),
        net_ns: format!("{}{vni}", s(&node["networkNetnsPrefix"])),
        vxlan: format!("vx{vni}"),
        gateway: format!("{}/{}", s(&net["gateway"]), prefix(&s(&net["subnet"]))),
        subnet: s(&net["subnet"]),
        node: s(&node["name"]),
        state_dir: s(&node["stateDir"]),
        wg_ifname: s(&node["wireguardInterface"]),
        peer_ip: s(&b["ip"]),
        dns_name: format!("2.web.app.{}", s(&net["zone"])),
    }
}

fn prefix(subnet: &str) -> &str {
    subnet.split('/').nth(1).unwrap()
}

fn sh(ns: &str, script: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn sh_ok(ns: &str, script: &str) -> String {
    let out = sh(ns, script);
    assert!(
        out.status.success(),
        "`{script}` in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pings(sb: &Sandbox, t: &Target) -> bool {
    sb.exec("app-web-1", &["ping", "-c1", "-W1", &t.peer_ip])
        .status
        .success()
}

fn dns_answers(sb: &Sandbox, t: &Target) -> bool {
    let out = sb.exec("app-web-1", &["host", "-W", "1", &t.dns_name]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&t.peer_ip)
}

fn vxlan_fdb(t: &Target) -> Vec<String> {
    let out = sh_ok(&t.net_ns, &format!("bridge fdb show dev {}", t.vxlan));
    let mut lines: Vec<String> = out
        .lines()
        .filter(|l| l.contains(" dst "))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn has_rules(ns: &str, table: &str) -> bool {
    let out = sh(ns, &format!("nft list table {table}"));
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("drop")
}

/// Runs one fault: capture and traffic first, then `inject`, then waits
/// for `repaired` (at most `limit`), then for traffic and DNS. Prints the figures.
fn run_fault(
    sb: &Sandbox,
    t: &Target,
    name: &str,
    limit: Duration,
    inject: impl FnOnce(),
    repaired: impl FnMut() -> bool,
) {
    assert!(
        wait_for(Duration::from_secs(20), || pings(sb, t)).is_some(),
        "{name}: no traffic before the fault"
    );
    let mut cap = UnderlayCapture::start(sb, name);
    let mut stream = PingStream::start(sb, "app-web-1", &t.peer_ip, 50);
    assert!(
        wait_for(Duration::from_secs(5), || pings(sb, t)).is_some(),
        "{name}: traffic flowing"
    );
    let t0 = Instant::now();
    inject();
    let repair = wait_for(limit, repaired);
    let traffic = wait_for(limit + SLACK, || pings(sb, t)).map(|_| t0.elapsed());
    let dns = wait_for(Duration::from_secs(5), || dns_answers(sb, t)).map(|_| t0.elapsed());
    let (sent, received) = stream.stop();
    let counts = cap.stop_and_count(&[
        &format!("udp port {WIREGUARD_PORT}"),
        &format!("udp port {VXLAN_PORT}"),
        // Private addresses in the clear (an underlay ICMP port-unreachable
        // while the daemon is down carries only ciphertext and is not counted).
        &format!("net {}", t.subnet),
    ]);
    let secs = |d: Option<Duration>| {
        d.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
    };
    println!(
        "FAULT {name}: repaired in {}, a ping answered by {}, DNS answered by {}, lost {} of {sent} pings (50 ms apart), \
         underlay: {} WireGuard / {} clear VXLAN / {} clear private-address packets",
        secs(repair),
        secs(traffic),
        secs(dns),
        sent - received,
        counts[0],
        counts[1],
        counts[2]
    );
    assert!(repair.is_some(), "{name}: not repaired within {limit:?}");
    assert!(traffic.is_some(), "{name}: traffic did not resume");
    assert!(dns.is_some(), "{name}: DNS does not answer");
    assert!(
        counts[0] > 0,
        "{name}: the capture must see the tunnel: {counts:?}"
    );
    assert_eq!(&counts[1..], &[0, 0], "{name}: clear text on the underlay");
    assert!(received > 0, "{name}: the stream never got through");
}

/// Runs `script` in `ns`, then asserts the fault is there (so "repaired"
/// means the agent did it, not that the fault never took).
fn injected(ns: &str, name: &str, script: &str, broken: impl Fn() -> bool) {
    sh_ok(ns, script);
    assert!(broken(), "{name}: the fault did not take");
}

#[test]
fn datapath_faults_are_repaired_within_a_resync() {
    common::require_root!();
    let sb = Sandbox::up("f", Some(SCENARIO));
    let t = target(&sb);
    let fdb_before = vxlan_fdb(&t);
    assert!(
        fdb_before
            .iter()
            .any(|l| l.starts_with("00:00:00:00:00:00")),
        "a flood entry towards the peer: {fdb_before:?}"
    );

    // The node guard: `nft flush ruleset` in the node's namespace.
    let guard_back = || has_rules(&t.node_ns, "inet privnet-guard");
    run_fault(
        &sb,
        &t,
        "node-nft-flush",
        EVENT_LIMIT,
        || {
            injected(&t.node_ns, "node-nft-flush", "nft flush ruleset", || {
                !guard_back()
            })
        },
        guard_back,
    );

    // The network's guard: `nft flush ruleset` in the network's namespace.
    let net_guard_back =
        || has_rules(&t.net_ns, "bridge privnet-ports") && has_rules(&t.net_ns, "inet privnet-gw");
    run_fault(
        &sb,
        &t,
        "network-nft-flush",
        EVENT_LIMIT,
        || {
            injected(&t.net_ns, "network-nft-flush", "nft flush ruleset", || {
                !net_guard_back()
            })
        },
        net_guard_back,
    );

    // The VXLAN device.
    let vxlan_back = || {
        sh(&t.net_ns, &format!("ip link show {} up", t.vxlan))
            .status
            .success()
            && vxlan_fdb(&t) == fdb_before
    };
    run_fault(
        &sb,
        &t,
        "vxlan-deleted",
        EVENT_LIMIT,
        || {
            let script = format!("ip link del {}", t.vxlan);
            injected(&t.net_ns, "vxlan-deleted", &script, || !vxlan_back())
        },
        vxlan_back,
    );

    // Every FDB entry of the VXLAN device.
    let fdb_back = || vxlan_fdb(&t) == fdb_before;
    run_fault(
        &sb,
        &t,
        "fdb-deleted",
        EVENT_LIMIT,
        || {
            let script: Vec<String> = fdb_before
                .iter()
                .map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    let dst = w[w.iter().position(|x| *x == "dst").unwrap() + 1];
                    format!("bridge fdb del {} dev {} dst {dst}", w[0], t.vxlan)
                })
                .collect();
            injected(&t.net_ns, "fdb-deleted", &script.join(" && "), || {
                vxlan_fdb(&t).is_empty()
            })
        },
        fdb_back,
    );

    // The gateway address on the bridge.
    let gateway_back = || sh_ok(&t.net_ns, "ip -4 -o addr show dev br0").contains(&t.gateway);
    run_fault(
        &sb,
        &t,
        "gateway-removed",
        EVENT_LIMIT,
        || {
            let script = format!("ip addr del {} dev br0", t.gateway);
            injected(&t.net_ns, "gateway-removed", &script, || !gateway_back())
        },
        gateway_back,
    );

    // The userspace WireGuard daemon: kill -9, restarted with the same key.
    if sb.wireguard_backend() == "userspace" {
        let pid_file = format!("{}/wireguard-go-{}.pid", t.state_dir, t.wg_ifname);
        let read_pid = || {
            std::fs::read_to_string(&pid_file)
                .unwrap()
                .trim()
                .to_string()
        };
        let old_pid = read_pid();
        let key_before = wg_public_key(&sb, &t);
        let daemon_back = || {
            let pid = read_pid();
            pid != old_pid
                && std::path::Path::new(&format!("/proc/{pid}")).exists()
                && sb.wg_show(&t.node, &["peers"]).status.success()
        };
        run_fault(
            &sb,
            &t,
            "wireguard-go-kill-9",
            RESYNC + HANDSHAKE + SLACK,
            || {
                let killed = Command::new("kill")
                    .args(["-9", &old_pid])
                    .status()
                    .unwrap();
                assert!(killed.success(), "kill -9 {old_pid}");
            },
            daemon_back,
        );
        assert_eq!(
            wg_public_key(&sb, &t),
            key_before,
            "restarted with the same key"
        );
    }

    // The agent counted each repair.
    let metrics = agent_metrics(&sb, &t);
    for what in ["node_guard", "network_guard", "vxlan", "fdb", "gateway"] {
        assert!(
            metrics.contains(&format!("privnet_agent_repairs_total{{what=\"{what}\"}}")),
            "no repair of {what} counted:\n{metrics}"
        );
    }
}

fn wg_public_key(sb: &Sandbox, t: &Target) -> String {
    let out = sb.wg_show(&t.node, &["public-key"]);
    assert!(out.status.success(), "wg show {} public-key", t.wg_ifname);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `/metrics` of the agent of app-web-1's node (on its default local port,
/// inside the node's namespace).
fn agent_metrics(_sb: &Sandbox, t: &Target) -> String {
    sh_ok(
        &t.node_ns,
        "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:9641/metrics\").read().decode())'",
    )
}

/// A truncated attachment record at agent start: the agent starts, says
/// what it dropped (the file is moved aside) and the dropped container's
/// address stays claimed in the cluster, so the claim's compare-and-swap
/// keeps it from being given again (the fencing itself is unit-tested:
/// `a_lost_claim_fences_the_address_and_takes_the_next`). Not done: the
/// record is not rebuilt from the kernel, so that container loses its port.
#[test]
fn a_corrupted_record_at_start_is_dropped_and_its_address_stays_taken() {
    common::require_root!();
    // Files mode: the address claim is read back as the sandbox's claim file
    // (on the Kubernetes path it is a Lease; the claim check is the same code).
    let sb = Sandbox::up_files("g", Some(SCENARIO));
    let a = sb.container("app-web-1");
    let node_name = a["node"].as_str().unwrap().to_string();
    let status = sb.status();
    let node = common::node_in(&status, &node_name);
    let s = |v: &Value| v.as_str().unwrap().to_string();
    let record = format!(
        "{}/attachments/{}+{}.json",
        s(&node["stateDir"]),
        s(&a["containerId"]),
        s(&a["interface"])
    );
    let text = std::fs::read_to_string(&record).expect("the container's record");
    let net = sb.network("fault");
    let claim = format!(
        "{}/cluster/claims/{}/{}",
        s(&status["root"]),
        s(&net["id"]),
        s(&a["ip"])
    );
    assert!(std::path::Path::new(&claim).exists(), "claim {claim}");

    assert!(sb.privnet(&["agent", &node_name, "kill"]).status.success());
    std::fs::write(&record, &text[..text.len() / 2]).unwrap();
    let started = sb.privnet(&["agent", &node_name, "start"]);
    assert!(
        started.status.success(),
        "the agent must start over a corrupted record: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let log = std::fs::read_to_string(s(&node["agentLog"])).unwrap();
    assert!(
        log.contains("dropping a corrupted attachment record") && log.contains(&record),
        "the agent says what it dropped:\n{log}"
    );
    assert!(std::path::Path::new(&format!("{record}.corrupt")).exists());
    assert!(
        std::path::Path::new(&claim).exists(),
        "the address stays claimed"
    );

    // The agent is up and answers on the restarted node (`agent start` waited
    // for it to be ready).
    let metrics = sh_ok(
        &s(&node["netns"]),
        "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:9641/metrics\").read().decode())'",
    );
    assert!(
        metrics.contains("privnet_agent_converges_total"),
        "{metrics}"
    );
}

/// A container's host veth deleted: the agent retires its port (the guard's
/// set elements go with the next purge) and counts it; the other
/// container's traffic is untouched.
#[test]
fn a_deleted_host_veth_has_its_port_retired() {
    common::require_root!();
    let sb = Sandbox::up("v", Some(SCENARIO));
    let t = target(&sb);
    let veths = sh_ok(&t.net_ns, "ip -o link show type veth");
    let names: Vec<String> = veths
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 1, "app-web-1's port only: {veths}");
    let port = &names[0];
    let in_map =
        || sh_ok(&t.net_ns, "nft list set bridge privnet-ports port-ip").contains(port.as_str());
    assert!(in_map(), "the port is guarded before");
    let t0 = Instant::now();
    sh_ok(&t.net_ns, &format!("ip link del {port}"));
    let retired = wait_for(RESYNC + SLACK + Duration::from_secs(5), || !in_map());
    println!(
        "FAULT host-veth-deleted: port retired and purged after {:?}",
        retired.map(|_| t0.elapsed())
    );
    assert!(retired.is_some(), "the gone port's guard was not retired");
    let metrics = agent_metrics(&sb, &t);
    assert!(
        metrics.contains("privnet_agent_repairs_total{what=\"port_gone\"} 1"),
        "{metrics}"
    );
    // Control: the other node's container still talks to its gateway.
    let gateway = t.gateway.split('/').next().unwrap();
    let out = sb.exec_ok("app-web-2", &["ping", "-c1", "-w4", gateway]);
    assert!(out.contains("1 received"), "{out}");
}
