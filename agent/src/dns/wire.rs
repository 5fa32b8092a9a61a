//! The UDP fast path of a responder: answers from a cache of encoded
//! responses, keyed by (lower-case question name, type, EDNS), rebuilt lazily
//! whenever the zone version changes. A hit costs a header parse, a hash
//! lookup and a copy with the query's id, RD bit and name case patched in.
//! Anything unusual (other opcodes, several questions, EDNS options or
//! versions, truncation) goes to the complete path built on hickory-proto.
//! Multi-address answers come in cyclic order ([`super::rotation`]): the
//! cache entry knows where its A records are and how often it was served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::answer::ZoneSource;
use super::handler::{Outcome, decide};
use super::rotation::{AddressRecords, Turn, address_records, rotate_records};

/// EDNS payload size we advertise (RFC 9715 / DNS flag day 2020).
const EDNS_PAYLOAD: u16 = 1232;
/// Classic UDP limit without EDNS.
const PLAIN_PAYLOAD: usize = 512;
/// Bound on cached responses (a zone has a few names per endpoint).
const MAX_CACHED: usize = 65_536;

/// What to do with one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back.
    Send(Vec<u8>),
    /// Out of zone: relay the query upstream.
    Forward,
    /// Not a query we answer (garbage, a response): stay silent.
    Drop,
}

/// The fixed-format part of a query, parsed without allocation.
struct Parsed<'a> {
    id: [u8; 2],
    recursion_desired: bool,
    /// Question name in wire format, as sent (case preserved).
    qname: &'a [u8],
    qtype: u16,
    edns: bool,
}

fn parse(q: &[u8]) -> Option<Parsed<'_>> {
    if q.len() < 17 {
        return None;
    }
    let (flags, counts) = (&q[2..4], &q[4..12]);
    // QR=0, opcode QUERY, and exactly one question, no answer/authority.
    if flags[0] & 0xf8 != 0 || counts[..6] != [0, 1, 0, 0, 0, 0] {
        return None;
    }
    let arcount = u16::from_be_bytes([counts[6], counts[7]]);
    let mut i = 12;
    loop {
        let len = *q.get(i)? as usize;
        if len & 0xc0 != 0 {
            return None; // no compression pointers in a question
        }
        i += 1 + len;
        if len == 0 {
            break;
        }
        if i - 12 > 255 {
            return None;
        }
    }
    let qname = &q[12..i];
    let rest = q.get(i..i + 4)?;
    let qtype = u16::from_be_bytes([rest[0], rest[1]]);
    if u16::from_be_bytes([rest[2], rest[3]]) != 1 {
        return None; // class IN only
    }
    let tail = &q[i + 4..];
    let edns = match arcount {
        0 if tail.is_empty() => false,
        // OPT: root name, type 41, version 0, no options.
        1 if tail.len() == 11
            && tail[0] == 0
            && tail[1..3] == [0, 41]
            && tail[6] == 0
            && tail[9..11] == [0, 0] =>
        {
            true
        }
        _ => return None,
    };
    Some(Parsed {
        id: [q[0], q[1]],
        recursion_desired: flags[0] & 1 == 1,
        qname,
        qtype,
        edns,
    })
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    qname: Vec<u8>,
    qtype: u16,
    edns: bool,
}

/// An encoded response and how to rotate it.
struct Entry {
    bytes: Box<[u8]>,
    /// Its A records, when there are several to rotate.
    addresses: Option<AddressRecords>,
    /// Answers given from it (the next rotation step).
    turn: Turn,
}

#[derive(Default)]
struct Cache {
    version: Option<u32>,
    entries: HashMap<Key, Arc<Entry>>,
}

/// The fast path of one responder.
pub struct WirePath {
    zone: Arc<dyn ZoneSource>,
    cache: Mutex<Cache>,
    /// Rotation step of the complete path.
    turn: Turn,
}

impl WirePath {
    /// Fast path over `zone`.
    pub fn new(zone: Arc<dyn ZoneSource>) -> Self {
        Self {
            zone,
            cache: Mutex::new(Cache::default()),
            turn: Turn::default(),
        }
    }

    /// Answers one datagram.
    pub fn reply(&self, query: &[u8]) -> Reply {
        let Some(p) = parse(query) else {
            return self.complete(query);
        };
        let key = Key {
            qname: p.qname.to_ascii_lowercase(),
            qtype: p.qtype,
            edns: p.edns,
        };
        let version = self.zone.version();
        let cached = {
            let mut cache = self.cache.lock().expect("cache lock");
            if cache.version != Some(version) {
                cache.entries.clear();
                cache.version = Some(version);
            }
            cache.entries.get(&key).cloned()
        };
        let entry = match cached {
            Some(e) => e,
            None => match self.encode(&key) {
                Some(bytes) => {
                    let entry = Arc::new(Entry {
                        addresses: address_records(&bytes, key.qname.len()),
                        bytes: bytes.into(),
                        turn: Turn::default(),
                    });
                    let mut cache = self.cache.lock().expect("cache lock");
                    if cache.version == Some(version) && cache.entries.len() < MAX_CACHED {
                        cache.entries.insert(key, entry.clone());
                    }
                    entry
                }
                None => return self.complete(query),
            },
        };
        let mut out = entry.bytes.to_vec();
        if let Some(addresses) = &entry.addresses {
            addresses.rotate(&mut out, entry.turn.next());
        }
        out[0..2].copy_from_slice(&p.id);
        if p.recursion_desired {
            out[2] |= 1;
        }
        out[12..12 + p.qname.len()].copy_from_slice(p.qname);
        Reply::Send(out)
    }

    /// Encodes the response for a cache key (id 0, RD clear, lower-case
    /// name); `None` when it cannot be cached (forwarded, or too large).
    fn encode(&self, key: &Key) -> Option<Vec<u8>> {
        let name = Name::from_labels(wire_labels(&key.qname)?).ok()?;
        let qtype = RecordType::from(key.qtype);
        let mut msg = response_skeleton(0, false, Query::query(name.clone(), qtype), key.edns);
        match decide(&*self.zone, &name, qtype) {
            Outcome::Forward => return None,
            Outcome::Answer(records) => msg.answers = records,
            Outcome::Negative(code, soa) => {
                msg.metadata.response_code = code;
                msg.authorities = vec![*soa];
            }
        }
        let bytes = msg.to_vec().ok()?;
        let limit = if key.edns {
            usize::from(EDNS_PAYLOAD)
        } else {
            PLAIN_PAYLOAD
        };
        (bytes.len() <= limit).then_some(bytes)
    }

    /// The complete path: any well-formed query, through hickory-proto.
    fn complete(&self, query: &[u8]) -> Reply {
        let Ok(msg) = Message::from_vec(query) else {
            return Reply::Drop;
        };
        if msg.metadata.message_type != MessageType::Query {
            return Reply::Drop;
        }
        let Some(q) = msg.queries.first().cloned() else {
            return Reply::Drop;
        };
        let mut out = response_skeleton(
            msg.metadata.id,
            msg.metadata.recursion_desired,
            q.clone(),
            msg.edns.is_some(),
        );
        if msg.metadata.op_code != OpCode::Query || msg.queries.len() != 1 {
            out.metadata.response_code = ResponseCode::NotImp;
            return encode_or_drop(out);
        }
        if msg.edns.as_ref().is_some_and(|e| e.version() > 0) {
            out.metadata.response_code = ResponseCode::BADVERS;
            return encode_or_drop(out);
        }
        match decide(&*self.zone, q.name(), q.query_type()) {
            Outcome::Forward => return Reply::Forward,
            Outcome::Answer(mut records) => {
                rotate_records(&mut records, self.turn.next());
                out.answers = records;
            }
            Outcome::Negative(code, soa) => {
                out.metadata.response_code = code;
                out.authorities = vec![*soa];
            }
        }
        let limit = msg
            .edns
            .as_ref()
            .map_or(PLAIN_PAYLOAD, |e| usize::from(e.max_payload().max(512)));
        match out.to_vec() {
            Ok(bytes) if bytes.len() <= limit => Reply::Send(bytes),
            Ok(_) => {
                // Too large for UDP: truncated, the client retries over TCP.
                out.answers.clear();
                out.authorities.clear();
                out.metadata.truncation = true;
                encode_or_drop(out)
            }
            Err(_) => Reply::Drop,
        }
    }
}

fn encode_or_drop(msg: Message) -> Reply {
    msg.to_vec().map_or(Reply::Drop, Reply::Send)
}

fn response_skeleton(id: u16, rd: bool, query: Query, edns: bool) -> Message {
    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    metadata.authoritative = true;
    metadata.recursion_desired = rd;
    let mut msg = Message::new(metadata.id, MessageType::Response, OpCode::Query);
    msg.metadata = metadata;
    msg.add_query(query);
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        msg.set_edns(e);
    }
    msg
}

/// Labels of a wire-format name (already validated by `parse`).
fn wire_labels(wire: &[u8]) -> Option<Vec<&[u8]>> {
    let mut labels = Vec::new();
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            return Some(labels);
        }
        labels.push(wire.get(i + 1..i + 1 + len as usize)?);
        i += 1 + len as usize;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dns::answer::{Soa, ZoneAnswer};

    struct Fixed(u32);
    impl ZoneSource for Fixed {
        fn answer(&self, qname: &str) -> ZoneAnswer {
            match qname {
                "app.pn-1.private-network.internal." => {
                    ZoneAnswer::Addresses(vec![Ipv4Addr::new(10, 240, 0, 4)])
                }
                q if q.ends_with("pn-1.private-network.internal.") => ZoneAnswer::NxDomain,
                _ => ZoneAnswer::OutOfZone,
            }
        }
        fn soa(&self) -> Soa {
            Soa {
                origin: "pn-1.private-network.internal.".into(),
                serial: self.0,
                ttl: 5,
                ns_address: Ipv4Addr::new(10, 240, 0, 1),
            }
        }
    }

    fn query(name: &str, id: u16, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap()
    }

    fn decode(r: Reply) -> Message {
        match r {
            Reply::Send(b) => Message::from_vec(&b).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cached_answers_carry_the_query_id_flags_and_case() {
        let path = WirePath::new(Arc::new(Fixed(1)));
        for (id, name) in [
            (7u16, "app.pn-1.private-network.internal."),
            (9, "APP.Pn-1.private-network.internal."),
        ] {
            let m = decode(path.reply(&query(name, id, false)));
            assert_eq!(m.metadata.id, id);
            assert!(m.metadata.recursion_desired && m.metadata.authoritative);
            assert_eq!(
                m.queries[0].name().to_ascii(),
                name,
                "the question is echoed as sent"
            );
            assert_eq!(m.answers.len(), 1);
        }
        assert_eq!(
            path.cache.lock().unwrap().entries.len(),
            1,
            "both queries share one entry"
        );
        let m = decode(path.reply(&query("nope.pn-1.private-network.internal.", 3, true)));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.edns.is_some(), "EDNS answered with EDNS");
        assert_eq!(m.authorities.len(), 1, "SOA for negative caching");
        assert_eq!(path.reply(&query("example.org.", 4, false)), Reply::Forward);
    }

    #[test]
    fn matches_the_complete_path_and_rejects_garbage() {
        let path = WirePath::new(Arc::new(Fixed(1)));
        let q = query("app.pn-1.private-network.internal.", 5, false);
        assert_eq!(path.reply(&q), path.complete(&q));
        assert_eq!(path.reply(&[1, 2, 3]), Reply::Drop);
        let mut response = q.clone();
        response[2] |= 0x80;
        assert_eq!(
            path.reply(&response),
            Reply::Drop,
            "responses are never answered"
        );
    }

    /// The real zone with `web` containers 1..=4 of `app`.
    fn four_web_containers() -> privnet_core::zone::Zone {
        use privnet_core::naming::PrivateName;
        use privnet_core::zone::{Zone, ZoneConfig, ZoneEndpoint};
        let mut zone = Zone::new(
            "pn-1",
            "10.240.0.0/22".parse().unwrap(),
            ZoneConfig::default(),
        )
        .unwrap();
        for n in 1..=4u32 {
            let name = PrivateName {
                number: n,
                process_type: "web".into(),
                application_id: "app".into(),
                network_id: "pn-1".into(),
            };
            let address = Ipv4Addr::new(10, 240, 0, 1 + n as u8);
            zone.upsert(&ZoneEndpoint { name, address }).unwrap();
        }
        zone
    }

    /// How often each address came first in `answers`, each checked to
    /// hold all four addresses.
    fn first_places(answers: impl Iterator<Item = Message>) -> HashMap<Ipv4Addr, usize> {
        let mut firsts = HashMap::new();
        for m in answers {
            let ips: Vec<Ipv4Addr> = m
                .answers
                .iter()
                .map(|r| match &r.data {
                    hickory_proto::rr::RData::A(a) => a.0,
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            let mut sorted = ips.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                (2..=5)
                    .map(|h| Ipv4Addr::new(10, 240, 0, h))
                    .collect::<Vec<_>>()
            );
            *firsts.entry(ips[0]).or_default() += 1;
        }
        firsts
    }

    #[test]
    fn a_thousand_lookups_put_each_of_four_containers_first_about_250_times() {
        let zone: Arc<dyn ZoneSource> = Arc::new(std::sync::RwLock::new(four_web_containers()));
        let path = WirePath::new(zone);
        let name = "app.pn-1.private-network.internal.";
        // Fast path (with and without EDNS: two cache entries, each cyclic).
        let fast =
            first_places((0..1000u16).map(|i| decode(path.reply(&query(name, i, i % 2 == 0)))));
        // Complete path (what a query the fast path does not take gets).
        let complete =
            first_places((0..1000u16).map(|i| decode(path.complete(&query(name, i, false)))));
        for (what, firsts) in [("fast", fast), ("complete", complete)] {
            assert_eq!(firsts.len(), 4, "{what}: {firsts:?}");
            for (ip, n) in &firsts {
                assert!(
                    (200..=300).contains(n),
                    "{what}: {ip} first {n} times of 1000"
                );
            }
        }
        // Control: without rotation one container takes every first place
        // (what the test would see if the order were fixed).
        let fixed = first_places((0..1000u16).map(|i| {
            let entry = path
                .cache
                .lock()
                .unwrap()
                .entries
                .values()
                .next()
                .unwrap()
                .clone();
            let mut bytes = entry.bytes.to_vec();
            bytes[0..2].copy_from_slice(&i.to_be_bytes());
            Message::from_vec(&bytes).unwrap()
        }));
        assert_eq!(fixed.values().copied().max(), Some(1000), "{fixed:?}");
    }

    #[test]
    fn a_zone_change_invalidates_the_cache() {
        let zone = Arc::new(std::sync::RwLock::new(Fixed(1)));
        let path = WirePath::new(zone.clone());
        path.reply(&query("app.pn-1.private-network.internal.", 1, false));
        zone.write().unwrap().0 = 2;
        path.reply(&query("nope.pn-1.private-network.internal.", 1, false));
        let cache = path.cache.lock().unwrap();
        assert_eq!((cache.version, cache.entries.len()), (Some(2), 1));
    }
}
