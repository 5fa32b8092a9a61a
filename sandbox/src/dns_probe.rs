//! A tiny DNS client run from inside a container's namespace (on a
//! dedicated thread): used to wait for convergence and by tests.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use privnet_agent::datapath::netns::{self, NetnsFd};

/// Result of one A query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Addresses, sorted.
    Found(Vec<Ipv4Addr>),
    /// NXDOMAIN or NODATA.
    Negative(ResponseCode),
    /// No answer.
    Failed(String),
}

/// Asks `server` for the A records of `name`, from inside namespace `ns`.
pub fn query_a(ns: &str, server: Ipv4Addr, name: &str) -> Probe {
    let Ok(fd) = NetnsFd::named(ns) else {
        return Probe::Failed(format!("no namespace {ns}"));
    };
    let name = name.to_string();
    match netns::run_in(&fd, move || query_here(server, &name)) {
        Ok(p) => p,
        Err(e) => Probe::Failed(e.to_string()),
    }
}

fn query_tcp(server: Ipv4Addr, query: &[u8]) -> std::io::Result<Message> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &SocketAddr::new(server.into(), 53),
        Duration::from_secs(1),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    stream.write_all(&[&len.to_be_bytes()[..], query].concat())?;
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut body)?;
    Message::from_vec(&body).map_err(std::io::Error::other)
}

fn query_here(server: Ipv4Addr, name: &str) -> Probe {
    let fail = |e: &dyn std::fmt::Display| Probe::Failed(e.to_string());
    let qname = match Name::from_ascii(name) {
        Ok(n) => n,
        Err(e) => return fail(&e),
    };
    let mut msg = Message::query();
    msg.metadata.id = rand::random();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname, RecordType::A));
    let bytes = match msg.to_vec() {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let sock = match UdpSocket::bind("0.0.0.0:0") {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    if let Err(e) = sock.send_to(&bytes, SocketAddr::new(server.into(), 53)) {
        return fail(&e);
    }
    let mut buf = [0u8; 4096];
    let n = match sock.recv(&mut buf) {
        Ok(n) => n,
        Err(e) => return fail(&e),
    };
    let mut answer = match Message::from_vec(&buf[..n]) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    if answer.metadata.truncation {
        // Too many records for a datagram: ask again over TCP, like a resolver.
        answer = match query_tcp(server, &bytes) {
            Ok(m) => m,
            Err(e) => return fail(&e),
        };
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
    if ips.is_empty() {
        Probe::Negative(answer.metadata.response_code)
    } else {
        Probe::Found(ips)
    }
}
