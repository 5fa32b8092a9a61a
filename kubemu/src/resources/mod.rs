//! The resource types the emulation serves: the built-ins privnet touches
//! and every version of every CRD stored in it.

mod builtin;
mod crd;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use builtin::builtins;
pub use crd::{CrdError, from_crd};

/// One served resource at one group/version.
#[derive(Debug, Clone)]
pub struct Resource {
    /// API group ("" for core).
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// Plural, the URL segment.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Has a `/status` subresource (the main endpoint ignores status).
    pub status_subresource: bool,
    /// A CRD's validation (structural schema and compiled CEL rules).
    pub schema: Option<Arc<crate::schema::CrdSchema>>,
    /// Printer columns (name, JSON path): a CRD's `additionalPrinterColumns`.
    pub columns: Vec<(String, String)>,
    /// Categories (`all` makes `kubectl get all` include the kind).
    pub categories: Vec<String>,
}

impl Resource {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Key of a served resource: group, version, plural.
pub type Gvr = (String, String, String);

/// Every resource served, by group/version/plural.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    served: BTreeMap<Gvr, Resource>,
    /// Group → versions in preference order.
    groups: BTreeMap<String, Vec<String>>,
}

impl Registry {
    /// The built-in kinds.
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for res in builtins() {
            r.add(res);
        }
        r
    }

    /// Serves `res`, replacing an earlier definition.
    pub fn add(&mut self, res: Resource) {
        let versions = self.groups.entry(res.group.clone()).or_default();
        if !versions.contains(&res.version) {
            versions.push(res.version.clone());
        }
        self.served.insert(
            (res.group.clone(), res.version.clone(), res.plural.clone()),
            res,
        );
    }

    /// Stops serving `group`/`plural` at every version.
    pub fn remove(&mut self, group: &str, plural: &str) {
        self.served
            .retain(|(g, _, p), _| !(g == group && p == plural));
        let left: Vec<String> = self
            .served
            .keys()
            .filter(|(g, _, _)| g == group)
            .map(|(_, v, _)| v.clone())
            .collect();
        match self.groups.get_mut(group) {
            Some(v) if !left.is_empty() => v.retain(|x| left.contains(x)),
            Some(_) => {
                self.groups.remove(group);
            }
            None => {}
        }
    }

    /// The resource at group/version/plural.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.served
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// Any served version of group/plural (for cascades across versions).
    pub fn any_version(&self, group: &str, plural: &str) -> Option<&Resource> {
        self.served
            .values()
            .find(|r| r.group == group && r.plural == plural)
    }

    /// Resources of one group/version.
    pub fn of(&self, group: &str, version: &str) -> Vec<&Resource> {
        self.served
            .values()
            .filter(|r| r.group == group && r.version == version)
            .collect()
    }

    /// Groups with their versions (preferred first); core is "".
    pub fn groups(&self) -> &BTreeMap<String, Vec<String>> {
        &self.groups
    }

    /// Every distinct group/plural served (one entry per resource, any version).
    pub fn kinds(&self) -> Vec<&Resource> {
        let mut seen = std::collections::BTreeSet::new();
        self.served
            .values()
            .filter(|r| seen.insert((r.group.clone(), r.plural.clone())))
            .collect()
    }
}
