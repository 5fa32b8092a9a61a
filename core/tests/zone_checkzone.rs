//! The rendered zone files are checked by BIND's own parser,
//! `named-checkzone` (Debian `bind9-utils`), forward and reverse.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};

use privnet_core::naming::{DEFAULT_DOMAIN, PrivateName};
use privnet_core::zone::{Zone, ZoneConfig, ZoneEndpoint};

const CHECKZONE: &str = "/usr/bin/named-checkzone";
const PN: &str = "pn-0b5e7c1a-4f3d-4a8e-9d2c-1f6b3a5e7d90";

/// Runs `named-checkzone <origin> <file>` on `text`; fails loudly when the tool is missing.
fn checkzone(origin: &str, text: &str) -> Output {
    assert!(
        Path::new(CHECKZONE).exists(),
        "{CHECKZONE} not found: run `apt-get install bind9-utils` (this test never skips)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("zone.db");
    std::fs::write(&file, text).expect("write zone file");
    Command::new(CHECKZONE)
        .arg(origin)
        .arg(&file)
        .output()
        .expect("run named-checkzone")
}

fn assert_ok(origin: &str, text: &str, serial: u32) {
    let out = checkzone(origin, text);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().any(|l| l.trim() == "OK"),
        "named-checkzone {origin} rejected the zone ({}):\n{stdout}\n{stderr}\n--- zone ---\n{}",
        out.status,
        &text[..text.len().min(4000)]
    );
    assert!(
        !stdout.to_lowercase().contains("warning") && !stderr.to_lowercase().contains("warning"),
        "named-checkzone warned:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("loaded serial {serial}")),
        "unexpected serial: {stdout}"
    );
}

/// A zone with `count` endpoints spread over several apps and types.
fn zone_with(count: u32) -> Zone {
    let mut zone = Zone::new(PN, "10.240.0.0/22".parse().unwrap(), ZoneConfig::default()).unwrap();
    let apps = ["shop", "ap-7f9c2d1e-0a4b-4c6d-8e2f-3b5a7c9d1e0f", "api"];
    let types = ["web", "worker", "clock", "1"];
    for i in 0..count {
        let app = apps[(i % 3) as usize];
        let ty = types[((i / 3) % 4) as usize];
        let number = i / 12 + 1;
        let name = PrivateName::new(number, ty, app, PN, DEFAULT_DOMAIN).unwrap();
        let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 240, 0, 2)) + i);
        assert!(zone.upsert(&ZoneEndpoint { name, address }).unwrap());
    }
    assert_eq!(zone.len(), count as usize);
    zone
}

fn check_both(zone: &Zone) {
    assert_ok(zone.origin(), &zone.render(), zone.serial());
    let (origin, text) = zone.render_reverse();
    assert_ok(&origin, &text, zone.serial());
}

#[test]
fn empty_zone_is_valid() {
    check_both(&zone_with(0));
}

#[test]
fn one_endpoint_zone_is_valid() {
    check_both(&zone_with(1));
}

#[test]
fn thousand_endpoint_zone_is_valid() {
    check_both(&zone_with(1000));
}

#[test]
fn non_default_subnet_and_ttl_are_valid() {
    let config = ZoneConfig {
        ttl: 30,
        initial_serial: 41,
        ..Default::default()
    };
    let mut zone = Zone::new(PN, "172.16.5.0/24".parse().unwrap(), config).unwrap();
    let name = PrivateName::new(1, "web", "app", PN, DEFAULT_DOMAIN).unwrap();
    zone.upsert(&ZoneEndpoint {
        name,
        address: Ipv4Addr::new(172, 16, 5, 9),
    })
    .unwrap();
    assert_eq!(zone.render_reverse().0, "5.16.172.in-addr.arpa.");
    check_both(&zone);
}

#[test]
fn corrupted_zone_is_rejected() {
    let zone = zone_with(5);
    let text = zone.render();
    // Negative controls: the check must be able to fail.
    let without_soa: String = text
        .lines()
        .filter(|l| !l.contains("SOA"))
        .map(|l| format!("{l}\n"))
        .collect();
    let bad_address = text.replacen("10.240.0.2\n", "10.240.0.999\n", 1);
    assert_ne!(without_soa, text);
    assert_ne!(bad_address, text);
    let wrong_origin = "pn-other.private-network.internal.";
    for (what, origin, bad) in [
        ("missing SOA", zone.origin(), without_soa.as_str()),
        ("invalid address", zone.origin(), bad_address.as_str()),
        ("wrong origin", wrong_origin, text.as_str()),
    ] {
        let out = checkzone(origin, bad);
        assert!(
            !out.status.success(),
            "{what}: named-checkzone accepted a corrupted zone:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
