//! A container runtime outside Kubernetes, as the fault tests need one:
//! container namespaces named with the sandbox's prefix (so `down` takes
//! what a failed test leaves), and `privnet-cni` exec'd with the CNI
//! environment and the node's network config on stdin, as containerd or
//! podman does. For the sandbox's files path (`Sandbox::up_files`), where
//! the agent takes the workload from `PRIVNET_*` arguments.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};

use serde_json::{Value, json};

use super::{Sandbox, bin};

/// The runtime of one node.
pub struct Runtime {
    sandbox: String,
    config: Value,
}

/// One container's CNI identity.
pub struct Container {
    /// `CNI_CONTAINERID`.
    pub id: String,
    /// Its network namespace's name (under /run/netns).
    pub netns: String,
    /// `CNI_ARGS`.
    pub args: String,
}

impl Runtime {
    /// The runtime of `node`: the network config its conflist holds.
    pub fn of_node(sb: &Sandbox, node: &str) -> Runtime {
        let status = sb.status();
        let n = super::node_in(&status, node);
        Runtime {
            sandbox: sb.name.clone(),
            config: json!({
                "cniVersion": "1.1.0", "name": "privnet", "type": "privnet-cni",
                "agentSocket": n["agentSocket"],
                "logFile": format!("{}/cni.log", status["root"].as_str().unwrap()),
            }),
        }
    }

    /// A new container of `app` (process type web, number `number`) in the
    /// pod namespace `namespace`: its network namespace is created now.
    pub fn container(&self, tag: &str, namespace: &str, app: &str, number: u32) -> Container {
        let netns = format!("{}-c-{tag}", self.sandbox);
        let made = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .unwrap();
        assert!(made.success(), "ip netns add {netns}");
        Container {
            id: format!("{}-{tag}", self.sandbox),
            netns,
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};PRIVNET_APPLICATION_ID={app};\
                 PRIVNET_PROCESS_TYPE=web;PRIVNET_CONTAINER_NUMBER={number}"
            ),
        }
    }

    /// Starts `privnet-cni` with `command` for `c` (not waited for).
    pub fn spawn(&self, command: &str, c: &Container) -> Child {
        let mut child = Command::new(bin("privnet-cni"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &c.id)
            .env("CNI_NETNS", format!("/run/netns/{}", c.netns))
            .env("CNI_IFNAME", "eth1")
            .env("CNI_ARGS", &c.args)
            .env("CNI_PATH", "/opt/cni/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("privnet-cni runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(self.config.to_string().as_bytes())
            .expect("the plugin reads its config");
        child
    }

    /// Runs `privnet-cni` with `command` for `c`.
    pub fn call(&self, command: &str, c: &Container) -> Output {
        self.spawn(command, c).wait_with_output().unwrap()
    }

    /// What a runtime does when a container goes (or its ADD failed): DEL,
    /// then the namespace is removed. DEL must succeed.
    pub fn remove(&self, c: &Container) {
        let out = self.call("DEL", c);
        assert!(
            out.status.success(),
            "DEL of {}: {}",
            c.id,
            String::from_utf8_lossy(&out.stdout)
        );
        let gone = Command::new("ip")
            .args(["netns", "del", &c.netns])
            .status()
            .unwrap();
        assert!(gone.success(), "ip netns del {}", c.netns);
    }
}

/// The address (without prefix) of a successful ADD's result.
pub fn address_of(out: &Output) -> String {
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ADD result is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    result["ips"][0]["address"]
        .as_str()
        .expect("an address in the result")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}
