//! DNS request handling (hickory-server `RequestHandler`): authoritative
//! answers from the network's zone, forwarding for everything else.
//! Names of other networks are simply out of this zone's data and get the
//! same answer as any name that does not exist.

use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;

use hickory_proto::op::{Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::answer::{Soa, ZoneAnswer, ZoneSource};
use super::forward::Forwarder;
use super::rotation::{Turn, rotate_records};

/// Counters of the responders: Prometheus counters (shared atomics), so
/// the agent's `/metrics` exposes them as they are, with no copying.
#[derive(Debug, Default, Clone)]
pub struct DnsCounters {
    /// Authoritative answers.
    pub answered: Counter,
    /// NXDOMAIN / NODATA answers.
    pub negative: Counter,
    /// Forwarded queries.
    pub forwarded: Counter,
    /// Failures (SERVFAIL, REFUSED, FORMERR).
    pub failed: Counter,
}

/// The private DNS handler of one network.
pub struct PrivateDns {
    zone: Arc<dyn ZoneSource>,
    forwarder: Option<Forwarder>,
    counters: Arc<DnsCounters>,
    /// Rotation step of multi-address answers (cyclic order).
    turn: Turn,
}

impl PrivateDns {
    /// Handler answering from `zone`, forwarding to `forwarder` (REFUSED when none).
    pub fn new(
        zone: Arc<dyn ZoneSource>,
        forwarder: Option<Forwarder>,
        counters: Arc<DnsCounters>,
    ) -> Self {
        Self {
            zone,
            forwarder,
            counters,
            turn: Turn::default(),
        }
    }
}

pub(super) enum Outcome {
    Answer(Vec<Record>),
    Negative(ResponseCode, Box<Record>),
    Forward,
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap_or_else(|_| Name::root())
}

fn soa_record(soa: &Soa) -> Record {
    let origin = name(&soa.origin);
    let rdata = SOA::new(
        name(&format!("ns.{}", soa.origin)),
        name(&format!("hostmaster.{}", soa.origin)),
        soa.serial,
        3600,
        600,
        86400,
        soa.ttl,
    );
    Record::from_rdata(origin, soa.ttl, RData::SOA(rdata))
}

/// Decides the answer to (qname, qtype) from the zone alone (pure).
pub(super) fn decide(zone: &dyn ZoneSource, qname: &Name, qtype: RecordType) -> Outcome {
    let lower = qname.to_lowercase().to_ascii();
    let lower = if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    };
    let soa = zone.soa();
    let ttl = soa.ttl;
    if lower == soa.origin {
        return match qtype {
            RecordType::SOA => Outcome::Answer(vec![soa_record(&soa)]),
            RecordType::NS => {
                let ns = Record::from_rdata(
                    qname.clone(),
                    ttl,
                    RData::NS(NS(name(&format!("ns.{}", soa.origin)))),
                );
                Outcome::Answer(vec![ns])
            }
            _ => Outcome::Negative(ResponseCode::NoError, Box::new(soa_record(&soa))),
        };
    }
    if lower == format!("ns.{}", soa.origin) {
        return match qtype {
            RecordType::A | RecordType::ANY => Outcome::Answer(vec![Record::from_rdata(
                qname.clone(),
                ttl,
                RData::A(A(soa.ns_address)),
            )]),
            _ => Outcome::Negative(ResponseCode::NoError, Box::new(soa_record(&soa))),
        };
    }
    match zone.answer(&lower) {
        ZoneAnswer::Addresses(ips) if matches!(qtype, RecordType::A | RecordType::ANY) => {
            let records = ips
                .into_iter()
                .map(|ip| Record::from_rdata(qname.clone(), ttl, RData::A(A(ip))))
                .collect();
            Outcome::Answer(records)
        }
        ZoneAnswer::Pointers(names) if matches!(qtype, RecordType::PTR | RecordType::ANY) => {
            let records = names
                .iter()
                .map(|n| Record::from_rdata(qname.clone(), ttl, RData::PTR(PTR(name(n)))))
                .collect();
            Outcome::Answer(records)
        }
        ZoneAnswer::Addresses(_) | ZoneAnswer::Pointers(_) | ZoneAnswer::NoData => {
            Outcome::Negative(ResponseCode::NoError, Box::new(soa_record(&soa)))
        }
        ZoneAnswer::NxDomain => {
            Outcome::Negative(ResponseCode::NXDomain, Box::new(soa_record(&soa)))
        }
        // Names of other private networks answer exactly like names that do
        // not exist, and never leave the node.
        ZoneAnswer::OutOfZone if in_private_domain(&lower, &soa.origin) => {
            Outcome::Negative(ResponseCode::NXDomain, Box::new(soa_record(&soa)))
        }
        ZoneAnswer::OutOfZone => Outcome::Forward,
    }
}

/// Whether `name` is under the private domain (the origin minus its first label).
fn in_private_domain(name: &str, origin: &str) -> bool {
    let Some((_, domain)) = origin.split_once('.') else {
        return false;
    };
    name == domain || name.ends_with(&format!(".{domain}"))
}

fn failed(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    Header {
        metadata,
        counts: HeaderCounts::default(),
    }
    .into()
}

impl PrivateDns {
    async fn forward<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let Some(forwarder) = &self.forwarder else {
            return self.error(request, handle, ResponseCode::Refused).await;
        };
        let upstream = match forwarder
            .forward(request.as_slice())
            .await
            .ok()
            .and_then(|raw| Message::from_vec(&raw).ok())
        {
            Some(m) => m,
            None => return self.error(request, handle, ResponseCode::ServFail).await,
        };
        self.counters.forwarded.inc();
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = upstream.metadata.response_code;
        metadata.recursion_available = upstream.metadata.recursion_available;
        let response = MessageResponseBuilder::from_message_request(request).build(
            metadata,
            upstream.answers.iter(),
            upstream.authorities.iter(),
            std::iter::empty(),
            upstream
                .additionals
                .iter()
                .filter(|r| r.record_type() != RecordType::OPT),
        );
        handle
            .send_response(response)
            .await
            .unwrap_or_else(|_| failed(request, ResponseCode::ServFail))
    }

    async fn error<R: ResponseHandler>(
        &self,
        request: &Request,
        mut handle: R,
        code: ResponseCode,
    ) -> ResponseInfo {
        self.counters.failed.inc();
        let response = MessageResponseBuilder::from_message_request(request)
            .error_msg(&request.metadata, code);
        handle
            .send_response(response)
            .await
            .unwrap_or_else(|_| failed(request, code))
    }
}

#[async_trait::async_trait]
impl RequestHandler for PrivateDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut handle: R,
    ) -> ResponseInfo {
        if request.metadata.op_code != OpCode::Query {
            return self.error(request, handle, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            return self.error(request, handle, ResponseCode::FormErr).await;
        };
        let qname: Name = info.query.name().into();
        let outcome = decide(&*self.zone, &qname, info.query.query_type());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let builder = MessageResponseBuilder::from_message_request(request);
        let sent = match outcome {
            Outcome::Forward => return self.forward(request, handle).await,
            Outcome::Answer(mut records) => {
                rotate_records(&mut records, self.turn.next());
                self.counters.answered.inc();
                handle
                    .send_response(builder.build(metadata, records.iter(), [], [], []))
                    .await
            }
            Outcome::Negative(code, soa) => {
                self.counters.negative.inc();
                metadata.response_code = code;
                handle
                    .send_response(builder.build(metadata, [], [], [&*soa], []))
                    .await
            }
        };
        sent.unwrap_or_else(|_| failed(request, ResponseCode::ServFail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    struct Fixed;
    impl ZoneSource for Fixed {
        fn answer(&self, qname: &str) -> ZoneAnswer {
            match qname {
                "app.pn-1.private-network.internal." => {
                    ZoneAnswer::Addresses(vec![Ipv4Addr::new(10, 240, 0, 4)])
                }
                "worker.app.pn-1.private-network.internal." => ZoneAnswer::NoData,
                q if q.ends_with("pn-1.private-network.internal.") => ZoneAnswer::NxDomain,
                _ => ZoneAnswer::OutOfZone,
            }
        }
        fn soa(&self) -> Soa {
            Soa {
                origin: "pn-1.private-network.internal.".into(),
                serial: 7,
                ttl: 5,
                ns_address: Ipv4Addr::new(10, 240, 0, 1),
            }
        }
    }

    fn q(n: &str, t: RecordType) -> Outcome {
        decide(&Fixed, &Name::from_ascii(n).unwrap(), t)
    }

    #[test]
    fn decides_answers_negatives_and_forwarding() {
        match q("APP.pn-1.private-network.internal", RecordType::A) {
            Outcome::Answer(r) => assert_eq!(r.len(), 1),
            _ => panic!("expected an answer"),
        }
        assert!(matches!(
            q("app.pn-1.private-network.internal.", RecordType::AAAA),
            Outcome::Negative(ResponseCode::NoError, _)
        ));
        assert!(matches!(
            q("nope.pn-1.private-network.internal.", RecordType::A),
            Outcome::Negative(ResponseCode::NXDomain, _)
        ));
        assert!(matches!(
            q("pn-1.private-network.internal.", RecordType::SOA),
            Outcome::Answer(..)
        ));
        assert!(matches!(
            q("ns.pn-1.private-network.internal.", RecordType::A),
            Outcome::Answer(..)
        ));
        assert!(matches!(q("example.org.", RecordType::A), Outcome::Forward));
        // Another network's name: NXDOMAIN like a missing name, not forwarded.
        match (
            q("1.web.app.pn-2.private-network.internal.", RecordType::A),
            q("nope.pn-1.private-network.internal.", RecordType::A),
        ) {
            (Outcome::Negative(a, sa), Outcome::Negative(b, sb)) => {
                assert_eq!((a, sa), (b, sb));
                assert_eq!(a, ResponseCode::NXDomain);
            }
            _ => panic!("expected negative answers"),
        }
    }
}
