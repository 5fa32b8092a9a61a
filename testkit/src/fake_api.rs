//! The fake API server of the agent's and the controller's tests: a kube
//! `Client` talks to a `tower_test::mock::pair` service whose requests are
//! answered by the API emulation (`privnet-kubemu`: one store, 409s,
//! resourceVersion preconditions, selectors, merge/JSON/apply patches,
//! status subresources, the repository's CRDs with their schemas and CEL
//! rules). Every request is recorded so tests assert method, path and body.
//! Unlike the HTTP server, this in-process client does not watch (405), and
//! namespaces need not exist.

use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use privnet_kubemu::handler::route::{self, Route};
use privnet_kubemu::store::{Key, Write};
use privnet_kubemu::{Config, Emulator, Reply};
use serde_json::{Value, json};

pub use privnet_kubemu::patch::merge;

/// One request as the fake API saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Content type.
    pub content_type: String,
    /// Decoded JSON body (`Null` when empty).
    pub body: Value,
}

/// The repository's CRDs, served from the start.
const CRDS: [&str; 3] = [
    include_str!("../../crds/projects.privnet.io.yaml"),
    include_str!("../../crds/privatenetworks.privnet.io.yaml"),
    include_str!("../../crds/privateendpoints.privnet.io.yaml"),
];

/// The fake API server's state.
pub struct FakeApi {
    emulator: Arc<Emulator>,
    log: Mutex<Vec<Recorded>>,
}

/// The store key of an object or collection path.
fn key(path: &str) -> Option<Key> {
    let Route::Resource(t) = route::parse(path) else {
        return None;
    };
    Some(Key {
        group: t.group,
        plural: t.plural,
        namespace: t.namespace.unwrap_or_default(),
        name: t.name.unwrap_or_default(),
    })
}

impl FakeApi {
    /// A new API server holding only the repository's CRDs.
    pub fn new() -> Arc<Self> {
        let emulator = Emulator::new(Config {
            strict_namespaces: false,
            ..Config::default()
        });
        for text in CRDS {
            let crd: Value = serde_yaml::from_str(text).expect("the repository's CRDs parse");
            let crd = seed_into(
                &emulator,
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                crd,
            );
            for served in
                privnet_kubemu::resources::from_crd(&crd).expect("the repository's CRDs are valid")
            {
                emulator.edit_registry(|r| r.add(served));
            }
        }
        Arc::new(FakeApi {
            emulator,
            log: Mutex::new(Vec::new()),
        })
    }

    /// The emulation behind the fake (for tests that also serve it over HTTP).
    pub fn emulator(&self) -> &Arc<Emulator> {
        &self.emulator
    }

    /// A client whose every request this fake answers (a new connection:
    /// several clients over one store model controller restarts).
    pub fn client(self: &Arc<Self>) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let header = |n: &str| {
                    parts
                        .headers
                        .get(n)
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default()
                };
                let rec = Recorded {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    content_type: header("content-type"),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let watch = rec
                    .query
                    .split('&')
                    .any(|kv| kv == "watch=true" || kv == "watch=1");
                let (code, out) = if watch {
                    (
                        405,
                        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "the in-process fake does not watch", "reason": "MethodNotAllowed", "code": 405 }),
                    )
                } else {
                    let reply = api
                        .emulator
                        .handle(privnet_kubemu::Request {
                            method: rec.method.clone(),
                            path: rec.path.clone(),
                            query: rec.query.clone(),
                            content_type: rec.content_type.clone(),
                            accept: header("accept"),
                            body: bytes,
                        })
                        .await;
                    match reply {
                        Reply::Json(code, v) => (code, v),
                        Reply::Stream(_) => (500, Value::Null),
                    }
                };
                api.log.lock().unwrap().push(rec);
                let response = Response::builder()
                    .status(StatusCode::from_u16(code).unwrap())
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&out).unwrap()))
                    .unwrap();
                send.send_response(response);
                // Let other requesters interleave (concurrency tests).
                tokio::task::yield_now().await;
            }
        });
        Client::new(service, "default")
    }

    /// Puts `obj` in the store as if created (uid, resourceVersion, timestamps
    /// filled when absent); `path` is its collection path, e.g. `/api/v1/nodes`.
    pub fn seed(&self, collection: &str, obj: Value) -> Value {
        seed_into(&self.emulator, collection, obj)
    }

    /// The object at `path` (e.g. `/api/v1/namespaces/x/configmaps/y`).
    pub fn get(&self, path: &str) -> Option<Value> {
        self.emulator.store.get(&key(path)?)
    }

    /// Every object of a collection path (all namespaces when none is given).
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let k = key(collection).expect("collection path");
        let ns = (!k.namespace.is_empty()).then_some(k.namespace.as_str());
        self.emulator.store.list(&k.group, &k.plural, ns).0
    }

    /// Removes the object at `path` (a node leaving, a pod gone).
    pub fn remove(&self, path: &str) -> Option<Value> {
        let k = key(path)?;
        self.emulator
            .store
            .write(&k, |cur| {
                Ok(if cur.is_some() {
                    Write::Remove
                } else {
                    Write::Nothing(Value::Null)
                })
            })
            .ok()
            .filter(|v| !v.is_null())
    }

    /// Edits the object at `path` in place (a new resourceVersion).
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let k = key(path).expect("object path");
        self.emulator
            .store
            .write(&k, |cur| {
                let mut obj = cur.expect("object exists").clone();
                f(&mut obj);
                Ok(Write::Put(obj))
            })
            .expect("edit stored");
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Requests with `method` whose path is `path`.
    pub fn requests(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.log()
            .into_iter()
            .filter(|r| r.method.as_str() == method && r.path == path)
            .collect()
    }
}

/// Stores `obj` under `collection` with server-set fields filled when absent.
fn seed_into(em: &Emulator, collection: &str, mut obj: Value) -> Value {
    let mut k = key(collection).expect("collection path");
    let meta = &mut obj["metadata"];
    if let Some(ns) = meta["namespace"].as_str() {
        k.namespace = ns.to_string();
    }
    k.name = meta["name"]
        .as_str()
        .expect("seeded objects have a name")
        .to_string();
    if meta["uid"].is_null() {
        meta["uid"] = json!(em.store.uid());
    }
    if meta["creationTimestamp"].is_null() {
        meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    if meta["generation"].is_null() {
        meta["generation"] = json!(1);
    }
    em.store
        .write(&k, |_| Ok(Write::Put(obj)))
        .expect("seed stored")
}
