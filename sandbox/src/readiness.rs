//! Waiting for the sandbox to be usable: WireGuard handshakes, agent
//! readiness, and DNS convergence as seen from every node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::dns_probe::{Probe, query_a};
use super::ops::SandboxError;
use super::state::SandboxState;
use super::sys;
use super::topology;

/// Every node has completed a handshake with every peer (`wg show <if>
/// latest-handshakes`, asked where the sandbox's backend can be seen).
pub(super) fn mesh_complete(state: &SandboxState) -> bool {
    let peers = state.nodes.len().saturating_sub(1);
    state.nodes.iter().all(|n| {
        sys::wg_show(
            state.wireguard_backend,
            &n.netns,
            &n.wireguard_interface,
            "latest-handshakes",
        )
        .map(|out| handshaken_peers(&out) == peers)
        .unwrap_or(false)
    })
}

/// Peers of `wg show … latest-handshakes` output with a handshake (time ≠ 0).
fn handshaken_peers(latest_handshakes: &str) -> usize {
    latest_handshakes
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|t| t != "0"))
        .count()
}

pub(super) fn wait_ready(state: &SandboxState, deadline: Instant) -> Result<(), SandboxError> {
    while !mesh_complete(state) {
        if Instant::now() > deadline {
            return Err(SandboxError::Timeout(
                "WireGuard handshakes did not complete".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for n in &state.nodes {
        loop {
            if status_ready(&n.agent_socket) {
                break;
            }
            if !topology::alive(n.agent_pid) {
                return Err(SandboxError::Precondition(format!(
                    "the agent of {} exited; see {}",
                    n.name, n.agent_log
                )));
            }
            if Instant::now() > deadline {
                return Err(SandboxError::Timeout(format!(
                    "the agent of {} did not become ready; see {}",
                    n.name, n.agent_log
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Asks an agent whether it is ready (the plugin's STATUS does the same).
pub fn status_ready(socket: &str) -> bool {
    use std::io::{BufRead, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"{\"op\":\"status\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let _ = std::io::BufReader::new(s).read_line(&mut line);
    line.contains("\"ready\"")
}

/// Waits until, from every node hosting a network, every type name of every
/// application resolves to exactly its containers.
pub fn wait_converged(state: &SandboxState, timeout: Duration) -> Result<Duration, SandboxError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut expected: BTreeMap<(String, String, String), Vec<std::net::Ipv4Addr>> = BTreeMap::new();
    for c in &state.containers {
        if let Ok(ip) = c.ip.parse() {
            expected
                .entry((
                    c.network_id.clone(),
                    c.application_id.clone(),
                    c.process_type.clone(),
                ))
                .or_default()
                .push(ip);
        }
    }
    for v in expected.values_mut() {
        v.sort();
    }
    let mut probes: BTreeMap<(String, String), &super::state::ContainerState> = BTreeMap::new();
    for c in &state.containers {
        probes
            .entry((c.network_id.clone(), c.node.clone()))
            .or_insert(c);
    }
    loop {
        let mut pending = None;
        'outer: for ((net, _), from) in &probes {
            let Some(network) = state.networks.iter().find(|n| &n.id == net) else {
                continue;
            };
            let Ok(gw) = network.gateway.parse() else {
                continue;
            };
            for ((n, app, t), ips) in &expected {
                if n != net {
                    continue;
                }
                let name = format!("{t}.{app}.{}.", network.zone);
                if query_a(&from.netns, gw, &name) != Probe::Found(ips.clone()) {
                    pending = Some(format!("{name} from {}", from.name));
                    break 'outer;
                }
            }
        }
        match pending {
            None => return Ok(started.elapsed()),
            Some(what) if Instant::now() > deadline => {
                return Err(SandboxError::Timeout(format!("DNS not converged: {what}")));
            }
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_peers_with_a_handshake_count() {
        let out = "a2V5MQ==\t1764450000\na2V5Mg==\t0\na2V5Mw==\t1764450001\n";
        assert_eq!(handshaken_peers(out), 2);
        assert_eq!(handshaken_peers(""), 0);
    }
}
