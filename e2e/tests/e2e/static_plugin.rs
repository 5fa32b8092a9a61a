//! The release plugin runs on any node OS: built static (scripts/build-cni-static),
//! it is exec'd in a mount namespace whose root holds nothing but the binary
//! (no /lib, no /usr; only /proc and the bind-mounted /run the runtime's paths
//! live in), and VERSION, ADD, CHECK and DEL against a sandbox agent work.
//! Positive control: the dynamically linked debug build cannot even start in
//! the same root, so the root really lacks a libc.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Sandbox, bin};
use serde_json::{Value, json};

const SCENARIO: &str = r#"
nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: st}, spec: {namespaces: [st]}}
workloads:
  - {project: st, application: peer, processes: {web: 1}, nodes: [n2]}
"#;

/// The static plugin: `$PRIVNET_STATIC_CNI` (test-all sets it to its static-check
/// build), else the release one `scripts/build-cni-static` writes.
fn static_plugin() -> PathBuf {
    if let Some(path) = std::env::var_os("PRIVNET_STATIC_CNI") {
        return PathBuf::from(path);
    }
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("host triple");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(host)
        .join("release/privnet-cni");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-cni-static first",
        path.display()
    );
    path
}

/// Whether an ELF executable asks for a program interpreter (dynamic loader).
fn has_interpreter(path: &Path) -> bool {
    let elf = std::fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not ELF", path.display());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let p = phoff + i * phentsize;
        u32::from_le_bytes(elf[p..p + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

/// A root directory holding only the plugin, deleted on drop.
struct BareRoot {
    dir: tempfile::TempDir,
}

impl BareRoot {
    fn new(plugin: &Path) -> BareRoot {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(plugin, dir.path().join("privnet-cni")).unwrap();
        for d in ["proc", "run", "agent"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        BareRoot { dir }
    }

    /// Runs the plugin chrooted in its own mount namespace (a slave of the
    /// host's, so namespaces the agent creates meanwhile appear): `/proc`, the
    /// host's `/run` (netns paths) and the agent's socket directory at
    /// `/agent` are the only things mounted next to it.
    fn run(&self, agent_dir: &str, env: &[(&str, &str)], stdin: &Value) -> Output {
        let root = self.dir.path().display().to_string();
        let script = format!(
            "mount --make-rslave / && mount -t proc proc {root}/proc && \
             mount --rbind /run {root}/run && mount --bind {agent_dir} {root}/agent && \
             exec chroot {root} /privnet-cni"
        );
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "unchanged", "sh", "-c", &script])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn replace_plugin(&self, plugin: &Path) {
        std::fs::copy(plugin, self.dir.path().join("privnet-cni")).unwrap();
    }
}

/// A container network namespace deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ok_json(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[test]
fn static_release_plugin_attaches_from_an_empty_root() {
    common::require_root!();
    let plugin = static_plugin();
    assert!(!has_interpreter(&plugin), "release plugin is dynamic");
    let dynamic = bin("privnet-cni");
    assert!(has_interpreter(&dynamic), "control: debug build is dynamic");

    // A runtime outside Kubernetes: on the Kubernetes path its container
    // has no pod to own its endpoint, so this runs on local files.
    let sb = Sandbox::up_files("st", Some(SCENARIO));
    let status = sb.status();
    let n1 = &status["nodes"][0];
    let socket = n1["agentSocket"].as_str().unwrap();
    let agent_dir = Path::new(socket).parent().unwrap().display().to_string();
    let socket_name = Path::new(socket).file_name().unwrap().to_str().unwrap();
    let network = sb.network("st");
    let gateway = network["gateway"].as_str().unwrap().to_string();
    let peer = sb.container("peer-web-1");
    let peer_ip = peer["ip"].as_str().unwrap().to_string();

    let root = BareRoot::new(&plugin);
    let config = json!({
        "cniVersion": "1.1.0", "name": "privnet", "type": "privnet-cni",
        "agentSocket": format!("/agent/{socket_name}"),
    });

    // Control: a dynamic binary cannot start in this root.
    root.replace_plugin(&dynamic);
    let out = root.run(&agent_dir, &[("CNI_COMMAND", "VERSION")], &config);
    assert!(
        !out.status.success(),
        "the dynamic plugin started without a libc: the root is not bare"
    );
    root.replace_plugin(&plugin);

    let version = ok_json(
        &root.run(&agent_dir, &[("CNI_COMMAND", "VERSION")], &config),
        "VERSION",
    );
    assert_eq!(version["cniVersion"], "1.1.0", "{version}");

    let ns = Netns(format!("{}-c-static", sb.name));
    let made = Command::new("ip").args(["netns", "add", &ns.0]).status();
    assert!(made.unwrap().success(), "ip netns add {}", ns.0);
    let netns_path = format!("/run/netns/{}", ns.0);
    let container_id = format!("{}-static", sb.name);
    let cni_args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=st;PRIVNET_APPLICATION_ID=solo;PRIVNET_PROCESS_TYPE=web;PRIVNET_CONTAINER_NUMBER=1";
    let env = |command: &'static str| {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container_id.as_str()),
            ("CNI_NETNS", netns_path.as_str()),
            ("CNI_IFNAME", "eth1"),
            ("CNI_ARGS", cni_args),
            ("CNI_PATH", "/"),
        ]
    };

    let result = ok_json(&root.run(&agent_dir, &env("ADD"), &config), "ADD");
    let ip = result["ips"][0]["address"].as_str().unwrap().to_string();
    let ip = ip.split('/').next().unwrap().to_string();
    // Attached means it talks: the gateway on this node, the peer on n2.
    for target in [&gateway, &peer_ip] {
        let out = sb.in_netns(&ns.0, &["ping", "-c1", "-w4", target]);
        assert!(
            out.status.success(),
            "{ip} cannot reach {target}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    let mut check_config = config.clone();
    check_config["prevResult"] = result.clone();
    ok_json(&root.run(&agent_dir, &env("CHECK"), &check_config), "CHECK");

    ok_json(&root.run(&agent_dir, &env("DEL"), &config), "DEL");
    let links = sb.in_netns(&ns.0, &["ip", "-o", "link", "show", "eth1"]);
    assert!(!links.status.success(), "eth1 left behind after DEL");
    // The same probe sees the interface when it exists (loopback stands in).
    assert!(
        sb.in_netns(&ns.0, &["ip", "-o", "link", "show", "lo"])
            .status
            .success()
    );
}
