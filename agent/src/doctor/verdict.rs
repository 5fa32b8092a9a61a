//! The checks' verdicts, pure: the readings and the agent's expected state
//! in, one [`Check`] out, the clock an argument. Each names what is wrong in
//! plain words.

use std::collections::BTreeSet;
use std::time::Duration;

use privnet_core::expected::{ExpectedNetwork, ExpectedState};

use super::guard;
use super::readings::{AgentReading, ClockReading, MeshReading, NetworkReading, Readings};
use super::report::Check;

/// A handshake older than this means the session is dead: WireGuard rejects
/// a session after 180 s (`REJECT_AFTER_TIME`), and with keepalives a live
/// one is renewed every 2 minutes (without keepalives an idle peer's
/// handshake ages, so its age is not judged).
pub const HANDSHAKE_MAX_AGE: Duration = Duration::from_secs(180);

/// Most names the doctor asks each network's responder.
pub const MAX_NAMES: usize = 32;

/// The thresholds of a run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest clock difference with the API server that is fine.
    pub max_clock_skew: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_clock_skew: Duration::from_secs(5),
        }
    }
}

/// Every check, in report order.
pub fn all(r: &Readings, limits: Limits) -> Vec<Check> {
    let exp = r.expected.as_ref();
    vec![
        agent(&r.agent),
        with_expected("wireguard", exp, |e| wireguard(e, r.mesh.as_ref())),
        with_expected("guard", exp, |e| guard_tables(e, r)),
        with_expected("fdb", exp, |e| fdb(e, &r.networks)),
        with_expected("zone", exp, |e| zone(e, &r.networks)),
        with_expected("mtu", exp, |e| mtu(e, r.mesh.as_ref(), &r.networks)),
        with_expected("dns", exp, |e| dns(e, &r.networks)),
        clock(&r.clock, limits.max_clock_skew),
    ]
}

fn with_expected(
    name: &'static str,
    exp: Option<&ExpectedState>,
    f: impl FnOnce(&ExpectedState) -> Check,
) -> Check {
    match exp {
        Some(e) => f(e),
        None => Check::skip(
            name,
            "the agent did not say what the node should be (see agent)",
        ),
    }
}

/// The agent answers on its socket and its `/readyz` says ready.
pub fn agent(r: &AgentReading) -> Check {
    let mut problems = Vec::new();
    match &r.socket {
        Ok(None) => {}
        Ok(Some(why)) => problems.push(format!("the agent answers but is not ready: {why}")),
        Err(e) => problems.push(format!("the agent's RPC socket does not answer: {e}")),
    }
    if let Err(e) = &r.readyz {
        problems.push(format!("/readyz is not ok: {e}"));
    }
    Check::from_problems("agent", "RPC socket and /readyz".into(), problems)
}

/// The WireGuard link is up with its address, and every peer of the mesh is
/// there with its VTEP and a recent handshake.
pub fn wireguard(exp: &ExpectedState, mesh: Option<&MeshReading>) -> Check {
    let (Some(want), Some(have)) = (&exp.mesh, mesh) else {
        return Check::skip("wireguard", "the node has no mesh address yet");
    };
    let mut problems = Vec::new();
    match &have.link {
        Err(e) => problems.push(format!("cannot read {}: {e}", want.ifname)),
        Ok(None) => problems.push(format!("WireGuard interface {} is missing", want.ifname)),
        Ok(Some(l)) => {
            if !l.up {
                problems.push(format!("{} is down", want.ifname));
            }
            if !l.addresses.contains(&want.address) {
                problems.push(format!(
                    "{} lacks its address {}",
                    want.ifname, want.address
                ));
            }
        }
    }
    match &have.peers {
        Err(e) => problems.push(format!("cannot read the peers of {}: {e}", want.ifname)),
        Ok(peers) => {
            for p in &want.peers {
                let allowed = format!("{}/32", p.vtep);
                match peers.iter().find(|h| h.public_key == p.public_key) {
                    None => problems.push(format!("peer {} ({}) is missing", p.node, p.vtep)),
                    Some(h) if h.allowed_ips != [allowed.clone()] => problems.push(format!(
                        "peer {} allows {:?}, should allow only {allowed}",
                        p.node, h.allowed_ips
                    )),
                    Some(h) => match h.handshake_age {
                        None => {
                            problems.push(format!("peer {} never completed a handshake", p.node))
                        }
                        Some(age) if age > HANDSHAKE_MAX_AGE && want.keepalive.is_some() => {
                            problems.push(format!(
                                "peer {}: last handshake {} s ago (dead after {} s)",
                                p.node,
                                age.as_secs(),
                                HANDSHAKE_MAX_AGE.as_secs()
                            ))
                        }
                        Some(_) => {}
                    },
                }
            }
            for h in peers {
                if !want.peers.iter().any(|p| p.public_key == h.public_key) {
                    problems.push(format!("unknown peer {} on {}", h.public_key, want.ifname));
                }
            }
        }
    }
    let summary = format!("{} with {} peers", want.ifname, want.peers.len());
    Check::from_problems("wireguard", summary, problems)
}

/// The node guard and each network's tables equal what the agent writes.
pub fn guard_tables(exp: &ExpectedState, r: &Readings) -> Check {
    let mut problems = Vec::new();
    let mut count = 0;
    if let (Some(m), Some(have)) = (&exp.mesh, &r.mesh) {
        for want in guard::node_tables(m) {
            count += 1;
            match &have.node_table {
                Err(e) => problems.push(format!("cannot read {}: {e}", want.name)),
                Ok(t) => problems.extend(guard::compare(&want, t.as_ref(), |_| false)),
            }
        }
    }
    for (net, have) in exp.networks.iter().zip(&r.networks) {
        if namespace_missing(net, have, &mut problems) {
            continue;
        }
        let wants = match guard::network_tables(net) {
            Ok(w) => w,
            Err(e) => {
                problems.push(format!("network {}: {e}", net.id));
                continue;
            }
        };
        let tables = match &have.tables {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("network {}: cannot read its tables: {e}", net.id));
                continue;
            }
        };
        let links: BTreeSet<&str> = have
            .links
            .as_ref()
            .map(|l| l.iter().map(|l| l.name.as_str()).collect())
            .unwrap_or_default();
        for want in wants {
            count += 1;
            let t = tables.iter().find(|t| t.name == want.name);
            for p in guard::compare(&want, t, |name| !links.contains(name)) {
                problems.push(format!("network {} ({}): {p}", net.id, net.netns));
            }
        }
    }
    Check::from_problems("guard", format!("{count} nft tables"), problems)
}

/// Whether the network's namespace is gone (then said in `problems`, and
/// nothing else of the network can be judged).
fn namespace_missing(
    net: &ExpectedNetwork,
    have: &NetworkReading,
    problems: &mut Vec<String>,
) -> bool {
    if !have.namespace {
        problems.push(format!(
            "network {}: namespace {} is missing",
            net.id, net.netns
        ));
    }
    !have.namespace
}

/// Each VXLAN device's FDB is the one the cluster view asks for.
pub fn fdb(exp: &ExpectedState, nets: &[NetworkReading]) -> Check {
    let mut problems = Vec::new();
    for (net, have) in exp.networks.iter().zip(nets) {
        if namespace_missing(net, have, &mut problems) {
            continue;
        }
        match &have.fdb {
            Err(e) => problems.push(format!("network {}: cannot read the FDB: {e}", net.id)),
            Ok(None) => problems.push(format!(
                "network {}: VXLAN device {} is missing",
                net.id, net.vxlan
            )),
            Ok(Some(entries)) => {
                let want: BTreeSet<_> = net.fdb.iter().collect();
                let got: BTreeSet<_> = entries.iter().collect();
                for e in want.difference(&got) {
                    problems.push(format!(
                        "network {}: FDB entry {} → {} is missing",
                        net.id, e.mac, e.dst
                    ));
                }
                for e in got.difference(&want) {
                    problems.push(format!(
                        "network {}: FDB entry {} → {} should not be there",
                        net.id, e.mac, e.dst
                    ));
                }
            }
        }
    }
    let entries: usize = exp.networks.iter().map(|n| n.fdb.len()).sum();
    Check::from_problems(
        "fdb",
        format!("{entries} entries in {} networks", exp.networks.len()),
        problems,
    )
}

/// The names asked of each network's responder (at most [`MAX_NAMES`]; the
/// zone's origin when it has none, whose negative answer still shows the
/// responder answers).
pub fn probe_names(net: &ExpectedNetwork, domain: &str) -> Vec<String> {
    if net.names.is_empty() {
        return vec![privnet_core::naming::zone_origin(&net.id, domain)];
    }
    net.names
        .iter()
        .take(MAX_NAMES)
        .map(|n| n.name.clone())
        .collect()
}

/// The responder of each network answers.
pub fn dns(exp: &ExpectedState, nets: &[NetworkReading]) -> Check {
    let mut problems = Vec::new();
    for (net, have) in exp.networks.iter().zip(nets) {
        if namespace_missing(net, have, &mut problems) {
            continue;
        }
        let failed: Vec<&str> = have
            .dns
            .iter()
            .filter_map(|a| a.answer.as_ref().err().map(String::as_str))
            .collect();
        if have.dns.is_empty() || failed.len() == have.dns.len() {
            let why = failed.first().copied().unwrap_or("nothing asked");
            problems.push(format!(
                "network {}: the DNS responder on {} does not answer ({why})",
                net.id,
                net.gateway.addr()
            ));
        } else if !failed.is_empty() {
            problems.push(format!(
                "network {}: {} of {} queries got no answer ({})",
                net.id,
                failed.len(),
                have.dns.len(),
                failed[0]
            ));
        }
    }
    Check::from_problems(
        "dns",
        format!("responders of {} networks", exp.networks.len()),
        problems,
    )
}

/// Every container name of the cluster view answers with its address.
pub fn zone(exp: &ExpectedState, nets: &[NetworkReading]) -> Check {
    let mut problems = Vec::new();
    let mut asked = 0;
    for (net, have) in exp.networks.iter().zip(nets) {
        for want in &net.names {
            let Some(got) = have.dns.iter().find(|a| a.name == want.name) else {
                continue;
            };
            asked += 1;
            match &got.answer {
                // The dns check reports responders that do not answer.
                Err(_) => {}
                Ok(a) if a.is_empty() => problems.push(format!(
                    "{} does not resolve (should be {})",
                    want.name, want.address
                )),
                Ok(a) if a != &[want.address] => problems.push(format!(
                    "{} resolves to {a:?}, should be {}",
                    want.name, want.address
                )),
                Ok(_) => {}
            }
        }
    }
    if asked > 0 && nets.iter().all(|n| n.dns.iter().all(|a| a.answer.is_err())) {
        return Check::skip("zone", "no responder answered (see dns)");
    }
    Check::from_problems(
        "zone",
        format!("{asked} names against the cluster view"),
        problems,
    )
}

/// Every device has the MTU it should: the WireGuard link the mesh's, each
/// network's bridge, VXLAN device and container ports (both ends) the network's.
pub fn mtu(exp: &ExpectedState, mesh: Option<&MeshReading>, nets: &[NetworkReading]) -> Check {
    let mut problems = Vec::new();
    let mut links = 0;
    if let (Some(m), Some(Ok(Some(l)))) = (&exp.mesh, mesh.map(|m| &m.link)) {
        links += 1;
        if l.mtu != m.mtu {
            problems.push(format!("{}: MTU {}, should be {}", l.name, l.mtu, m.mtu));
        }
    }
    for (net, have) in exp.networks.iter().zip(nets) {
        // A container gone meanwhile (or unreadable) is not an MTU problem.
        for (port, link) in &have.containers {
            let Ok(Some(l)) = link else { continue };
            links += 1;
            if l.mtu != net.mtu {
                problems.push(format!(
                    "network {}: container end {} of port {port} has MTU {}, should be {}",
                    net.id, l.name, l.mtu, net.mtu
                ));
            }
        }
        let Ok(found) = &have.links else { continue };
        for l in found.iter().filter(|l| l.name != "lo") {
            links += 1;
            if l.mtu != net.mtu {
                problems.push(format!(
                    "network {} ({}): {} has MTU {}, should be {}",
                    net.id, net.netns, l.name, l.mtu, net.mtu
                ));
            }
        }
    }
    Check::from_problems("mtu", format!("{links} links"), problems)
}

/// The local clock against the API server's `Date` (1 s resolution).
pub fn clock(r: &ClockReading, max: Duration) -> Check {
    match r {
        ClockReading::NoApi => Check::skip("clock", "no Kubernetes API configured"),
        ClockReading::Failed(e) => Check::from_problems(
            "clock",
            "API server's Date".into(),
            vec![format!("cannot read the API server's clock: {e}")],
        ),
        ClockReading::Read {
            before,
            after,
            server,
        } => {
            // The server stamped its answer between `before` and `after`,
            // truncated to the second: skew is how far outside that window it is.
            let latest = *server + Duration::from_secs(1);
            let skew = if latest < *before {
                before.duration_since(latest).unwrap_or_default()
            } else {
                server.duration_since(*after).unwrap_or_default()
            };
            let summary = format!("skew {} ms against the API server", skew.as_millis());
            let problems = if skew > max {
                let side = if latest < *before {
                    "ahead of"
                } else {
                    "behind"
                };
                vec![format!(
                    "this node's clock is {:.1} s {side} the API server's (more than {} s)",
                    skew.as_secs_f64(),
                    max.as_secs()
                )]
            } else {
                Vec::new()
            };
            Check::from_problems("clock", summary, problems)
        }
    }
}
