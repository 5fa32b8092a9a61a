//! Chained into the node's primary conflist, the plugin sees every pod of
//! the node: those privnet's webhook did not admit pass through untouched
//! (ADD returns `prevResult`, DEL leaves an interface of the same name
//! alone), while a privnet pod still fails when its network is not ready.
//! The agent is a scripted unix socket; the container is a fresh namespace.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{TestNetns, ip, require_root};
use privnet_cni::plugin;
use privnet_core::rpc::{ErrorKind, Request, Response};
use serde_json::{Value, json};

/// An agent answering every request with `answer(request)`; records the ops.
fn scripted_agent(
    dir: &Path,
    answer: impl Fn(&Request) -> Response + Send + 'static,
) -> (PathBuf, Arc<Mutex<Vec<String>>>) {
    let path = dir.join("agent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            let req: Request = serde_json::from_str(&line).unwrap();
            let op = serde_json::to_value(&req).unwrap()["op"]
                .as_str()
                .unwrap()
                .to_string();
            log.lock().unwrap().push(op);
            let mut out = serde_json::to_vec(&answer(&req)).unwrap();
            out.push(b'\n');
            stream.write_all(&out).unwrap();
        }
    });
    (path, seen)
}

fn refuse(kind: ErrorKind) -> Response {
    Response::Error {
        kind,
        message: format!("scripted {kind:?}"),
    }
}

/// What the primary plugin returned (flannel-like, one interface `eth0`).
fn primary_result() -> Value {
    json!({ "cniVersion": "0.3.1",
            "interfaces": [{ "name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/var/run/netns/x" }],
            "ips": [{ "version": "4", "address": "10.244.0.5/24", "gateway": "10.244.0.1", "interface": 0 }],
            "routes": [{ "dst": "0.0.0.0/0" }],
            "dns": { "nameservers": ["10.96.0.10"] } })
}

fn conf(socket: &Path, chained: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        // Most primary CNIs' conflists (Calico, Flannel, Cilium, kindnet) say 0.3.1.
        "cniVersion": "0.3.1", "name": "k8s-pod-network", "type": "privnet-cni",
        "agentSocket": socket, "interfaceName": "eth1", "chained": chained,
        "prevResult": primary_result(),
    }))
    .unwrap()
}

fn vars(command: &str, netns: &TestNetns) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", "c-chained".to_string()),
        ("CNI_NETNS", netns.path()),
        ("CNI_IFNAME", "eth0".to_string()),
        (
            "CNI_ARGS",
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx".to_string(),
        ),
        ("CNI_PATH", "/opt/cni/bin".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn add_passes_pods_privnet_did_not_admit_through_unchanged() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let netns = TestNetns::new("pnchain");
    let (socket, seen) = scripted_agent(dir.path(), |_| refuse(ErrorKind::NotAdmitted));
    let out = plugin::run(&vars("ADD", &netns), &conf(&socket, true));
    assert_eq!(out.exit_code, 0, "{}", out.stdout);
    let result: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(result, primary_result(), "prevResult unchanged");
    assert_eq!(*seen.lock().unwrap(), ["attach"]);
    // Nothing was created in the pod.
    assert!(
        !ip(&["-n", &netns.name, "link", "show"])
            .unwrap()
            .contains("eth1")
    );

    // Control: the same answer outside chained mode is an error (CNI 7).
    let out = plugin::run(&vars("ADD", &netns), &conf(&socket, false));
    assert_eq!(out.exit_code, 1);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 7, "{err}");
}

#[test]
fn add_still_fails_for_a_privnet_pod_whose_network_is_not_ready() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let netns = TestNetns::new("pnchain");
    let (socket, _) = scripted_agent(dir.path(), |_| refuse(ErrorKind::UnknownNetwork));
    let out = plugin::run(&vars("ADD", &netns), &conf(&socket, true));
    assert_eq!(out.exit_code, 1, "{}", out.stdout);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 7, "{err}");
}

#[test]
fn del_leaves_an_interface_privnet_never_attached_alone() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let netns = TestNetns::new("pnchain");
    // Another plugin's eth1 (e.g. a Multus secondary network).
    ip(&[
        "-n",
        &netns.name,
        "link",
        "add",
        "eth1",
        "type",
        "veth",
        "peer",
        "name",
        "peer1",
    ])
    .unwrap();
    let (socket, seen) = scripted_agent(dir.path(), |req| match req {
        Request::Check(_) => refuse(ErrorKind::NotFound),
        _ => Response::Released { freed: 0 },
    });
    let out = plugin::run(&vars("DEL", &netns), &conf(&socket, true));
    assert_eq!(out.exit_code, 0, "{}", out.stdout);
    assert!(
        ip(&["-n", &netns.name, "link", "show", "eth1"]).is_ok(),
        "eth1 kept"
    );
    assert_eq!(*seen.lock().unwrap(), ["check"]);
    // CHECK of such a pod passes too (prevResult does not list eth1).
    let out = plugin::run(&vars("CHECK", &netns), &conf(&socket, true));
    assert_eq!(out.exit_code, 0, "{}", out.stdout);

    // Control: not chained, DEL removes the interface by name.
    let out = plugin::run(&vars("DEL", &netns), &conf(&socket, false));
    assert_eq!(out.exit_code, 0, "{}", out.stdout);
    assert!(
        ip(&["-n", &netns.name, "link", "show", "eth1"]).is_err(),
        "eth1 deleted"
    );
}
