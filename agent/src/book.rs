//! The attachment book: every attachment of this node, the per-network
//! address pools and container numbers. Pure (no I/O): the agent persists
//! what it returns through an [`AttachmentStore`](super::store::AttachmentStore).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::Ipv4Net;
use privnet_core::rpc::{AttachRequest, AttachmentKey};

use super::store::AttachmentRecord;
use privnet_core::ipam::{IpamError, Ipv4Pool};
use privnet_core::mac::{container_mac, format_mac};
use privnet_core::naming::{NamePart, NamingError, validate_label};
use privnet_core::numbering::lowest_free;
use privnet_core::view::NetworkInfo;

/// Errors of the book.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// The pool has no free address.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A workload label is not a DNS label.
    #[error(transparent)]
    Naming(#[from] NamingError),
    /// The application id was not provided.
    #[error(
        "the application id is missing: set PRIVNET_APPLICATION_ID in CNI_ARGS (or the pod annotation)"
    )]
    MissingApplication,
    /// The requested container number is used by another live container.
    #[error("container number {number} of {application}/{process_type} is already used")]
    NumberTaken {
        /// Application id.
        application: String,
        /// Process type.
        process_type: String,
        /// The number.
        number: u32,
    },
    /// The key is attached to another network already.
    #[error("container {0} is already attached to network {1}")]
    OtherNetwork(String, String),
}

/// Owner recorded for addresses fenced off during one allocation.
const FOREIGN: &str = "(another node)";

/// Default process type when the workload does not say.
pub const DEFAULT_PROCESS_TYPE: &str = "web";

/// All attachments of this node.
#[derive(Debug, Default)]
pub struct AttachmentBook {
    records: BTreeMap<AttachmentKey, AttachmentRecord>,
    pools: HashMap<String, Ipv4Pool>,
}

/// Name of the bridge-side veth of an attachment: stable, ≤ 15 characters.
pub fn host_ifname(key: &AttachmentKey) -> String {
    // FNV-1a: stable across builds and platforms (unlike std's hasher).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key
        .container_id
        .bytes()
        .chain([0])
        .chain(key.ifname.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!(
        "{}{:010x}",
        super::datapath::guard::PORT_PREFIX,
        h & 0xff_ffff_ffff
    )
}

impl AttachmentBook {
    /// Rebuilds the book from persisted records. Records whose address
    /// conflicts with an earlier one are returned as rejected.
    pub fn restore(records: Vec<AttachmentRecord>) -> (Self, Vec<AttachmentRecord>) {
        let mut book = Self::default();
        let mut rejected = Vec::new();
        for r in records {
            let owner = owner(&r.key);
            let ok = book.pool(&r.network_id, r.address.trunc()).and_then(|p| {
                p.reserve(r.address.addr(), &owner)
                    .map(|_| p.restore_cursor(r.address.addr()))
            });
            match ok {
                Ok(()) => {
                    book.records.insert(r.key.clone(), r);
                }
                Err(_) => rejected.push(r),
            }
        }
        (book, rejected)
    }

    fn pool(&mut self, network_id: &str, subnet: Ipv4Net) -> Result<&mut Ipv4Pool, IpamError> {
        if self
            .pools
            .get(network_id)
            .is_none_or(|p| p.subnet() != subnet)
        {
            self.pools
                .insert(network_id.to_string(), Ipv4Pool::new(subnet)?);
        }
        Ok(self.pools.get_mut(network_id).expect("inserted above"))
    }

    /// The record of `key`.
    pub fn get(&self, key: &AttachmentKey) -> Option<&AttachmentRecord> {
        self.records.get(key)
    }

    /// Every record.
    pub fn records(&self) -> impl Iterator<Item = &AttachmentRecord> {
        self.records.values()
    }

    /// Networks with at least one local attachment.
    pub fn networks(&self) -> BTreeSet<&str> {
        self.records
            .values()
            .map(|r| r.network_id.as_str())
            .collect()
    }

    /// Attaches `req` to `network`. `numbers_in_use` lists the container
    /// numbers already used cluster-wide for the request's (app, type).
    /// Idempotent: an existing key on the same network returns its record.
    pub fn attach(
        &mut self,
        req: &AttachRequest,
        network: &NetworkInfo,
        numbers_in_use: &BTreeSet<u32>,
        addresses_in_use: &BTreeSet<std::net::Ipv4Addr>,
    ) -> Result<AttachmentRecord, BookError> {
        if let Some(r) = self.records.get(&req.key) {
            if r.network_id != network.id {
                return Err(BookError::OtherNetwork(
                    req.key.container_id.clone(),
                    r.network_id.clone(),
                ));
            }
            return Ok(r.clone());
        }
        let app = req
            .workload
            .application_id
            .clone()
            .ok_or(BookError::MissingApplication)?;
        validate_label(NamePart::ApplicationId, &app)?;
        let process_type = req
            .workload
            .process_type
            .clone()
            .unwrap_or_else(|| DEFAULT_PROCESS_TYPE.into());
        validate_label(NamePart::ProcessType, &process_type)?;
        let local: BTreeSet<u32> = self
            .records
            .values()
            .filter(|r| {
                r.network_id == network.id
                    && r.application_id == app
                    && r.process_type == process_type
            })
            .map(|r| r.container_number)
            .collect();
        let number = match req.workload.container_number {
            // An explicit number comes from the authority on numbers (the
            // admission webhook's compare-and-swap, the sandbox): only a
            // clash on this very node is refused; remote views may be stale.
            Some(n) if n == 0 || local.contains(&n) => {
                return Err(BookError::NumberTaken {
                    application: app,
                    process_type,
                    number: n,
                });
            }
            Some(n) => n,
            None => {
                lowest_free(&local.union(numbers_in_use).copied().collect()).expect("u32 space")
            }
        };
        let pool = self.pool(&network.id, network.subnet)?;
        // Addresses held on other nodes are fenced off for this allocation only.
        let fenced: Vec<_> = addresses_in_use
            .iter()
            .filter(|a| pool.reserve(**a, FOREIGN).is_ok())
            .copied()
            .collect();
        let allocated = pool.allocate(&owner(&req.key));
        for a in fenced {
            pool.release(a);
        }
        let ip = allocated?;
        let record = AttachmentRecord {
            key: req.key.clone(),
            network_id: network.id.clone(),
            address: Ipv4Net::new(ip, network.subnet.prefix_len())
                .expect("prefix from a valid net"),
            mac: format_mac(&container_mac(network.vni, ip)),
            application_id: app,
            process_type,
            container_number: number,
            netns: req.netns.clone(),
            host_ifname: host_ifname(&req.key),
        };
        self.records.insert(record.key.clone(), record.clone());
        Ok(record)
    }

    /// Releases `key` (None when unknown).
    pub fn release(&mut self, key: &AttachmentKey) -> Option<AttachmentRecord> {
        let record = self.records.remove(key)?;
        if let Some(pool) = self.pools.get_mut(&record.network_id) {
            pool.release(record.address.addr());
        }
        Some(record)
    }

    /// Releases every attachment (of `network_id`, if given) not in `valid`.
    pub fn gc(
        &mut self,
        network_id: Option<&str>,
        valid: &BTreeSet<AttachmentKey>,
    ) -> Vec<AttachmentRecord> {
        let doomed: Vec<AttachmentKey> = self
            .records
            .values()
            .filter(|r| network_id.is_none_or(|n| n == r.network_id) && !valid.contains(&r.key))
            .map(|r| r.key.clone())
            .collect();
        doomed.iter().filter_map(|k| self.release(k)).collect()
    }
}

fn owner(key: &AttachmentKey) -> String {
    format!("{}/{}", key.container_id, key.ifname)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AttachmentStore, MemoryStore};
    use privnet_core::rpc::{NetworkSelector, Workload};

    fn net() -> NetworkInfo {
        NetworkInfo {
            id: "pn-a".into(),
            project: "p".into(),
            vni: 4096,
            subnet: "10.240.0.0/29".parse().unwrap(),
            mtu: None,
        }
    }

    fn req(cid: &str, app: &str, number: Option<u32>) -> AttachRequest {
        AttachRequest {
            key: AttachmentKey {
                container_id: cid.into(),
                ifname: "eth1".into(),
            },
            netns: format!("/run/netns/{cid}"),
            network: NetworkSelector {
                network_id: Some("pn-a".into()),
                ..Default::default()
            },
            workload: Workload {
                application_id: Some(app.into()),
                process_type: None,
                container_number: number,
            },
            answer_early: false,
        }
    }

    #[test]
    fn allocates_distinct_addresses_and_lowest_free_numbers() {
        let mut book = AttachmentBook::default();
        let a = book
            .attach(
                &req("a", "app", None),
                &net(),
                &BTreeSet::new(),
                &BTreeSet::new(),
            )
            .unwrap();
        let b = book
            .attach(
                &req("b", "app", None),
                &net(),
                &BTreeSet::from([2]),
                &BTreeSet::new(),
            )
            .unwrap();
        assert_ne!(a.address, b.address);
        assert_eq!((a.container_number, b.container_number), (1, 3));
        assert_eq!(a.address.to_string(), "10.240.0.2/29");
        assert_eq!(a.process_type, "web");
        assert!(a.host_ifname.len() <= 15);
        // Retried ADD returns the same record.
        assert_eq!(
            book.attach(
                &req("a", "app", None),
                &net(),
                &BTreeSet::new(),
                &BTreeSet::new()
            )
            .unwrap(),
            a
        );
        book.release(&a.key).unwrap();
        let c = book
            .attach(
                &req("c", "app", None),
                &net(),
                &BTreeSet::new(),
                &BTreeSet::new(),
            )
            .unwrap();
        assert_eq!(c.container_number, 1, "numbers are reused after release");
    }

    #[test]
    fn addresses_used_elsewhere_are_skipped() {
        let mut book = AttachmentBook::default();
        let used = BTreeSet::from(["10.240.0.2".parse().unwrap(), "10.240.0.3".parse().unwrap()]);
        let a = book
            .attach(&req("a", "app", None), &net(), &BTreeSet::new(), &used)
            .unwrap();
        assert_eq!(a.address.to_string(), "10.240.0.4/29");
        let b = book
            .attach(
                &req("b", "app", None),
                &net(),
                &BTreeSet::new(),
                &BTreeSet::new(),
            )
            .unwrap();
        assert_eq!(
            b.address.to_string(),
            "10.240.0.5/29",
            "fences are not kept"
        );
    }

    #[test]
    fn exhaustion_and_bad_input_are_typed_errors() {
        let mut book = AttachmentBook::default();
        // /29: 6 hosts, gateway reserved → 5 addresses.
        for i in 0..5 {
            book.attach(
                &req(&format!("c{i}"), "app", None),
                &net(),
                &BTreeSet::new(),
                &BTreeSet::new(),
            )
            .unwrap();
        }
        let err = book
            .attach(
                &req("c6", "app", None),
                &net(),
                &BTreeSet::new(),
                &BTreeSet::new(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("10.240.0.0/29"), "{err}");
        let err = book
            .attach(
                &req("x", "Bad_App", None),
                &net(),
                &BTreeSet::new(),
                &BTreeSet::new(),
            )
            .unwrap_err();
        assert!(matches!(err, BookError::Naming(_)), "{err}");
        let mut book = AttachmentBook::default();
        book.attach(
            &req("a", "app", Some(1)),
            &net(),
            &BTreeSet::new(),
            &BTreeSet::new(),
        )
        .unwrap();
        let err = book
            .attach(
                &req("b", "app", Some(1)),
                &net(),
                &BTreeSet::new(),
                &BTreeSet::new(),
            )
            .unwrap_err();
        assert!(
            matches!(err, BookError::NumberTaken { number: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn restore_from_store_keeps_addresses_and_gc_frees_the_rest() {
        let mut store = MemoryStore::default();
        let mut book = AttachmentBook::default();
        for cid in ["a", "b", "c"] {
            store
                .put(
                    &book
                        .attach(
                            &req(cid, "app", None),
                            &net(),
                            &BTreeSet::new(),
                            &BTreeSet::new(),
                        )
                        .unwrap(),
                )
                .unwrap();
        }
        let (mut restored, rejected) = AttachmentBook::restore(store.load().unwrap());
        assert!(rejected.is_empty());
        let d = restored
            .attach(
                &req("d", "app", None),
                &net(),
                &BTreeSet::new(),
                &BTreeSet::new(),
            )
            .unwrap();
        assert!(
            restored
                .records()
                .filter(|r| r.key.container_id != "d")
                .all(|r| r.address != d.address)
        );
        let keep = BTreeSet::from([d.key.clone()]);
        let freed = restored.gc(Some("pn-a"), &keep);
        assert_eq!(freed.len(), 3);
        assert_eq!(restored.records().count(), 1);
    }
}
