//! The seam between the DNS server and the zone model: what a zone answers
//! for one question.

use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

/// Answer of a zone to an A (or any-type) question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneAnswer {
    /// The name exists and has these addresses.
    Addresses(Vec<Ipv4Addr>),
    /// The name exists, no record of the asked type (NODATA).
    NoData,
    /// The name does not exist in the zone (NXDOMAIN).
    NxDomain,
    /// The name is a reverse (PTR) name of the network: these names.
    Pointers(Vec<String>),
    /// The name is not in this zone: forward it.
    OutOfZone,
}

/// SOA fields used in negative answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// Zone origin, absolute, lowercase, with the trailing dot.
    pub origin: String,
    /// Current serial.
    pub serial: u32,
    /// TTL of answers and negative caching.
    pub ttl: u32,
    /// Address of `ns.<origin>` (the gateway).
    pub ns_address: Ipv4Addr,
}

/// A zone the server can answer from.
pub trait ZoneSource: Send + Sync + 'static {
    /// Answers `qname` (lowercase, absolute with trailing dot).
    fn answer(&self, qname: &str) -> ZoneAnswer;
    /// The zone's SOA.
    fn soa(&self) -> Soa;
    /// Changes whenever any answer may have changed (the SOA serial): answer
    /// caches compare it on every query, so it must be cheap.
    fn version(&self) -> u32 {
        self.soa().serial
    }
}

/// A zone shared with the agent, replaced or updated in place on change.
pub type SharedZone<Z> = Arc<RwLock<Z>>;

impl<Z: ZoneSource> ZoneSource for RwLock<Z> {
    fn answer(&self, qname: &str) -> ZoneAnswer {
        self.read().expect("zone lock poisoned").answer(qname)
    }
    fn soa(&self) -> Soa {
        self.read().expect("zone lock poisoned").soa()
    }
    fn version(&self) -> u32 {
        self.read().expect("zone lock poisoned").version()
    }
}

/// The core zone model is what every responder serves.
impl ZoneSource for privnet_core::zone::Zone {
    fn answer(&self, qname: &str) -> ZoneAnswer {
        use privnet_core::zone::{LookupResult, PtrResult};
        if qname.ends_with(".in-addr.arpa.") {
            return match self.lookup_ptr(qname) {
                PtrResult::Found(names) => ZoneAnswer::Pointers(names),
                PtrResult::NoData => ZoneAnswer::NoData,
                PtrResult::NxDomain => ZoneAnswer::NxDomain,
                PtrResult::OutOfZone => ZoneAnswer::OutOfZone,
            };
        }
        match self.lookup(qname) {
            LookupResult::Found(ips) => ZoneAnswer::Addresses(ips.to_vec()),
            LookupResult::NoData => ZoneAnswer::NoData,
            LookupResult::NxDomain => ZoneAnswer::NxDomain,
            LookupResult::OutOfZone => ZoneAnswer::OutOfZone,
        }
    }

    fn soa(&self) -> Soa {
        Soa {
            origin: self.origin().to_string(),
            serial: self.serial(),
            ttl: self.ttl(),
            ns_address: self.gateway(),
        }
    }

    fn version(&self) -> u32 {
        self.serial()
    }
}
