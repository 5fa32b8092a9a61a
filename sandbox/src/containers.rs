//! Sandbox containers: a network namespace each, attached by invoking
//! `privnet-cni` exactly as a runtime does (env + config on stdin), with a
//! resolv.conf pointing at the network's gateway for `exec`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::state::{ContainerState, NetworkState, NodeState};
use super::sys::{CommandError, ip};
use privnet_core::naming::{DEFAULT_DOMAIN, DEFAULT_ENV_PREFIX, PrivateName, env_vars};

/// Private interface name inside containers.
pub const IFNAME: &str = "eth1";

/// What to start.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Project.
    pub project: String,
    /// Application id.
    pub application: String,
    /// Process type.
    pub process_type: String,
    /// Container number.
    pub number: u32,
    /// Node.
    pub node: String,
}

/// Network config the node's runtime hands to the plugin (its conflist
/// has this single plugin).
pub fn plugin_config(node: &NodeState, log_file: &str) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.1.0",
        "name": "privnet",
        "type": "privnet-cni",
        "agentSocket": node.agent_socket,
        "logFile": log_file,
    })
}

/// The conflist file of a node (what a runtime reads from /etc/cni/net.d).
pub fn conflist(node: &NodeState, log_file: &str) -> serde_json::Value {
    let mut plugin = plugin_config(node, log_file);
    let obj = plugin.as_object_mut().expect("object");
    obj.remove("cniVersion");
    obj.remove("name");
    serde_json::json!({"cniVersion": "1.1.0", "name": "privnet", "plugins": [plugin]})
}

/// Invokes the plugin; returns its stdout (the result JSON) or the spec error.
pub fn invoke_cni(
    cni: &Path,
    command: &str,
    config: &serde_json::Value,
    container_id: &str,
    netns: &str,
    cni_args: &str,
    ifname: &str,
) -> Result<String, CommandError> {
    let line = format!("CNI_COMMAND={command} {} ({container_id})", cni.display());
    let mut child = Command::new(cni)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_ARGS", cni_args)
        .env("CNI_PATH", cni.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CommandError {
            command: line.clone(),
            stderr: e.to_string(),
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(config.to_string().as_bytes())
        .map_err(|e| CommandError {
            command: line.clone(),
            stderr: e.to_string(),
        })?;
    let out = child.wait_with_output().map_err(|e| CommandError {
        command: line.clone(),
        stderr: e.to_string(),
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(CommandError {
            command: line,
            stderr: format!(
                "{} {}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(stdout)
}

/// Creates the container namespace and attaches it.
pub fn start(
    sandbox: &str,
    cni: &Path,
    node: &NodeState,
    network: &NetworkState,
    spec: &ContainerSpec,
    cni_log: &str,
) -> Result<ContainerState, CommandError> {
    let name = format!("{}-{}-{}", spec.application, spec.process_type, spec.number);
    let netns = format!("{sandbox}-c-{name}");
    let container_id = format!("{sandbox}-{name}");
    ip(&["netns", "add", &netns])?;
    let attach = || -> Result<ContainerState, CommandError> {
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};PRIVNET_APPLICATION_ID={};PRIVNET_PROCESS_TYPE={};PRIVNET_CONTAINER_NUMBER={}",
            spec.project, spec.application, spec.process_type, spec.number
        );
        let out = invoke_cni(
            cni,
            "ADD",
            &plugin_config(node, cni_log),
            &container_id,
            &format!("/run/netns/{netns}"),
            &args,
            IFNAME,
        )?;
        let result: serde_json::Value = serde_json::from_str(&out).map_err(|e| CommandError {
            command: "decode CNI result".into(),
            stderr: format!("{e}: {out}"),
        })?;
        let ip_cidr = result["ips"][0]["address"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let address = ip_cidr.split('/').next().unwrap_or_default().to_string();
        let mac = result["interfaces"]
            .as_array()
            .and_then(|ifs| ifs.iter().find(|i| i["sandbox"].as_str().is_some()))
            .and_then(|i| i["mac"].as_str())
            .unwrap_or_default()
            .to_string();
        let pname = PrivateName {
            number: spec.number,
            process_type: spec.process_type.clone(),
            application_id: spec.application.clone(),
            network_id: network.id.clone(),
        };
        let env: BTreeMap<String, String> = env_vars(DEFAULT_ENV_PREFIX, &pname, DEFAULT_DOMAIN)
            .map_err(|e| CommandError {
                command: "env vars".into(),
                stderr: e.to_string(),
            })?
            .into_iter()
            .collect();
        write_resolv_conf(&netns, &network.gateway, &network.zone)?;
        Ok(ContainerState {
            name: name.clone(),
            node: node.name.clone(),
            netns: netns.clone(),
            container_id: container_id.clone(),
            project: spec.project.clone(),
            application_id: spec.application.clone(),
            process_type: spec.process_type.clone(),
            number: spec.number,
            network_id: network.id.clone(),
            interface: IFNAME.into(),
            ip: address,
            mac,
            hostname: pname.fqdn(DEFAULT_DOMAIN),
            env,
            podman: false,
            namespace: String::new(),
        })
    };
    attach().inspect_err(|_| {
        let _ = ip(&["netns", "del", &netns]);
    })
}

/// Detaches (CNI DEL) and removes the container namespace; best effort.
pub fn stop(
    cni: &Path,
    node: Option<&NodeState>,
    c: &ContainerState,
    cni_log: &str,
) -> Result<(), CommandError> {
    let mut result = Ok(());
    if let Some(node) = node {
        result = invoke_cni(
            cni,
            "DEL",
            &plugin_config(node, cni_log),
            &c.container_id,
            &format!("/run/netns/{}", c.netns),
            "",
            IFNAME,
        )
        .map(|_| ());
    }
    let _ = ip(&["netns", "del", &c.netns]);
    let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", c.netns));
    result
}

/// `/etc/netns/<ns>/resolv.conf`: `ip netns exec` bind-mounts it over
/// /etc/resolv.conf, so tools inside use the network's DNS.
fn write_resolv_conf(netns: &str, gateway: &str, zone: &str) -> Result<(), CommandError> {
    let dir = format!("/etc/netns/{netns}");
    let fail = |e: std::io::Error| CommandError {
        command: format!("write {dir}/resolv.conf"),
        stderr: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(fail)?;
    std::fs::write(
        format!("{dir}/resolv.conf"),
        format!("nameserver {gateway}\nsearch {zone}\noptions timeout:1 attempts:2\n"),
    )
    .map_err(fail)
}
