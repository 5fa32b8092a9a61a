//! CEL rules of a schema, evaluated by kube-cel.

use serde_json::Value;

/// Field errors of the failed rules: `<field>: Invalid value: "<type>": <message>`.
pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<(String, String)> {
    let validator = kube_cel::Validator::new();
    match validator.validate(schema, obj, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| {
                let ty = super::type_at(schema, &e.field_path);
                let field = if e.field_path.is_empty() {
                    "<nil>".to_string()
                } else {
                    e.field_path.clone()
                };
                (field, format!("Invalid value: \"{ty}\": {}", e.message))
            })
            .collect(),
    }
}
