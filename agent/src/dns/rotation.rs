//! Cyclic order of multi-address answers (BIND's `rrset-order cyclic`).
//!
//! Applications connect to the first address of an answer, so a name with
//! several containers must not list them in the same order every time:
//! each answer starts one address further than the previous one given for
//! the same question. On the cached fast path the A records of an encoded
//! answer are fixed-size (a compression pointer to the question, type,
//! class, TTL, length, 4 address bytes), so rotating them is a `memmove`
//! of a few dozen bytes in the copy that is sent anyway.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of one A record whose owner is a pointer to the question name.
const A_RECORD: usize = 16;

/// Where the A records of an encoded answer are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressRecords {
    /// Offset of the first one.
    start: usize,
    /// How many there are (at least two).
    count: usize,
}

/// Finds the answer section of an encoded response when it is two or more
/// A records of the fixed compressed form, right after a question of
/// `qname_len` wire bytes; `None` when there is nothing to rotate.
pub fn address_records(response: &[u8], qname_len: usize) -> Option<AddressRecords> {
    let count = usize::from(u16::from_be_bytes([*response.get(6)?, *response.get(7)?]));
    if count < 2 {
        return None;
    }
    let start = 12 + qname_len + 4;
    let section = response.get(start..start + count * A_RECORD)?;
    section
        .chunks_exact(A_RECORD)
        .all(|rr| {
            rr[0..2] == [0xc0, 0x0c] // owner: pointer to the question name
                && rr[2..4] == [0, 1] // type A
                && rr[4..6] == [0, 1] // class IN
                && rr[10..12] == [0, 4] // 4 bytes of address
        })
        .then_some(AddressRecords { start, count })
}

impl AddressRecords {
    /// Rotates the records of `response` left by `turn` places.
    pub fn rotate(&self, response: &mut [u8], turn: usize) {
        let section = &mut response[self.start..self.start + self.count * A_RECORD];
        section.rotate_left((turn % self.count) * A_RECORD);
    }
}

/// A counter of answers given: the rotation step of the next one.
#[derive(Debug, Default)]
pub struct Turn(AtomicUsize);

impl Turn {
    /// The step for this answer (each call advances it by one).
    pub fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// Rotates decoded answer records left by `turn` places (the complete and
/// TCP paths, which build the answer before encoding it).
pub fn rotate_records<T>(records: &mut [T], turn: usize) {
    if records.len() > 1 {
        let step = turn % records.len();
        records.rotate_left(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response with a question of `qname` and these A records.
    fn response(qname: &[u8], addresses: &[[u8; 4]]) -> Vec<u8> {
        let mut r = vec![0, 0, 0x84, 0, 0, 1, 0, addresses.len() as u8, 0, 0, 0, 0];
        r.extend_from_slice(qname);
        r.extend_from_slice(&[0, 1, 0, 1]);
        for a in addresses {
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            r.extend_from_slice(a);
        }
        r
    }

    fn firsts(r: &[u8], records: &AddressRecords) -> [u8; 4] {
        r[records.start + 12..records.start + 16]
            .try_into()
            .unwrap()
    }

    #[test]
    fn fixed_form_a_records_rotate_cyclically() {
        let qname = b"\x03app\x00";
        let addrs = [[10, 0, 0, 2], [10, 0, 0, 3], [10, 0, 0, 4]];
        let original = response(qname, &addrs);
        let records = address_records(&original, qname.len()).expect("three A records");
        for turn in 0..6 {
            let mut r = original.clone();
            records.rotate(&mut r, turn);
            assert_eq!(firsts(&r, &records), addrs[turn % 3], "turn {turn}");
            // Same records, same length: only the order moved.
            let mut a: Vec<_> = r[records.start..].chunks(16).collect();
            let mut b: Vec<_> = original[records.start..].chunks(16).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn single_answers_and_other_forms_are_left_alone() {
        let qname = b"\x03app\x00";
        assert_eq!(
            address_records(&response(qname, &[[10, 0, 0, 2]]), qname.len()),
            None
        );
        let mut uncompressed = response(qname, &[[10, 0, 0, 2], [10, 0, 0, 3]]);
        uncompressed[12 + qname.len() + 4] = 0x03;
        assert_eq!(address_records(&uncompressed, qname.len()), None);
        let truncated = &response(qname, &[[10, 0, 0, 2], [10, 0, 0, 3]])[..40];
        assert_eq!(address_records(truncated, qname.len()), None);
    }

    #[test]
    fn decoded_records_rotate_and_turns_advance() {
        let turn = Turn::default();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut v = vec![1, 2, 3];
            rotate_records(&mut v, turn.next());
            seen.push(v[0]);
        }
        assert_eq!(seen, [1, 2, 3, 1]);
        let mut one = vec![9];
        rotate_records(&mut one, 5);
        assert_eq!(one, [9]);
    }
}
