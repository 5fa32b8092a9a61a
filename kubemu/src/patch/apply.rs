//! Server-side apply, as far as the project and `kubectl apply
//! --server-side` use it: each manager's applied field set is recorded in
//! `metadata.managedFields` (FieldsV1; lists are atomic); a re-apply removes
//! the fields the manager applied before and no longer applies (unless
//! another manager applied them too), then merges the configuration.
//! Conflicts between managers are not detected: every apply acts as forced.

use serde_json::{Map, Value, json};

use super::merge;

/// The FieldsV1 set of a configuration: `{"f:spec": {"f:x": {}}}`.
pub fn field_set(config: &Value) -> Value {
    match config {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !is_identity(k))
                .map(|(k, v)| (format!("f:{k}"), field_set(v)))
                .collect(),
        ),
        _ => json!({}),
    }
}

/// Fields no manager owns.
fn is_identity(k: &str) -> bool {
    matches!(
        k,
        "apiVersion"
            | "kind"
            | "resourceVersion"
            | "managedFields"
            | "uid"
            | "creationTimestamp"
            | "generation"
    )
}

/// Removes from `obj` the fields in `before` but not in `now`, unless one of `others` holds them.
fn prune(obj: &mut Value, before: &Value, now: &Value, others: &[&Value]) {
    let (Some(b), Some(o)) = (before.as_object(), obj.as_object_mut()) else {
        return;
    };
    for (fk, sub) in b {
        let Some(k) = fk.strip_prefix("f:") else {
            continue;
        };
        let held: Vec<&Value> = others
            .iter()
            .map(|x| &x[fk])
            .filter(|x| !x.is_null())
            .collect();
        match now.get(fk) {
            None if held.is_empty() => {
                o.remove(k);
            }
            None => {
                if let Some(child) = o.get_mut(k) {
                    prune(child, sub, &json!({}), &held);
                }
            }
            Some(n) => {
                if let Some(child) = o.get_mut(k) {
                    prune(child, sub, n, &held);
                }
            }
        }
    }
}

/// Applies `config` for `manager` to `current` (an empty object when
/// creating) and records the manager's fields; `time` stamps the entry.
pub fn apply(
    current: &Value,
    config: &Value,
    manager: &str,
    subresource: &str,
    time: &str,
) -> Value {
    let mut out = current.clone();
    let mut entries: Vec<Value> = current["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mine = |e: &Value| {
        e["manager"] == manager
            && e["operation"] == "Apply"
            && e["subresource"].as_str().unwrap_or("") == subresource
    };
    let before = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(json!({}));
    let now = field_set(config);
    let others: Vec<&Value> = entries
        .iter()
        .filter(|e| !mine(e))
        .map(|e| &e["fieldsV1"])
        .collect();
    prune(&mut out, &before, &now, &others);
    let mut cfg = config.clone();
    if let Some(m) = cfg["metadata"].as_object_mut() {
        for k in [
            "resourceVersion",
            "managedFields",
            "uid",
            "creationTimestamp",
            "generation",
        ] {
            m.remove(k);
        }
    }
    merge(&mut out, &cfg);
    entries.retain(|e| !mine(e));
    let mut entry = Map::new();
    entry.insert("manager".into(), json!(manager));
    entry.insert("operation".into(), json!("Apply"));
    entry.insert("apiVersion".into(), config["apiVersion"].clone());
    entry.insert("time".into(), json!(time));
    entry.insert("fieldsType".into(), json!("FieldsV1"));
    entry.insert("fieldsV1".into(), now);
    if !subresource.is_empty() {
        entry.insert("subresource".into(), json!(subresource));
    }
    entries.push(Value::Object(entry));
    out["metadata"]["managedFields"] = Value::Array(entries);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_manager_removes_what_it_stops_applying_but_not_what_others_hold() {
        let first = json!({ "metadata": { "name": "x", "labels": { "a": "1", "b": "2" } }, "data": { "k": "v" } });
        let obj = apply(&json!({}), &first, "one", "", "t");
        let other = json!({ "metadata": { "name": "x", "labels": { "b": "2" } } });
        let obj = apply(&obj, &other, "two", "", "t");
        let again = json!({ "metadata": { "name": "x", "labels": { "a": "1" } } });
        let obj = apply(&obj, &again, "one", "", "t");
        assert_eq!(
            obj["metadata"]["labels"],
            json!({ "a": "1", "b": "2" }),
            "b is still held by two"
        );
        assert!(
            obj["data"].is_null(),
            "data was only one's and it stopped applying it"
        );
        assert_eq!(
            obj["metadata"]["managedFields"].as_array().unwrap().len(),
            2
        );
    }
}
