//! The kubelet role of one node: starts the pods bound to it as containerd
//! and Multus would (a network namespace, then the CNI plugin named by each
//! NetworkAttachmentDefinition the pod's networks annotation lists, with the
//! `CNI_ARGS` a runtime passes), writes the container's resolv.conf from
//! the pod's DNS policy and its environment from the admitted spec, reports
//! the pod Running with its IP; a pod that goes away gets CNI DEL and its
//! namespace removed. A pod whose attach fails is retried, never left
//! half-attached: what was attached is detached and the namespace removed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::pod::{cni_args, env_of, networks_of, resolv_conf};
use super::records::{self, Attachment, PodRecord};
use crate::containers::invoke_cni;
use crate::state::{ContainerState, NodeState, write_atomic};
use crate::sys::ip;
use privnet_api::keys::{
    APPLICATION_LABEL, CONTAINER_NUMBER_ANNOTATION, HOSTNAME_ANNOTATION, NETWORK_ID_ANNOTATION,
    PROCESS_TYPE_LABEL, PROJECT_LABEL,
};

/// How long a pod whose start failed waits before the next try.
const RETRY: Duration = Duration::from_secs(1);

/// One node's kubelet.
pub struct Kubelet {
    /// Client of the sandbox's API server.
    pub client: Client,
    /// The sandbox's name (prefix of the pods' namespaces).
    pub sandbox: String,
    /// The sandbox's root directory (records).
    pub root: PathBuf,
    /// The node.
    pub node: NodeState,
    /// The CNI plugin binary (the node's CNI bin directory).
    pub cni: PathBuf,
    /// The plugin's log file.
    pub cni_log: String,
    /// The cluster DNS service pods with `ClusterFirst` ask.
    pub cluster_dns: String,
    /// The cluster's DNS domain.
    pub cluster_domain: String,
}

/// Why a pod did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The pod's networks annotation does not parse.
    #[error("failed to read the pod's networks: {0}")]
    Networks(String),
    /// A NetworkAttachmentDefinition could not be read.
    #[error("failed to get network-attachment-definition {name}")]
    Nad {
        /// `namespace/name`.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// A NetworkAttachmentDefinition carries no usable configuration.
    #[error("network-attachment-definition {0} has no CNI configuration")]
    NadConfig(String),
    /// A command (ip, the plugin) failed.
    #[error(transparent)]
    Command(#[from] crate::sys::CommandError),
    /// A record could not be written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl Kubelet {
    /// Reconciles the node's pods on every change of `pods` (and each
    /// second, for retries) until the task is dropped. `pods` must be ready
    /// (listed once): an empty cache would read as "no pods".
    pub async fn run(self, pods: Store<Pod>, mut changed: tokio::sync::watch::Receiver<u64>) {
        let mut failed: BTreeMap<String, Instant> = BTreeMap::new();
        loop {
            self.reconcile(&pods.state(), &mut failed).await;
            tokio::select! {
                _ = changed.changed() => {},
                _ = tokio::time::sleep(RETRY) => {},
            }
        }
    }

    async fn reconcile(&self, pods: &[Arc<Pod>], failed: &mut BTreeMap<String, Instant>) {
        let root = self.root.clone();
        let node = self.node.name.clone();
        let mine: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let running: Vec<PodRecord> = records::all(&root)
            .into_iter()
            .filter(|r| r.container.node == node)
            .collect();
        for r in &running {
            if !mine
                .iter()
                .any(|p| p.uid().as_deref() == Some(r.uid.as_str()))
            {
                self.stop(r).await;
            }
        }
        for pod in mine {
            let uid = pod.uid().unwrap_or_default();
            if running.iter().any(|r| r.uid == uid)
                || failed.get(&uid).is_some_and(|t| t.elapsed() < RETRY)
            {
                continue;
            }
            match self.start(pod).await {
                Ok(record) => {
                    failed.remove(&uid);
                    self.report_running(pod, &record).await;
                }
                Err(e) => {
                    failed.insert(uid, Instant::now());
                    tracing::warn!(pod = %pod.name_any(), error = %e, "failed to start the pod; retrying");
                    self.report_failure(pod, &e.to_string()).await;
                }
            }
        }
    }

    /// Namespace, networks, resolv.conf, record.
    async fn start(&self, pod: &Pod) -> Result<PodRecord, StartError> {
        let uid = pod.uid().unwrap_or_default();
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let netns = format!("{}-c-{ns}-{name}", self.sandbox);
        let infra = uid.replace('-', "");
        let args = cni_args(pod, &infra);
        let networks = networks_of(pod).map_err(StartError::Networks)?;
        let mut attachments = Vec::new();
        for n in &networks {
            let full = format!("{}/{}", n.namespace, n.name);
            let nad = Api::<DynamicObject>::namespaced_with(
                self.client.clone(),
                &n.namespace,
                &super::client::resource_of(&json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition"})),
            )
            .get(&n.name)
            .await
            .map_err(|source| StartError::Nad {
                name: full.clone(),
                source,
            })?;
            let mut config: Value = nad.data["spec"]["config"]
                .as_str()
                .and_then(|t| serde_json::from_str(t).ok())
                .filter(Value::is_object)
                .ok_or_else(|| StartError::NadConfig(full.clone()))?;
            // The plugin's socket is node-local: on a real node it is the
            // same path everywhere, in the sandbox each node has its own.
            config["agentSocket"] = json!(self.node.agent_socket);
            config["logFile"] = json!(self.cni_log);
            if config.get("name").is_none() {
                config["name"] = json!(n.name);
            }
            let project = nad.labels().get(PROJECT_LABEL).cloned().unwrap_or_default();
            attachments.push((
                Attachment {
                    config,
                    ifname: n.interface.clone(),
                },
                project,
            ));
        }
        let cni = self.cni.clone();
        let (record_netns, container_id) = (netns.clone(), infra.clone());
        let list: Vec<Attachment> = attachments.iter().map(|(a, _)| a.clone()).collect();
        let args2 = args.clone();
        // The namespace and the plugin calls: blocking commands, off the runtime.
        let results = tokio::task::spawn_blocking(move || {
            attach_all(&cni, &record_netns, &container_id, &args2, &list)
        })
        .await
        .expect("attach thread")?;
        let (ip_addr, mac, interface) = results
            .first()
            .map(|(ip, mac, ifname)| (ip.clone(), mac.clone(), ifname.clone()))
            .unwrap_or_default();
        let write = || -> Result<(), StartError> {
            let dir = format!("/etc/netns/{netns}");
            std::fs::create_dir_all(&dir).map_err(|e| crate::sys::CommandError {
                command: format!("mkdir {dir}"),
                stderr: e.to_string(),
            })?;
            write_atomic(
                &PathBuf::from(format!("{dir}/resolv.conf")),
                &resolv_conf(pod, &self.cluster_dns, &self.cluster_domain),
            )?;
            Ok(())
        };
        let (labels, annotations) = (pod.labels(), pod.annotations());
        let record = PodRecord {
            uid: uid.clone(),
            container: ContainerState {
                name: name.clone(),
                node: self.node.name.clone(),
                netns: netns.clone(),
                container_id: infra.clone(),
                project: attachments
                    .first()
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default(),
                application_id: labels.get(APPLICATION_LABEL).cloned().unwrap_or_default(),
                process_type: labels.get(PROCESS_TYPE_LABEL).cloned().unwrap_or_default(),
                number: annotations
                    .get(CONTAINER_NUMBER_ANNOTATION)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_default(),
                network_id: annotations
                    .get(NETWORK_ID_ANNOTATION)
                    .cloned()
                    .unwrap_or_default(),
                interface,
                ip: ip_addr,
                mac,
                hostname: annotations
                    .get(HOSTNAME_ANNOTATION)
                    .cloned()
                    .unwrap_or_default(),
                env: env_of(pod),
                podman: false,
                namespace: ns,
            },
            cni_args: args,
            attachments: attachments.into_iter().map(|(a, _)| a).collect(),
        };
        let saved = write().and_then(|()| {
            write_atomic(
                &records::path(&self.root, &uid),
                &serde_json::to_string_pretty(&record).expect("record serializes"),
            )
            .map_err(StartError::from)
        });
        if let Err(e) = saved {
            self.stop(&record).await;
            return Err(e);
        }
        Ok(record)
    }

    /// CNI DEL of every network (newest first), namespace and record removed.
    async fn stop(&self, r: &PodRecord) {
        let (cni, r2) = (self.cni.clone(), r.clone());
        let _ = tokio::task::spawn_blocking(move || detach_all(&cni, &r2)).await;
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", r.container.netns));
        let _ = std::fs::remove_file(records::path(&self.root, &r.uid));
        tracing::info!(pod = %r.container.name, "pod stopped");
    }

    async fn report_running(&self, pod: &Pod, r: &PodRecord) {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let ips: Vec<Value> = [&r.container.ip]
            .into_iter()
            .filter(|i| !i.is_empty())
            .map(|i| json!({ "ip": i }))
            .collect();
        let mut status = json!({
            "phase": "Running",
            "hostIP": self.node.underlay_address,
            "startTime": now,
            "conditions": [
                { "type": "PodScheduled", "status": "True" },
                { "type": "Initialized", "status": "True" },
                { "type": "ContainersReady", "status": "True" },
                { "type": "Ready", "status": "True" },
            ],
            "containerStatuses": pod.spec.as_ref().map(|s| s.containers.iter().map(|c| json!({
                "name": c.name, "ready": true, "started": true, "restartCount": 0,
                "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "state": { "running": { "startedAt": now } },
            })).collect::<Vec<_>>()).unwrap_or_default(),
        });
        if !ips.is_empty() {
            status["podIP"] = json!(r.container.ip);
            status["podIPs"] = json!(ips);
        }
        self.patch_status(pod, status).await;
    }

    async fn report_failure(&self, pod: &Pod, message: &str) {
        let status = json!({
            "phase": "Pending",
            "conditions": [
                { "type": "PodScheduled", "status": "True" },
                { "type": "Ready", "status": "False", "reason": "ContainerCreating", "message": message },
            ],
        });
        self.patch_status(pod, status).await;
    }

    async fn patch_status(&self, pod: &Pod, status: Value) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        {
            tracing::debug!(pod = %pod.name_any(), error = %e, "failed to report the pod's status");
        }
    }
}

/// Creates the namespace and attaches every network; on any failure undoes
/// what it did (DEL of the attached networks, namespace removed). Returns
/// (address, MAC, interface) per network.
fn attach_all(
    cni: &std::path::Path,
    netns: &str,
    container_id: &str,
    args: &str,
    list: &[Attachment],
) -> Result<Vec<(String, String, String)>, StartError> {
    ip(&["netns", "add", netns])?;
    let mut done: Vec<&Attachment> = Vec::new();
    let mut out = Vec::new();
    let mut run = || -> Result<(), StartError> {
        ip(&["-n", netns, "link", "set", "lo", "up"])?;
        for a in list {
            let result = invoke_cni(
                cni,
                "ADD",
                &a.config,
                container_id,
                &format!("/run/netns/{netns}"),
                args,
                &a.ifname,
            )?;
            done.push(a);
            let v: Value = serde_json::from_str(&result).unwrap_or_default();
            let address = v["ips"][0]["address"].as_str().unwrap_or_default();
            let mac = v["interfaces"]
                .as_array()
                .and_then(|ifs| ifs.iter().find(|i| i["sandbox"].as_str().is_some()))
                .and_then(|i| i["mac"].as_str())
                .unwrap_or_default();
            out.push((
                address.split('/').next().unwrap_or_default().to_string(),
                mac.to_string(),
                a.ifname.clone(),
            ));
        }
        Ok(())
    };
    if let Err(e) = run() {
        for a in done.iter().rev() {
            let _ = invoke_cni(
                cni,
                "DEL",
                &a.config,
                container_id,
                &format!("/run/netns/{netns}"),
                args,
                &a.ifname,
            );
        }
        let _ = ip(&["netns", "del", netns]);
        return Err(e);
    }
    Ok(out)
}

fn detach_all(cni: &std::path::Path, r: &PodRecord) {
    let netns = format!("/run/netns/{}", r.container.netns);
    for a in r.attachments.iter().rev() {
        if let Err(e) = invoke_cni(
            cni,
            "DEL",
            &a.config,
            &r.container.container_id,
            &netns,
            &r.cni_args,
            &a.ifname,
        ) {
            tracing::warn!(pod = %r.container.name, error = %e, "CNI DEL failed");
        }
    }
    let _ = ip(&["netns", "del", &r.container.netns]);
}
