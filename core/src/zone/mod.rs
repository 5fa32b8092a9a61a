//! The DNS zone of one private network: the model behind private DNS.
//!
//! Names, relative to the origin `<pn>.<domain>.`:
//!
//! | name            | A records                        |
//! |-----------------|----------------------------------|
//! | `<app>`         | the app's **web** containers     |
//! | `<type>.<app>`  | every container of that type     |
//! | `<n>.<type>.<app>` | that container                |
//! | `ns`            | the gateway (the DNS server)     |
//! | origin          | SOA/NS only (NODATA for A)       |
//!
//! An `<app>` with only non-web containers exists (it has children), so it
//! answers NODATA, not NXDOMAIN. The lookup table (lowercase relative name
//! → sorted addresses) is maintained on every upsert/remove in O(log n),
//! so the DNS responder answers with one hash lookup.

mod render;
mod reverse;
mod serial;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use thiserror::Error;

use super::ipam::gateway_of;
use super::naming::{DEFAULT_DOMAIN, NamingError, PrivateName, zone_origin};
pub use reverse::{PtrResult, reverse_origin};
pub use serial::{next_serial, serial_gt};

/// Process type whose containers `<app>` resolves to.
pub const WEB_PROCESS_TYPE: &str = "web";
/// Relative name of the zone's name server (the gateway).
pub const NS_LABEL: &str = "ns";
/// Default TTL of every record, short so changes show up quickly.
pub const DEFAULT_TTL: u32 = 5;

/// Errors of zone maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ZoneError {
    /// An endpoint name or the zone's own id/domain is invalid.
    #[error("failed to validate zone name")]
    InvalidName(#[source] NamingError),
    /// The endpoint belongs to another network.
    #[error("failed to add endpoint of network {got} to the zone of {expected}")]
    WrongNetwork {
        /// This zone's network id.
        expected: String,
        /// The endpoint's network id.
        got: String,
    },
    /// The application id collides with the zone's own `ns` name.
    #[error(
        "failed to add application {0:?} to the zone: the name is reserved for the name server"
    )]
    ReservedName(String),
    /// The address cannot belong to an endpoint of this network.
    #[error("failed to add {addr} to the zone: it is {why} of {subnet}")]
    AddressNotAssignable {
        /// The address.
        addr: Ipv4Addr,
        /// The network's subnet.
        subnet: Ipv4Net,
        /// `outside the subnet`, `the gateway address`, … (`ipam::not_assignable`)
        why: &'static str,
    },
    /// The subnet has no room for a gateway, or is wider than /8.
    #[error("failed to create zone: subnet {0} must have a prefix within /8../30")]
    InvalidSubnet(Ipv4Net),
}

/// Zone settings; `Default` gives the design's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    /// Domain under which the network's zone lives.
    pub domain: String,
    /// TTL of every record and negative-caching TTL (SOA minimum).
    pub ttl: u32,
    /// SOA refresh, seconds.
    pub refresh: u32,
    /// SOA retry, seconds.
    pub retry: u32,
    /// SOA expire, seconds.
    pub expire: u32,
    /// Serial to start from (e.g. the last published one); the first change
    /// publishes `initial_serial + 1`.
    pub initial_serial: u32,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        ZoneConfig {
            domain: DEFAULT_DOMAIN.to_owned(),
            ttl: DEFAULT_TTL,
            refresh: 300,
            retry: 60,
            expire: 86_400,
            initial_serial: 0,
        }
    }
}

/// One container in the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneEndpoint {
    /// Its private name.
    pub name: PrivateName,
    /// Its private address.
    pub address: Ipv4Addr,
}

/// Result of an A lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult<'a> {
    /// The name has these A records (sorted, unique).
    Found(&'a [Ipv4Addr]),
    /// The name exists but has no A record.
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// The name is not under the origin (forward it).
    OutOfZone,
}

/// The SOA record's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoaRecord {
    /// Primary server, `ns.<origin>.`.
    pub mname: String,
    /// Responsible mailbox, `hostmaster.<origin>.`.
    pub rname: String,
    /// Current serial.
    pub serial: u32,
    /// Refresh, seconds.
    pub refresh: u32,
    /// Retry, seconds.
    pub retry: u32,
    /// Expire, seconds.
    pub expire: u32,
    /// Negative-caching TTL, seconds.
    pub minimum: u32,
}

/// Identity of an endpoint within the zone; orders rendering.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct EndpointKey {
    application_id: String,
    process_type: String,
    number: u32,
}

/// A name's A records and how many endpoints sit at or below it.
#[derive(Debug, Default, Clone)]
struct NameEntry {
    addrs: Vec<Ipv4Addr>,
    /// Extra references of an address held by several endpoints (rare, transient).
    extra_refs: BTreeMap<Ipv4Addr, u32>,
    endpoints_below: u32,
}

impl NameEntry {
    fn add_addr(&mut self, addr: Ipv4Addr) {
        match self.addrs.binary_search(&addr) {
            Ok(_) => *self.extra_refs.entry(addr).or_default() += 1,
            Err(pos) => self.addrs.insert(pos, addr),
        }
    }

    fn remove_addr(&mut self, addr: Ipv4Addr) {
        if let Some(refs) = self.extra_refs.get_mut(&addr) {
            *refs -= 1;
            if *refs == 0 {
                self.extra_refs.remove(&addr);
            }
        } else if let Ok(pos) = self.addrs.binary_search(&addr) {
            self.addrs.remove(pos);
        }
    }
}

/// The zone of one private network.
#[derive(Debug, Clone)]
pub struct Zone {
    network_id: String,
    /// `<pn>.<domain>.`, lowercase, absolute.
    origin: String,
    subnet: Ipv4Net,
    gateway: [Ipv4Addr; 1],
    config: ZoneConfig,
    serial: u32,
    endpoints: BTreeMap<EndpointKey, Ipv4Addr>,
    names: HashMap<String, NameEntry>,
    by_address: BTreeMap<Ipv4Addr, BTreeSet<EndpointKey>>,
}

impl Zone {
    /// An empty zone for `network_id` over `subnet` (gateway = first host).
    pub fn new(network_id: &str, subnet: Ipv4Net, config: ZoneConfig) -> Result<Self, ZoneError> {
        // Validates the network id and domain through a sample name.
        PrivateName::new(1, WEB_PROCESS_TYPE, "a", network_id, &config.domain)
            .map_err(ZoneError::InvalidName)?;
        let subnet = subnet.trunc();
        if !(8..=30).contains(&subnet.prefix_len()) {
            return Err(ZoneError::InvalidSubnet(subnet));
        }
        Ok(Zone {
            network_id: network_id.to_owned(),
            origin: format!("{}.", zone_origin(network_id, &config.domain)),
            subnet,
            gateway: [gateway_of(subnet)],
            serial: config.initial_serial,
            config,
            endpoints: BTreeMap::new(),
            names: HashMap::new(),
            by_address: BTreeMap::new(),
        })
    }

    /// `<pn>.<domain>.` (absolute, trailing dot).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The network id.
    pub fn network_id(&self) -> &str {
        &self.network_id
    }

    /// The network's subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The gateway, address of `ns.<origin>`.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway[0]
    }

    /// TTL of every record.
    pub fn ttl(&self) -> u32 {
        self.config.ttl
    }

    /// Current SOA serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether the zone has no endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The SOA record.
    pub fn soa(&self) -> SoaRecord {
        SoaRecord {
            mname: format!("{NS_LABEL}.{}", self.origin),
            rname: format!("hostmaster.{}", self.origin),
            serial: self.serial,
            refresh: self.config.refresh,
            retry: self.config.retry,
            expire: self.config.expire,
            minimum: self.config.ttl,
        }
    }

    /// All endpoints, in render order (app, type, number).
    pub fn endpoints(&self) -> impl Iterator<Item = ZoneEndpoint> + '_ {
        self.endpoints.iter().map(|(k, addr)| ZoneEndpoint {
            name: PrivateName {
                number: k.number,
                process_type: k.process_type.clone(),
                application_id: k.application_id.clone(),
                network_id: self.network_id.clone(),
            },
            address: *addr,
        })
    }

    /// Adds or moves an endpoint; bumps the serial if anything changed.
    /// Returns whether it changed.
    pub fn upsert(&mut self, endpoint: &ZoneEndpoint) -> Result<bool, ZoneError> {
        let changed = self.apply_upsert(endpoint)?;
        if changed {
            self.serial = next_serial(self.serial);
        }
        Ok(changed)
    }

    /// Removes an endpoint; bumps the serial if it was present.
    pub fn remove(&mut self, name: &PrivateName) -> Option<Ipv4Addr> {
        if name.network_id != self.network_id {
            return None;
        }
        let removed = self.apply_remove(&key_of(name));
        if removed.is_some() {
            self.serial = next_serial(self.serial);
        }
        removed
    }

    /// Makes the zone hold exactly `endpoints`, bumping the serial once if
    /// anything changed. Validates everything before changing anything.
    pub fn sync(&mut self, endpoints: &[ZoneEndpoint]) -> Result<bool, ZoneError> {
        for ep in endpoints {
            self.check(ep)?;
        }
        let wanted: BTreeSet<EndpointKey> = endpoints.iter().map(|e| key_of(&e.name)).collect();
        let stale: Vec<EndpointKey> = self
            .endpoints
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        let mut changed = false;
        for key in &stale {
            changed |= self.apply_remove(key).is_some();
        }
        for ep in endpoints {
            changed |= self.apply_upsert(ep)?;
        }
        if changed {
            self.serial = next_serial(self.serial);
        }
        Ok(changed)
    }

    fn check(&self, ep: &ZoneEndpoint) -> Result<(), ZoneError> {
        if ep.name.network_id != self.network_id {
            return Err(ZoneError::WrongNetwork {
                expected: self.network_id.clone(),
                got: ep.name.network_id.clone(),
            });
        }
        ep.name
            .validate(&self.config.domain)
            .map_err(ZoneError::InvalidName)?;
        if ep.name.application_id == NS_LABEL {
            return Err(ZoneError::ReservedName(ep.name.application_id.clone()));
        }
        let addr = ep.address;
        let why = crate::ipam::not_assignable(self.subnet, addr);
        match why {
            Some(why) => Err(ZoneError::AddressNotAssignable {
                addr,
                subnet: self.subnet,
                why,
            }),
            None => Ok(()),
        }
    }

    fn apply_upsert(&mut self, ep: &ZoneEndpoint) -> Result<bool, ZoneError> {
        self.check(ep)?;
        let key = key_of(&ep.name);
        if self.endpoints.get(&key) == Some(&ep.address) {
            return Ok(false);
        }
        self.apply_remove(&key);
        for (name, has_addr) in names_of(&key) {
            let entry = self.names.entry(name).or_default();
            entry.endpoints_below += 1;
            if has_addr {
                entry.add_addr(ep.address);
            }
        }
        self.by_address
            .entry(ep.address)
            .or_default()
            .insert(key.clone());
        self.endpoints.insert(key, ep.address);
        Ok(true)
    }

    fn apply_remove(&mut self, key: &EndpointKey) -> Option<Ipv4Addr> {
        let addr = self.endpoints.remove(key)?;
        for (name, has_addr) in names_of(key) {
            if let Some(entry) = self.names.get_mut(&name) {
                entry.endpoints_below -= 1;
                if has_addr {
                    entry.remove_addr(addr);
                }
                if entry.endpoints_below == 0 {
                    self.names.remove(&name);
                }
            }
        }
        if let Some(keys) = self.by_address.get_mut(&addr) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_address.remove(&addr);
            }
        }
        Some(addr)
    }

    /// A records of `qname` (absolute or not, any case).
    pub fn lookup(&self, qname: &str) -> LookupResult<'_> {
        let Some(relative) = self.relative(qname) else {
            return LookupResult::OutOfZone;
        };
        if relative.is_empty() {
            return LookupResult::NoData;
        }
        if relative == NS_LABEL {
            return LookupResult::Found(&self.gateway);
        }
        match self.names.get(relative.as_ref()) {
            Some(entry) if entry.addrs.is_empty() => LookupResult::NoData,
            Some(entry) => LookupResult::Found(&entry.addrs),
            None => LookupResult::NxDomain,
        }
    }

    /// `qname` relative to the origin, lowercase (`""` for the origin), or
    /// `None` when outside the zone.
    fn relative<'q>(&self, qname: &'q str) -> Option<Cow<'q, str>> {
        let name = qname.strip_suffix('.').unwrap_or(qname);
        let name: Cow<'q, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        let origin = &self.origin[..self.origin.len() - 1];
        if *name == *origin {
            return Some(Cow::Borrowed(""));
        }
        let prefix_len = name.len().checked_sub(origin.len() + 1)?;
        if !name.ends_with(origin) || name.as_bytes()[prefix_len] != b'.' {
            return None;
        }
        Some(match name {
            Cow::Borrowed(s) => Cow::Borrowed(&s[..prefix_len]),
            Cow::Owned(mut s) => {
                s.truncate(prefix_len);
                Cow::Owned(s)
            }
        })
    }

    /// Absolute name of an endpoint, `<n>.<type>.<app>.<origin>`.
    fn fqdn_of(&self, key: &EndpointKey) -> String {
        format!(
            "{}.{}.{}.{}",
            key.number, key.process_type, key.application_id, self.origin
        )
    }
}

fn key_of(name: &PrivateName) -> EndpointKey {
    EndpointKey {
        application_id: name.application_id.clone(),
        process_type: name.process_type.clone(),
        number: name.number,
    }
}

/// The three names an endpoint contributes to, and whether its address is
/// an A record of that name (`<app>` only for web containers).
fn names_of(key: &EndpointKey) -> [(String, bool); 3] {
    let type_name = format!("{}.{}", key.process_type, key.application_id);
    [
        (
            key.application_id.clone(),
            key.process_type == WEB_PROCESS_TYPE,
        ),
        (format!("{}.{type_name}", key.number), true),
        (type_name, true),
    ]
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
