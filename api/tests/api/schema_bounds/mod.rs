//! The API server's structural checks that bound privnet's objects, run
//! before any CEL rule: `maxItems`, `maxLength`, `x-kubernetes-list-type:
//! set`. kube-cel evaluates only the rules, so these tests check the bounds
//! here, worded as apiextensions reports them (`field.TooMany`,
//! `field.TooLongMaxLength`, `field.Duplicate`). Only these three keywords:
//! the API emulation checks the whole schema.

use serde_json::Value;

/// Every bound `value` breaks, as `<path>: <reason>` lines.
pub fn bound_errors(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, value, String::new(), &mut out);
    out
}

fn walk(schema: &Value, value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (name, v) in fields {
                let child = &schema["properties"][name];
                if !child.is_null() {
                    let sep = if path.is_empty() { "" } else { "." };
                    walk(child, v, format!("{path}{sep}{name}"), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                let n = items.len();
                out.push(format!(
                    "{path}: Too many: {n}: must have at most {max} items"
                ));
            }
            if schema["x-kubernetes-list-type"] == "set" {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        out.push(format!("{path}[{i}]: Duplicate value: {item}"));
                    }
                }
            }
            for (i, item) in items.iter().enumerate() {
                walk(&schema["items"], item, format!("{path}[{i}]"), out);
            }
        }
        Value::String(s) => {
            if let Some(max) = schema["maxLength"].as_u64()
                && s.chars().count() as u64 > max
            {
                out.push(format!("{path}: Too long: may not be longer than {max}"));
            }
        }
        _ => {}
    }
}
