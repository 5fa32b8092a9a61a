//! Container numbers: the lowest free positive integer per
//! (network, application, process type), reused once a container is gone.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

/// Scope within which container numbers are unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NumberKey {
    /// Private network id.
    pub network_id: String,
    /// Application id.
    pub application_id: String,
    /// Process type, e.g. `web`.
    pub process_type: String,
}

impl NumberKey {
    /// Builds a key from its three parts.
    pub fn new(network_id: &str, application_id: &str, process_type: &str) -> Self {
        NumberKey {
            network_id: network_id.to_owned(),
            application_id: application_id.to_owned(),
            process_type: process_type.to_owned(),
        }
    }
}

/// Errors of container numbering.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NumberingError {
    /// Numbers start at 1.
    #[error("failed to reserve container number 0: numbers start at 1")]
    Zero,
    /// The number is already held by another container.
    #[error("failed to reserve container number {number} for {}/{}/{}: already in use", key.network_id, key.application_id, key.process_type)]
    Duplicate {
        /// The scope.
        key: NumberKey,
        /// The number in use.
        number: u32,
    },
    /// Every `u32` is in use (only reachable in theory).
    #[error("failed to allocate a container number for {}/{}/{}: all numbers are in use", key.network_id, key.application_id, key.process_type)]
    Exhausted {
        /// The scope.
        key: NumberKey,
    },
}

/// In-use container numbers, per [`NumberKey`]. Deterministic: the same
/// sequence of calls always yields the same numbers.
#[derive(Debug, Clone, Default)]
pub struct ContainerNumbers {
    used: BTreeMap<NumberKey, BTreeSet<u32>>,
}

impl ContainerNumbers {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the lowest free positive number for `key`.
    pub fn allocate(&mut self, key: &NumberKey) -> Result<u32, NumberingError> {
        let set = self.used.entry(key.clone()).or_default();
        let number =
            lowest_free(set).ok_or_else(|| NumberingError::Exhausted { key: key.clone() })?;
        set.insert(number);
        Ok(number)
    }

    /// Marks `number` as used (e.g. rebuilding from existing containers).
    pub fn reserve(&mut self, key: &NumberKey, number: u32) -> Result<(), NumberingError> {
        if number == 0 {
            return Err(NumberingError::Zero);
        }
        if !self.used.entry(key.clone()).or_default().insert(number) {
            return Err(NumberingError::Duplicate {
                key: key.clone(),
                number,
            });
        }
        Ok(())
    }

    /// Frees `number`; returns whether it was in use.
    pub fn release(&mut self, key: &NumberKey, number: u32) -> bool {
        let Some(set) = self.used.get_mut(key) else {
            return false;
        };
        let removed = set.remove(&number);
        if set.is_empty() {
            self.used.remove(key);
        }
        removed
    }

    /// Whether `number` is in use for `key`.
    pub fn is_used(&self, key: &NumberKey, number: u32) -> bool {
        self.used.get(key).is_some_and(|s| s.contains(&number))
    }

    /// The numbers in use for `key`, ascending.
    pub fn numbers(&self, key: &NumberKey) -> impl Iterator<Item = u32> + '_ {
        self.used.get(key).into_iter().flatten().copied()
    }
}

/// Lowest positive integer not in `set` (`None` only when every `u32` is
/// taken): walks the dense prefix `1, 2, 3…`. The one rule every numbering
/// authority (book, webhook, sandbox) applies to its own set of used numbers.
pub fn lowest_free(set: &BTreeSet<u32>) -> Option<u32> {
    let mut candidate = 1u32;
    for &n in set.range(1..) {
        if n != candidate {
            break;
        }
        candidate = candidate.checked_add(1)?;
    }
    Some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(t: &str) -> NumberKey {
        NumberKey::new("pn-1", "app", t)
    }

    #[test]
    fn lowest_free_and_reuse() {
        let mut n = ContainerNumbers::new();
        assert_eq!(n.allocate(&key("web")).unwrap(), 1);
        assert_eq!(n.allocate(&key("web")).unwrap(), 2);
        assert_eq!(n.allocate(&key("web")).unwrap(), 3);
        assert_eq!(n.allocate(&key("worker")).unwrap(), 1, "per type");
        assert!(n.release(&key("web"), 2));
        assert!(!n.release(&key("web"), 2));
        assert_eq!(n.allocate(&key("web")).unwrap(), 2, "reused after release");
        assert_eq!(n.allocate(&key("web")).unwrap(), 4);
        assert_eq!(n.numbers(&key("web")).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn reserve_rejects_duplicates_and_zero() {
        let mut n = ContainerNumbers::new();
        n.reserve(&key("web"), 2).unwrap();
        assert_eq!(
            n.reserve(&key("web"), 2),
            Err(NumberingError::Duplicate {
                key: key("web"),
                number: 2
            })
        );
        assert_eq!(n.reserve(&key("web"), 0), Err(NumberingError::Zero));
        assert_eq!(n.allocate(&key("web")).unwrap(), 1);
        assert_eq!(n.allocate(&key("web")).unwrap(), 3);
        assert!(n.is_used(&key("web"), 3));
        assert!(!n.is_used(&key("other"), 3));
    }

    #[test]
    fn high_numbers_do_not_hide_low_gaps() {
        let mut n = ContainerNumbers::new();
        n.reserve(&key("web"), u32::MAX).unwrap();
        n.reserve(&key("web"), 1).unwrap();
        assert_eq!(n.allocate(&key("web")).unwrap(), 2);
    }

    #[test]
    fn lowest_free_skips_zero_and_fills_gaps() {
        assert_eq!(lowest_free(&BTreeSet::new()), Some(1));
        assert_eq!(lowest_free(&BTreeSet::from([0, 1, 2, 4])), Some(3));
        assert_eq!(lowest_free(&BTreeSet::from([2, 3])), Some(1));
    }

    proptest! {
        #[test]
        fn lowest_free_matches_a_linear_scan(used in proptest::collection::btree_set(0u32..64, 0..64)) {
            let want = (1..).find(|i| !used.contains(i));
            prop_assert_eq!(lowest_free(&used), want);
        }

        #[test]
        fn allocations_are_unique_and_lowest(ops in proptest::collection::vec((0u8..3, 1u32..40), 1..200)) {
            let mut n = ContainerNumbers::new();
            let mut model: BTreeSet<u32> = BTreeSet::new();
            for (op, v) in ops {
                match op {
                    0 => {
                        let got = n.allocate(&key("web")).unwrap();
                        let want = (1..).find(|i| !model.contains(i)).unwrap();
                        prop_assert_eq!(got, want);
                        model.insert(got);
                    }
                    1 => prop_assert_eq!(n.release(&key("web"), v), model.remove(&v)),
                    _ => prop_assert_eq!(n.reserve(&key("web"), v).is_ok(), model.insert(v)),
                }
                prop_assert_eq!(n.numbers(&key("web")).collect::<BTreeSet<_>>(), model.clone());
            }
        }
    }
}
