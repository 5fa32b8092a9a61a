//! Read-back of a network's datapath for the agent's repairs: what
//! [`super::network::ensure`] and the FDB sync set, compared with the kernel.
//! Reads only (`ip -d link`, `ip -4 addr`, `bridge fdb`, `nft -j list table`,
//! `sysctl`); what to do about a drift is the agent's decision.

use std::collections::BTreeSet;

use privnet_core::fdb::FdbEntry;
use serde_json::Value;

use super::drift::{Drift, What};
use super::fdb;
use super::guard::{self, GuardError, GuardedPort};
use super::links;
use super::netns::{self, NetnsFd};
use super::network::{self, NetworkDatapath, NetworkError};

/// Rules in an nft table of `ns` (`nft -j list table <t>`); `None` when the table is missing.
pub async fn table_rules(ns: &NetnsFd, table: &str) -> Result<Option<usize>, GuardError> {
    let mut args = vec!["-j", "list", "table"];
    args.extend(table.split_whitespace());
    let out = match netns::command_in(ns, "nft", &args, None).await {
        Ok(out) => out,
        // nft fails on a table that does not exist.
        Err(netns::NetnsError::Command { .. }) => return Ok(None),
        Err(e) => return Err(GuardError::Nft(e)),
    };
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let rules = json["nftables"].as_array().map_or(0, |items| {
        items.iter().filter(|i| i.get("rule").is_some()).count()
    });
    Ok(Some(rules))
}

/// Rules per table of every table in `ns` (`nft -j list ruleset`: one command for all of a
/// network namespace's tables, which holds only privnet's).
pub async fn ruleset_rules(ns: &NetnsFd) -> Result<Vec<(String, usize)>, GuardError> {
    let out = netns::command_in(ns, "nft", &["-j", "list", "ruleset"], None)
        .await
        .map_err(GuardError::Nft)?;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut tables: Vec<(String, usize)> = Vec::new();
    for item in json["nftables"].as_array().into_iter().flatten() {
        let name = |o: &Value| {
            format!(
                "{} {}",
                o["family"].as_str().unwrap_or(""),
                o["table"].as_str().or(o["name"].as_str()).unwrap_or("")
            )
        };
        if let Some(t) = item.get("table") {
            tables.push((name(t), 0));
        } else if let Some(r) = item.get("rule") {
            let key = name(r);
            if let Some(entry) = tables.iter_mut().find(|(t, _)| *t == key) {
                entry.1 += 1;
            }
        }
    }
    Ok(tables)
}

/// A drift of `what` for each of `wanted` that is missing or has no rules in `tables`.
pub fn missing_tables(tables: &[(String, usize)], wanted: &[&str], what: What) -> Vec<Drift> {
    wanted
        .iter()
        .filter_map(|w| match tables.iter().find(|(t, _)| t == w) {
            None => Some(Drift::new(what, *w, "table missing")),
            Some((_, 0)) => Some(Drift::new(what, *w, "table has no rules")),
            Some(_) => None,
        })
        .collect()
}

/// Whether `table` is present with rules, as a drift of `what` when not.
pub async fn table_drift(
    ns: &NetnsFd,
    table: &str,
    what: What,
) -> Result<Option<Drift>, GuardError> {
    Ok(match table_rules(ns, table).await? {
        None => Some(Drift::new(what, table, "table missing")),
        Some(0) => Some(Drift::new(what, table, "table has no rules")),
        Some(_) => None,
    })
}

/// Everything that differs in the network's namespace: the namespace itself, bridge, gateway
/// address, VXLAN device (parameters, underlay, master, up), `ip_forward`, the guard tables,
/// the FDB against `fdb`, and the container `ports` that are gone, off the bridge or down.
pub async fn network(
    agent_ns: &NetnsFd,
    spec: &NetworkDatapath,
    ports: &[GuardedPort],
    fdb_want: &BTreeSet<FdbEntry>,
) -> Result<Vec<Drift>, NetworkError> {
    if !netns::exists(&spec.netns) {
        return Ok(vec![Drift::new(
            What::Namespace,
            &spec.netns,
            "namespace missing",
        )]);
    }
    let ns = NetnsFd::named(&spec.netns)?;
    let h = netns::handle_in(&ns).await?;
    let mut out = Vec::new();
    let bridge = links::get(&h, &spec.bridge).await?;
    let bridge_index = match &bridge {
        None => {
            out.push(Drift::new(What::Bridge, &spec.bridge, "missing"));
            None
        }
        Some(b) if b.kind.as_deref() != Some("bridge") => {
            out.push(Drift::new(What::Bridge, &spec.bridge, "not a bridge"));
            None
        }
        Some(b) => {
            let mut wrong = Vec::new();
            if b.mac != spec.gateway_mac {
                wrong.push("MAC changed");
            }
            if b.mtu != spec.mtu {
                wrong.push("MTU changed");
            }
            if !b.up {
                wrong.push("down");
            }
            if !wrong.is_empty() {
                out.push(Drift::new(What::Bridge, &spec.bridge, wrong.join(", ")));
            }
            let have = links::ipv4_addresses(&h, b.index).await?;
            if have != [spec.gateway] {
                let have: Vec<String> = have.iter().map(ToString::to_string).collect();
                let detail = format!("addresses [{}], want {}", have.join(", "), spec.gateway);
                out.push(Drift::new(What::Gateway, &spec.bridge, detail));
            }
            Some(b.index)
        }
    };
    let lower = network::underlay_index(agent_ns, spec).await?;
    match links::get(&h, &spec.vxlan).await? {
        None => out.push(Drift::new(What::Vxlan, &spec.vxlan, "missing")),
        Some(vx) => {
            let mut wrong = Vec::new();
            if !network::vxlan_matches(&vx, spec, lower) {
                wrong.push("parameters or underlay device changed");
            }
            if bridge_index.is_some() && vx.controller != bridge_index {
                wrong.push("off the bridge");
            }
            if !vx.up {
                wrong.push("down");
            }
            if !wrong.is_empty() {
                out.push(Drift::new(What::Vxlan, &spec.vxlan, wrong.join(", ")));
            } else {
                let have = fdb::read(&h, vx.index).await?;
                let d = fdb::diff(&have, fdb_want);
                if !d.is_empty() {
                    let detail = format!("{} missing, {} extra", d.add.len(), d.remove.len());
                    out.push(Drift::new(What::Fdb, &spec.vxlan, detail));
                }
            }
        }
    }
    if netns::sysctl_get(&ns, "net/ipv4/ip_forward").await? != "0" {
        out.push(Drift::new(
            What::Forwarding,
            &spec.netns,
            "ip_forward is on",
        ));
    }
    let tables = ruleset_rules(&ns).await?;
    out.extend(missing_tables(
        &tables,
        &[guard::PORTS_TABLE, guard::GATEWAY_TABLE],
        What::NetworkGuard,
    ));
    if let Some(bridge) = bridge_index {
        for port in ports {
            let Some(link) = links::get(&h, &port.host_ifname).await? else {
                let detail = "host veth gone: retiring the port";
                out.push(Drift::new(What::PortGone, &port.host_ifname, detail));
                continue;
            };
            let mut wrong = Vec::new();
            if link.controller != Some(bridge) {
                wrong.push("off the bridge");
            }
            if !link.up {
                wrong.push("down");
            }
            if !wrong.is_empty() {
                out.push(Drift::new(What::Port, &port.host_ifname, wrong.join(", ")));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_tables_are_drifts_and_others_ignored() {
        let tables = vec![
            ("bridge privnet-ports".to_string(), 12),
            ("inet privnet-gw".to_string(), 0),
            ("inet someone-else".to_string(), 3),
        ];
        let d = missing_tables(
            &tables,
            &["bridge privnet-ports", "inet privnet-gw", "inet privnet-x"],
            What::NetworkGuard,
        );
        let subjects: Vec<&str> = d.iter().map(|d| d.subject.as_str()).collect();
        assert_eq!(subjects, ["inet privnet-gw", "inet privnet-x"]);
        assert_eq!(d[0].detail, "table has no rules");
        assert_eq!(d[1].detail, "table missing");
    }
}
