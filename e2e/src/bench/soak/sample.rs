//! Reads one [`Sample`] of a sandbox node: the agent's process (`/proc`),
//! its network namespaces (`nft -j`, `ip -j link`), the cluster's files
//! (claims, endpoints), its state directory and its `/metrics`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::{CloneFlags, setns};
use serde_json::Value;

use super::verdict::Sample;
use crate::bench::process::{self, ProcessError};

/// Where the figures of one node are read.
#[derive(Clone, Debug)]
pub struct NodeFiles {
    /// The agent's pid.
    pub agent_pid: u32,
    /// The node's namespace (its `/metrics` listens on loopback there).
    pub node_netns: String,
    /// Prefix of the node's network namespaces.
    pub network_prefix: String,
    /// The agent's state directory.
    pub state_dir: String,
    /// The sandbox's cluster directory (`<root>/cluster`).
    pub cluster_dir: String,
    /// The node's name.
    pub node: String,
}

/// Errors of reading a sample.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// A file of the agent or the sandbox could not be read.
    #[error("failed to read {path}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool failed.
    #[error("failed to read the node's datapath")]
    Tool(#[source] ProcessError),
    /// A tool's JSON did not decode.
    #[error("failed to decode the output of {0}")]
    Json(String),
    /// `/metrics` did not answer or lacks a figure.
    #[error("failed to read {0} from the agent's /metrics")]
    Metrics(String),
}

fn read(path: &str) -> Result<String, SampleError> {
    std::fs::read_to_string(path).map_err(|source| SampleError::Read {
        path: path.into(),
        source,
    })
}

fn count_dir(path: &Path) -> Result<u64, SampleError> {
    match std::fs::read_dir(path) {
        Ok(d) => Ok(d.filter_map(Result::ok).count() as u64),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(SampleError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// `Name:  value` of `/proc/<pid>/status`, as a number.
fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Processes whose parent is `pid`.
fn children_of(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid …: comm may hold spaces, so after the last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .count() as u64
}

/// The guard figures of one network namespace: set and map elements,
/// chains, rules.
pub fn guard_counts(ruleset: &Value) -> (u64, u64, u64) {
    let (mut elements, mut chains, mut rules) = (0, 0, 0);
    for item in ruleset["nftables"].as_array().into_iter().flatten() {
        if let Some(m) = item.get("set").or_else(|| item.get("map")) {
            elements += m["elem"].as_array().map_or(0, |e| e.len() as u64);
        } else if item.get("chain").is_some() {
            chains += 1;
        } else if item.get("rule").is_some() {
            rules += 1;
        }
    }
    (elements, chains, rules)
}

fn json_in(netns: &str, program: &str, args: &[&str]) -> Result<Value, SampleError> {
    let out =
        process::output(&mut process::in_netns(netns, program, args)).map_err(SampleError::Tool)?;
    serde_json::from_str(&out).map_err(|_| SampleError::Json(format!("{program} {args:?}")))
}

/// A gauge or counter of the agent's `/metrics` (fetched from inside the
/// node's namespace, on a thread of its own).
pub fn metric(node_netns: &str, name: &str) -> Result<u64, SampleError> {
    let path = format!("/run/netns/{node_netns}");
    let fail = || SampleError::Metrics(name.to_string());
    let text = std::thread::spawn(move || -> Option<String> {
        let ns = File::open(path).ok()?;
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).ok()?;
        let mut s = std::net::TcpStream::connect("127.0.0.1:9641").ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    })
    .join()
    .ok()
    .flatten()
    .ok_or_else(fail)?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|v| v as u64)
        .ok_or_else(fail)
}

/// Reads everything of `node` now (again if a network namespace went away
/// while it was read: the agent removes an unused network at any time).
pub fn take(node: &NodeFiles, label: &str, cycles: usize) -> Result<Sample, SampleError> {
    let mut tries = 0;
    loop {
        match take_once(node, label, cycles) {
            Err(SampleError::Tool(_)) if tries < 5 => tries += 1,
            other => return other,
        }
    }
}

fn take_once(node: &NodeFiles, label: &str, cycles: usize) -> Result<Sample, SampleError> {
    let pid = node.agent_pid;
    let status = read(&format!("/proc/{pid}/status"))?;
    let mut s = Sample {
        label: label.into(),
        cycles,
        rss_kib: status_field(&status, "VmRSS"),
        threads: status_field(&status, "Threads"),
        fds: count_dir(Path::new(&format!("/proc/{pid}/fd")))?,
        children: children_of(pid),
        ..Sample::default()
    };
    let namespaces: Vec<String> = std::fs::read_dir("/run/netns")
        .map_err(|source| SampleError::Read {
            path: "/run/netns".into(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&node.network_prefix))
        .collect();
    s.network_namespaces = namespaces.len() as u64;
    for ns in &namespaces {
        let (elements, chains, rules) =
            guard_counts(&json_in(ns, "nft", &["-j", "list", "ruleset"])?);
        s.set_elements += elements;
        s.chains += chains;
        s.nft_rules += rules;
        let links = json_in(ns, "ip", &["-j", "link", "show"])?;
        s.ports += links
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with("pv")))
            .count() as u64;
    }
    let cluster = Path::new(&node.cluster_dir);
    let claims = cluster.join("claims");
    if let Ok(dir) = std::fs::read_dir(&claims) {
        for net in dir.filter_map(Result::ok) {
            s.claims += count_dir(&net.path())?;
        }
    }
    s.endpoints = count_dir(&cluster.join("endpoints").join(&node.node))?;
    s.records = std::fs::read_dir(Path::new(&node.state_dir).join("attachments"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count() as u64
        })
        .unwrap_or(0);
    s.zone_entries = metric(&node.node_netns, "privnet_agent_zone_entries")?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_figures_are_counted_from_nft_json() {
        let v: Value = serde_json::from_str(
            r#"{"nftables": [{"metainfo": {}},
                {"table": {"family": "bridge", "name": "privnet-ports"}},
                {"set": {"name": "port-mac", "elem": [{"concat": ["pv1", "0a:58:01:02:03:04"]}]}},
                {"set": {"name": "port-ip", "elem": [{"concat": ["pv1", "10.240.0.5"]}]}},
                {"chain": {"name": "prerouting"}}, {"chain": {"name": "from-port"}},
                {"rule": {}}, {"rule": {}}, {"rule": {}}]}"#,
        )
        .unwrap();
        assert_eq!(guard_counts(&v), (2, 2, 3));
        assert_eq!(
            status_field("VmRSS:\t  1234 kB\nThreads:\t9\n", "VmRSS"),
            1234
        );
        assert_eq!(
            status_field("VmRSS:\t  1234 kB\nThreads:\t9\n", "Threads"),
            9
        );
        assert_eq!(status_field("", "Threads"), 0);
    }
}
