//! MTU of the private networks, derived from the underlay MTU.
//!
//! Private traffic is VXLAN (50 bytes) inside WireGuard (60 bytes over an
//! IPv4 underlay, 80 over IPv6): on a 1500 underlay that leaves 1390 over
//! IPv4 and 1370 over IPv6. When the mesh may hold endpoints of both
//! families (or the family is not known), use [`UnderlayFamily::Mixed`]: the
//! worst case, like wg-quick's default 1420, giving the design's 1370.
//!
//! The floor is 1280 (the IPv6 minimum link MTU) rather than IPv4's 576:
//! containers may speak IPv6 link-local on the private interface, and a
//! smaller MTU is almost always a misconfigured underlay, better refused.

use thiserror::Error;

/// WireGuard overhead over an IPv4 underlay (20 IP + 8 UDP + 32 WireGuard).
pub const WIREGUARD_OVERHEAD_V4: u32 = 60;
/// WireGuard overhead over an IPv6 underlay (40 IP + 8 UDP + 32 WireGuard).
pub const WIREGUARD_OVERHEAD_V6: u32 = 80;
/// VXLAN overhead (14 Ethernet + 20 IPv4 + 8 UDP + 8 VXLAN).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Smallest MTU we accept on a private network (IPv6 minimum).
pub const MIN_PRIVATE_MTU: u32 = 1280;

/// Address family of the WireGuard underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderlayFamily {
    /// WireGuard endpoints are IPv4.
    V4,
    /// WireGuard endpoints are IPv6.
    V6,
    /// Endpoints of both families, or unknown: assume the worst (IPv6).
    Mixed,
}

/// Errors of MTU computation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MtuError {
    /// The underlay is too small to carry a usable private network.
    #[error(
        "failed to compute private MTU: underlay MTU {underlay} ({family:?}) leaves {result}, below the minimum {MIN_PRIVATE_MTU}; raise the underlay MTU to at least {needed}"
    )]
    TooSmall {
        /// The underlay MTU given.
        underlay: u32,
        /// Its family.
        family: UnderlayFamily,
        /// What would be left for the private network.
        result: u32,
        /// The smallest underlay MTU that would work.
        needed: u32,
    },
}

/// Bytes added by WireGuard + VXLAN over an underlay of `family`.
pub fn overhead(family: UnderlayFamily) -> u32 {
    VXLAN_OVERHEAD
        + match family {
            UnderlayFamily::V4 => WIREGUARD_OVERHEAD_V4,
            UnderlayFamily::V6 | UnderlayFamily::Mixed => WIREGUARD_OVERHEAD_V6,
        }
}

/// MTU of the WireGuard interface: underlay minus WireGuard overhead.
pub fn wireguard_mtu(underlay: u32, family: UnderlayFamily) -> u32 {
    underlay.saturating_sub(overhead(family) - VXLAN_OVERHEAD)
}

/// MTU of every private-network device (bridge, veths, VXLAN, container).
pub fn private_mtu(underlay: u32, family: UnderlayFamily) -> Result<u32, MtuError> {
    let result = underlay.saturating_sub(overhead(family));
    if result < MIN_PRIVATE_MTU {
        return Err(MtuError::TooSmall {
            underlay,
            family,
            result,
            needed: MIN_PRIVATE_MTU + overhead(family),
        });
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_underlay() {
        assert_eq!(private_mtu(1500, UnderlayFamily::V4), Ok(1390));
        assert_eq!(private_mtu(1500, UnderlayFamily::V6), Ok(1370));
        assert_eq!(private_mtu(1500, UnderlayFamily::Mixed), Ok(1370));
        assert_eq!(private_mtu(9000, UnderlayFamily::V4), Ok(8890));
        assert_eq!(wireguard_mtu(1500, UnderlayFamily::Mixed), 1420);
        assert_eq!(wireguard_mtu(1500, UnderlayFamily::V4), 1440);
        assert_eq!(wireguard_mtu(1500, UnderlayFamily::V6), 1420);
    }

    #[test]
    fn floor_is_1280() {
        assert_eq!(private_mtu(1390, UnderlayFamily::V4), Ok(1280));
        assert!(private_mtu(1409, UnderlayFamily::V6).is_err());
        let err = private_mtu(1389, UnderlayFamily::V4).unwrap_err();
        assert_eq!(
            err,
            MtuError::TooSmall {
                underlay: 1389,
                family: UnderlayFamily::V4,
                result: 1279,
                needed: 1390
            }
        );
        assert!(err.to_string().contains("at least 1390"), "{err}");
        assert!(matches!(
            private_mtu(10, UnderlayFamily::V6),
            Err(MtuError::TooSmall { result: 0, .. })
        ));
    }
}
