//! Are privnet's nft tables what they should be? The expected tables are the
//! agent's own rulesets ([`crate::datapath::guard`]) rendered from the
//! expected state, parsed back into chains and rules; the kernel's come from
//! `nft -j list table`. A kernel rule matches its expected rule when every
//! literal of the rule (MACs, addresses, interface names, numbers, the
//! verdict) appears in it: nft prints rules in its own normal form, so the
//! text is never compared as such. Pure.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use privnet_core::expected::{ExpectedMesh, ExpectedNetwork};
use privnet_core::mac::parse_mac;
use serde_json::Value;

use super::readings::TableReading;
use crate::datapath::guard::{
    self, GuardedPort, NetworkGuard, NodeGuard, PORT_PREFIX, agent_ruleset, network_ruleset,
};
use crate::datapath::guard_drift::element_key;

/// A table parsed from the agent's ruleset text: chains with their rule lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedTable {
    /// `family name`.
    pub name: String,
    /// Chains in order with their rules (hook lines left out).
    pub chains: Vec<(String, Vec<String>)>,
    /// Elements of the port sets: (set, key as `nft -j` reads, `pv1a . 10.240.0.5`).
    pub set_elements: Vec<(String, String)>,
}

/// The tables of a ruleset text as the agent writes it (`table T {}` /
/// `delete table T` resets skipped).
pub fn parse_ruleset(text: &str) -> Vec<ExpectedTable> {
    let mut tables: Vec<ExpectedTable> = Vec::new();
    let mut chain: Option<(String, Vec<String>)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("table ") {
            if let Some(name) = rest.strip_suffix(" {") {
                tables.push(ExpectedTable {
                    name: name.to_string(),
                    ..Default::default()
                });
            }
        } else if let Some(rest) = line.strip_prefix("chain ") {
            chain = Some((rest.trim_end_matches(" {").to_string(), Vec::new()));
        } else if let Some(rest) = line.strip_prefix("set ") {
            let set = rest.split_whitespace().next().unwrap_or("");
            if let (Some(t), Some(start)) = (tables.last_mut(), line.find("elements = {")) {
                let inner = &line[start + "elements = {".len()..];
                let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
                t.set_elements.extend(
                    inner
                        .split(',')
                        .map(|k| k.trim().replace('"', ""))
                        .filter(|k| !k.is_empty())
                        .map(|k| (set.to_string(), k)),
                );
            }
        } else if line == "}" {
            if let (Some(c), Some(t)) = (chain.take(), tables.last_mut()) {
                t.chains.push(c);
            }
        } else if let Some((_, rules)) = chain.as_mut()
            && !line.is_empty()
            && !line.starts_with("type ")
        {
            rules.push(line.to_string());
        }
    }
    tables
}

/// `nft -j list table` output as a [`TableReading`].
pub fn parse_nft_json(name: &str, json: &Value) -> TableReading {
    let mut t = TableReading {
        name: name.to_string(),
        ..Default::default()
    };
    for item in json["nftables"].as_array().into_iter().flatten() {
        if let Some(c) = item.get("chain") {
            t.chains
                .push((c["name"].as_str().unwrap_or("").to_string(), Vec::new()));
        } else if let Some(r) = item.get("rule") {
            let chain = r["chain"].as_str().unwrap_or("");
            if let Some((_, rules)) = t.chains.iter_mut().find(|(c, _)| c == chain) {
                rules.push(r["expr"].to_string());
            }
        } else if let Some(m) = item.get("set") {
            let set = m["name"].as_str().unwrap_or("");
            for e in m["elem"].as_array().into_iter().flatten() {
                if let Some(k) = element_key(e) {
                    t.set_elements.push((set.to_string(), k));
                }
            }
        }
    }
    t
}

/// The literals of a rule line that nft keeps in its JSON form.
fn literals(rule: &str) -> Vec<String> {
    let words: Vec<&str> = rule
        .split(|c: char| c.is_whitespace() || "{},;".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for w in &words {
        let quoted = w.len() > 1 && w.starts_with('"') && w.ends_with('"');
        let bare = w.trim_matches('"');
        let mac = parse_mac(bare).is_ok() && bare.len() == 17;
        if (quoted && !bare.contains('*')) || mac {
            out.push(format!("\"{bare}\""));
        } else if let Ok(a) = bare.parse::<Ipv4Addr>() {
            out.push(format!("\"{a}\""));
        } else if let Ok(n) = bare.parse::<Ipv4Net>() {
            out.push(format!("\"{}\"", n.addr()));
        } else if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_digit()) {
            out.push(bare.to_string());
        }
    }
    if let Some(last) = words.last() {
        out.push(last.trim_matches('"').to_string());
    }
    out
}

/// What differs between an expected table and the kernel's (`None`: missing).
/// Set elements of container ports that no longer exist (`gone`) are
/// retired ones awaiting the agent's batched purge, not problems.
pub fn compare(
    want: &ExpectedTable,
    have: Option<&TableReading>,
    gone: impl Fn(&str) -> bool,
) -> Vec<String> {
    let t = &want.name;
    let Some(have) = have else {
        return vec![format!("table {t} is missing")];
    };
    let mut out = Vec::new();
    for (chain, rules) in &want.chains {
        let Some((_, got)) = have.chains.iter().find(|(c, _)| c == chain) else {
            out.push(format!("table {t}: chain {chain} is missing"));
            continue;
        };
        if got.len() != rules.len() {
            out.push(format!(
                "table {t}: chain {chain} has {} rules, should have {}",
                got.len(),
                rules.len()
            ));
            continue;
        }
        for (i, (rule, kernel)) in rules.iter().zip(got).enumerate() {
            if let Some(l) = literals(rule).iter().find(|l| !kernel.contains(l.as_str())) {
                out.push(format!(
                    "table {t}: chain {chain} rule {} differs (no {l}): should be `{rule}`",
                    i + 1
                ));
            }
        }
    }
    for (chain, _) in &have.chains {
        if !want.chains.iter().any(|(c, _)| c == chain) {
            out.push(format!("table {t}: unexpected chain {chain}"));
        }
    }
    // The port of an element is its key's first part (`pv1a . …`).
    let retired = |key: &str| {
        let port = key.split(" . ").next().unwrap_or(key);
        port.starts_with(PORT_PREFIX) && gone(port)
    };
    for e @ (set, key) in &want.set_elements {
        if !have.set_elements.contains(e) {
            out.push(format!("table {t}: {key} is not in the set {set}"));
        }
    }
    for e @ (set, key) in &have.set_elements {
        if !want.set_elements.contains(e) && !retired(key) {
            out.push(format!(
                "table {t}: {key} is in the set {set} but not guarded by the agent"
            ));
        }
    }
    out
}

/// The node guard the agent would write (`None`: disabled).
pub fn node_tables(mesh: &ExpectedMesh) -> Vec<ExpectedTable> {
    let Some(g) = &mesh.guard else {
        return Vec::new();
    };
    let guard = NodeGuard {
        wg_ifname: mesh.ifname.clone(),
        vxlan_port: g.vxlan_port,
        vnis: g.vni_first..=g.vni_last,
        mesh: g.mesh,
    };
    agent_ruleset(&guard, false)
        .map(|text| parse_ruleset(&text))
        .unwrap_or_default()
}

/// A network's tables as the agent would write them for its live ports.
pub fn network_tables(net: &ExpectedNetwork) -> Result<Vec<ExpectedTable>, String> {
    let mac = |m: &str| parse_mac(m).map_err(|e| format!("bad MAC {m}: {e}"));
    let ports = net
        .ports
        .iter()
        .map(|p| {
            Ok(GuardedPort {
                host_ifname: p.host_ifname.clone(),
                mac: mac(&p.mac)?,
                ip: p.ip,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let g = NetworkGuard {
        vxlan: net.vxlan.clone(),
        gateway_mac: mac(&net.gateway_mac)?,
        ports,
    };
    network_ruleset(&g)
        .map(|text| parse_ruleset(&text))
        .map_err(|e| e.to_string())
}

/// The tables the doctor reads in a network namespace.
pub const NETWORK_TABLES: [&str; 2] = [guard::PORTS_TABLE, guard::GATEWAY_TABLE];
