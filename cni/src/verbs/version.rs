//! VERSION: answered directly by [`crate::plugin::run`] (it needs no config
//! beyond `cniVersion`); this module holds the supported list.

use crate::spec::SpecVersion;

/// The `supportedVersions` of the VERSION reply. 0.3.x covers
/// ADD/DEL/VERSION, 0.4.0 adds CHECK; STATUS and GC need 1.1.0.
pub fn supported_versions() -> Vec<&'static str> {
    SpecVersion::ALL.iter().map(|v| v.as_str()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_the_five_versions() {
        assert_eq!(
            super::supported_versions(),
            ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        );
    }
}
