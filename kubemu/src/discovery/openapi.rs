//! A minimal OpenAPI v3 surface: one document per group/version declaring,
//! for each kind, a PATCH operation that accepts `fieldValidation`. kubectl
//! reads it to learn that validation happens on the server, and then skips
//! its client-side schema validation (which would need full schemas).

use serde_json::{Map, Value, json};

use crate::resources::Registry;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the index of group/version documents.
pub fn root(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (g, versions) in reg.groups() {
        for v in versions {
            let p = gv_path(g, v);
            paths.insert(
                p.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{p}?hash=kubemu") }),
            );
        }
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/<api/v1|apis/g/v>`.
pub fn document(reg: &Registry, gv: &str) -> Option<Value> {
    let segs: Vec<&str> = gv.trim_matches('/').split('/').collect();
    let (group, version) = match segs.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let resources = reg.of(group, version);
    if resources.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for r in resources {
        let ns = if r.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let path = format!("/{}{ns}/{}/{{name}}", gv_path(group, version), r.plural);
        paths.insert(path, json!({
            "patch": {
                "x-kubernetes-group-version-kind": { "group": r.group, "version": r.version, "kind": r.kind },
                "parameters": [
                    { "name": "fieldValidation", "in": "query", "schema": { "type": "string" } },
                    { "name": "fieldManager", "in": "query", "schema": { "type": "string" } },
                ],
                "responses": { "200": { "description": "OK" } },
            }
        }));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes (kubemu)", "version": "v1.32.0" },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}
