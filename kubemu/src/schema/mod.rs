//! Validation of custom objects against a CRD version's structural schema
//! (types, required, enum, pattern, lengths, item counts, bounds), pruning
//! of unknown fields, and the schema's CEL rules (`x-kubernetes-validations`,
//! evaluated by kube-cel, transition rules seeing `oldSelf` on updates).
//! Errors are `(field, message)` pairs worded as the API server words them.

mod cel;
mod structural;

use serde_json::Value;

/// One version's `openAPIV3Schema`.
#[derive(Debug, Clone)]
pub struct CrdSchema {
    schema: Value,
}

impl CrdSchema {
    /// Wraps a version's schema.
    pub fn new(schema: Value) -> Self {
        CrdSchema { schema }
    }

    /// Prunes unknown fields from `obj`, applies the schema's defaults, then validates it (and `old`, for
    /// transition rules, on updates); returns every field error.
    pub fn check(&self, obj: &mut Value, old: Option<&Value>) -> Vec<(String, String)> {
        structural::prune(&self.schema, obj, true);
        *obj = kube_cel::apply_defaults(&self.schema, obj);
        let mut errors = Vec::new();
        structural::validate(&self.schema, obj, "", true, &mut errors);
        if errors.is_empty() {
            errors.extend(cel::validate(&self.schema, obj, old));
        }
        errors
    }
}

/// The schema type at a dotted field path (`spec.items[0].x`), for messages.
fn type_at(schema: &Value, path: &str) -> String {
    let mut s = schema;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indexed) = match seg.find('[') {
            Some(i) => (&seg[..i], true),
            None => (seg, false),
        };
        s = &s["properties"][name];
        if indexed {
            s = &s["items"];
        }
    }
    s["type"].as_str().unwrap_or("object").to_string()
}
