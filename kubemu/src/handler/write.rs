//! create, update (PUT) and patch, with the rules every write shares:
//! identity fields kept, status only through `/status` when the kind has
//! that subresource, `generation` bumped on spec changes, CRD objects
//! validated, CRDs (un)served as they are written.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Query, Reply, key, present};
use crate::api_error::Subject;
use crate::patch::{self, PatchKind};
use crate::resources::{self, Resource};
use crate::store::{Key, Write};
use crate::{ApiError, Emulator, admission, meta};

fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    Ok(v)
}

fn dry_run(q: &Query) -> bool {
    q.get("dryRun").is_some_and(|v| v == "All")
}

fn subject<'a>(res: &'a Resource, name: &'a str) -> Subject<'a> {
    Subject {
        plural: &res.plural,
        group: &res.group,
        name,
    }
}

/// Validates a custom object against its version's schema.
fn validate(res: &Resource, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    if let Some(schema) = &res.schema {
        let errors = schema.check(obj, old);
        if !errors.is_empty() {
            return Err(ApiError::invalid(
                &res.kind,
                &res.group,
                meta::name(obj),
                &errors,
            ));
        }
    }
    if res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions" {
        resources::from_crd(obj).map_err(|e| {
            ApiError::invalid(
                &res.kind,
                &res.group,
                meta::name(obj),
                &[("spec".into(), e.to_string())],
            )
        })?;
    }
    Ok(())
}

/// Fields the server sets on a new object.
fn prepare_new(em: &Emulator, res: &Resource, obj: &mut Value) {
    let m = &mut obj["metadata"];
    if let Some(m) = m.as_object_mut() {
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
    }
    m["uid"] = json!(em.store.uid());
    m["creationTimestamp"] = json!(meta::now_rfc3339());
    m["generation"] = json!(1);
    if res.schema.is_some()
        && res.status_subresource
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    match (res.group.as_str(), res.plural.as_str()) {
        ("", "namespaces") => {
            immutable_labels(res, obj);
            obj["spec"] = json!({ "finalizers": ["kubernetes"] });
            obj["status"] = json!({ "phase": "Active" });
        }
        ("", "pods") if obj["status"]["phase"].is_null() => {
            obj["status"]["phase"] = json!("Pending");
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let names = obj["spec"]["names"].clone();
            let stored: Vec<Value> = obj["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["storage"] == true)
                .map(|v| v["name"].clone())
                .collect();
            let now = meta::now_rfc3339();
            let cond = |t: &str, r: &str| json!({ "type": t, "status": "True", "reason": r, "message": "", "lastTransitionTime": now });
            obj["status"] = json!({
                "acceptedNames": names,
                "storedVersions": stored,
                "conditions": [cond("NamesAccepted", "NoConflicts"), cond("Established", "InitialNamesAccepted")],
            });
        }
        _ => {}
    }
}

/// After a CRD is written: serve exactly its versions.
fn serve_crd(em: &Emulator, crd: &Value) {
    if let Ok(served) = resources::from_crd(crd) {
        em.edit_registry(|r| {
            if let Some(first) = served.first() {
                r.remove(&first.group, &first.plural);
            }
            for s in served {
                r.add(s);
            }
        });
    }
}

fn is_crd(res: &Resource) -> bool {
    res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions"
}

pub async fn create(
    em: &Arc<Emulator>,
    res: &Resource,
    ns: &str,
    body: &[u8],
    q: &Query,
) -> Result<Reply, ApiError> {
    let obj = decode(body)?;
    let created = create_object(em, res, ns, obj, q).await?;
    Ok(Reply::Json(201, present(res, created)))
}

/// Creates `obj` (admission, validation, 409 on a taken name).
async fn create_object(
    em: &Arc<Emulator>,
    res: &Resource,
    ns: &str,
    mut obj: Value,
    q: &Query,
) -> Result<Value, ApiError> {
    if res.namespaced {
        let body_ns = meta::namespace(&obj).to_string();
        if !body_ns.is_empty() && !ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let ns = if ns.is_empty() {
            body_ns
        } else {
            ns.to_string()
        };
        if ns.is_empty() {
            return Err(ApiError::bad_request(
                "the namespace of the object must be set",
            ));
        }
        if em.config.strict_namespaces
            && em
                .store
                .get(&Key {
                    group: String::new(),
                    plural: "namespaces".into(),
                    namespace: String::new(),
                    name: ns.clone(),
                })
                .is_none()
        {
            return Err(ApiError::not_found(&Subject {
                plural: "namespaces",
                group: "",
                name: &ns,
            }));
        }
        obj["metadata"]["namespace"] = json!(ns);
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    if meta::name(&obj).is_empty() {
        let Some(prefix) = obj["metadata"]["generateName"].as_str() else {
            return Err(ApiError::invalid(
                &res.kind,
                &res.group,
                "",
                &[(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        };
        let suffix: String = em
            .store
            .uid()
            .chars()
            .rev()
            .filter(char::is_ascii_alphanumeric)
            .take(5)
            .collect();
        obj["metadata"]["name"] = json!(format!("{prefix}{suffix}"));
    }
    let dry = dry_run(q);
    obj = present(res, obj);
    if res.group.is_empty() && res.plural == "pods" {
        obj = admission::mutate(em, res, obj, dry).await?;
    }
    prepare_new(em, res, &mut obj);
    validate(res, &mut obj, None)?;
    let name = meta::name(&obj).to_string();
    let k = key(res, meta::namespace(&obj), &name);
    let stored = em.store.write(&k, |cur| {
        if cur.is_some() {
            return Err(ApiError::already_exists(&subject(res, &name)));
        }
        Ok(if dry {
            Write::Nothing(obj)
        } else {
            Write::Put(obj)
        })
    })?;
    if is_crd(res) && !dry {
        serve_crd(em, &stored);
    }
    Ok(stored)
}

/// The object to store when `new` replaces `cur` through `sub`.
fn merge_update(
    res: &Resource,
    cur: &Value,
    mut new: Value,
    sub: Option<&str>,
) -> Result<Value, ApiError> {
    let name = meta::name(cur).to_string();
    if !meta::name(&new).is_empty() && meta::name(&new) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta::name(&new)
        )));
    }
    let mut out = if sub == Some("status") {
        let mut o = cur.clone();
        o["status"] = new["status"].take();
        if !new["metadata"]["managedFields"].is_null() {
            o["metadata"]["managedFields"] = new["metadata"]["managedFields"].take();
        }
        o
    } else {
        if res.status_subresource {
            new["status"] = cur["status"].clone();
            if new["status"].is_null()
                && let Some(o) = new.as_object_mut()
            {
                o.remove("status");
            }
        }
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "namespace",
            "name",
            "generation",
        ] {
            if cur["metadata"][k].is_null() {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(k);
                }
            } else {
                new["metadata"][k] = cur["metadata"][k].clone();
            }
        }
        if meta::spec_part(&new) != meta::spec_part(cur) {
            let g = cur["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(g);
        }
        new
    };
    out = present(res, out);
    immutable_labels(res, &mut out);
    validate(res, &mut out, Some(cur))?;
    Ok(out)
}

/// Labels the API server keeps on every object of a kind whatever a write
/// says: a namespace's `kubernetes.io/metadata.name` (webhooks' namespace
/// selectors rely on it).
fn immutable_labels(res: &Resource, obj: &mut Value) {
    if (res.group.as_str(), res.plural.as_str()) == ("", "namespaces") {
        let name = meta::name(obj).to_string();
        obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    }
}

/// What storing `new` means: a deleting object whose last finalizer went is removed.
fn decide(new: Value, dry: bool) -> Write {
    let finalized = !new["metadata"]["deletionTimestamp"].is_null()
        && new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
    match (dry, finalized) {
        (true, _) => Write::Nothing(new),
        (false, true) => Write::Remove,
        (false, false) => Write::Put(new),
    }
}

fn check_rv(res: &Resource, cur: &Value, sent: &Value) -> Result<(), ApiError> {
    if let Some(rv) = sent["metadata"]["resourceVersion"].as_str()
        && !rv.is_empty()
        && rv != meta::resource_version(cur)
    {
        return Err(ApiError::conflict(
            &subject(res, meta::name(cur)),
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    Ok(())
}

fn finish(em: &Arc<Emulator>, res: &Resource, stored: Value, dry: bool) -> Result<Reply, ApiError> {
    if is_crd(res) && !dry {
        serve_crd(em, &stored);
    }
    Ok(Reply::Json(200, present(res, stored)))
}

pub fn update(
    em: &Arc<Emulator>,
    res: &Resource,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    body: &[u8],
    q: &Query,
) -> Result<Reply, ApiError> {
    let new = decode(body)?;
    let dry = dry_run(q);
    let stored = em.store.write(&key(res, ns, name), |cur| {
        let cur = cur.ok_or_else(|| ApiError::not_found(&subject(res, name)))?;
        check_rv(res, cur, &new)?;
        Ok(decide(merge_update(res, cur, new, sub)?, dry))
    })?;
    finish(em, res, stored, dry)
}

#[allow(clippy::too_many_arguments)]
pub async fn patch(
    em: &Arc<Emulator>,
    res: &Resource,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    content_type: &str,
    body: &[u8],
    q: &Query,
) -> Result<Reply, ApiError> {
    let kind = PatchKind::from_content_type(content_type)
        .map_err(|e| ApiError::new(415, "UnsupportedMediaType", e.to_string()))?;
    let dry = dry_run(q);
    let k = key(res, ns, name);
    if kind == PatchKind::Apply {
        let manager = q
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requests must have a fieldManager",
                )
            })?
            .clone();
        let config = patch::decode_apply(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !meta::name(&config).is_empty() && meta::name(&config) != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let now = meta::now_rfc3339();
        if em.store.get(&k).is_none() && sub.is_none() {
            let mut obj = patch::apply::apply(&json!({}), &config, &manager, "", &now);
            obj["metadata"]["name"] = json!(name);
            let created = create_object(em, res, ns, obj, q).await?;
            return Ok(Reply::Json(201, present(res, created)));
        }
        let stored = em.store.write(&k, |cur| {
            let cur = cur.ok_or_else(|| ApiError::not_found(&subject(res, name)))?;
            check_rv(res, cur, &config)?;
            let new = patch::apply::apply(cur, &config, &manager, sub.unwrap_or(""), &now);
            Ok(decide(merge_update(res, cur, new, sub)?, dry))
        })?;
        return finish(em, res, stored, dry);
    }
    let stored = em.store.write(&k, |cur| {
        let cur = cur.ok_or_else(|| ApiError::not_found(&subject(res, name)))?;
        let new = patch::patch(cur, kind, body).map_err(|e| match e {
            patch::PatchError::Json(_) => {
                ApiError::invalid(&res.kind, &res.group, name, &[("".into(), e.to_string())])
            }
            other => ApiError::bad_request(other.to_string()),
        })?;
        check_rv(res, cur, &new)?;
        Ok(decide(merge_update(res, cur, new, sub)?, dry))
    })?;
    finish(em, res, stored, dry)
}
