//! Test harness: a sandbox per test (unique name), torn down on drop even
//! when the test fails, and checked to have left nothing behind
//! ([`leftovers`]): a test whose sandbox leaks fails.
#![allow(dead_code)] // each test file uses a different subset

pub mod leftovers;
pub mod observe;
pub mod runtime;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Path of a workspace binary (built by `cargo build --workspace --bins`).
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let path = target.join(profile).join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A running sandbox.
pub struct Sandbox {
    pub name: String,
    /// The host's nft tables before `up` (see [`leftovers::find`]).
    host_tables: std::collections::BTreeSet<String>,
}

impl Sandbox {
    /// `privnet sandbox up` with a scenario (YAML text) or the default.
    pub fn up(tag: &str, scenario: Option<&str>) -> Self {
        Self::up_with(tag, scenario, &[])
    }

    /// `privnet sandbox up --no-agents`: bare nodes, privnet not installed yet
    /// (`privnet sandbox start-agents` installs it).
    pub fn up_without_agents(tag: &str, scenario: Option<&str>) -> Self {
        Self::up_with(tag, scenario, &["--no-agents"])
    }

    /// `privnet sandbox up --wireguard-backend <backend>`: for tests that are
    /// specific to one backend (the others run on the sandbox's default, or
    /// on `PRIVNET_SANDBOX_WIREGUARD_BACKEND` when set).
    pub fn up_pinned(tag: &str, scenario: Option<&str>, backend: &str) -> Self {
        Self::up_with(tag, scenario, &["--wireguard-backend", backend])
    }

    /// `privnet sandbox up --api kube`: the Kubernetes path (emulated API
    /// server, real controller, kubelets), whatever `PRIVNET_SANDBOX_API` says.
    pub fn up_kube(tag: &str, scenario: Option<&str>) -> Self {
        Self::up_with(tag, scenario, &["--api", "kube"])
    }

    /// `privnet sandbox up --api files`: cluster state from local files, for
    /// runtimes outside Kubernetes (podman, a bare plugin call) whose
    /// containers have no pod to own their endpoint.
    pub fn up_files(tag: &str, scenario: Option<&str>) -> Self {
        Self::up_with(tag, scenario, &["--api", "files"])
    }

    /// Runs the real `kubectl` against the sandbox's API server, `stdin` piped in.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let kubeconfig = self.status()["kubeconfig"]
            .as_str()
            .filter(|k| !k.is_empty())
            .expect("the sandbox runs on the Kubernetes path")
            .to_string();
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut input = child.stdin.take().expect("piped");
        if let Some(text) = stdin {
            input
                .write_all(text.as_bytes())
                .expect("kubectl reads its input");
        }
        drop(input);
        child.wait_with_output().expect("kubectl runs")
    }

    fn up_with(tag: &str, scenario: Option<&str>, extra: &[&str]) -> Self {
        Self::up_with_env(tag, scenario, extra, &[])
    }

    /// `privnet sandbox up` with `env` set for it and the agents it starts
    /// (e.g. `PRIVNET_RESYNC_MS`, to keep a fault in place while it is looked at).
    pub fn up_with_env(
        tag: &str,
        scenario: Option<&str>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        assert!(
            nix_is_root(),
            "the e2e suite needs root (network namespaces)"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("e{}{}{n}", tag, std::process::id() % 10000);
        let sb = Sandbox {
            name,
            host_tables: leftovers::host_nft_tables(),
        };
        let mut args = vec!["up".to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        if let Some(text) = scenario {
            let path = std::env::temp_dir().join(format!("{}.yaml", sb.name));
            std::fs::write(&path, text).unwrap();
            args.push("--scenario".into());
            args.push(path.display().to_string());
        }
        let out = Command::new(bin("privnet"))
            .arg("sandbox")
            .args(["--name", &sb.name])
            .args(&args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("privnet runs");
        // `up` keeps its own copy of the scenario.
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}.yaml", sb.name)));
        assert!(
            out.status.success(),
            "sandbox up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        sb
    }

    /// Runs `privnet sandbox <args> --name <name>`.
    pub fn privnet(&self, args: &[&str]) -> Output {
        Command::new(bin("privnet"))
            .arg("sandbox")
            .args(["--name", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("privnet runs")
    }

    /// `status -o json`.
    pub fn status(&self) -> Value {
        let out = self.privnet(&["status", "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs a command in a container.
    pub fn exec(&self, container: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", container, "--"];
        args.extend_from_slice(cmd);
        self.privnet(&args)
    }

    /// Runs a command in a container and returns stdout, asserting success.
    pub fn exec_ok(&self, container: &str, cmd: &[&str]) -> String {
        let out = self.exec(container, cmd);
        assert!(
            out.status.success(),
            "`{}` in {container} failed:\n{}\n{}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Containers as JSON values.
    pub fn containers(&self) -> Vec<Value> {
        self.status()["containers"].as_array().unwrap().clone()
    }

    /// A field of the container named `name`.
    pub fn container(&self, name: &str) -> Value {
        self.containers()
            .into_iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    /// The node (JSON) named `name`.
    pub fn node(&self, name: &str) -> Value {
        node_in(&self.status(), name).clone()
    }

    /// The network (JSON) of `project`.
    pub fn network(&self, project: &str) -> Value {
        self.status()["networks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["project"] == project)
            .unwrap()
            .clone()
    }

    /// The WireGuard backend the sandbox's agents run (`userspace` or `kernel`).
    pub fn wireguard_backend(&self) -> String {
        self.status()["wireguardBackend"]
            .as_str()
            .expect("status has wireguardBackend")
            .to_string()
    }

    /// `wg show <node's interface> <what…>`, asked where the backend can be
    /// seen: the userspace daemon's UAPI socket is in /var/run/wireguard (the
    /// host namespace), the kernel interface only inside the node's namespace.
    pub fn wg_show(&self, node: &str, what: &[&str]) -> Output {
        let status = self.status();
        let n = node_in(&status, node);
        let ifname = n["wireguardInterface"].as_str().unwrap();
        let mut cmd = match status["wireguardBackend"].as_str() {
            Some("kernel") => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{}", n["netns"].as_str().unwrap()))
                    .args(["--", "wg"]);
                c
            }
            Some("userspace") => Command::new("wg"),
            other => panic!("unknown wireguardBackend {other:?}"),
        };
        cmd.args(["show", ifname])
            .args(what)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs a command inside a namespace.
    pub fn in_netns(&self, netns: &str, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", netns])
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Sandbox {
    /// `down`, then the check that it left nothing: a leak fails the test
    /// (or is printed, when the test is failing already).
    fn drop(&mut self) {
        let inodes = leftovers::namespace_inodes(&self.name);
        let down = self.privnet(&["down"]);
        // What a killed agent had started (an `nft -f -` fed its ruleset,
        // say) finishes on its own within moments; a leak stays.
        let mut left = leftovers::find(&self.name, &inodes, &self.host_tables);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !left.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            left = leftovers::find(&self.name, &inodes, &self.host_tables);
        }
        if down.status.success() && left.is_empty() {
            return;
        }
        let report = format!(
            "`sandbox down` of {} ({}) left:\n  {}\n{}",
            self.name,
            down.status,
            left.join("\n  "),
            String::from_utf8_lossy(&down.stderr)
        );
        if std::thread::panicking() {
            eprintln!("{report}");
        } else {
            panic!("{report}");
        }
    }
}

fn nix_is_root() -> bool {
    // SAFETY-free check through /proc: uid field of our own status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A python3 one-shot TCP/UDP server printing what it receives (runs in background).
pub const PY_SERVER: &str = r#"
import socket, sys
proto, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if proto == "tcp":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.listen(8); s.settimeout(timeout)
    c, _ = s.accept(); c.settimeout(timeout); data = c.recv(1024); c.sendall(b"ack:" + data); print(data.decode())
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.settimeout(timeout)
    data, peer = s.recvfrom(1024); s.sendto(b"ack:" + data, peer); print(data.decode())
"#;

/// A python3 client: sends a token, prints the reply (exit 1 on failure).
pub const PY_CLIENT: &str = r#"
import socket, sys
proto, host, port, token, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=timeout); s.sendall(token.encode()); print(s.recv(1024).decode())
    elif proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout); s.sendto(token.encode(), (host, port)); print(s.recvfrom(1024)[0].decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1); s.settimeout(timeout); s.sendto(token.encode(), (host, port)); print(s.recvfrom(1024)[0].decode())
except Exception as e:
    print(e, file=sys.stderr); sys.exit(1)
"#;

/// Starts a server in a container's namespace; returns the child.
pub fn spawn_server(sb: &Sandbox, container: &str, proto: &str, port: u16) -> std::process::Child {
    let c = sb.container(container);
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            c["netns"].as_str().unwrap(),
            "python3",
            "-c",
            PY_SERVER,
            proto,
            &port.to_string(),
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child
}

/// Runs the client in a container; returns the reply on success.
pub fn client(
    sb: &Sandbox,
    container: &str,
    proto: &str,
    host: &str,
    port: u16,
    token: &str,
) -> Option<String> {
    let out = sb.exec(
        container,
        &[
            "python3",
            "-c",
            PY_CLIENT,
            proto,
            host,
            &port.to_string(),
            token,
            "2",
        ],
    );
    if !out.status.success() {
        eprintln!(
            "client {proto} {container} -> {host}:{port} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The one-line root check shared by every root-only test tier.
pub(crate) use privnet_testkit::require_root;

/// The address `name` resolves to from `from`; `None` only for NXDOMAIN
/// (a name that is gone), any other failure (timeout, SERVFAIL) panics.
pub fn resolve_a(sb: &Sandbox, from: &str, name: &str) -> Option<String> {
    let out = sb.exec(from, &["host", "-W", "2", "-t", "A", name]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        assert!(
            text.contains("NXDOMAIN"),
            "`host {name}` from {from} failed without NXDOMAIN: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    text.lines()
        .find_map(|l| l.split(" has address ").nth(1).map(str::to_string))
}

/// The node `name` of a `sandbox status -o json` document.
pub fn node_in<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}
