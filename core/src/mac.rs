//! MAC addresses derived from VNIs and IPs, identical on every node.
//!
//! Both kinds are locally administered unicast (second-lowest bit of the
//! first octet set, lowest clear). The first octet tells them apart:
//! `02` for gateways, `06` for containers, so they can never collide.

use std::net::Ipv4Addr;

use thiserror::Error;

/// First octet of gateway MACs.
const GATEWAY_OUI: u8 = 0x02;
/// First octet of container MACs.
const CONTAINER_OUI: u8 = 0x06;

/// Errors of MAC parsing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MacError {
    /// The text is not six `:`-separated hex octets.
    #[error("failed to parse MAC address {0:?}: expected six hex octets like 02:00:00:00:10:00")]
    Invalid(String),
}

/// The gateway MAC of network `vni`: `02:70:6e:<vni 24 bits>` ("pn").
pub fn gateway_mac(vni: u32) -> [u8; 6] {
    let v = vni.to_be_bytes();
    [GATEWAY_OUI, 0x70, 0x6e, v[1], v[2], v[3]]
}

/// The MAC of the container holding `ip` in network `vni`:
/// `06:<vni hash>:<ip>`; unique per network since IPs are.
pub fn container_mac(vni: u32, ip: Ipv4Addr) -> [u8; 6] {
    let v = vni.to_be_bytes();
    let o = ip.octets();
    [CONTAINER_OUI, v[1] ^ v[2] ^ v[3], o[0], o[1], o[2], o[3]]
}

/// Whether `mac` is locally administered unicast.
pub fn is_local_unicast(mac: &[u8; 6]) -> bool {
    mac[0] & 0b11 == 0b10
}

/// `aa:bb:cc:dd:ee:ff`, lowercase; any length (a kernel link attribute is
/// a byte string).
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(text: &str) -> Result<[u8; 6], MacError> {
    let invalid = || MacError::Invalid(text.to_owned());
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(invalid)?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
    }
    if parts.next().is_some() {
        return Err(invalid());
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_mac_is_fixed_per_vni() {
        assert_eq!(gateway_mac(4096), [0x02, 0x70, 0x6e, 0x00, 0x10, 0x00]);
        assert_ne!(gateway_mac(4096), gateway_mac(4097));
        assert!(is_local_unicast(&gateway_mac(16_000_000)));
    }

    #[test]
    fn container_mac_is_deterministic_and_distinct() {
        let ip = Ipv4Addr::new(10, 240, 0, 2);
        let mac = container_mac(4096, ip);
        assert_eq!(mac, container_mac(4096, ip));
        assert!(is_local_unicast(&mac));
        assert_ne!(mac, container_mac(4096, Ipv4Addr::new(10, 240, 0, 3)));
        assert_ne!(mac, gateway_mac(4096));
        assert_ne!(
            container_mac(4096, Ipv4Addr::new(10, 240, 0, 1)),
            gateway_mac(4096)
        );
    }

    #[test]
    fn format_and_parse_round_trip() {
        let mac = [0x02, 0xab, 0x00, 0x10, 0xff, 0x01];
        assert_eq!(format_mac(&mac), "02:ab:00:10:ff:01");
        assert_eq!(parse_mac("02:AB:00:10:ff:01"), Ok(mac));
        for bad in [
            "",
            "02:ab:00:10:ff",
            "02:ab:00:10:ff:01:02",
            "2:ab:00:10:ff:01",
            "zz:ab:00:10:ff:01",
            "+2:ab:00:10:ff:01",
        ] {
            assert_eq!(
                parse_mac(bad),
                Err(MacError::Invalid(bad.into())),
                "{bad:?}"
            );
        }
    }

    /// `u8::from_str_radix` takes a sign: the CNI plugin's former copy of
    /// this parser read `+f` as the octet `0f`. One parser now, and it does not.
    #[test]
    fn a_signed_octet_is_not_hex() {
        assert_eq!(
            parse_mac("+f:00:00:00:00:01"),
            Err(MacError::Invalid("+f:00:00:00:00:01".into()))
        );
        assert_eq!(parse_mac("0f:00:00:00:00:01"), Ok([0x0f, 0, 0, 0, 0, 1]));
        assert_eq!(format_mac(&[2, 0, 0, 0, 0, 1][..]), "02:00:00:00:00:01");
    }
}
