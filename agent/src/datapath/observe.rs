//! Read-back of a network's datapath for the agent's repairs: what
//! [`super::network::ensure`] and the FDB sync set, compared with the kernel.
//! Reads only (`ip -d link`, `ip -4 addr`, `bridge fdb`, `nft -j list`,
//! `sysctl`); what to do about a drift is the agent's decision. The guard
//! tables are compared with what the agent renders for them
//! ([`super::guard_drift`]): a deleted rule or set element shows, not only a
//! missing table.

use std::collections::BTreeSet;

use privnet_core::fdb::FdbEntry;
use serde_json::Value;

use super::drift::{Drift, What};
use super::fdb;
use super::guard::{self, GuardError, GuardedPort, NodeGuard};
use super::guard_drift::{self, Installed};
use super::links;
use super::netns::{self, NetnsFd};
use super::network::{self, NetworkDatapath, NetworkError};

/// `nft -j list <what…>` in `ns`; `None` when nft fails (a table that does not exist).
async fn nft_json(ns: &NetnsFd, what: &[&str]) -> Result<Option<Value>, GuardError> {
    let mut args = vec!["-j", "list"];
    args.extend(what);
    match netns::command_in(ns, "nft", &args, None).await {
        Ok(out) => Ok(Some(
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        )),
        Err(netns::NetnsError::Command { .. }) => Ok(None),
        Err(e) => Err(GuardError::Nft(e)),
    }
}

/// The nft tables of `ns` (`nft -j list ruleset`: one command for all of a
/// network namespace's tables, which holds only privnet's).
pub async fn installed_ruleset(ns: &NetnsFd) -> Result<Installed, GuardError> {
    let out = netns::command_in(ns, "nft", &["-j", "list", "ruleset"], None)
        .await
        .map_err(GuardError::Nft)?;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok(guard_drift::installed(&json))
}

/// A drift of `what` for each of `wanted` that is missing or has no rules in `installed`.
pub fn missing_tables(installed: &Installed, wanted: &[&str], what: What) -> Vec<Drift> {
    wanted
        .iter()
        .filter_map(|w| {
            if !installed.tables.contains(*w) {
                return Some(Drift::new(what, *w, "table missing"));
            }
            let rules: usize = installed
                .rules
                .iter()
                .filter(|((t, _), _)| t == w)
                .map(|(_, n)| n)
                .sum();
            (rules == 0).then(|| Drift::new(what, *w, "table has no rules"))
        })
        .collect()
}

/// `tables` of `installed` against the `rendered` ruleset: a table missing
/// or emptied is a drift of `whole` (written again whole); otherwise each
/// chain that lost or gained rules and each missing set element is a drift
/// of `rules` (put back alone).
pub fn guard_drifts(
    installed: &Installed,
    rendered: &str,
    tables: &[&str],
    whole: What,
    rules: What,
) -> Vec<Drift> {
    let missing = missing_tables(installed, tables, whole);
    if !missing.is_empty() {
        return missing;
    }
    guard_drift::drifts(&guard_drift::parse(rendered), installed, rules)
}

/// The node guard in the agent's namespace against its rendering (`nft -j
/// list table`: never the whole ruleset, which on a Kubernetes node holds
/// kube-proxy's).
pub async fn node_guard(ns: &NetnsFd, guard: &NodeGuard) -> Result<Vec<Drift>, GuardError> {
    let mut what: Vec<&str> = vec!["table"];
    what.extend(guard::AGENT_TABLE.split_whitespace());
    let installed = match nft_json(ns, &what).await? {
        Some(json) => guard_drift::installed(&json),
        None => Installed::default(),
    };
    let rendered = guard::agent_ruleset(guard, false)?;
    Ok(guard_drifts(
        &installed,
        &rendered,
        &[guard::AGENT_TABLE],
        What::NodeGuard,
        What::NodeGuard,
    ))
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
    let installed = installed_ruleset(&ns).await?;
    let rendered = guard::network_ruleset(&spec.guard(ports))?;
    out.extend(guard_drifts(
        &installed,
        &rendered,
        &[guard::PORTS_TABLE, guard::GATEWAY_TABLE],
        What::NetworkGuard,
        What::GuardRules,
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
        let mut installed = Installed::default();
        for (t, c, n) in [
            ("bridge privnet-ports", "prerouting", 12),
            ("inet privnet-gw", "input", 0),
            ("inet someone-else", "input", 3),
        ] {
            installed.tables.insert(t.to_string());
            installed.rules.insert((t.to_string(), c.to_string()), n);
        }
        let d = missing_tables(
            &installed,
            &["bridge privnet-ports", "inet privnet-gw", "inet privnet-x"],
            What::NetworkGuard,
        );
        let subjects: Vec<&str> = d.iter().map(|d| d.subject.as_str()).collect();
        assert_eq!(subjects, ["inet privnet-gw", "inet privnet-x"]);
        assert_eq!(d[0].detail, "table has no rules");
        assert_eq!(d[1].detail, "table missing");
        // A table rewritten whole is not also repaired rule by rule.
        let rendered = "table inet privnet-gw {\n\tchain input {\n\t\taccept\n\t}\n}\n";
        let d = guard_drifts(
            &installed,
            rendered,
            &["inet privnet-gw"],
            What::NetworkGuard,
            What::GuardRules,
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].what, What::NetworkGuard);
    }
}
