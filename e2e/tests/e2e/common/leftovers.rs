//! What a sandbox may leave behind after `privnet sandbox down`: the check
//! every e2e test ends with (the `Sandbox` guard runs it after `down`).
//! Everything the sandbox creates carries its name: namespaces and
//! `/etc/netns` entries `<name>-…`, files under `/run/privnet-sandbox/<name>`,
//! WireGuard interfaces and UAPI sockets `<short name>wg<i>`, processes
//! started with `--name <name>` or paths under its root. Processes that
//! mention none of these (`wireguard-go`, a spare `nft -f -`) are found by
//! the namespace they run in: the inodes of the sandbox's namespaces are
//! read before `down`, and a process still in one after it keeps that
//! namespace (and its devices) alive.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Root directory of sandbox `name` (as `privnet_sandbox::state::root_of`).
pub fn root_of(name: &str) -> String {
    format!("/run/privnet-sandbox/{name}")
}

/// The short form of `name` in interface names (as the sandbox's `short`).
pub fn short(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect()
}

/// Named network namespaces of the sandbox.
fn namespaces(name: &str) -> Vec<String> {
    let prefix = format!("{name}-");
    let mut out: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    out.sort();
    out
}

/// The inodes of the sandbox's network namespaces (read before `down`).
pub fn namespace_inodes(name: &str) -> BTreeSet<u64> {
    namespaces(name)
        .iter()
        .filter_map(|ns| std::fs::metadata(format!("/run/netns/{ns}")).ok())
        .map(|m| m.ino())
        .collect()
}

/// The nft tables of the host's namespace (`family name`).
pub fn host_nft_tables() -> BTreeSet<String> {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .stdin(Stdio::null())
        .output()
        .expect("nft runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("table "))
        .map(str::to_string)
        .collect()
}

/// Everything of sandbox `name` still there: empty when `down` left
/// nothing. `inodes` are its namespaces' inodes from before `down`;
/// `tables_before` the host's nft tables from before `up` (a privnet table
/// in the host namespace that was not there then is the sandbox's).
pub fn find(name: &str, inodes: &BTreeSet<u64>, tables_before: &BTreeSet<String>) -> Vec<String> {
    let mut left = Vec::new();
    for ns in namespaces(name) {
        left.push(format!("network namespace {ns}"));
    }
    let prefix = format!("{name}-");
    for e in std::fs::read_dir("/etc/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&prefix) {
            left.push(format!("/etc/netns/{n}"));
        }
    }
    let root = root_of(name);
    if Path::new(&root).exists() {
        left.push(format!("directory {root}"));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
        if Path::new(point).starts_with(&root) {
            left.push(format!("mount {point}"));
        }
    }
    let wg = format!("{}wg", short(name));
    let is_wg = |n: &str| {
        n.strip_prefix(&wg)
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
    };
    for e in std::fs::read_dir("/var/run/wireguard")
        .into_iter()
        .flatten()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.strip_suffix(".sock").is_some_and(is_wg) {
            left.push(format!("/var/run/wireguard/{n}"));
        }
    }
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .stdin(Stdio::null())
        .output()
        .expect("ip runs");
    for l in String::from_utf8_lossy(&links.stdout).lines() {
        let Some(link) = l.split(": ").nth(1).map(|n| n.split('@').next().unwrap()) else {
            continue;
        };
        if is_wg(link) || link.starts_with(&prefix) {
            left.push(format!("link {link} in the host namespace"));
        }
    }
    left.extend(processes(name, inodes));
    for table in host_nft_tables().difference(tables_before) {
        if table.contains("privnet") || table.contains(name) {
            left.push(format!("nft table {table} in the host namespace"));
        }
    }
    left
}

/// Processes of the sandbox: in one of its namespaces, or whose command
/// line names it (`--name <name>`, a path under its root).
fn processes(name: &str, inodes: &BTreeSet<u64>) -> Vec<String> {
    let me = std::process::id().to_string();
    let root = format!("{}/", root_of(name));
    let mut left = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().all(|a| a.is_empty()) {
            continue; // a kernel thread or a zombie
        }
        let named = args.windows(2).any(|w| w[0] == "--name" && w[1] == name)
            || args.iter().any(|a| a.contains(&root));
        let in_ns = std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .ok()
            .and_then(|l| {
                l.to_string_lossy()
                    .strip_prefix("net:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            })
            .is_some_and(|ino| inodes.contains(&ino));
        if named || in_ns {
            left.push(format!(
                "process {pid} ({}){}",
                args.join(" ").trim(),
                if in_ns {
                    " in a namespace of the sandbox"
                } else {
                    ""
                }
            ));
        }
    }
    left
}
