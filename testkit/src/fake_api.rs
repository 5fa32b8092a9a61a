//! A fake API server at the HTTP layer for controller tests: the kube
//! `Client` talks to a `tower_test::mock::pair` service; a task answers each
//! request from an in-memory object store (create-only POST with 409,
//! resourceVersion-checked PUT and DELETE, apply/merge PATCH, label-selected
//! LIST) and records every request so tests assert method, path and body.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

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

type Key = (String, String, String, String); // group/version, plural, namespace, name

/// The fake API server's state.
#[derive(Default)]
pub struct FakeApi {
    objects: Mutex<BTreeMap<Key, Value>>,
    log: Mutex<Vec<Recorded>>,
    counter: AtomicU64,
}

struct Target {
    gv: String,
    plural: String,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        _ => (String::new(), rest),
    };
    let plural = rest.first()?.to_string();
    Some(Target {
        gv,
        plural,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let labels = &obj["metadata"]["labels"];
        match term.split_once('=') {
            Some((k, v)) => labels[k].as_str() == Some(v),
            None => !labels[term].is_null(),
        }
    })
}

/// Merges `patch` into `base` (objects recursively, `null` deletes, the rest replaces).
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn status(code: u16, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).unwrap(),
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code }),
    )
}

impl FakeApi {
    /// A new, empty API server.
    pub fn new() -> Arc<Self> {
        Arc::new(FakeApi::default())
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
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
                };
                let content_type = parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                let rec = Recorded {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    content_type,
                    body,
                };
                let (code, out) = api.answer(&rec);
                api.log.lock().unwrap().push(rec);
                let response = Response::builder()
                    .status(code)
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

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Puts `obj` in the store as if created (uid, resourceVersion, timestamps
    /// filled when absent); `path` is its collection path, e.g. `/api/v1/nodes`.
    pub fn seed(&self, collection: &str, mut obj: Value) -> Value {
        let t = parse_path(collection).expect("collection path");
        let n = self.next();
        let meta = &mut obj["metadata"];
        let ns = meta["namespace"]
            .as_str()
            .map(str::to_string)
            .unwrap_or(t.namespace);
        let name = meta["name"]
            .as_str()
            .expect("seeded objects have a name")
            .to_string();
        meta["resourceVersion"] = json!(n.to_string());
        if meta["uid"].is_null() {
            meta["uid"] = json!(format!("00000000-0000-4000-8000-{n:012}"));
        }
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = json!(format!("2026-01-01T00:00:{:02}Z", n % 60));
        }
        if meta["generation"].is_null() {
            meta["generation"] = json!(1);
        }
        self.objects
            .lock()
            .unwrap()
            .insert((t.gv, t.plural, ns, name), obj.clone());
        obj
    }

    /// The object at `path` (e.g. `/api/v1/namespaces/x/configmaps/y`).
    pub fn get(&self, path: &str) -> Option<Value> {
        let t = parse_path(path)?;
        self.objects
            .lock()
            .unwrap()
            .get(&(t.gv, t.plural, t.namespace, t.name?))
            .cloned()
    }

    /// Every object of a collection path (all namespaces when none is given).
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let t = parse_path(collection).expect("collection path");
        self.objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((gv, p, ns, _), _)| {
                *gv == t.gv && *p == t.plural && (t.namespace.is_empty() || *ns == t.namespace)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Removes the object at `path` (a node leaving, a pod gone).
    pub fn remove(&self, path: &str) -> Option<Value> {
        let t = parse_path(path)?;
        self.objects
            .lock()
            .unwrap()
            .remove(&(t.gv, t.plural, t.namespace, t.name?))
    }

    /// Edits the object at `path` in place.
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let t = parse_path(path).expect("object path");
        let mut objects = self.objects.lock().unwrap();
        f(objects
            .get_mut(&(t.gv, t.plural, t.namespace, t.name.expect("object path")))
            .expect("object exists"));
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

    fn answer(&self, rec: &Recorded) -> (StatusCode, Value) {
        let Some(t) = parse_path(&rec.path) else {
            return status(404, "NotFound", "unknown path");
        };
        if query_param(&rec.query, "watch").as_deref() == Some("true") {
            return status(405, "MethodNotAllowed", "the fake API does not watch");
        }
        let mut objects = self.objects.lock().unwrap();
        let key = |name: &str| {
            (
                t.gv.clone(),
                t.plural.clone(),
                t.namespace.clone(),
                name.to_string(),
            )
        };
        match (&rec.method, &t.name) {
            (&Method::GET, None) => {
                let selector = query_param(&rec.query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|((gv, p, ns, _), v)| {
                        *gv == t.gv
                            && *p == t.plural
                            && (t.namespace.is_empty() || *ns == t.namespace)
                            && labels_match(v, &selector)
                    })
                    .map(|(_, v)| v.clone())
                    .collect();
                (
                    StatusCode::OK,
                    json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": self.counter.load(Ordering::SeqCst).to_string() }, "items": items }),
                )
            }
            (&Method::GET, Some(name)) => match objects.get(&key(name)) {
                Some(v) => (StatusCode::OK, v.clone()),
                None => status(404, "NotFound", &format!("{} {name} not found", t.plural)),
            },
            (&Method::POST, None) => {
                let mut obj = rec.body.clone();
                let name = match obj["metadata"]["name"].as_str() {
                    Some(n) => n.to_string(),
                    None => format!(
                        "{}{}",
                        obj["metadata"]["generateName"].as_str().unwrap_or("obj-"),
                        self.next()
                    ),
                };
                if objects.contains_key(&key(&name)) {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("{} \"{name}\" already exists", t.plural),
                    );
                }
                let n = self.next();
                let meta = &mut obj["metadata"];
                meta["name"] = json!(name);
                if !t.namespace.is_empty() {
                    meta["namespace"] = json!(t.namespace);
                }
                meta["uid"] = json!(format!("00000000-0000-4000-8000-{n:012}"));
                meta["resourceVersion"] = json!(n.to_string());
                meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                objects.insert(key(&name), obj.clone());
                (StatusCode::CREATED, obj)
            }
            (&Method::PUT, Some(name)) => {
                let Some(current) = objects.get_mut(&key(name)) else {
                    return status(404, "NotFound", "not found");
                };
                let sent_rv = rec.body["metadata"]["resourceVersion"].as_str();
                if sent_rv.is_some() && sent_rv != current["metadata"]["resourceVersion"].as_str() {
                    return status(
                        409,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version and try again",
                    );
                }
                let n = self.next();
                if t.subresource.as_deref() == Some("status") {
                    current["status"] = rec.body["status"].clone();
                } else {
                    let meta = current["metadata"].clone();
                    *current = rec.body.clone();
                    for k in ["uid", "creationTimestamp", "generation"] {
                        current["metadata"][k] = meta[k].clone();
                    }
                }
                current["metadata"]["resourceVersion"] = json!(n.to_string());
                (StatusCode::OK, current.clone())
            }
            (&Method::PATCH, Some(name)) => {
                let apply = rec.content_type.starts_with("application/apply-patch");
                let n = self.next();
                let entry = match objects.get_mut(&key(name)) {
                    Some(current) => current,
                    None if apply && t.subresource.is_none() => {
                        let mut obj = rec.body.clone();
                        obj["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{n:012}"));
                        obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                        obj["metadata"]["generation"] = json!(1);
                        objects.insert(key(name), obj);
                        objects.get_mut(&key(name)).unwrap()
                    }
                    None => {
                        return status(404, "NotFound", &format!("{} {name} not found", t.plural));
                    }
                };
                if t.subresource.as_deref() == Some("status") {
                    merge(&mut entry["status"], &rec.body["status"]);
                } else {
                    let before = entry["spec"].clone();
                    let mut patch = rec.body.clone();
                    if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                    }
                    merge(entry, &patch);
                    if entry["spec"] != before {
                        let g = entry["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                        entry["metadata"]["generation"] = json!(g);
                    }
                }
                entry["metadata"]["resourceVersion"] = json!(n.to_string());
                (StatusCode::OK, entry.clone())
            }
            (&Method::DELETE, Some(name)) => {
                let Some(current) = objects.get(&key(name)) else {
                    return status(404, "NotFound", &format!("{} {name} not found", t.plural));
                };
                if let Some(rv) = rec.body["preconditions"]["resourceVersion"].as_str()
                    && current["metadata"]["resourceVersion"].as_str() != Some(rv)
                {
                    return status(409, "Conflict", "precondition failed: resourceVersion");
                }
                (StatusCode::OK, objects.remove(&key(name)).unwrap())
            }
            _ => status(405, "MethodNotAllowed", "unsupported"),
        }
    }
}
