//! Normalised kernel state of a set of namespaces, for "a restart leaves the kernel
//! identical" tests: `ip -j -d link`, `ip -4 -j addr`, `ip -4 -j route`, `bridge -j fdb`,
//! `nft -j list ruleset` (privnet tables only), with counters, timers and handles dropped.
//! IPv6 addresses and routes are left out: the datapath configures none, and the kernel's
//! own link-local autoconfiguration (DAD, `tentative`) changes them on its own.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::netns::{self, NetnsError, NetnsFd};

/// Errors of snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A namespace could not be opened or a command failed.
    #[error("failed to read kernel state")]
    Netns(#[from] NetnsError),
    /// A command printed something that is not JSON.
    #[error("failed to parse the JSON of `{0}`")]
    Json(String, #[source] serde_json::Error),
}

/// Flattened `namespace/section/path = value` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<String, String>);

const SECTIONS: &[(&str, &str, &[&str])] = &[
    ("link", "ip", &["-j", "-d", "link", "show"]),
    ("addr", "ip", &["-4", "-j", "addr", "show"]),
    (
        "route",
        "ip",
        &["-4", "-j", "route", "show", "table", "all"],
    ),
    ("fdb", "bridge", &["-j", "fdb", "show"]),
    ("nft", "nft", &["-j", "list", "ruleset"]),
];

/// Keys whose values change without anything being reconfigured.
fn volatile(key: &str) -> bool {
    matches!(
        key,
        "stats"
            | "stats64"
            | "ifindex"
            | "handle"
            | "metainfo"
            | "used"
            | "updated"
            | "packets"
            | "bytes"
            | "carrier_changes"
            | "carrier_up_count"
            | "carrier_down_count"
            | "valid_life_time"
            | "preferred_life_time"
            | "operstate"
            | "link_index"
    ) || key.ends_with("_timer")
}

impl Snapshot {
    /// Takes the snapshot of the named namespaces.
    pub async fn take(names: &[&str]) -> Result<Self, SnapshotError> {
        let mut lines = BTreeMap::new();
        for name in names {
            let ns = NetnsFd::named(name)?;
            for (section, program, args) in SECTIONS {
                let out = netns::command_in(&ns, program, args, None).await?;
                let text = String::from_utf8_lossy(&out.stdout);
                let json: Value = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text)
                        .map_err(|e| SnapshotError::Json(format!("{program} {args:?}"), e))?
                };
                let json = normalise(section, json);
                flatten(&format!("{name}/{section}"), &json, &mut lines);
            }
        }
        Ok(Self(lines))
    }

    /// Lines only in `self` (`- …`) and only in `other` (`+ …`); empty when identical.
    pub fn diff(&self, other: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            if other.0.get(k) != Some(v) {
                out.push(format!("- {k} = {v}"));
            }
        }
        for (k, v) in &other.0 {
            if self.0.get(k) != Some(v) {
                out.push(format!("+ {k} = {v}"));
            }
        }
        out
    }

    /// Number of lines, to check a snapshot is not trivially empty.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|(k, v)| writeln!(f, "{k} = {v}"))
    }
}

fn strip(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !volatile(k))
                .map(|(k, v)| (k, strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip).collect()),
        other => other,
    }
}

/// Section-specific filtering: only privnet nft tables; only static FDB entries.
fn normalise(section: &str, value: Value) -> Value {
    let value = match (section, value) {
        ("nft", Value::Object(mut map)) => {
            let items = map.remove("nftables").unwrap_or(Value::Null);
            let kept: Vec<Value> = items
                .as_array()
                .into_iter()
                .flatten()
                .filter(|item| {
                    let table =
                        item.as_object()
                            .and_then(|o| o.values().next())
                            .and_then(|inner| {
                                inner.get("table").or_else(|| {
                                    inner.get("name").filter(|_| item.get("table").is_some())
                                })
                            });
                    table
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.starts_with("privnet-"))
                })
                .cloned()
                .collect();
            Value::Array(kept)
        }
        ("fdb", Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .filter(|e| {
                    e.get("dst").is_some()
                        || e.get("state").and_then(Value::as_str) == Some("permanent")
                })
                .collect(),
        ),
        (_, other) => other,
    };
    strip(value)
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| flatten(&format!("{prefix}.{k}"), v, out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&format!("{prefix}[{i}]"), v, out)),
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_and_foreign_tables_are_ignored() {
        let nft = json!({"nftables": [
            {"metainfo": {"version": "1"}},
            {"table": {"family": "inet", "name": "privnet-guard", "handle": 3}},
            {"table": {"family": "inet", "name": "filter", "handle": 4}},
            {"rule": {"family": "inet", "table": "privnet-guard", "chain": "input", "handle": 9,
                      "expr": [{"counter": {"packets": 5, "bytes": 70}}]}},
            {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 2}}
        ]});
        let mut a = BTreeMap::new();
        flatten("n/nft", &normalise("nft", nft), &mut a);
        let text: Vec<_> = a.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert!(text.iter().any(|l| l.contains("privnet-guard")), "{text:?}");
        assert!(
            !text
                .iter()
                .any(|l| l.contains("\"filter\"") || l.contains("handle") || l.contains("packets")),
            "{text:?}"
        );
    }

    #[test]
    fn diff_names_what_changed() {
        let a = Snapshot([("n/link[0].mtu".to_string(), "1370".to_string())].into());
        let b = Snapshot([("n/link[0].mtu".to_string(), "1500".to_string())].into());
        assert!(a.diff(&a).is_empty());
        assert_eq!(
            a.diff(&b),
            vec!["- n/link[0].mtu = 1370", "+ n/link[0].mtu = 1500"]
        );
    }
}
