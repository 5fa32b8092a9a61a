//! A blocking client of the sandbox's API server for the sandbox's
//! commands (`up`, `scale`, `apply`): one small runtime, kube-rs inside.

use std::future::Future;
use std::path::Path;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use super::KubeError;

/// Field manager of what the sandbox applies.
pub const FIELD_MANAGER: &str = "privnet-sandbox";

/// A client and the runtime it runs on.
pub struct Cluster {
    rt: tokio::runtime::Runtime,
    client: Client,
}

/// A client of the API server in `kubeconfig` (inside a tokio runtime).
pub async fn client(kubeconfig: &Path) -> Result<Client, KubeError> {
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| KubeError::Client(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| KubeError::Client(e.to_string()))?;
    Client::try_from(config).map_err(|e| KubeError::Client(e.to_string()))
}

/// The resource of an object from its `apiVersion` and `kind`.
pub fn resource_of(obj: &Value) -> ApiResource {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = obj["kind"].as_str().unwrap_or_default();
    let gvk = GroupVersionKind::gvk(group, version, kind);
    match kind {
        // Multus' plural is not the lowercase kind + "s".
        "NetworkAttachmentDefinition" => {
            ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions")
        }
        _ => ApiResource::from_gvk(&gvk),
    }
}

impl Cluster {
    /// Connects to the API server of `kubeconfig`.
    pub fn connect(kubeconfig: &Path) -> Result<Self, KubeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(KubeError::Runtime)?;
        let client = rt.block_on(client(kubeconfig))?;
        Ok(Self { rt, client })
    }

    /// The client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs `f` to completion.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn api(&self, obj: &Value) -> Api<DynamicObject> {
        let ar = resource_of(obj);
        match obj["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// Server-side apply of `obj` (forced: the sandbox owns what it applies).
    pub fn apply(&self, obj: &Value) -> Result<(), KubeError> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let api = self.api(obj);
        self.block_on(api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        ))
        .map(|_| ())
        .map_err(|source| KubeError::Api {
            what: format!("apply {} {name}", obj["kind"].as_str().unwrap_or_default()),
            source,
        })
    }

    /// Creates `obj` (through admission); one that exists already is left alone.
    pub fn create(&self, obj: &Value) -> Result<(), KubeError> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let body: DynamicObject =
            serde_json::from_value(obj.clone()).map_err(|e| KubeError::Client(e.to_string()))?;
        match self.block_on(self.api(obj).create(&PostParams::default(), &body)) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(source) => Err(KubeError::Api {
                what: format!("create {} {name}", obj["kind"].as_str().unwrap_or_default()),
                source,
            }),
        }
    }

    /// Deletes `obj` (absent is fine).
    pub fn delete(&self, obj: &Value) -> Result<(), KubeError> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match self.block_on(self.api(obj).delete(&name, &DeleteParams::default())) {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(KubeError::Api {
                what: format!("delete {} {name}", obj["kind"].as_str().unwrap_or_default()),
                source,
            }),
        }
    }

    /// Every object like `like` (its apiVersion, kind and namespace, if
    /// any), matching the label selector.
    pub fn list(&self, like: &Value, selector: &str) -> Result<Vec<Value>, KubeError> {
        let lp = ListParams::default().labels(selector);
        let list = self
            .block_on(self.api(like).list(&lp))
            .map_err(|source| KubeError::Api {
                what: format!("list {}", like["kind"].as_str().unwrap_or_default()),
                source,
            })?;
        Ok(list
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).expect("objects serialize"))
            .collect())
    }
}
