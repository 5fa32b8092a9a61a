//! delete, deletecollection and the cascades: a namespace takes its
//! objects, a CRD its custom objects, an owner its dependents (those whose
//! every owner is gone). Objects with finalizers get a deletionTimestamp and
//! go when the last finalizer is removed.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{Query, Reply, key, present, read};
use crate::api_error::Subject;
use crate::resources::Resource;
use crate::store::{Key, Write};
use crate::{ApiError, Emulator, meta};

fn options(body: &[u8], q: &Query) -> (Value, bool, bool) {
    let opts: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let dry = q.get("dryRun").is_some_and(|v| v == "All")
        || opts["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let orphan = opts["propagationPolicy"] == "Orphan"
        || opts["orphanDependents"] == true
        || q.get("propagationPolicy").is_some_and(|p| p == "Orphan");
    (opts, dry, orphan)
}

pub fn delete(
    em: &Arc<Emulator>,
    res: &Resource,
    ns: &str,
    name: &str,
    body: &[u8],
    q: &Query,
) -> Result<Reply, ApiError> {
    let (opts, dry, orphan) = options(body, q);
    let subject = Subject {
        plural: &res.plural,
        group: &res.group,
        name,
    };
    let k = key(res, ns, name);
    let gone = remove(em, &k, &opts["preconditions"], dry, &subject)?;
    if !dry && !orphan && gone.is_some() {
        cascade(em);
    }
    let obj = gone.or_else(|| em.store.get(&k)).unwrap_or(Value::Null);
    Ok(Reply::Json(200, present(res, obj)))
}

pub fn delete_collection(
    em: &Arc<Emulator>,
    res: &Resource,
    ns: Option<&str>,
    body: &[u8],
    q: &Query,
) -> Result<Reply, ApiError> {
    let (_, dry, orphan) = options(body, q);
    let (labels, fields) = read::selectors(q)?;
    let (items, rv) = em.store.list(&res.group, &res.plural, ns);
    let mut out = Vec::new();
    for o in items
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
    {
        let name = meta::name(&o).to_string();
        let subject = Subject {
            plural: &res.plural,
            group: &res.group,
            name: &name,
        };
        if let Ok(Some(g)) = remove(
            em,
            &key(res, meta::namespace(&o), &name),
            &Value::Null,
            dry,
            &subject,
        ) {
            out.push(present(res, g));
        }
    }
    if !dry && !orphan {
        cascade(em);
    }
    Ok(Reply::Json(
        200,
        json!({
            "kind": format!("{}List", res.kind), "apiVersion": res.api_version(),
            "metadata": { "resourceVersion": rv.to_string() }, "items": out,
        }),
    ))
}

/// Removes one object (or marks it deleting when it has finalizers);
/// returns it when it is gone.
fn remove(
    em: &Emulator,
    k: &Key,
    pre: &Value,
    dry: bool,
    subject: &Subject,
) -> Result<Option<Value>, ApiError> {
    let mut removed = false;
    let obj = em.store.write(k, |cur| {
        let cur = cur.ok_or_else(|| ApiError::not_found(subject))?;
        for (field, why) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(want) = pre[field].as_str()
                && want != cur["metadata"][field].as_str().unwrap_or("")
            {
                return Err(ApiError::conflict(subject, &format!(
                    "Precondition failed: {why} in precondition: {want}, {why} in object meta: {}",
                    cur["metadata"][field].as_str().unwrap_or("")
                )));
            }
        }
        if dry {
            return Ok(Write::Nothing(cur.clone()));
        }
        if cur["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
            if !cur["metadata"]["deletionTimestamp"].is_null() {
                return Ok(Write::Nothing(cur.clone()));
            }
            let mut marked = cur.clone();
            marked["metadata"]["deletionTimestamp"] = json!(meta::now_rfc3339());
            return Ok(Write::Put(marked));
        }
        removed = true;
        Ok(Write::Remove)
    })?;
    if removed
        && k.group == "apiextensions.k8s.io"
        && k.plural == "customresourcedefinitions"
        && let Some(r) = crate::resources::from_crd(&obj)
            .ok()
            .and_then(|v| v.into_iter().next())
    {
        em.edit_registry(|reg| reg.remove(&r.group, &r.plural));
    }
    Ok(removed.then_some(obj))
}

/// Deletes, until nothing changes, what lost its reason to exist: objects
/// of missing namespaces, objects of unserved CRDs, dependents of deleted owners.
fn cascade(em: &Emulator) {
    loop {
        let all = em.store.all();
        let uids: BTreeSet<&str> = all.iter().map(|(_, v)| meta::uid(v)).collect();
        let namespaces: BTreeSet<&str> = all
            .iter()
            .filter(|(k, _)| k.group.is_empty() && k.plural == "namespaces")
            .map(|(k, _)| k.name.as_str())
            .collect();
        let registry = em.registry();
        let doomed: Vec<&(Key, Value)> = all
            .iter()
            .filter(|(k, v)| {
                let orphaned_ns =
                    !k.namespace.is_empty() && !namespaces.contains(k.namespace.as_str());
                let unserved = registry.any_version(&k.group, &k.plural).is_none();
                let owners = v["metadata"]["ownerReferences"].as_array();
                let owners_gone = owners.is_some_and(|o| {
                    !o.is_empty()
                        && o.iter()
                            .all(|r| !uids.contains(r["uid"].as_str().unwrap_or("")))
                });
                (orphaned_ns && em.config.strict_namespaces) || unserved || owners_gone
            })
            .collect();
        let mut progressed = false;
        for (k, _) in doomed {
            let subject = Subject {
                plural: &k.plural,
                group: &k.group,
                name: &k.name,
            };
            if let Ok(Some(_)) = remove(em, k, &Value::Null, false, &subject) {
                progressed = true;
            }
        }
        if !progressed {
            return;
        }
    }
}
