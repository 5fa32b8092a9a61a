//! Cluster-unique VXLAN network identifiers, stable once assigned.
//!
//! The allocator is rebuilt from the assignments read back from the API
//! (network id → VNI), so a network keeps its VNI across controller restarts.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use thiserror::Error;

/// Default VNI range: [`crate::defaults::VNI_RANGE`] (why: see there).
pub const DEFAULT_VNI_RANGE: RangeInclusive<u32> = crate::defaults::VNI_RANGE;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// Errors of VNI allocation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VniError {
    /// The configured range is empty, includes 0/1, or exceeds 24 bits.
    #[error(
        "failed to configure VNI range {start}..={end}: it must be non-empty and within 2..={MAX_VNI}"
    )]
    InvalidRange {
        /// First VNI of the range.
        start: u32,
        /// Last VNI of the range.
        end: u32,
    },
    /// A VNI range that is not `FIRST-LAST`.
    #[error("failed to parse VNI range {0:?}: expected FIRST-LAST, e.g. 1048576-16777215")]
    Unparsable(String),
    /// An existing assignment is not a usable VNI.
    #[error("failed to load VNI {vni} of network {network_id}: VNIs must be within 2..={MAX_VNI}")]
    InvalidVni {
        /// The network holding it.
        network_id: String,
        /// The rejected VNI.
        vni: u32,
    },
    /// Two networks claim the same VNI, or one network two VNIs.
    #[error("failed to load VNI assignments: {first} and {second} conflict over VNI {vni}")]
    Conflict {
        /// The VNI in conflict.
        vni: u32,
        /// The first claimant (network id).
        first: String,
        /// The second claimant (network id).
        second: String,
    },
    /// Every VNI of the range is assigned.
    #[error(
        "failed to assign a VNI to network {network_id}: all {size} VNIs of {start}..={end} are in use"
    )]
    Exhausted {
        /// The network that asked.
        network_id: String,
        /// First VNI of the range.
        start: u32,
        /// Last VNI of the range.
        end: u32,
        /// Number of VNIs in the range.
        size: u64,
    },
}

/// A VNI range as flags and chart values spell it: `FIRST-LAST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniRange(pub RangeInclusive<u32>);

impl VniRange {
    /// [`DEFAULT_VNI_RANGE`].
    pub const DEFAULT: VniRange = VniRange(DEFAULT_VNI_RANGE);

    /// Whether `vni` is in the range.
    pub fn contains(&self, vni: u32) -> bool {
        self.0.contains(&vni)
    }
}

impl std::fmt::Display for VniRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0.start(), self.0.end())
    }
}

impl std::str::FromStr for VniRange {
    type Err = VniError;

    /// `FIRST-LAST` (or one VNI), within 2..=2^24-1, first ≤ last.
    fn from_str(text: &str) -> Result<Self, VniError> {
        let bad = VniError::Unparsable(text.to_string());
        let (first, last) = text.split_once('-').unwrap_or((text, text));
        let first: u32 = first.trim().parse().map_err(|_| bad.clone())?;
        let last: u32 = last.trim().parse().map_err(|_| bad)?;
        if first < 2 || last > MAX_VNI || first > last {
            return Err(VniError::InvalidRange {
                start: first,
                end: last,
            });
        }
        Ok(VniRange(first..=last))
    }
}

/// VNI assignments of the whole cluster.
#[derive(Debug, Clone)]
pub struct VniAllocator {
    range: RangeInclusive<u32>,
    by_network: BTreeMap<String, u32>,
    by_vni: BTreeMap<u32, String>,
}

impl VniAllocator {
    /// Rebuilds the allocator from existing assignments. Assignments outside
    /// `range` are kept (stability beats a range change) but must be valid VNIs.
    pub fn new(
        range: RangeInclusive<u32>,
        existing: impl IntoIterator<Item = (String, u32)>,
    ) -> Result<Self, VniError> {
        let (start, end) = (*range.start(), *range.end());
        if start < 2 || end > MAX_VNI || start > end {
            return Err(VniError::InvalidRange { start, end });
        }
        let mut alloc = VniAllocator {
            range,
            by_network: BTreeMap::new(),
            by_vni: BTreeMap::new(),
        };
        for (network_id, vni) in existing {
            alloc.load(network_id, vni)?;
        }
        Ok(alloc)
    }

    fn load(&mut self, network_id: String, vni: u32) -> Result<(), VniError> {
        if !(2..=MAX_VNI).contains(&vni) {
            return Err(VniError::InvalidVni { network_id, vni });
        }
        if let Some(owner) = self.by_vni.get(&vni) {
            if *owner == network_id {
                return Ok(());
            }
            return Err(VniError::Conflict {
                vni,
                first: owner.clone(),
                second: network_id,
            });
        }
        if let Some(&other) = self.by_network.get(&network_id) {
            return Err(VniError::Conflict {
                vni: other,
                first: network_id.clone(),
                second: format!("{network_id} (again, with VNI {vni})"),
            });
        }
        self.by_vni.insert(vni, network_id.clone());
        self.by_network.insert(network_id, vni);
        Ok(())
    }

    /// The network's VNI: the existing one, else the lowest free one in range.
    pub fn assign(&mut self, network_id: &str) -> Result<u32, VniError> {
        if let Some(&vni) = self.by_network.get(network_id) {
            return Ok(vni);
        }
        let vni = self.lowest_free().ok_or_else(|| VniError::Exhausted {
            network_id: network_id.to_owned(),
            start: *self.range.start(),
            end: *self.range.end(),
            size: u64::from(*self.range.end() - *self.range.start()) + 1,
        })?;
        self.by_vni.insert(vni, network_id.to_owned());
        self.by_network.insert(network_id.to_owned(), vni);
        Ok(vni)
    }

    /// Frees the network's VNI (network deleted); returns it if there was one.
    pub fn release(&mut self, network_id: &str) -> Option<u32> {
        let vni = self.by_network.remove(network_id)?;
        self.by_vni.remove(&vni);
        Some(vni)
    }

    /// The network's VNI, if assigned.
    pub fn get(&self, network_id: &str) -> Option<u32> {
        self.by_network.get(network_id).copied()
    }

    /// Number of assigned VNIs.
    pub fn len(&self) -> usize {
        self.by_network.len()
    }

    /// Whether no VNI is assigned.
    pub fn is_empty(&self) -> bool {
        self.by_network.is_empty()
    }

    /// Walks the assigned VNIs of the range until the first gap.
    fn lowest_free(&self) -> Option<u32> {
        let mut candidate = *self.range.start();
        for &vni in self.by_vni.range(self.range.clone()).map(|(v, _)| v) {
            if vni != candidate {
                break;
            }
            candidate = candidate.checked_add(1)?;
        }
        self.range.contains(&candidate).then_some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn ranges_parse_print_and_refuse_nonsense() {
        let r: VniRange = "1048576-16777215".parse().unwrap();
        assert_eq!(r, VniRange::DEFAULT);
        assert_eq!(
            VniRange::DEFAULT.to_string().parse::<VniRange>().unwrap(),
            r
        );
        assert_eq!("5000".parse::<VniRange>().unwrap(), VniRange(5000..=5000));
        assert!(matches!(
            "x-3".parse::<VniRange>(),
            Err(VniError::Unparsable(_))
        ));
        for bad in ["1-100", "9-8", "2-16777216"] {
            assert!(
                matches!(bad.parse::<VniRange>(), Err(VniError::InvalidRange { .. })),
                "{bad}"
            );
        }
    }

    fn alloc(
        range: RangeInclusive<u32>,
        existing: &[(&str, u32)],
    ) -> Result<VniAllocator, VniError> {
        VniAllocator::new(range, existing.iter().map(|(n, v)| (n.to_string(), *v)))
    }

    #[test]
    fn stable_and_lowest_free() {
        let mut a = alloc(4096..=16_000_000, &[("pn-a", 4096), ("pn-b", 4098)]).unwrap();
        assert_eq!(a.assign("pn-a").unwrap(), 4096);
        assert_eq!(a.assign("pn-c").unwrap(), 4097);
        assert_eq!(a.assign("pn-d").unwrap(), 4099);
        assert_eq!(a.assign("pn-c").unwrap(), 4097, "stable");
        assert_eq!(a.release("pn-c"), Some(4097));
        assert_eq!(a.assign("pn-e").unwrap(), 4097);
        assert_eq!(a.get("pn-b"), Some(4098));
        assert_eq!(a.len(), 4);
    }

    #[test]
    fn conflicts_are_reported() {
        let err = alloc(DEFAULT_VNI_RANGE, &[("pn-a", 5000), ("pn-b", 5000)]).unwrap_err();
        assert_eq!(
            err,
            VniError::Conflict {
                vni: 5000,
                first: "pn-a".into(),
                second: "pn-b".into()
            }
        );
        assert!(matches!(
            alloc(DEFAULT_VNI_RANGE, &[("pn-a", 5000), ("pn-a", 5001)]),
            Err(VniError::Conflict { .. })
        ));
        assert!(alloc(DEFAULT_VNI_RANGE, &[("pn-a", 5000), ("pn-a", 5000)]).is_ok());
        assert!(matches!(
            alloc(DEFAULT_VNI_RANGE, &[("pn-a", 1)]),
            Err(VniError::InvalidVni { vni: 1, .. })
        ));
    }

    #[test]
    fn range_validation_and_exhaustion() {
        assert!(matches!(
            alloc(0..=10, &[]),
            Err(VniError::InvalidRange { .. })
        ));
        assert!(matches!(
            alloc(10..=MAX_VNI + 1, &[]),
            Err(VniError::InvalidRange { .. })
        ));
        assert!(matches!(
            alloc(RangeInclusive::new(10, 9), &[]),
            Err(VniError::InvalidRange { .. })
        ));
        let mut a = alloc(10..=11, &[("pn-old", 99)]).unwrap();
        assert_eq!(
            a.assign("pn-old").unwrap(),
            99,
            "out-of-range assignment kept"
        );
        assert_eq!(a.assign("pn-a").unwrap(), 10);
        assert_eq!(a.assign("pn-b").unwrap(), 11);
        let err = a.assign("pn-c").unwrap_err();
        assert!(
            matches!(err, VniError::Exhausted { size: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("all 2 VNIs of 10..=11"), "{err}");
    }

    proptest! {
        #[test]
        fn unique_in_range_exhausts_at_capacity(size in 1u32..40, ops in proptest::collection::vec((any::<bool>(), 0u8..60), 1..150)) {
            let range = 100..=(99 + size);
            let mut a = VniAllocator::new(range.clone(), []).unwrap();
            let mut model: BTreeMap<String, u32> = BTreeMap::new();
            for (assign, net) in ops {
                let net = format!("pn-{net}");
                if assign {
                    match a.assign(&net) {
                        Ok(vni) => {
                            prop_assert!(range.contains(&vni));
                            if let Some(&old) = model.get(&net) { prop_assert_eq!(old, vni); }
                            model.insert(net, vni);
                        }
                        Err(VniError::Exhausted { .. }) => {
                            prop_assert!(!model.contains_key(&net));
                            prop_assert_eq!(model.len() as u32, size);
                        }
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                } else {
                    prop_assert_eq!(a.release(&net), model.remove(&net));
                }
                let vnis: BTreeSet<u32> = model.values().copied().collect();
                prop_assert_eq!(vnis.len(), model.len(), "duplicate VNI");
            }
        }
    }
}
