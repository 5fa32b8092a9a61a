//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! strategic merge treated as merge (directives stripped, lists replaced),
//! and server-side apply ([`apply`]).

pub mod apply;

use serde_json::Value;

/// A patch that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not valid JSON/YAML.
    #[error("failed to decode the patch: {0}")]
    Decode(String),
    /// A JSON patch operation failed (test failed, path missing…).
    #[error("failed to apply the JSON patch")]
    Json(#[source] json_patch::PatchError),
    /// An unknown content type.
    #[error("failed to patch: unsupported media type {0:?}")]
    MediaType(String),
}

/// The patch kinds by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json` (treated as merge).
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply,
}

impl PatchKind {
    /// From the request's content type.
    pub fn from_content_type(ct: &str) -> Result<Self, PatchError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        Ok(match base {
            "application/merge-patch+json" => PatchKind::Merge,
            "application/json-patch+json" => PatchKind::Json,
            "application/strategic-merge-patch+json" => PatchKind::Strategic,
            "application/apply-patch+yaml" | "application/apply-patch+json" => PatchKind::Apply,
            other => return Err(PatchError::MediaType(other.into())),
        })
    }
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
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
        (b, p) => *b = strip_nulls(p),
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Strategic merge directives (`$patch`, `$retainKeys`, `$setElementOrder/…`,
/// `$deleteFromPrimitiveList/…`) removed, so the rest merges as RFC 7386.
pub fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Applies a merge, strategic or JSON patch body to `current`.
pub fn patch(current: &Value, kind: PatchKind, body: &[u8]) -> Result<Value, PatchError> {
    let mut out = current.clone();
    match kind {
        PatchKind::Merge | PatchKind::Strategic => {
            let p: Value =
                serde_json::from_slice(body).map_err(|e| PatchError::Decode(e.to_string()))?;
            merge(&mut out, &strip_directives(&p));
        }
        PatchKind::Json => {
            let p: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| PatchError::Decode(e.to_string()))?;
            json_patch::patch(&mut out, &p).map_err(PatchError::Json)?;
        }
        PatchKind::Apply => {
            return Err(PatchError::MediaType(
                "apply goes through patch::apply".into(),
            ));
        }
    }
    Ok(out)
}

/// Decodes an apply body (YAML or JSON).
pub fn decode_apply(body: &[u8]) -> Result<Value, PatchError> {
    serde_yaml::from_slice(body).map_err(|e| PatchError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_strategic_and_json_patches() {
        let base = json!({ "a": { "b": 1, "c": 2 }, "l": [1, 2] });
        let merged = patch(
            &base,
            PatchKind::Merge,
            br#"{"a":{"b":null,"d":3},"l":[3]}"#,
        )
        .unwrap();
        assert_eq!(merged, json!({ "a": { "c": 2, "d": 3 }, "l": [3] }));
        let strategic = patch(
            &base,
            PatchKind::Strategic,
            br#"{"$retainKeys":["a"],"a":{"b":5}}"#,
        )
        .unwrap();
        assert_eq!(strategic["a"]["b"], 5);
        assert!(strategic.get("$retainKeys").is_none());
        let jp = patch(
            &base,
            PatchKind::Json,
            br#"[{"op":"replace","path":"/a/c","value":9}]"#,
        )
        .unwrap();
        assert_eq!(jp["a"]["c"], 9);
        assert!(
            patch(
                &base,
                PatchKind::Json,
                br#"[{"op":"test","path":"/a/c","value":0}]"#
            )
            .is_err()
        );
        assert!(PatchKind::from_content_type("text/plain").is_err());
    }
}
