//! A tiny DNS client run from inside a container's namespace (on a
//! dedicated thread): used to wait for convergence and by tests.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::agent::datapath::netns::{self, NetnsFd};

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
    let answer = match Message::from_vec(&buf[..n]) {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
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
