//! A CustomResourceDefinition object → the resources it serves.

use std::sync::Arc;

use serde_json::Value;

use super::Resource;
use crate::schema::CrdSchema;

/// A CRD that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// A required field is missing.
    #[error("failed to read the CRD: {0} is required")]
    Missing(&'static str),
    /// The name is not `<plural>.<group>`.
    #[error("failed to accept the CRD name {0}: must be spec.names.plural+\".\"+spec.group")]
    Name(String),
}

/// Every served version of `crd`.
pub fn from_crd(crd: &Value) -> Result<Vec<Resource>, CrdError> {
    let spec = &crd["spec"];
    let group = spec["group"]
        .as_str()
        .ok_or(CrdError::Missing("spec.group"))?;
    let names = &spec["names"];
    let plural = names["plural"]
        .as_str()
        .ok_or(CrdError::Missing("spec.names.plural"))?;
    let kind = names["kind"]
        .as_str()
        .ok_or(CrdError::Missing("spec.names.kind"))?;
    let name = crd["metadata"]["name"].as_str().unwrap_or("");
    if name != format!("{plural}.{group}") {
        return Err(CrdError::Name(name.into()));
    }
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let versions = spec["versions"]
        .as_array()
        .ok_or(CrdError::Missing("spec.versions"))?;
    let mut out = Vec::new();
    for v in versions {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let version = v["name"]
            .as_str()
            .ok_or(CrdError::Missing("spec.versions[].name"))?;
        let schema = &v["schema"]["openAPIV3Schema"];
        let columns = v["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((
                    c["name"].as_str()?.to_string(),
                    c["jsonPath"].as_str()?.to_string(),
                ))
            })
            .collect();
        out.push(Resource {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: names["singular"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| kind.to_lowercase()),
            namespaced,
            short_names: names["shortNames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            status_subresource: !v["subresources"]["status"].is_null(),
            schema: (!schema.is_null()).then(|| Arc::new(CrdSchema::new(schema.clone()))),
            columns,
            categories: names["categories"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
        });
    }
    // The storage version first: it is the preferred one in discovery.
    out.sort_by_key(|r| {
        !versions
            .iter()
            .any(|v| v["name"] == r.version.as_str() && v["storage"] == true)
    });
    Ok(out)
}
