//! SOA serial arithmetic (RFC 1982, 32-bit).

/// Whether serial `a` is strictly greater than `b` in RFC 1982 arithmetic
/// (undefined pairs, exactly 2^31 apart, count as not greater).
pub fn serial_gt(a: u32, b: u32) -> bool {
    const HALF: u32 = 1 << 31;
    (a < b && b - a > HALF) || (a > b && a - b < HALF)
}

/// The serial following `s`: +1, wrapping from `u32::MAX` to 0 as RFC 1982 allows.
pub fn next_serial(s: u32) -> u32 {
    s.wrapping_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1982_comparison() {
        assert!(serial_gt(2, 1));
        assert!(!serial_gt(1, 2));
        assert!(!serial_gt(5, 5));
        assert!(serial_gt(0, u32::MAX), "wrap is an increase");
        assert!(serial_gt(next_serial(u32::MAX), u32::MAX));
        assert!(!serial_gt(1 << 31, 0), "exactly half apart is undefined");
        assert!(serial_gt((1 << 31) - 1, 0));
    }
}
