//! podman (CNI backend, runc) starts a container whose conflist chains
//! `privnet-cni` after the reference `bridge` plugin: the container gets both
//! interfaces, joins a sandbox network, talks to a sandbox container by
//! private IP and name, and `podman rm` leaves nothing behind.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Sandbox, bin};

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: pm}, spec: {namespaces: [pm]}}
workloads:
  - {project: pm, application: peer, processes: {web: 1}, nodes: [n2]}
"#;

struct Podman {
    dir: std::path::PathBuf,
    node_netns: String,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> Output {
        // nsenter enters only the node's network namespace: `ip netns exec`
        // would remount /sys and hide the cgroup hierarchy from runc.
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.node_netns))
            .args(["--", "podman"])
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .stdin(Stdio::null())
            .output()
            .expect("podman runs (apt-get install podman runc containernetworking-plugins)")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "-f", "-a"]);
        let _ = self.cmd(&["system", "reset", "-f"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A busybox rootfs imported as an image (no registry needed).
fn import_image(p: &Podman) {
    let rootfs = p.dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox"))
        .expect("busybox (apt-get install busybox-static)");
    for tool in [
        "sh", "ip", "ping", "nc", "cat", "sleep", "env", "nslookup", "grep",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    for d in ["etc", "proc", "sys", "dev", "tmp", "run"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let tar = p.dir.join("rootfs.tar");
    assert!(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    let out = p.cmd(&[
        "import",
        tar.to_str().unwrap(),
        "privnet-e2e/busybox:latest",
    ]);
    assert!(
        out.status.success(),
        "podman import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn podman_container_joins_a_sandbox_network() {
    common::require_root!();
    // A runtime outside Kubernetes: on the Kubernetes path its container
    // has no pod to own its endpoint, so this runs on local files.
    let sb = Sandbox::up_files("m", Some(SCENARIO));
    let n1 = sb.node("n1");
    let net = sb.network("pm");
    let peer = sb.container("peer-web-1");
    let dir = std::env::temp_dir().join(format!("{}-podman", sb.name));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(dir.join("net.d")).unwrap();
    for p in ["bridge", "host-local", "loopback"] {
        std::os::unix::fs::symlink(Path::new("/usr/lib/cni").join(p), plugins.join(p)).unwrap();
    }
    std::os::unix::fs::symlink(bin("privnet-cni"), plugins.join("privnet-cni")).unwrap();
    std::fs::write(
        dir.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = []\n[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]\nnetwork_config_dir = \"{}\"\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
            plugins.display(),
            dir.join("net.d").display()
        ),
    )
    .unwrap();
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "privnet-pm",
        "plugins": [
            {"type": "bridge", "bridge": "pmbr0", "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "172.31.251.0/24"}]]}},
            {"type": "privnet-cni", "network": net["id"], "agentSocket": n1["agentSocket"], "interfaceName": "eth1",
             "args": {"cni": {"privnet.io/application": "pod", "privnet.io/process-type": "web", "privnet.io/container-number": 1}}}
        ]
    });
    std::fs::write(
        dir.join("net.d/privnet-pm.conflist"),
        serde_json::to_string_pretty(&conflist).unwrap(),
    )
    .unwrap();
    let podman = Podman {
        dir,
        node_netns: n1["netns"].as_str().unwrap().to_string(),
    };
    import_image(&podman);

    let peer_ip = peer["ip"].as_str().unwrap();
    let script = format!(
        // The network is new on n1: until n2 has converged on n1's endpoint
        // (about 0.1 s, longer on a loaded machine) the ARP reply has no way
        // back, so the first probe may go unanswered.
        "ip -o -4 addr show; for i in 1 2 3 4 5; do ping -c1 -W2 {peer_ip} && break; done; nslookup 1.web.peer.{zone} {gw}",
        zone = net["zone"].as_str().unwrap(),
        gw = net["gateway"].as_str().unwrap()
    );
    // Detached, so the container (and its attachment) lives while we look.
    let script = format!("{script}; echo DONE; sleep 60");
    let out = podman.cmd(&[
        "run",
        "-d",
        "--name",
        "pm1",
        "--network",
        "privnet-pm",
        "privnet-e2e/busybox:latest",
        "sh",
        "-c",
        &script,
    ]);
    assert!(
        out.status.success(),
        "podman run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut stdout = String::new();
    for _ in 0..200 {
        stdout = String::from_utf8_lossy(&podman.cmd(&["logs", "pm1"]).stdout).into_owned();
        if stdout.contains("DONE") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        stdout.contains("eth0") && stdout.contains("172.31.251."),
        "primary interface from bridge: {stdout}"
    );
    assert!(
        stdout.contains("eth1") && stdout.contains("10.240."),
        "private interface from privnet: {stdout}"
    );
    assert!(
        stdout.contains("1 packets received"),
        "the podman container reaches the sandbox container: {stdout}"
    );
    assert!(
        stdout.contains(&format!("Address: {peer_ip}"))
            || stdout.contains(&format!("Address 1: {peer_ip}")),
        "{stdout}"
    );
    // The sandbox containers see the podman container by name.
    let zone = net["zone"].as_str().unwrap();
    let host = sb.exec_ok("peer-web-1", &["host", &format!("1.web.pod.{zone}")]);
    assert!(host.contains("has address 10.240."), "{host}");

    // `podman rm` runs CNI DEL: the attachment and its address are gone.
    let rm = podman.cmd(&["rm", "-f", "-t", "0", "pm1"]);
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let records = std::fs::read_dir(format!("{}/attachments", n1["stateDir"].as_str().unwrap()))
        .unwrap()
        .count();
    assert_eq!(
        records, 0,
        "the agent still holds the podman container's address"
    );
    let vni = net["vni"].as_u64().unwrap();
    let veths = sb.in_netns(
        &format!("{}-n1-net-{vni}", sb.name),
        &["ip", "-o", "link", "show", "type", "veth"],
    );
    assert!(
        String::from_utf8_lossy(&veths.stdout).trim().is_empty(),
        "veth left behind"
    );
}
