//! Application patterns on the private network: a proxy in front of a
//! private backend, and cluster discovery through the type name.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::observe::spawn_until_stderr;
use common::{Sandbox, client, spawn_server};

const SCENARIO: &str = r#"
nodes: 3
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: pat}, spec: {namespaces: [pat]}}
workloads:
  - {project: pat, application: front, processes: {web: 1}}
  - {project: pat, application: back, processes: {api: 1}}
  - {project: pat, application: cluster, processes: {node: 3}}
"#;

/// A TCP proxy: accepts on the public side, forwards one exchange to the backend.
const PY_PROXY: &str = r#"
import socket, sys
backend = (sys.argv[1], int(sys.argv[2]))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 8080)); s.listen(1); s.settimeout(10)
print("bound", file=sys.stderr, flush=True)
c, _ = s.accept(); data = c.recv(1024)
b = socket.create_connection(backend, timeout=5); b.sendall(data); c.sendall(b.recv(1024))
"#;

/// tcpdump on a container's eth1 for frames from the outside's address
/// (172.31.99.1) in `direction`, for 4 s at most; returned once listening.
fn watch(netns: &str, direction: &str) -> std::process::Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "timeout", "4", "tcpdump"])
        .args(["--immediate-mode", "-i", "eth1", "-n", "-Q", direction])
        .arg("src host 172.31.99.1")
        .stdout(std::process::Stdio::piped());
    spawn_until_stderr(cmd, "listening on", Duration::from_secs(10))
}

/// Packets a [`watch`] saw.
fn seen(watcher: std::process::Child) -> Vec<String> {
    let out = watcher.wait_with_output().unwrap();
    // tcpdump ends an interrupted line with a newline: only packets count.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn run(cmd: &[&str]) {
    let st = Command::new(cmd[0]).args(&cmd[1..]).status().unwrap();
    assert!(st.success(), "{cmd:?}");
}

#[test]
fn proxy_in_front_of_a_private_backend() {
    common::require_root!();
    let sb = Sandbox::up("p", Some(SCENARIO));
    let web = sb.container("front-web-1");
    let api = sb.container("back-api-1");
    let web_ns = web["netns"].as_str().unwrap();
    // The outside world: a namespace with a public link to the web container only.
    let out = format!("{}-out", sb.name);
    run(&["ip", "netns", "add", &out]);
    run(&[
        "ip", "-n", &out, "link", "add", "pub0", "type", "veth", "peer", "name", "eth0", "netns",
        web_ns,
    ]);
    run(&[
        "ip",
        "-n",
        &out,
        "addr",
        "add",
        "172.31.99.1/24",
        "dev",
        "pub0",
    ]);
    run(&["ip", "-n", &out, "link", "set", "pub0", "up"]);
    run(&[
        "ip",
        "-n",
        web_ns,
        "addr",
        "add",
        "172.31.99.2/24",
        "dev",
        "eth0",
    ]);
    run(&["ip", "-n", web_ns, "link", "set", "eth0", "up"]);
    // Even with a route to the private subnet through the web container, the
    // outside cannot reach the backend: containers do not forward.
    run(&[
        "ip",
        "-n",
        &out,
        "route",
        "add",
        "10.240.0.0/22",
        "via",
        "172.31.99.2",
    ]);

    let backend = spawn_server(&sb, "back-api-1", "tcp", 9000);
    let mut proxy_cmd = Command::new("ip");
    proxy_cmd.args([
        "netns",
        "exec",
        web_ns,
        "python3",
        "-c",
        PY_PROXY,
        api["ip"].as_str().unwrap(),
        "9000",
    ]);
    let proxy = spawn_until_stderr(proxy_cmd, "bound", Duration::from_secs(10));
    let through = sb.in_netns(
        &out,
        &[
            "python3",
            "-c",
            common::PY_CLIENT,
            "tcp",
            "172.31.99.2",
            "8080",
            "via-proxy",
            "3",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&through.stdout).trim(),
        "ack:via-proxy",
        "{}",
        String::from_utf8_lossy(&through.stderr)
    );
    let _ = proxy.wait_with_output();
    let _ = backend.wait_with_output();

    // The backend has a route back to the outside through the web
    // container, so forwarding by the web container would be observable:
    // frames from the outside's address leaving the web container's eth1.
    let api_ns = api["netns"].as_str().unwrap();
    let web_ip = web["ip"].as_str().unwrap();
    run(&[
        "ip",
        "-n",
        api_ns,
        "route",
        "add",
        "172.31.99.0/24",
        "via",
        web_ip,
        "dev",
        "eth1",
    ]);
    let direct = |port: &str| {
        sb.in_netns(
            &out,
            &[
                "python3",
                "-c",
                common::PY_CLIENT,
                "tcp",
                api["ip"].as_str().unwrap(),
                port,
                "direct",
                "2",
            ],
        )
    };
    let forwarding = |on: u8| {
        let setting = format!("net.ipv4.ip_forward={on}");
        run(&["ip", "netns", "exec", web_ns, "sysctl", "-qw", &setting]);
    };
    // A new namespace inherits IPv4 forwarding from the host's
    // (`net.core.devconf_inherit_init_net` 0): start from off whatever the
    // host has, so what is checked is that privnet turns nothing on.
    forwarding(0);
    let backend = spawn_server(&sb, "back-api-1", "tcp", 9001);
    let forwarded = watch(web_ns, "out");
    let arrived = watch(api_ns, "in");
    assert!(
        !direct("9001").status.success(),
        "the private backend must not be reachable from outside"
    );
    assert_eq!(
        seen(forwarded),
        [] as [String; 0],
        "the web container forwarded"
    );
    assert_eq!(seen(arrived), [] as [String; 0]);
    // Positive control: with forwarding on in the web container the capture
    // sees it forward, and the port guard still drops the foreign source.
    forwarding(1);
    let forwarded = watch(web_ns, "out");
    let arrived = watch(api_ns, "in");
    assert!(!direct("9001").status.success());
    assert!(
        !seen(forwarded).is_empty(),
        "positive control: a forwarding container is seen forwarding"
    );
    assert_eq!(
        seen(arrived),
        [] as [String; 0],
        "the guard drops a forwarded source"
    );
    forwarding(0);
    let ping = sb.in_netns(&out, &["ping", "-c1", "-W1", api["ip"].as_str().unwrap()]);
    assert!(!ping.status.success());
    drop(backend);
    // From inside the network the backend answers directly.
    let backend = spawn_server(&sb, "back-api-1", "tcp", 9002);
    assert_eq!(
        client(
            &sb,
            "front-web-1",
            "tcp",
            api["ip"].as_str().unwrap(),
            9002,
            "inside"
        )
        .as_deref(),
        Some("ack:inside")
    );
    let _ = backend.wait_with_output();
}

#[test]
fn cluster_members_discover_each_other_by_type_name() {
    common::require_root!();
    let sb = Sandbox::up("d", Some(SCENARIO));
    let zone = sb.network("pat")["zone"].as_str().unwrap().to_string();
    let members: Vec<_> = sb
        .containers()
        .into_iter()
        .filter(|c| c["applicationId"] == "cluster")
        .collect();
    assert_eq!(members.len(), 3);
    let nodes: BTreeSet<_> = members
        .iter()
        .map(|c| c["node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(nodes.len(), 3, "members are spread over the nodes");
    for from in &members {
        let from_name = from["name"].as_str().unwrap();
        // Discovery: the type name lists every member.
        let out = sb.exec_ok(
            from_name,
            &["host", "-t", "A", &format!("node.cluster.{zone}")],
        );
        let found: BTreeSet<String> = out
            .lines()
            .filter_map(|l| l.split(" has address ").nth(1))
            .map(str::to_string)
            .collect();
        let want: BTreeSet<String> = members
            .iter()
            .map(|c| c["ip"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(found, want);
        // Gossip on a non-HTTP port with every peer found.
        for peer in members.iter().filter(|p| p["name"] != from["name"]) {
            let server = spawn_server(&sb, peer["name"].as_str().unwrap(), "udp", 7946);
            let reply = client(
                &sb,
                from_name,
                "udp",
                peer["ip"].as_str().unwrap(),
                7946,
                "gossip",
            );
            let _ = server.wait_with_output();
            assert_eq!(
                reply.as_deref(),
                Some("ack:gossip"),
                "{from_name} -> {}",
                peer["name"]
            );
        }
    }
}
