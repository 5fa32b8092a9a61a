//! `kill -9` of an agent during a cross-node TCP stream: the stream
//! survives (the datapath and the userspace tunnel do not depend on the
//! agent process), and after the restart the kernel state is identical.
//!
//! Specific to the userspace WireGuard backend (pinned): it checks that the
//! `wireguard-go` daemon, a process of its own, is the same one after the
//! agent's `kill -9` (the kernel interface has no process to check).

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Sandbox;
use privnet_agent::datapath::snapshot::Snapshot;

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: rs}, spec: {namespaces: [rs]}}
workloads:
  - {project: rs, application: app, processes: {web: 2}}
"#;

/// Server: counts bytes until EOF, prints the total.
const PY_SINK: &str = r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 7100)); s.listen(1); s.settimeout(20)
c, _ = s.accept(); c.settimeout(20); total = 0
while True:
    d = c.recv(65536)
    if not d: break
    total += len(d)
print(total)
"#;

/// Client: sends 1 KiB every 10 ms for `secs`, prints the total sent.
const PY_SOURCE: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], 7100), timeout=10); end = time.time() + float(sys.argv[2]); total = 0
while time.time() < end:
    s.sendall(b"x" * 1024); total += 1024; time.sleep(0.01)
s.shutdown(socket.SHUT_WR); s.close(); print(total)
"#;

fn snapshot(names: &[String]) -> Snapshot {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(Snapshot::take(&refs))
        .unwrap()
}

#[test]
fn agent_kill_keeps_connections_and_kernel_state() {
    common::require_root!();
    let sb = Sandbox::up_pinned("r", Some(SCENARIO), "userspace");
    let (a, b) = (sb.container("app-web-1"), sb.container("app-web-2"));
    assert_ne!(a["node"], b["node"]);
    let node = a["node"].as_str().unwrap().to_string();
    let status = sb.status();
    let vni = sb.network("rs")["vni"].as_u64().unwrap();
    let watched = vec![
        format!("{}-{node}", sb.name),
        format!("{}-{node}-net-{vni}", sb.name),
    ];
    let wg_pid_file = |s: &serde_json::Value| {
        let n = common::node_in(s, &node);
        std::fs::read_to_string(format!(
            "{}/wireguard-go-{}.pid",
            n["stateDir"].as_str().unwrap(),
            n["wireguardInterface"].as_str().unwrap()
        ))
        .unwrap()
    };
    let wg_before = wg_pid_file(&status);
    // Let a convergence pass settle, then take the reference snapshot.
    std::thread::sleep(Duration::from_millis(500));
    let before = snapshot(&watched);

    let sink = Command::new("ip")
        .args([
            "netns",
            "exec",
            b["netns"].as_str().unwrap(),
            "python3",
            "-c",
            PY_SINK,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    common::observe::wait_listening(b["netns"].as_str().unwrap(), 7100);
    let source = Command::new("ip")
        .args([
            "netns",
            "exec",
            a["netns"].as_str().unwrap(),
            "python3",
            "-c",
            PY_SOURCE,
            b["ip"].as_str().unwrap(),
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let killed = sb.privnet(&["agent", &node, "kill"]);
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    std::thread::sleep(Duration::from_secs(1));
    let started = sb.privnet(&["agent", &node, "start"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );

    let sent = source.wait_with_output().unwrap();
    let received = sink.wait_with_output().unwrap();
    assert!(
        sent.status.success(),
        "the stream broke: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let (sent, received) = (
        String::from_utf8_lossy(&sent.stdout).trim().to_string(),
        String::from_utf8_lossy(&received.stdout).trim().to_string(),
    );
    assert!(
        !sent.is_empty() && sent == received,
        "sent {sent} bytes, received {received}"
    );
    assert_eq!(
        wg_pid_file(&sb.status()),
        wg_before,
        "the tunnel daemon was not restarted"
    );

    // After the restart has converged, the kernel is exactly as before.
    std::thread::sleep(Duration::from_millis(800));
    let after = snapshot(&watched);
    let diff = before.diff(&after);
    assert!(
        diff.is_empty(),
        "kernel state changed across the restart:\n{}",
        diff.join("\n")
    );
    // And the restarted agent still serves attachments.
    let zone = sb.network("rs")["zone"].as_str().unwrap().to_string();
    let out = sb.exec_ok("app-web-1", &["host", &format!("2.web.app.{zone}")]);
    assert!(out.contains(b["ip"].as_str().unwrap()), "{out}");
}
