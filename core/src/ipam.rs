//! Per-network IPv4 address pool.
//!
//! Like CNI host-local: allocation continues round-robin after the last
//! allocated address, so a just-freed address is not handed out again at
//! once (stale ARP/DNS caches point at it for a while). The network and
//! broadcast addresses are never handed out and the first host is the
//! gateway. Allocation walks a `BTreeMap` from a cursor, so it costs
//! O(log n + run of taken addresses), not O(pool size).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use thiserror::Error;

/// Default subnet of every private network.
pub const DEFAULT_SUBNET: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 240, 0, 0), 22) {
    Ok(net) => net,
    Err(_) => panic!("valid constant"),
};
/// Shortest prefix accepted for a pool.
pub const MIN_PREFIX: u8 = 8;
/// Longest prefix accepted for a pool (one usable address).
pub const MAX_PREFIX: u8 = 30;

/// Errors of address allocation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IpamError {
    /// The prefix length is outside /8../30.
    #[error(
        "failed to create address pool {subnet}: prefix length must be within /{MIN_PREFIX}../{MAX_PREFIX}"
    )]
    InvalidPrefix {
        /// The rejected subnet.
        subnet: Ipv4Net,
    },
    /// Every assignable address is taken.
    #[error(
        "failed to allocate an address in {subnet}: all {capacity} assignable addresses are in use"
    )]
    Exhausted {
        /// The pool's subnet.
        subnet: Ipv4Net,
        /// Number of assignable addresses.
        capacity: u32,
    },
    /// The address is outside the subnet, or is its network, broadcast or gateway address.
    #[error("failed to reserve {addr} in {subnet}: it is {why}")]
    NotAssignable {
        /// The rejected address.
        addr: Ipv4Addr,
        /// The pool's subnet.
        subnet: Ipv4Net,
        /// `outside the subnet`, `the network address`, …
        why: &'static str,
    },
    /// The address already has an owner.
    #[error("failed to reserve {addr}: already allocated to {owner}")]
    AlreadyAllocated {
        /// The address.
        addr: Ipv4Addr,
        /// Its current owner.
        owner: String,
    },
}

/// The gateway of `net`: its first host address (`.1` of a /24).
/// Meaningful for prefixes up to /30.
pub fn gateway_of(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(1))
}

/// Why `addr` can never be a container's address in `subnet` (outside it,
/// or its network, broadcast or gateway address); `None` when it can. The
/// one rule the pool and the zone both apply.
pub fn not_assignable(subnet: Ipv4Net, addr: Ipv4Addr) -> Option<&'static str> {
    if !subnet.contains(&addr) {
        Some("outside the subnet")
    } else if addr == subnet.network() {
        Some("the network address")
    } else if addr == subnet.broadcast() {
        Some("the broadcast address")
    } else if addr == gateway_of(subnet) {
        Some("the gateway address")
    } else {
        None
    }
}

/// One network's address pool.
#[derive(Debug, Clone)]
pub struct Ipv4Pool {
    subnet: Ipv4Net,
    /// First assignable address (after the gateway).
    first: u32,
    /// Last assignable address (before the broadcast).
    last: u32,
    allocated: BTreeMap<u32, String>,
    last_allocated: Option<u32>,
}

impl Ipv4Pool {
    /// An empty pool over `subnet` (host bits are ignored).
    pub fn new(subnet: Ipv4Net) -> Result<Self, IpamError> {
        let subnet = subnet.trunc();
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&subnet.prefix_len()) {
            return Err(IpamError::InvalidPrefix { subnet });
        }
        Ok(Ipv4Pool {
            subnet,
            first: u32::from(subnet.network()) + 2,
            last: u32::from(subnet.broadcast()) - 1,
            allocated: BTreeMap::new(),
            last_allocated: None,
        })
    }

    /// The pool's subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The reserved gateway address.
    pub fn gateway(&self) -> Ipv4Addr {
        gateway_of(self.subnet)
    }

    /// Number of assignable addresses (size − network − broadcast − gateway).
    pub fn capacity(&self) -> u32 {
        self.last - self.first + 1
    }

    /// Number of allocated addresses.
    pub fn len(&self) -> usize {
        self.allocated.len()
    }

    /// Whether nothing is allocated.
    pub fn is_empty(&self) -> bool {
        self.allocated.is_empty()
    }

    /// The cursor: allocation resumes after this address. Persist it with the
    /// allocations and give it back to [`Ipv4Pool::restore_cursor`].
    pub fn last_allocated(&self) -> Option<Ipv4Addr> {
        self.last_allocated.map(Ipv4Addr::from)
    }

    /// Restores a persisted cursor (ignored when outside the pool).
    pub fn restore_cursor(&mut self, addr: Ipv4Addr) {
        let a = u32::from(addr);
        if (self.first..=self.last).contains(&a) {
            self.last_allocated = Some(a);
        }
    }

    /// Allocates the next free address after the cursor, wrapping around.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        let start = match self.last_allocated {
            Some(a) if a < self.last => a + 1,
            _ => self.first,
        };
        let found = self
            .first_free_in(start, self.last)
            .or_else(|| self.first_free_in(self.first, start.saturating_sub(1)))
            .ok_or(IpamError::Exhausted {
                subnet: self.subnet,
                capacity: self.capacity(),
            })?;
        self.allocated.insert(found, owner.to_owned());
        self.last_allocated = Some(found);
        Ok(Ipv4Addr::from(found))
    }

    /// First unallocated address in `from..=to`: skips the run of taken
    /// addresses starting at `from`.
    fn first_free_in(&self, from: u32, to: u32) -> Option<u32> {
        if from > to {
            return None;
        }
        let mut candidate = from;
        for &taken in self.allocated.range(from..=to).map(|(a, _)| a) {
            if taken != candidate {
                break;
            }
            candidate += 1;
        }
        (candidate <= to).then_some(candidate)
    }

    /// Allocates a specific address (e.g. rebuilding from persisted state).
    /// Does not move the cursor.
    pub fn reserve(&mut self, addr: Ipv4Addr, owner: &str) -> Result<(), IpamError> {
        let a = u32::from(addr);
        if let Some(why) = not_assignable(self.subnet, addr) {
            return Err(IpamError::NotAssignable {
                addr,
                subnet: self.subnet,
                why,
            });
        }
        if let Some(owner) = self.allocated.get(&a) {
            return Err(IpamError::AlreadyAllocated {
                addr,
                owner: owner.clone(),
            });
        }
        self.allocated.insert(a, owner.to_owned());
        Ok(())
    }

    /// Frees `addr`; returns its owner if it was allocated.
    pub fn release(&mut self, addr: Ipv4Addr) -> Option<String> {
        self.allocated.remove(&u32::from(addr))
    }

    /// Frees every address of `owner` (O(n)); returns them ascending.
    pub fn release_owner(&mut self, owner: &str) -> Vec<Ipv4Addr> {
        let freed: Vec<u32> = self
            .allocated
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(a, _)| *a)
            .collect();
        for a in &freed {
            self.allocated.remove(a);
        }
        freed.into_iter().map(Ipv4Addr::from).collect()
    }

    /// The owner of `addr`, if allocated.
    pub fn owner_of(&self, addr: Ipv4Addr) -> Option<&str> {
        self.allocated.get(&u32::from(addr)).map(String::as_str)
    }

    /// All allocations, ascending by address.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, &str)> {
        self.allocated
            .iter()
            .map(|(a, o)| (Ipv4Addr::from(*a), o.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn pool(s: &str) -> Ipv4Pool {
        Ipv4Pool::new(s.parse().unwrap()).unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn default_subnet_layout() {
        let mut p = Ipv4Pool::new(DEFAULT_SUBNET).unwrap();
        assert_eq!(p.gateway(), ip("10.240.0.1"));
        assert_eq!(gateway_of(DEFAULT_SUBNET), ip("10.240.0.1"));
        assert_eq!(p.capacity(), 1024 - 3);
        assert_eq!(p.allocate("a").unwrap(), ip("10.240.0.2"));
        assert_eq!(p.allocate("b").unwrap(), ip("10.240.0.3"));
        assert_eq!(p.owner_of(ip("10.240.0.3")), Some("b"));
    }

    #[test]
    fn round_robin_does_not_reuse_just_freed() {
        let mut p = pool("10.0.0.0/29"); // assignable .2 ..= .6
        let a = p.allocate("a").unwrap();
        let b = p.allocate("b").unwrap();
        assert_eq!(p.release(a).as_deref(), Some("a"));
        assert_eq!(
            p.allocate("c").unwrap(),
            ip("10.0.0.4"),
            "continues after {b}"
        );
        assert_eq!(p.allocate("d").unwrap(), ip("10.0.0.5"));
        assert_eq!(p.allocate("e").unwrap(), ip("10.0.0.6"));
        assert_eq!(
            p.allocate("f").unwrap(),
            ip("10.0.0.2"),
            "wraps to the freed one"
        );
        let err = p.allocate("g").unwrap_err();
        assert_eq!(
            err,
            IpamError::Exhausted {
                subnet: "10.0.0.0/29".parse().unwrap(),
                capacity: 5
            }
        );
        assert!(
            err.to_string().contains("10.0.0.0/29") && err.to_string().contains('5'),
            "{err}"
        );
    }

    #[test]
    fn reserve_checks_range_and_duplicates() {
        let mut p = pool("10.0.0.0/24");
        for (addr, why) in [
            ("10.0.1.5", "outside the subnet"),
            ("10.0.0.0", "the network address"),
            ("10.0.0.255", "the broadcast address"),
            ("10.0.0.1", "the gateway address"),
        ] {
            match p.reserve(ip(addr), "x") {
                Err(IpamError::NotAssignable { why: got, .. }) => assert_eq!(got, why),
                other => panic!("{addr}: {other:?}"),
            }
        }
        p.reserve(ip("10.0.0.2"), "x").unwrap();
        assert_eq!(
            p.reserve(ip("10.0.0.2"), "y"),
            Err(IpamError::AlreadyAllocated {
                addr: ip("10.0.0.2"),
                owner: "x".into()
            })
        );
        assert_eq!(p.allocate("y").unwrap(), ip("10.0.0.3"), "skips reserved");
        assert_eq!(p.release_owner("x"), vec![ip("10.0.0.2")]);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn prefix_limits_and_cursor_restore() {
        assert!(matches!(
            Ipv4Pool::new("10.0.0.0/31".parse().unwrap()),
            Err(IpamError::InvalidPrefix { .. })
        ));
        assert!(matches!(
            Ipv4Pool::new("10.0.0.0/7".parse().unwrap()),
            Err(IpamError::InvalidPrefix { .. })
        ));
        let mut p30 = pool("10.0.0.0/30");
        assert_eq!(p30.capacity(), 1);
        assert_eq!(p30.allocate("a").unwrap(), ip("10.0.0.2"));
        assert!(p30.allocate("b").is_err());
        let mut p = pool("10.0.0.0/24");
        p.restore_cursor(ip("10.0.0.100"));
        assert_eq!(p.allocate("a").unwrap(), ip("10.0.0.101"));
        assert_eq!(p.last_allocated(), Some(ip("10.0.0.101")));
        assert_eq!(
            pool("10.0.0.7/24").subnet(),
            "10.0.0.0/24".parse::<Ipv4Net>().unwrap()
        );
    }

    #[test]
    fn large_pool_allocation_is_fast() {
        let mut p = pool("10.0.0.0/16");
        for i in 0..60_000 {
            p.allocate(&i.to_string()).unwrap();
        }
        // Free one in the middle; the next allocations must not walk the whole map each time.
        p.release(ip("10.0.100.100"));
        let started = std::time::Instant::now();
        for i in 0..5_000 {
            p.allocate(&format!("n{i}")).unwrap();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    proptest! {
        #[test]
        fn pool_invariants(prefix in 26u8..=30, ops in proptest::collection::vec((0u8..3, 0u32..70), 1..200)) {
            let subnet = Ipv4Net::new(ip("192.168.8.0"), prefix).unwrap();
            let mut p = Ipv4Pool::new(subnet).unwrap();
            let capacity = (1u32 << (32 - prefix)) - 3;
            let mut model: BTreeSet<Ipv4Addr> = BTreeSet::new();
            for (op, v) in ops {
                let addr = Ipv4Addr::from(u32::from(subnet.network()) + v);
                match op {
                    0 => match p.allocate("o") {
                        Ok(a) => {
                            prop_assert!(subnet.contains(&a));
                            prop_assert!(a != subnet.network() && a != subnet.broadcast() && a != gateway_of(subnet));
                            prop_assert!(model.insert(a), "duplicate {}", a);
                        }
                        Err(IpamError::Exhausted { .. }) => prop_assert_eq!(model.len() as u32, capacity),
                        Err(e) => prop_assert!(false, "{e}"),
                    },
                    1 => prop_assert_eq!(p.release(addr).is_some(), model.remove(&addr)),
                    _ => {
                        let ok = p.reserve(addr, "r").is_ok();
                        let assignable = v >= 2 && v < (1 << (32 - prefix)) - 1;
                        prop_assert_eq!(ok, assignable && model.insert(addr));
                    }
                }
                prop_assert_eq!(p.iter().map(|(a, _)| a).collect::<BTreeSet<_>>(), model.clone());
            }
        }
    }
}
