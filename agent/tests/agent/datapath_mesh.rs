//! Root test: two simulated nodes joined by userspace WireGuard, one private network ensured
//! on both, two containers pinging each other across nodes through VXLAN inside WireGuard;
//! the underlay only ever sees WireGuard UDP, and re-running `ensure` changes nothing.
//!
//! Specific to the userspace backend (pinned, not `auto`, so a machine with the kernel module
//! runs the same test): it checks that the `wireguard-go` daemon is adopted, not restarted.
//! `wg show` inside the node namespace reaches the daemon through its UAPI socket in
//! /var/run/wireguard (the same directory in every network namespace).
//! Needs `wireguard-go` (fails with the apt command when it is missing).

use crate::datapath_support;

use datapath_support::ping;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use ipnet::Ipv4Net;
use privnet_agent::datapath::fdb::{self, FdbEntry};
use privnet_agent::datapath::guard::{self, GuardedPort, NodeGuard};
use privnet_agent::datapath::netns::{self, NetnsFd};
use privnet_agent::datapath::network::{self, NetworkDatapath};
use privnet_agent::datapath::snapshot::Snapshot;
use privnet_agent::datapath::wireguard::{
    Backend, BackendChoice, MeshPeer, Wireguard, WireguardConfig,
};

/// Stops the wireguard-go daemons and deletes the namespaces, even when the test panics.
#[derive(Default)]
struct Cleanup {
    namespaces: Vec<String>,
    /// (wireguard-go pid, interface): the pid is taken at start, the state dir may be gone.
    tunnels: Vec<(Option<i32>, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Synchronous on purpose: this runs inside the test's runtime.
        for (pid, ifname) in &self.tunnels {
            if let Some(pid) = *pid {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                // Wait (bounded) until it is gone, so nothing outlives the test.
                for _ in 0..60 {
                    if nix::sys::signal::kill(pid, None).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{ifname}.sock"));
        }
        for ns in self.namespaces.iter().rev() {
            let _ = netns::delete(ns);
        }
    }
}

fn sh(ns: &str, cmd: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Node {
    ns: String,
    wg_ifname: String,
    underlay_ip: Ipv4Addr,
    vtep: Ipv4Addr,
    container: String,
    container_ip: Ipv4Addr,
    container_mac: [u8; 6],
}

/// The node guard of this test's mesh: VXLAN on 4789 (its own namespaces), its one VNI,
/// VTEPs in 10.99.0.0/24.
fn node_guard(wg: &str, vni: u32) -> NodeGuard {
    NodeGuard {
        wg_ifname: wg.into(),
        vxlan_port: 4789,
        vnis: vni..=vni,
        mesh: "10.99.0.0/24".parse().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_on_two_nodes_talk_only_through_wireguard() {
    datapath_support::require_root!();
    let pid = std::process::id();
    let tag = pid % 1000;
    let vni = 4000 + tag;
    let mut cleanup = Cleanup::default();
    let underlay = format!("pdu{pid}");
    let nodes: Vec<Node> = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(i, side)| Node {
            ns: format!("pdn{pid}{side}"),
            wg_ifname: format!("wgt{tag}{side}"),
            underlay_ip: Ipv4Addr::new(198, 18, 0, 1 + i as u8),
            vtep: Ipv4Addr::new(10, 99, 0, 1 + i as u8),
            container: format!("pdc{pid}{side}"),
            container_ip: Ipv4Addr::new(10, 240, 0, 10 + i as u8),
            container_mac: [0x0a, 0x58, 0x0a, 0xf0, 0, 10 + i as u8],
        })
        .collect();

    // Underlay: a bridge in its own namespace, one veth per node.
    netns::create(&underlay).unwrap();
    cleanup.namespaces.push(underlay.clone());
    sh(
        &underlay,
        "ip link set lo up && ip link add ubr type bridge && ip link set ubr up",
    );
    for (i, node) in nodes.iter().enumerate() {
        netns::create(&node.ns).unwrap();
        cleanup.namespaces.push(node.ns.clone());
        sh(
            &underlay,
            &format!(
                "ip link add u{i} type veth peer name eth0 netns {} && ip link set u{i} master ubr up",
                node.ns
            ),
        );
        sh(
            &node.ns,
            &format!(
                "ip link set lo up && ip addr add {}/24 dev eth0 && ip link set eth0 up",
                node.underlay_ip
            ),
        );
    }

    // WireGuard on each node, userspace (pinned: see the module comment).
    let state = tempfile::tempdir().unwrap();
    let mut tunnels = Vec::new();
    for node in &nodes {
        let config = WireguardConfig {
            ifname: node.wg_ifname.clone(),
            listen_port: 51820,
            address: Ipv4Net::new(node.vtep, 24).unwrap(),
            mtu: 1420,
            state_dir: state.path().join(&node.ns),
            backend: BackendChoice::Only(Backend::Userspace),
        };
        let agent_ns = NetnsFd::named(&node.ns).unwrap();
        let wg = Wireguard::ensure(&agent_ns, config.clone())
            .await
            .expect("wireguard up");
        cleanup
            .tunnels
            .push((wg.daemon_pid(), node.wg_ifname.clone()));
        assert_eq!(wg.backend(), Backend::Userspace);
        let pid_before = wg.daemon_pid().expect("daemon pid recorded");
        let again = Wireguard::ensure(&agent_ns, config).await.unwrap();
        assert_eq!(
            again.daemon_pid(),
            Some(pid_before),
            "an existing tunnel is adopted, not restarted"
        );
        assert_eq!(again.public_key(), wg.public_key(), "the key is kept");
        tunnels.push(wg);
    }
    for (i, wg) in tunnels.iter().enumerate() {
        let other = &nodes[1 - i];
        let peers = [MeshPeer {
            public_key: tunnels[1 - i].public_key().to_string(),
            endpoint: Some(SocketAddr::from((other.underlay_ip, 51820))),
            vtep: other.vtep,
            keepalive: None,
            standby: false,
        }];
        let plan = wg.set_peers(&peers).await.unwrap();
        assert_eq!(plan.configure.len(), 1);
        assert!(
            wg.set_peers(&peers).await.unwrap().configure.is_empty(),
            "unchanged peer untouched"
        );
        let shown = sh(
            &nodes[i].ns,
            &format!("wg show {} peers", nodes[i].wg_ifname),
        );
        assert_eq!(
            shown.split_whitespace().collect::<Vec<_>>(),
            vec![tunnels[1 - i].public_key()]
        );
        let allowed = sh(
            &nodes[i].ns,
            &format!("wg show {} allowed-ips", nodes[i].wg_ifname),
        );
        assert!(allowed.contains(&format!("{}/32", other.vtep)), "{allowed}");
        let agent_ns = NetnsFd::named(&nodes[i].ns).unwrap();
        guard::apply(
            &agent_ns,
            &guard::agent_ruleset(&node_guard(&nodes[i].wg_ifname, vni), false).unwrap(),
        )
        .await
        .unwrap();
    }

    // The network on both nodes, a container on each.
    let specs: Vec<NetworkDatapath> = nodes
        .iter()
        .map(|node| NetworkDatapath {
            netns: format!("{}-{vni}", node.ns),
            vni,
            bridge: "br0".into(),
            vxlan: network::vxlan_name(vni),
            gateway: "10.240.0.1/22".parse().unwrap(),
            gateway_mac: privnet_core::mac::gateway_mac(vni),
            mtu: 1370,
            vtep: node.vtep,
            vxlan_port: 4789,
            underlay_dev: node.wg_ifname.clone(),
            gro_flush_timeout_ns: 30_000,
        })
        .collect();
    for (i, (node, spec)) in nodes.iter().zip(&specs).enumerate() {
        let agent_ns = NetnsFd::named(&node.ns).unwrap();
        cleanup.namespaces.push(spec.netns.clone());
        let port = GuardedPort {
            host_ifname: "pv1".into(),
            mac: node.container_mac,
            ip: node.container_ip,
        };
        network::ensure(&agent_ns, spec, &[])
            .await
            .expect("network ensured");
        // Read back through iproute2's own sysfs of the namespace, not ours.
        assert_eq!(
            sh(
                &spec.netns,
                &format!("cat /sys/class/net/{}/gro_flush_timeout", spec.vxlan)
            )
            .trim(),
            "30000"
        );
        let bridge_nf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
        if std::path::Path::new(bridge_nf).exists() {
            assert_eq!(
                sh(&spec.netns, &format!("cat {bridge_nf}")).trim(),
                "0",
                "bridged frames must skip the IP hooks (br_netfilter)"
            );
            // Control: a namespace the agent did not set up keeps the default.
            let control = format!("pvctl{}-{i}", std::process::id());
            netns::create(&control).unwrap();
            cleanup.namespaces.push(control.clone());
            assert_eq!(sh(&control, &format!("cat {bridge_nf}")).trim(), "1");
        } else {
            eprintln!("br_netfilter is not loaded here: no bridge-nf setting to check");
        }
        netns::create(&node.container).unwrap();
        cleanup.namespaces.push(node.container.clone());
        sh(
            &spec.netns,
            &format!(
                "ip link add pv1 mtu 1370 type veth peer name eth1 netns {} && ip link set pv1 master br0 up",
                node.container
            ),
        );
        sh(
            &node.container,
            &format!(
                "ip link set lo up && ip link set eth1 mtu 1370 address {} && ip addr add {}/22 dev eth1 && ip link set eth1 up",
                privnet_core::mac::format_mac(&node.container_mac),
                node.container_ip
            ),
        );
        network::set_ports(spec, std::slice::from_ref(&port))
            .await
            .unwrap();
        let other = &nodes[1 - i];
        let desired: BTreeSet<FdbEntry> = [
            FdbEntry::flood(other.vtep),
            FdbEntry {
                mac: other.container_mac,
                dst: other.vtep,
            },
        ]
        .into();
        let (h, vx) = network::vxlan_handle(spec).await.unwrap();
        assert_eq!(fdb::sync(&h, vx, &desired).await.unwrap().add.len(), 2);
        assert!(
            fdb::sync(&h, vx, &desired).await.unwrap().is_empty(),
            "second sync is a no-op"
        );
        assert_eq!(fdb::read(&h, vx).await.unwrap(), desired);
        assert_eq!(
            netns::sysctl_get(&NetnsFd::named(&spec.netns).unwrap(), "net/ipv4/ip_forward")
                .await
                .unwrap(),
            "0"
        );
    }

    // Capture the underlay while the containers talk.
    let capture = Command::new("ip")
        .args([
            "netns",
            "exec",
            &underlay,
            "tcpdump",
            "-i",
            "ubr",
            "-nn",
            "-l",
            "-q",
            // IGMP membership reports are the nodes' own link control, not traffic.
            "ip and not igmp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ping = ping(
        &nodes[0].container,
        &nodes[0].container_ip.to_string(),
        &nodes[1].container_ip.to_string(),
        3,
        3.0,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(capture.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let captured =
        String::from_utf8_lossy(&capture.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        ping.status.success(),
        "cross-node ping failed: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let lines: Vec<&str> = captured.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the capture saw the tunnel traffic");
    for line in &lines {
        assert!(
            line.contains(".51820"),
            "non-WireGuard packet on the underlay: {line}"
        );
        assert!(
            !line.contains(".4789") && !line.contains("ICMP"),
            "clear text on the underlay: {line}"
        );
    }

    // Restart safety: ensuring again leaves the kernel identical.
    let names: Vec<&str> = nodes
        .iter()
        .flat_map(|n| [n.ns.as_str()])
        .chain(specs.iter().map(|s| s.netns.as_str()))
        .collect();
    let before = Snapshot::take(&names).await.unwrap();
    assert!(before.len() > 50, "snapshot captured real state:\n{before}");
    for (node, spec) in nodes.iter().zip(&specs) {
        let agent_ns = NetnsFd::named(&node.ns).unwrap();
        let port = GuardedPort {
            host_ifname: "pv1".into(),
            mac: node.container_mac,
            ip: node.container_ip,
        };
        network::ensure(&agent_ns, spec, &[port]).await.unwrap();
        guard::apply(
            &agent_ns,
            &guard::agent_ruleset(&node_guard(&node.wg_ifname, vni), false).unwrap(),
        )
        .await
        .unwrap();
    }
    let after = Snapshot::take(&names).await.unwrap();
    assert!(
        before.diff(&after).is_empty(),
        "ensure changed the kernel:\n{}",
        before.diff(&after).join("\n")
    );

    // A wrong MTU is fixed, not recreated.
    sh(&specs[0].netns, "ip link set br0 mtu 1300");
    let agent_ns = NetnsFd::named(&nodes[0].ns).unwrap();
    let port = GuardedPort {
        host_ifname: "pv1".into(),
        mac: nodes[0].container_mac,
        ip: nodes[0].container_ip,
    };
    network::ensure(&agent_ns, &specs[0], &[port])
        .await
        .unwrap();
    let fixed = Snapshot::take(&names).await.unwrap();
    assert!(
        before.diff(&fixed).is_empty(),
        "MTU not restored:\n{}",
        before.diff(&fixed).join("\n")
    );

    assert!(
        network::list_networks(&format!("pdn{pid}a-")).unwrap() == vec![specs[0].netns.clone()]
    );
    network::remove(&agent_ns, &specs[0]).await.unwrap();
    network::remove(&agent_ns, &specs[0])
        .await
        .expect("remove is idempotent");
    assert!(!netns::exists(&specs[0].netns));
    let stats = tunnels[0].read_peers().await.unwrap();
    assert_eq!(stats.len(), 1);
    assert!(
        stats[0].last_handshake_age.is_some() && stats[0].rx_bytes > 0,
        "{stats:?}"
    );
}
