//! A minimal DNS A-query client: encode one query, decode the rcode and A
//! records of the answer. Small enough to poll from many namespaces at a
//! few-millisecond period without spawning `dig` each time.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

/// Errors of one query.
#[derive(Debug, thiserror::Error)]
pub enum DnsWireError {
    /// A label is empty or longer than 63 bytes.
    #[error("failed to encode name {0:?}")]
    BadName(String),
    /// The reply is truncated or malformed.
    #[error("failed to decode the DNS reply: {0}")]
    Malformed(&'static str),
    /// Socket I/O (including timeouts).
    #[error("failed to query the DNS server")]
    Io(#[source] std::io::Error),
    /// Entering the namespace failed.
    #[error("failed to enter network namespace {0}")]
    Netns(String),
}

/// Rcode and sorted A records of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Response code (0 NOERROR, 3 NXDOMAIN, 5 REFUSED …).
    pub rcode: u8,
    /// A records in the answer section, sorted.
    pub addresses: Vec<Ipv4Addr>,
}

/// Encodes an A query with recursion desired.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, DnsWireError> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DnsWireError::BadName(name.to_string()));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(out)
}

fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, DnsWireError> {
    loop {
        let len = *msg
            .get(pos)
            .ok_or(DnsWireError::Malformed("name runs past the end"))?;
        match len {
            0 => return Ok(pos + 1),
            l if l & 0xC0 == 0xC0 => return Ok(pos + 2),
            l => pos += 1 + l as usize,
        }
    }
}

fn u16_at(msg: &[u8], pos: usize) -> Result<u16, DnsWireError> {
    msg.get(pos..pos + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(DnsWireError::Malformed("short header or record"))
}

/// Decodes a reply to the query with `id`.
pub fn decode_answer(id: u16, msg: &[u8]) -> Result<Answer, DnsWireError> {
    if u16_at(msg, 0)? != id {
        return Err(DnsWireError::Malformed("reply id does not match"));
    }
    let rcode = msg[3] & 0x0F;
    let (qd, an) = (u16_at(msg, 4)?, u16_at(msg, 6)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..an {
        pos = skip_name(msg, pos)?;
        let (rtype, rdlen) = (u16_at(msg, pos)?, u16_at(msg, pos + 8)? as usize);
        let rdata = msg
            .get(pos + 10..pos + 10 + rdlen)
            .ok_or(DnsWireError::Malformed("rdata runs past the end"))?;
        if rtype == 1 && rdlen == 4 {
            addresses.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        pos += 10 + rdlen;
    }
    addresses.sort();
    Ok(Answer { rcode, addresses })
}

/// A UDP client bound in the current namespace.
#[derive(Debug)]
pub struct Client {
    socket: UdpSocket,
    next_id: u16,
}

impl Client {
    /// Binds an ephemeral port; every query waits at most `timeout`.
    pub fn new(timeout: Duration) -> Result<Client, DnsWireError> {
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(DnsWireError::Io)?;
        socket
            .set_read_timeout(Some(timeout))
            .map_err(DnsWireError::Io)?;
        Ok(Client {
            socket,
            next_id: (std::process::id() & 0xFFFF) as u16,
        })
    }

    /// Asks `server:port` for the A records of `name`.
    pub fn query(&mut self, server: SocketAddr, name: &str) -> Result<Answer, DnsWireError> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        self.socket
            .send_to(&encode_query(id, name)?, server)
            .map_err(DnsWireError::Io)?;
        let mut buf = [0u8; 4096];
        loop {
            let (n, from) = self.socket.recv_from(&mut buf).map_err(DnsWireError::Io)?;
            // Late replies to earlier (timed-out) queries are skipped.
            if from == server && u16_at(&buf[..n], 0)? == id {
                return decode_answer(id, &buf[..n]);
            }
        }
    }
}

/// Moves the calling thread into network namespace `netns` (by name). Call
/// it only on a thread of its own: the thread stays there.
pub fn enter_netns(netns: &str) -> Result<(), DnsWireError> {
    let f =
        File::open(format!("/run/netns/{netns}")).map_err(|_| DnsWireError::Netns(netns.into()))?;
    setns(f.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|_| DnsWireError::Netns(netns.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a server writes it: the question, then answers whose
    /// owner is a compression pointer to it.
    fn reply(id: u16, rcode: u8, addrs: &[[u8; 4]]) -> Vec<u8> {
        let q = encode_query(id, "a.b.").unwrap();
        let mut m = q.clone();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(addrs.len() as u16 + 1).to_be_bytes());
        // A CNAME-like non-A record first: must be skipped.
        m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 5, 0, 2, 0xC0, 12]);
        for a in addrs {
            m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            m.extend_from_slice(a);
        }
        m
    }

    #[test]
    fn encodes_labels() {
        let q = encode_query(0x1234, "web.app.").unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x03web\x03app\x00\x00\x01\x00\x01");
        assert!(encode_query(1, "a..b").is_err());
    }

    #[test]
    fn decodes_sorted_a_records_and_rcode() {
        let a = decode_answer(7, &reply(7, 0, &[[10, 240, 0, 9], [10, 240, 0, 3]])).unwrap();
        assert_eq!(a.rcode, 0);
        assert_eq!(
            a.addresses,
            vec![Ipv4Addr::new(10, 240, 0, 3), Ipv4Addr::new(10, 240, 0, 9)]
        );
        let nx = decode_answer(8, &reply(8, 3, &[])).unwrap();
        assert_eq!((nx.rcode, nx.addresses.len()), (3, 0));
    }

    #[test]
    fn rejects_wrong_id_and_truncation() {
        assert!(decode_answer(1, &reply(2, 0, &[])).is_err());
        let mut r = reply(3, 0, &[[1, 2, 3, 4]]);
        r.truncate(r.len() - 2);
        assert!(decode_answer(3, &r).is_err());
    }
}
