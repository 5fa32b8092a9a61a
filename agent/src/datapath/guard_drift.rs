//! The guard tables as the agent renders them ([`super::guard`]) against
//! what `nft -j list` shows: which chains lost (or gained) rules and which
//! set elements are missing, and the nft text that puts back only those —
//! a chain is flushed and written again, an element added — so the rest of
//! the table, and every flow through it, is left alone. Pure; the read and
//! the apply are [`super::observe`]'s and [`super::network`]'s.
//!
//! Extra elements are not drift: retired ports stay in the sets until
//! their batch is purged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

use super::drift::{Drift, What};

/// One chain of a rendered table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedChain {
    /// `bridge privnet-ports`.
    pub table: String,
    /// Its name.
    pub name: String,
    /// `type filter hook … policy …;` for a base chain.
    pub header: Option<String>,
    /// Its rules, in order.
    pub rules: Vec<String>,
}

/// One element of a rendered set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedElement {
    /// Table.
    pub table: String,
    /// Set.
    pub set: String,
    /// Key as [`element_key`] reads it from nft's JSON (`pv1a . 10.240.0.5`).
    pub key: String,
    /// The element as rendered (`"pv1a" . 10.240.0.5`).
    pub text: String,
}

/// A set element of `nft -j` output as one string: a concatenation's parts
/// joined by ` . ` (`pv1a . 0a:58:…`), a plain key as it is.
pub fn element_key(elem: &Value) -> Option<String> {
    if let Some(parts) = elem["concat"].as_array() {
        let parts: Option<Vec<&str>> = parts.iter().map(Value::as_str).collect();
        return parts.map(|p| p.join(" . "));
    }
    elem.as_str().map(str::to_string)
}

/// A ruleset as [`super::guard`] renders it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// Chains.
    pub chains: Vec<RenderedChain>,
    /// Set elements.
    pub elements: Vec<RenderedElement>,
}

/// Reads back a ruleset rendered by [`super::guard`] (its layout: a table
/// block per table, a line per rule, sets on one line).
pub fn parse(text: &str) -> Rendered {
    let mut out = Rendered::default();
    let (mut table, mut chain): (Option<String>, Option<RenderedChain>) = (None, None);
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = line.strip_prefix("table ") {
            // `table T {}` (the reset) opens nothing.
            table = rest.strip_suffix(" {").map(str::to_string);
        } else if line == "}" {
            table = None;
        } else if let (Some(t), Some(name)) = (&table, trimmed.strip_prefix("chain ")) {
            chain = Some(RenderedChain {
                table: t.clone(),
                name: name.trim_end_matches(" {").to_string(),
                header: None,
                rules: Vec::new(),
            });
        } else if line == "\t}" {
            out.chains.extend(chain.take());
        } else if let Some(c) = &mut chain {
            if trimmed.starts_with("type ") && trimmed.contains(" hook ") {
                c.header = Some(trimmed.to_string());
            } else {
                c.rules.push(trimmed.to_string());
            }
        } else if let (Some(t), Some(set)) = (&table, trimmed.strip_prefix("set ")) {
            let name = set.split_whitespace().next().unwrap_or("").to_string();
            let elements = set
                .split_once("elements = { ")
                .and_then(|(_, rest)| rest.split_once(" };"))
                .map_or("", |(e, _)| e);
            for element in elements.split(", ").filter(|e| !e.is_empty()) {
                out.elements.push(RenderedElement {
                    table: t.clone(),
                    set: name.clone(),
                    key: element.replace('"', ""),
                    text: element.to_string(),
                });
            }
        }
    }
    out
}

/// What `nft -j list` shows of the tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// Tables present.
    pub tables: BTreeSet<String>,
    /// Rules per (table, chain), chains without rules included.
    pub rules: BTreeMap<(String, String), usize>,
    /// Set elements: (table, set, key as [`element_key`] reads it).
    pub elements: BTreeSet<(String, String, String)>,
}

fn table_of(o: &Value) -> String {
    format!(
        "{} {}",
        o["family"].as_str().unwrap_or(""),
        o["table"].as_str().unwrap_or("")
    )
}

/// Reads `nft -j list ruleset` (or `list table`) output.
pub fn installed(json: &Value) -> Installed {
    let mut out = Installed::default();
    for item in json["nftables"].as_array().into_iter().flatten() {
        if let Some(t) = item.get("table") {
            out.tables.insert(format!(
                "{} {}",
                t["family"].as_str().unwrap_or(""),
                t["name"].as_str().unwrap_or("")
            ));
        } else if let Some(c) = item.get("chain") {
            let name = c["name"].as_str().unwrap_or("").to_string();
            out.rules.entry((table_of(c), name)).or_insert(0);
        } else if let Some(r) = item.get("rule") {
            let name = r["chain"].as_str().unwrap_or("").to_string();
            *out.rules.entry((table_of(r), name)).or_insert(0) += 1;
        } else if let Some(m) = item.get("set") {
            let (table, name) = (table_of(m), m["name"].as_str().unwrap_or("").to_string());
            for e in m["elem"].as_array().into_iter().flatten() {
                if let Some(k) = element_key(e) {
                    out.elements.insert((table.clone(), name.clone(), k));
                }
            }
        }
    }
    out
}

/// The drifts (of `what`) of `rendered` in `installed`: chains whose rule
/// count differs or that are gone, and missing elements. Tables missing
/// altogether are left to the caller (they are rewritten whole).
pub fn drifts(rendered: &Rendered, installed: &Installed, what: What) -> Vec<Drift> {
    let mut out = Vec::new();
    for c in &rendered.chains {
        if !installed.tables.contains(&c.table) {
            continue;
        }
        let want = c.rules.len();
        match installed.rules.get(&(c.table.clone(), c.name.clone())) {
            Some(&have) if have == want => {}
            have => {
                let detail = match have {
                    None => "chain missing".to_string(),
                    Some(have) => format!("{have} rules, want {want}"),
                };
                out.push(Drift::new(
                    what,
                    format!("{} chain {}", c.table, c.name),
                    detail,
                ));
            }
        }
    }
    for e in &rendered.elements {
        let key = (e.table.clone(), e.set.clone(), e.key.clone());
        if installed.tables.contains(&e.table) && !installed.elements.contains(&key) {
            let subject = format!("{} set {} element {}", e.table, e.set, e.key);
            out.push(Drift::new(what, subject, "element missing"));
        }
    }
    out
}

/// The nft text that puts back what [`drifts`] finds — each drifted chain
/// flushed (when present) and written again, each missing element added —
/// in one transaction; `None` when nothing differs.
pub fn repair_text(rendered: &Rendered, installed: &Installed) -> Option<String> {
    let mut flush = String::new();
    let mut blocks: BTreeMap<&str, String> = BTreeMap::new();
    for c in &rendered.chains {
        if !installed.tables.contains(&c.table) {
            continue;
        }
        let have = installed.rules.get(&(c.table.clone(), c.name.clone()));
        if have == Some(&c.rules.len()) {
            continue;
        }
        if have.is_some() {
            let _ = writeln!(flush, "flush chain {} {}", c.table, c.name);
        }
        let block = blocks.entry(&c.table).or_default();
        let _ = writeln!(block, "\tchain {} {{", c.name);
        if let Some(h) = &c.header {
            let _ = writeln!(block, "\t\t{h}");
        }
        for r in &c.rules {
            let _ = writeln!(block, "\t\t{r}");
        }
        block.push_str("\t}\n");
    }
    let mut text = flush;
    for (table, block) in &blocks {
        let _ = write!(text, "table {table} {{\n{block}}}\n");
    }
    for e in &rendered.elements {
        let key = (e.table.clone(), e.set.clone(), e.key.clone());
        if installed.tables.contains(&e.table) && !installed.elements.contains(&key) {
            let _ = writeln!(text, "add element {} {} {{ {} }}", e.table, e.set, e.text);
        }
    }
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::guard::{self, GuardedPort, NetworkGuard};

    fn rendered() -> Rendered {
        let g = NetworkGuard {
            vxlan: "vx100".into(),
            gateway_mac: [0x02, 0x70, 0, 0, 0, 100],
            ports: vec![
                GuardedPort {
                    host_ifname: "pv1a".into(),
                    mac: [0x0a, 0x58, 1, 2, 3, 4],
                    ip: "10.240.0.5".parse().unwrap(),
                },
                GuardedPort {
                    host_ifname: "pv2b".into(),
                    mac: [0x0a, 0x58, 1, 2, 3, 5],
                    ip: "10.240.0.6".parse().unwrap(),
                },
            ],
        };
        parse(&guard::network_ruleset(&g).unwrap())
    }

    /// What the kernel holds after applying `r` whole.
    fn applied(r: &Rendered) -> Installed {
        let mut i = Installed::default();
        for c in &r.chains {
            i.tables.insert(c.table.clone());
            i.rules
                .insert((c.table.clone(), c.name.clone()), c.rules.len());
        }
        for e in &r.elements {
            i.elements
                .insert((e.table.clone(), e.set.clone(), e.key.clone()));
        }
        i
    }

    #[test]
    fn the_rendering_reads_back_chains_headers_and_elements() {
        let r = rendered();
        let names: Vec<&str> = r.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "prerouting",
                "from-mesh",
                "from-port",
                "postrouting",
                "to-mesh",
                "raw-prerouting",
                "raw-output",
                "input"
            ]
        );
        let pre = &r.chains[0];
        assert_eq!(pre.table, "bridge privnet-ports");
        assert!(pre.header.as_deref().unwrap().contains("hook prerouting"));
        assert_eq!(pre.rules.len(), 2);
        assert_eq!(r.chains[2].rules.len(), 11);
        assert_eq!(r.chains[7].table, "inet privnet-gw");
        let keys: Vec<(&str, &str)> = r
            .elements
            .iter()
            .map(|e| (e.set.as_str(), e.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("port-mac", "pv1a . 0a:58:01:02:03:04"),
                ("port-mac", "pv2b . 0a:58:01:02:03:05"),
                ("port-ip", "pv1a . 10.240.0.5"),
                ("port-ip", "pv2b . 10.240.0.6"),
            ]
        );
        assert_eq!(r.elements[2].text, "\"pv1a\" . 10.240.0.5");
    }

    #[test]
    fn a_healthy_table_has_no_drift_and_retired_extras_are_not_drift() {
        let r = rendered();
        let mut i = applied(&r);
        assert_eq!(drifts(&r, &i, What::NetworkGuard), []);
        assert_eq!(repair_text(&r, &i), None);
        // A retired port still in the sets.
        let t = "bridge privnet-ports".to_string();
        i.elements
            .insert((t, "port-ip".into(), "pv9z . 10.240.0.9".into()));
        assert_eq!(drifts(&r, &i, What::NetworkGuard), []);
    }

    #[test]
    fn a_deleted_rule_and_element_are_put_back_alone() {
        let r = rendered();
        let mut i = applied(&r);
        let t = "bridge privnet-ports".to_string();
        *i.rules.get_mut(&(t.clone(), "from-port".into())).unwrap() -= 1;
        i.elements
            .remove(&(t.clone(), "port-ip".into(), "pv1a . 10.240.0.5".into()));
        i.rules
            .remove(&("inet privnet-gw".into(), "raw-output".into()));
        let d = drifts(&r, &i, What::NetworkGuard);
        let subjects: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.subject.as_str(), d.detail.as_str()))
            .collect();
        assert_eq!(
            subjects,
            [
                ("bridge privnet-ports chain from-port", "10 rules, want 11"),
                ("inet privnet-gw chain raw-output", "chain missing"),
                (
                    "bridge privnet-ports set port-ip element pv1a . 10.240.0.5",
                    "element missing"
                ),
            ]
        );
        let text = repair_text(&r, &i).unwrap();
        assert!(text.starts_with("flush chain bridge privnet-ports from-port\ntable bridge privnet-ports {\n\tchain from-port {\n"), "{text}");
        assert!(text.contains("table inet privnet-gw {\n\tchain raw-output {\n\t\ttype filter hook output priority raw; policy accept;\n\t\tudp sport 53 notrack\n\t}\n}\n"), "{text}");
        assert!(
            text.ends_with("add element bridge privnet-ports port-ip { \"pv1a\" . 10.240.0.5 }\n"),
            "{text}"
        );
        // Nothing healthy is touched: no other chain, no table reset.
        for healthy in [
            "from-mesh {",
            "prerouting {",
            "delete",
            "flush chain inet",
            "element bridge privnet-ports port-mac",
        ] {
            assert!(!text.contains(healthy), "{healthy} in\n{text}");
        }
    }

    #[test]
    fn a_missing_table_is_left_to_the_whole_rewrite() {
        let r = rendered();
        let mut i = applied(&r);
        i.tables.remove("inet privnet-gw");
        i.rules.retain(|(t, _), _| t != "inet privnet-gw");
        assert_eq!(drifts(&r, &i, What::NetworkGuard), []);
        assert_eq!(repair_text(&r, &i), None);
    }

    #[test]
    fn nft_json_is_read_into_rules_per_chain_and_elements() {
        let v: Value = serde_json::from_str(
            r#"{"nftables": [{"metainfo": {}},
              {"table": {"family": "bridge", "name": "privnet-ports", "handle": 1}},
              {"set": {"family": "bridge", "name": "port-mac", "table": "privnet-ports", "type": ["ifname", "ether_addr"],
                       "elem": [{"concat": ["pv1a", "0a:58:01:02:03:04"]}]}},
              {"chain": {"family": "bridge", "table": "privnet-ports", "name": "from-mesh", "handle": 2}},
              {"chain": {"family": "bridge", "table": "privnet-ports", "name": "from-port", "handle": 3}},
              {"rule": {"family": "bridge", "table": "privnet-ports", "chain": "from-mesh", "handle": 4, "expr": []}},
              {"rule": {"family": "bridge", "table": "privnet-ports", "chain": "from-mesh", "handle": 5, "expr": []}}]}"#,
        )
        .unwrap();
        let i = installed(&v);
        let t = "bridge privnet-ports".to_string();
        assert_eq!(i.tables, [t.clone()].into());
        assert_eq!(i.rules[&(t.clone(), "from-mesh".into())], 2);
        assert_eq!(i.rules[&(t.clone(), "from-port".into())], 0);
        assert!(
            i.elements
                .contains(&(t, "port-mac".into(), "pv1a . 0a:58:01:02:03:04".into()))
        );
    }
}
