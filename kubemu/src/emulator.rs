//! The emulated API server's state: the store, the served resources and
//! the settings; requests enter through [`Emulator::handle`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::resources::{Registry, Resource};
use serde_json::json;

use crate::meta;
use crate::store::{Key, Store, Write};

/// Settings of one emulated API server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Refuse namespaced objects in a namespace that does not exist (as the
    /// NamespaceLifecycle admission plugin does).
    pub strict_namespaces: bool,
    /// Where webhook services live: `"<name>.<namespace>.svc"` → address
    /// (the emulation has no cluster network to resolve them).
    pub service_hosts: BTreeMap<String, SocketAddr>,
    /// How often a watch asking for bookmarks receives one.
    pub bookmark_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            strict_namespaces: true,
            service_hosts: BTreeMap::new(),
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

/// One emulated API server.
pub struct Emulator {
    /// Every object.
    pub store: Store,
    registry: RwLock<Registry>,
    /// Settings.
    pub config: Config,
}

impl Emulator {
    /// A server with the built-in kinds and, as every cluster has, the
    /// namespaces `default`, `kube-system` and `kube-public`.
    pub fn new(config: Config) -> Arc<Self> {
        let store = Store::new();
        for name in ["default", "kube-system", "kube-public"] {
            let key = Key {
                group: String::new(),
                plural: "namespaces".into(),
                namespace: String::new(),
                name: name.into(),
            };
            let ns = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": name, "uid": store.uid(), "creationTimestamp": meta::now_rfc3339(), "labels": { "kubernetes.io/metadata.name": name } },
                "spec": { "finalizers": ["kubernetes"] }, "status": { "phase": "Active" },
            });
            // A fresh store takes any write.
            let _ = store.write(&key, |_| Ok(Write::Put(ns)));
        }
        Arc::new(Emulator {
            store,
            registry: RwLock::new(Registry::with_builtins()),
            config,
        })
    }

    /// A snapshot of the served resources.
    pub fn registry(&self) -> Registry {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The resource at group/version/plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(group, version, plural)
            .cloned()
    }

    /// Changes the served resources (CRDs created, changed, deleted).
    pub fn edit_registry(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.write().unwrap_or_else(|p| p.into_inner()));
    }
}
