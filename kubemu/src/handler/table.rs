//! Server-side printing (`Accept: …;as=Table`), which kubectl asks for.

use serde_json::{Value, json};

use crate::meta;
use crate::resources::Resource;

fn column(name: &str, format: &str) -> Value {
    json!({ "name": name, "type": "string", "format": format, "description": name, "priority": 0 })
}

fn at_path<'a>(obj: &'a Value, path: &str) -> &'a Value {
    let mut v = obj;
    for seg in path.trim_start_matches('.').split('.') {
        v = &v[seg];
    }
    v
}

/// A `meta.k8s.io/v1` Table of `items`: NAME, a CRD's printer columns, AGE
/// (column definitions only when `header`).
pub fn table(res: &Resource, items: &[Value], rv: &str, header: bool) -> Value {
    let mut columns = vec![column("Name", "name")];
    columns.extend(
        res.columns
            .iter()
            .filter(|(n, _)| n != "Age")
            .map(|(n, _)| column(n, "")),
    );
    columns.push(column("Age", ""));
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![json!(meta::name(o))];
            for (n, p) in &res.columns {
                if n != "Age" {
                    let v = at_path(o, p);
                    cells.push(match v {
                        Value::Null => json!("<none>"),
                        Value::String(s) => json!(s),
                        other => json!(other.to_string()),
                    });
                }
            }
            cells.push(json!(meta::age(
                o["metadata"]["creationTimestamp"].as_str().unwrap_or("")
            )));
            json!({ "cells": cells, "object": o })
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": rv },
        "columnDefinitions": if header { Value::Array(columns) } else { json!([]) },
        "rows": rows,
    })
}
