//! The doctor's reads, read-only: the agent's socket and `/readyz`, the
//! WireGuard link and peers, nft tables, devices, FDB and DNS answers of
//! each network namespace. Every read that fails becomes a reading that
//! says why; nothing here decides.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use privnet_core::expected::{
    ExpectedFdb, ExpectedMesh, ExpectedNetwork, ExpectedPort, ExpectedState,
};
use privnet_core::mac::format_mac;
use privnet_core::rpc::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::guard::{self, NETWORK_TABLES};
use super::readings::{
    AgentReading, DnsAnswer, LinkReading, MeshReading, NetworkReading, TableReading,
};
use super::verdict::probe_names;
use crate::datapath::netns::{self, NetnsFd};
use crate::datapath::{fdb, links, wireguard};

/// How long one probe (a socket answer, a DNS query, `/readyz`) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends one RPC request to the agent socket.
pub async fn rpc(socket: &Path, req: &Request) -> Result<Response, String> {
    let exchange = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        line.push(b'\n');
        s.write_all(&line).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        serde_json::from_slice::<Response>(&out).map_err(|e| format!("bad answer: {e}"))
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")))
}

/// The agent's status and readiness, and its expected state.
pub async fn agent(
    socket: &Path,
    node_ns: &NetnsFd,
    health: SocketAddr,
) -> (AgentReading, Option<ExpectedState>) {
    let status = match rpc(socket, &Request::Status).await {
        Ok(Response::Ready) => Ok(None),
        Ok(Response::Error { message, .. }) => Ok(Some(message)),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e),
    };
    let expected = match rpc(socket, &Request::Expected).await {
        Ok(Response::Expected(e)) => Some(*e),
        _ => None,
    };
    let readyz = netns::run_in_async(node_ns, move || readyz(health))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let reading = AgentReading {
        socket: status,
        readyz,
    };
    (reading, expected)
}

/// `GET /readyz` on the agent's health address (from inside its namespace).
fn readyz(addr: SocketAddr) -> Result<(), String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /readyz HTTP/1.0\r\nHost: doctor\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) == Some("200") {
        return Ok(());
    }
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    Err(format!("{status}: {body}"))
}

fn link_reading(name: String, l: &links::LinkState) -> LinkReading {
    LinkReading {
        name,
        mtu: l.mtu,
        up: l.up,
        addresses: Vec::new(),
    }
}

/// An nft table of `ns` (`Ok(None)`: nft says there is no such table).
async fn table(ns: &NetnsFd, name: &str) -> Result<Option<TableReading>, String> {
    let mut args = vec!["-j", "list", "table"];
    args.extend(name.split_whitespace());
    match netns::command_in(ns, "nft", &args, None).await {
        Ok(out) => {
            let json: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            Ok(Some(guard::parse_nft_json(name, &json)))
        }
        Err(netns::NetnsError::Command { stderr, .. })
            if stderr.contains("No such file") || stderr.contains("does not exist") =>
        {
            Ok(None)
        }
        Err(e) => Err(crate::error_chain(&e)),
    }
}

/// The WireGuard link, its peers and the node guard, in the node's namespace.
pub async fn mesh(ns: &NetnsFd, want: &ExpectedMesh) -> MeshReading {
    let link = async {
        let h = netns::handle_in(ns).await.map_err(|e| e.to_string())?;
        let Some(l) = links::get(&h, &want.ifname)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let mut r = link_reading(want.ifname.clone(), &l);
        r.addresses = links::ipv4_addresses(&h, l.index)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(r))
    }
    .await;
    let peers = wireguard::read_peers_in(ns, &want.ifname)
        .await
        .map(|ps| {
            ps.into_iter()
                .map(|p| super::readings::PeerReading {
                    public_key: p.public_key,
                    allowed_ips: p.allowed_ips,
                    handshake_age: p.last_handshake_age,
                })
                .collect()
        })
        .map_err(|e| crate::error_chain(&e));
    let node_table = table(ns, crate::datapath::guard::AGENT_TABLE).await;
    MeshReading {
        link,
        peers,
        node_table,
    }
}

/// A network's namespace: devices, FDB, tables, DNS answers.
pub async fn network(net: &ExpectedNetwork, domain: &str) -> NetworkReading {
    let mut r = NetworkReading {
        id: net.id.clone(),
        namespace: netns::exists(&net.netns),
        links: Err("not read".into()),
        fdb: Err("not read".into()),
        tables: Err("not read".into()),
        dns: Vec::new(),
        containers: Vec::new(),
    };
    if !r.namespace {
        return r;
    }
    let ns = match NetnsFd::named(&net.netns) {
        Ok(ns) => ns,
        Err(e) => {
            r.namespace = false;
            r.links = Err(e.to_string());
            return r;
        }
    };
    match netns::handle_in(&ns).await {
        Err(e) => r.links = Err(e.to_string()),
        Ok(h) => match links::all(&h).await {
            Err(e) => r.links = Err(e.to_string()),
            Ok(all) => {
                r.fdb = match all.iter().find(|(n, _)| *n == net.vxlan) {
                    None => Ok(None),
                    Some((_, vx)) => fdb::read(&h, vx.index)
                        .await
                        .map(|es| {
                            Some(
                                es.iter()
                                    .map(|e| ExpectedFdb {
                                        mac: format_mac(&e.mac),
                                        dst: e.dst,
                                    })
                                    .collect(),
                            )
                        })
                        .map_err(|e| e.to_string()),
                };
                r.links = Ok(all.into_iter().map(|(n, l)| link_reading(n, &l)).collect());
            }
        },
    }
    let mut tables = Vec::new();
    let mut failed = None;
    for name in NETWORK_TABLES {
        match table(&ns, name).await {
            Ok(Some(t)) => tables.push(t),
            Ok(None) => {}
            Err(e) => failed = Some(e),
        }
    }
    r.tables = failed.map_or(Ok(tables), Err);
    for p in &net.ports {
        r.containers
            .push((p.host_ifname.clone(), container_link(p).await));
    }
    let names = probe_names(net, domain);
    let server = net.gateway.addr();
    r.dns = netns::run_in_async(&ns, move || {
        // A responder that let one query time out is not asked again: the
        // run stays short and every name carries the same reason.
        let mut silent: Option<String> = None;
        let mut out = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            let answer = match &silent {
                Some(why) => Err(why.clone()),
                None => query_a(server, &name, i as u16),
            };
            if let Err(why) = &answer
                && why.starts_with("no answer")
            {
                silent = Some(why.clone());
            }
            out.push(DnsAnswer { name, answer });
        }
        out
    })
    .await
    .unwrap_or_default();
    r
}

/// The container end of a port, in the container's namespace.
async fn container_link(p: &ExpectedPort) -> Result<Option<LinkReading>, String> {
    let path = Path::new(&p.container_netns);
    if p.container_netns.is_empty() || !path.exists() {
        return Ok(None);
    }
    let ns = NetnsFd::open_path(path).map_err(|e| e.to_string())?;
    let h = netns::handle_in(&ns).await.map_err(|e| e.to_string())?;
    let link = links::get(&h, &p.container_ifname)
        .await
        .map_err(|e| e.to_string())?;
    Ok(link.map(|l| link_reading(p.container_ifname.clone(), &l)))
}

/// One A query over UDP (`Ok(vec![])`: NXDOMAIN or no data).
fn query_a(server: Ipv4Addr, name: &str, id: u16) -> Result<Vec<Ipv4Addr>, String> {
    let qname = Name::from_ascii(name).map_err(|e| e.to_string())?;
    let mut msg = Message::query();
    msg.metadata.id = id ^ (std::process::id() as u16);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname, RecordType::A));
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(PROBE_TIMEOUT / 2))
        .map_err(|e| e.to_string())?;
    sock.send_to(&bytes, SocketAddr::new(server.into(), 53))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer from {server}:53 within {:?}", PROBE_TIMEOUT / 2)
        }
        _ => format!("{server}:53: {e}"),
    })?;
    let answer = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => return Err(format!("{server}:53 answered {code}")),
    }
    let mut ips: Vec<Ipv4Addr> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    ips.sort();
    Ok(ips)
}
