//! Helpers for the kernel-level plugin tests: the real agent in process,
//! throwaway namespaces, running the real binary as a runtime does, kernel
//! snapshots.
#![allow(dead_code)] // each test binary uses a different subset

mod agent;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use agent::TestAgent;
use serde_json::{Value, json};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique name `<prefix><pid>x<counter>` (for namespaces, sockets …).
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `ip <args>`, failing on a non-zero exit.
pub fn ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every spec version the plugin supports.
pub const VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// A network namespace deleted on drop.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new(prefix: &str) -> TestNetns {
        let name = unique_name(prefix);
        ip(&["netns", "add", &name]).expect("ip netns add (tests need root)");
        TestNetns { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// The real agent, ready, on a unique socket in a temp dir.
pub struct Agent {
    pub agent: TestAgent,
}

impl Agent {
    pub fn start() -> Agent {
        Agent {
            agent: TestAgent::start(true),
        }
    }

    /// An agent still waiting for its mesh address.
    pub fn start_waiting() -> Agent {
        Agent {
            agent: TestAgent::start(false),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.agent.socket()
    }

    pub fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "privnet",
            "type": "privnet-cni",
            "agentSocket": self.socket(),
            "agentTimeoutMs": 10000,
        })
    }
}

/// Output of one plugin run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Value,
    pub stderr: String,
}

impl Run {
    /// The spec error code (panics on success).
    pub fn error_code(&self) -> u64 {
        assert_ne!(self.code, 0, "expected failure, got {:?}", self.stdout);
        self.stdout["code"].as_u64().expect("error JSON has a code")
    }

    pub fn ok(self) -> Value {
        assert_eq!(
            self.code, 0,
            "plugin failed: {} / {}",
            self.stdout, self.stderr
        );
        self.stdout
    }
}

/// Runs the real binary with stdin/env exactly as a runtime does.
pub fn run_plugin(
    command: &str,
    conf: &Value,
    container_id: &str,
    netns: Option<&str>,
    ifname: &str,
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_privnet-cni"));
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/opt/cni/bin")
        .env(
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;PRIVNET_APPLICATION_ID=app",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = netns {
        cmd.env("CNI_NETNS", ns);
    }
    let mut child = cmd.spawn().expect("spawn privnet-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stdout = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("stdout is JSON")
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `conf` with `prevResult` set.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

fn ip_json(ns: &str, args: &[&str]) -> Value {
    let mut full = vec!["-n", ns, "-j"];
    full.extend_from_slice(args);
    serde_json::from_str(&ip(&full).unwrap()).unwrap()
}

/// Links of a namespace: (name, master, mtu, mac, up).
pub fn links(ns: &str) -> Vec<(String, Option<String>, u64, String, bool)> {
    let mut v: Vec<_> = ip_json(ns, &["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let up = l["flags"].as_array().unwrap().iter().any(|f| f == "UP");
            (
                l["ifname"].as_str().unwrap().to_string(),
                l["master"].as_str().map(str::to_string),
                l["mtu"].as_u64().unwrap(),
                l["address"].as_str().unwrap_or_default().to_string(),
                up,
            )
        })
        .collect();
    v.sort();
    v
}

/// A stable snapshot of links, IPv4 addresses and IPv4 routes of a namespace
/// (things that change on their own — operstate, statistics, IPv6
/// link-local addresses appearing after DAD — are left out).
pub fn snapshot(ns: &str) -> Value {
    let addrs: Vec<Value> = ip_json(ns, &["-4", "addr", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            json!([
                l["ifname"],
                l["addr_info"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| json!([a["local"], a["prefixlen"]]))
                    .collect::<Vec<_>>()
            ])
        })
        .collect();
    let routes = ip_json(ns, &["-4", "route", "show", "table", "all"]);
    let routes: Vec<Value> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["dst"], r["dev"], r["gateway"], r["table"]]))
        .collect();
    json!({ "links": format!("{:?}", links(ns)), "addrs": addrs, "routes": routes })
}

/// IPv4 addresses (`a.b.c.d/len`) of `ifname` in `ns`.
pub fn addrs_of(ns: &str, ifname: &str) -> Vec<String> {
    ip_json(ns, &["-4", "addr", "show", "dev", ifname])
        .as_array()
        .unwrap()[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

/// The one-line root check shared by every root-only test tier.
pub(crate) use privnet_testkit::require_root;
