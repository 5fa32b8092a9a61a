//! The structural part of OpenAPI v3 validation, and pruning.

use serde_json::Value;

fn join(base: &str, seg: &str) -> String {
    if base.is_empty() {
        seg.to_string()
    } else {
        format!("{base}.{seg}")
    }
}

fn shown(v: &Value) -> String {
    v.to_string()
}

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

/// Removes fields the schema does not declare (the root and embedded
/// resources keep apiVersion, kind and metadata).
pub fn prune(schema: &Value, obj: &mut Value, root: bool) {
    let embedded = root || schema["x-kubernetes-embedded-resource"] == true;
    match obj {
        Value::Object(m) => {
            if let Some(props) = schema["properties"].as_object() {
                if !preserves(schema) && schema["additionalProperties"].is_null() {
                    m.retain(|k, _| {
                        props.contains_key(k)
                            || (embedded
                                && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                    });
                }
                for (k, v) in m.iter_mut() {
                    if let Some(s) = props.get(k)
                        && !(embedded && k == "metadata")
                    {
                        prune(s, v, false);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for v in m.values_mut() {
                    prune(&schema["additionalProperties"], v, false);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                prune(&schema["items"], v, false);
            }
        }
        _ => {}
    }
}

fn type_ok(ty: &str, v: &Value, schema: &Value) -> bool {
    if schema["x-kubernetes-int-or-string"] == true {
        return v.is_string() || v.is_i64() || v.is_u64();
    }
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Appends the errors of `v` against `schema` at `path`.
pub fn validate(
    schema: &Value,
    v: &Value,
    path: &str,
    root: bool,
    errors: &mut Vec<(String, String)>,
) {
    let mut err = |m: String| errors.push((path.to_string(), m));
    if v.is_null() {
        if schema["nullable"] != true && !root {
            err(format!(
                "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                schema["type"].as_str().unwrap_or("object")
            ));
        }
        return;
    }
    if let Some(ty) = schema["type"].as_str()
        && !type_ok(ty, v, schema)
    {
        let got = json_type(v);
        err(format!(
            "Invalid value: \"{got}\": {path} in body must be of type {ty}: \"{got}\""
        ));
        return;
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(v)
    {
        let list: Vec<String> = options.iter().map(shown).collect();
        err(format!(
            "Unsupported value: {}: supported values: {}",
            shown(v),
            list.join(", ")
        ));
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(max) = schema["maxLength"].as_u64()
            && len > max
        {
            err(format!("Too long: may not be more than {max} bytes"));
        }
        if let Some(min) = schema["minLength"].as_u64()
            && len < min
        {
            err(format!(
                "Invalid value: {}: {path} in body should be at least {min} chars long",
                shown(v)
            ));
        }
        if let Some(p) = schema["pattern"].as_str()
            && let Ok(re) = regex::Regex::new(p)
            && !re.is_match(s)
        {
            err(format!(
                "Invalid value: {}: {path} in body should match '{p}'",
                shown(v)
            ));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema["minimum"].as_f64() {
            let excl = schema["exclusiveMinimum"] == true;
            if n < min || (excl && n == min) {
                let rel = if excl {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                err(format!(
                    "Invalid value: {}: {path} in body should be {rel} {}",
                    shown(v),
                    schema["minimum"]
                ));
            }
        }
        if let Some(max) = schema["maximum"].as_f64() {
            let excl = schema["exclusiveMaximum"] == true;
            if n > max || (excl && n == max) {
                let rel = if excl {
                    "less than"
                } else {
                    "less than or equal to"
                };
                err(format!(
                    "Invalid value: {}: {path} in body should be {rel} {}",
                    shown(v),
                    schema["maximum"]
                ));
            }
        }
    }
    match v {
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                err(format!(
                    "Too many: {}: must have at most {max} items",
                    items.len()
                ));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                err(format!(
                    "Invalid value: {}: {path} in body should have at least {min} items",
                    items.len()
                ));
            }
            for (i, item) in items.iter().enumerate() {
                validate(
                    &schema["items"],
                    item,
                    &format!("{path}[{i}]"),
                    false,
                    errors,
                );
            }
        }
        Value::Object(m) => {
            for r in schema["required"].as_array().into_iter().flatten() {
                if let Some(k) = r.as_str()
                    && !m.contains_key(k)
                {
                    errors.push((join(path, k), "Required value".into()));
                }
            }
            if let Some(props) = schema["properties"].as_object() {
                for (k, s) in props {
                    if root && k == "metadata" {
                        continue;
                    }
                    if let Some(child) = m.get(k) {
                        validate(s, child, &join(path, k), false, errors);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for (k, child) in m {
                    validate(
                        &schema["additionalProperties"],
                        child,
                        &join(path, k),
                        false,
                        errors,
                    );
                }
            }
        }
        _ => {}
    }
}
