//! What a kubelet runs, on disk: one record per pod it started (the
//! container as `status` shows it, plus what CNI DEL needs once the pod and
//! its NetworkAttachmentDefinition are gone). The kubelets write them; the
//! sandbox's state reads them, so `status` and `exec` see pods created with
//! `kubectl` as well as the scenario's.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::ContainerState;

/// One network the kubelet attached a pod to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The CNI configuration the plugin was given (node-local socket filled in).
    pub config: serde_json::Value,
    /// Interface inside the pod.
    pub ifname: String,
}

/// A pod the kubelet started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    /// The pod's uid.
    pub uid: String,
    /// The container as the sandbox's state shows it.
    pub container: ContainerState,
    /// `CNI_ARGS` of every call for this pod.
    pub cni_args: String,
    /// Its networks, in attach order.
    pub attachments: Vec<Attachment>,
}

/// Directory of the records of sandbox `root`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("pods")
}

/// File of one record.
pub fn path(root: &Path, uid: &str) -> PathBuf {
    dir(root).join(format!("{uid}.json"))
}

/// Every record (unreadable ones skipped: a kubelet writes them atomically).
pub fn all(root: &Path) -> Vec<PodRecord> {
    let mut out: Vec<PodRecord> = std::fs::read_dir(dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
        .collect();
    out.sort_by(|a, b| {
        (&a.container.namespace, &a.container.name)
            .cmp(&(&b.container.namespace, &b.container.name))
    });
    out
}

/// The containers of every record, by namespace and name.
pub fn containers(root: &Path) -> Vec<ContainerState> {
    all(root).into_iter().map(|r| r.container).collect()
}
