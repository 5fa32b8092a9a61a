//! Supported CNI spec versions and what each allows.

use std::fmt;

/// A CNI spec version this plugin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    /// 0.3.0: results as 0.4.0; no CHECK, no `prevResult` on DEL.
    V0_3_0,
    /// 0.3.1: as 0.3.0. Most primary CNIs' conflists still say 0.3.1, and
    /// chained after them privnet is called with their version.
    V0_3_1,
    /// 0.4.0: ips carry a `version` field; no STATUS/GC.
    V0_4_0,
    /// 1.0.0: no `version` field on ips.
    V1_0_0,
    /// 1.1.0: STATUS, GC, interface `mtu`, route extras.
    V1_1_0,
}

impl SpecVersion {
    /// Every supported version, oldest first (the VERSION reply order).
    pub const ALL: [SpecVersion; 5] = [
        Self::V0_3_0,
        Self::V0_3_1,
        Self::V0_4_0,
        Self::V1_0_0,
        Self::V1_1_0,
    ];
    /// The newest version, used when the caller's version is unknown.
    pub const LATEST: SpecVersion = Self::V1_1_0;

    /// Parses `"0.3.0"`, `"0.3.1"`, `"0.4.0"`, `"1.0.0"` or `"1.1.0"`.
    pub fn parse(s: &str) -> Option<SpecVersion> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The spec string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_3_0 => "0.3.0",
            Self::V0_3_1 => "0.3.1",
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }

    /// STATUS and GC exist from 1.1.0 on.
    pub fn has_status_and_gc(self) -> bool {
        self >= Self::V1_1_0
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_and_rejects_others() {
        for v in SpecVersion::ALL {
            assert_eq!(SpecVersion::parse(v.as_str()), Some(v));
        }
        for bad in ["0.2.0", "0.1.0", "1.2.0", "", "1.0"] {
            assert_eq!(SpecVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn status_and_gc_need_1_1() {
        assert!(!SpecVersion::V0_4_0.has_status_and_gc());
        assert!(!SpecVersion::V1_0_0.has_status_and_gc());
        assert!(SpecVersion::V1_1_0.has_status_and_gc());
    }
}
