use super::render::ipv4_text;
use super::*;

const PN: &str = "pn-0b5e7c1a-4f3d-4a8e-9d2c-1f6b3a5e7d90";

fn zone() -> Zone {
    Zone::new(PN, "10.240.0.0/22".parse().unwrap(), ZoneConfig::default()).unwrap()
}

fn ep(n: u32, t: &str, app: &str, last: u32) -> ZoneEndpoint {
    ZoneEndpoint {
        name: PrivateName::new(n, t, app, PN, DEFAULT_DOMAIN).unwrap(),
        address: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 240, 0, 0)) + last),
    }
}

fn ip(last: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 240, 0, 0)) + last)
}

fn q(name: &str) -> String {
    format!("{name}.{PN}.private-network.internal.")
}

#[test]
fn lookup_semantics() {
    let mut z = zone();
    for e in [
        ep(1, "web", "shop", 3),
        ep(2, "web", "shop", 2),
        ep(1, "worker", "shop", 4),
        ep(1, "worker", "batch", 5),
    ] {
        assert!(z.upsert(&e).unwrap());
    }
    assert_eq!(
        z.lookup(&q("shop")),
        LookupResult::Found(&[ip(2), ip(3)]),
        "web only, sorted"
    );
    assert_eq!(
        z.lookup(&q("web.shop")),
        LookupResult::Found(&[ip(2), ip(3)])
    );
    assert_eq!(z.lookup(&q("worker.shop")), LookupResult::Found(&[ip(4)]));
    assert_eq!(z.lookup(&q("1.worker.shop")), LookupResult::Found(&[ip(4)]));
    assert_eq!(z.lookup(&q("2.web.shop")), LookupResult::Found(&[ip(2)]));
    assert_eq!(
        z.lookup(&q("batch")),
        LookupResult::NoData,
        "app without web exists"
    );
    assert_eq!(
        z.lookup(&format!("{PN}.private-network.internal.")),
        LookupResult::NoData
    );
    assert_eq!(z.lookup(&q("ns")), LookupResult::Found(&[ip(1)]));
    assert_eq!(z.lookup(&q("nope")), LookupResult::NxDomain);
    assert_eq!(z.lookup(&q("3.web.shop")), LookupResult::NxDomain);
    assert_eq!(z.lookup(&q("x.1.web.shop")), LookupResult::NxDomain);
    assert_eq!(z.lookup(&q("web.batch")), LookupResult::NxDomain);
    assert_eq!(
        z.lookup("shop.pn-other.private-network.internal."),
        LookupResult::OutOfZone
    );
    assert_eq!(z.lookup("example.com."), LookupResult::OutOfZone);
    assert_eq!(
        z.lookup(&format!("x{PN}.private-network.internal")),
        LookupResult::OutOfZone
    );
    assert_eq!(
        z.lookup(&q("SHOP").to_uppercase()),
        LookupResult::Found(&[ip(2), ip(3)]),
        "case-insensitive"
    );
    assert_eq!(
        z.lookup(q("1.worker.shop").trim_end_matches('.')),
        LookupResult::Found(&[ip(4)])
    );
}

#[test]
fn serial_bumps_only_on_change() {
    let mut z = Zone::new(
        PN,
        "10.240.0.0/22".parse().unwrap(),
        ZoneConfig {
            initial_serial: u32::MAX,
            ..Default::default()
        },
    )
    .unwrap();
    let e = ep(1, "web", "a", 2);
    assert!(z.upsert(&e).unwrap());
    assert_eq!(z.serial(), 0, "wraps");
    assert!(!z.upsert(&e).unwrap());
    assert_eq!(z.serial(), 0, "no-op upsert keeps the serial");
    assert!(z.upsert(&ep(1, "web", "a", 9)).unwrap());
    assert_eq!(z.serial(), 1);
    assert_eq!(z.lookup(&q("a")), LookupResult::Found(&[ip(9)]), "moved");
    assert_eq!(z.remove(&e.name), Some(ip(9)));
    assert_eq!(z.serial(), 2);
    assert_eq!(z.remove(&e.name), None);
    assert_eq!(z.serial(), 2);
    assert_eq!(
        z.lookup(&q("a")),
        LookupResult::NxDomain,
        "gone with its last endpoint"
    );
}

#[test]
fn shared_address_is_refcounted() {
    let mut z = zone();
    z.upsert(&ep(1, "web", "a", 7)).unwrap();
    z.upsert(&ep(2, "web", "a", 7)).unwrap();
    assert_eq!(z.lookup(&q("a")), LookupResult::Found(&[ip(7)]));
    z.remove(&ep(1, "web", "a", 7).name);
    assert_eq!(z.lookup(&q("a")), LookupResult::Found(&[ip(7)]));
    z.remove(&ep(2, "web", "a", 7).name);
    assert_eq!(z.lookup(&q("a")), LookupResult::NxDomain);
}

#[test]
fn rejects_bad_endpoints() {
    let mut z = zone();
    let mut other = ep(1, "web", "a", 2);
    other.name.network_id = "pn-other".into();
    assert!(matches!(
        z.upsert(&other),
        Err(ZoneError::WrongNetwork { .. })
    ));
    assert_eq!(
        z.upsert(&ep(1, "web", "ns", 2)),
        Err(ZoneError::ReservedName("ns".into()))
    );
    for (last, why) in [
        (0, "the network address"),
        (1, "the gateway address"),
        (1023, "the broadcast address"),
        (1024, "outside the subnet"),
    ] {
        match z.upsert(&ep(1, "web", "a", last)) {
            Err(ZoneError::AddressNotAssignable { why: got, .. }) => assert_eq!(got, why),
            other => panic!("{last}: {other:?}"),
        }
    }
    let mut bad = ep(1, "web", "a", 2);
    bad.name.process_type = "Web".into();
    assert!(matches!(z.upsert(&bad), Err(ZoneError::InvalidName(_))));
    assert_eq!(z.serial(), 0);
    assert!(z.is_empty());
    assert!(Zone::new("PN", "10.0.0.0/24".parse().unwrap(), ZoneConfig::default()).is_err());
    assert!(Zone::new(PN, "10.0.0.0/31".parse().unwrap(), ZoneConfig::default()).is_err());
}

#[test]
fn sync_bumps_once() {
    let mut z = zone();
    z.upsert(&ep(1, "web", "old", 2)).unwrap();
    let s = z.serial();
    let wanted = [ep(1, "web", "a", 3), ep(2, "web", "a", 4)];
    assert!(z.sync(&wanted).unwrap());
    assert_eq!(z.serial(), s + 1);
    assert_eq!(z.endpoints().collect::<Vec<_>>(), wanted.to_vec());
    assert!(!z.sync(&wanted).unwrap());
    assert_eq!(z.serial(), s + 1);
    let mut bad = wanted.to_vec();
    bad.push(ep(1, "web", "b", 1));
    assert!(z.sync(&bad).is_err());
    assert_eq!(z.len(), 2, "nothing changed on error");
}

#[test]
fn render_forward_zone() {
    let mut z = zone();
    for e in [
        ep(10, "web", "b", 5),
        ep(2, "web", "b", 4),
        ep(1, "worker", "b", 6),
        ep(1, "worker", "a", 7),
    ] {
        z.upsert(&e).unwrap();
    }
    let o = format!("{PN}.private-network.internal.");
    let want = format!(
        "$ORIGIN {o}\n$TTL 5\n@\tIN\tSOA\tns.{o} hostmaster.{o} 4 300 60 86400 5\n@\tIN\tNS\tns\n\
ns\tIN\tA\t10.240.0.1\n\
worker.a\tIN\tA\t10.240.0.7\n1.worker.a\tIN\tA\t10.240.0.7\n\
b\tIN\tA\t10.240.0.4\nb\tIN\tA\t10.240.0.5\n\
web.b\tIN\tA\t10.240.0.4\nweb.b\tIN\tA\t10.240.0.5\n2.web.b\tIN\tA\t10.240.0.4\n10.web.b\tIN\tA\t10.240.0.5\n\
worker.b\tIN\tA\t10.240.0.6\n1.worker.b\tIN\tA\t10.240.0.6\n"
    );
    assert_eq!(z.render(), want);
}

#[test]
fn render_reverse_zone_and_ptr_lookup() {
    let mut z = zone();
    z.upsert(&ep(1, "web", "a", 2)).unwrap();
    z.upsert(&ep(1, "worker", "a", 258)).unwrap();
    let (origin, text) = z.render_reverse();
    assert_eq!(origin, "240.10.in-addr.arpa.");
    let o = format!("{PN}.private-network.internal.");
    assert!(
        text.starts_with("$ORIGIN 240.10.in-addr.arpa.\n$TTL 5\n"),
        "{text}"
    );
    assert!(text.contains(&format!("@\tIN\tNS\tns.{o}\n")), "{text}");
    assert!(
        text.ends_with(&format!(
            "1.0\tIN\tPTR\tns.{o}\n2.0\tIN\tPTR\t1.web.a.{o}\n2.1\tIN\tPTR\t1.worker.a.{o}\n"
        )),
        "{text}"
    );
    assert_eq!(
        z.lookup_ptr("2.1.240.10.in-addr.arpa."),
        PtrResult::Found(vec![format!("1.worker.a.{o}")])
    );
    assert_eq!(
        z.lookup_ptr("1.0.240.10.IN-ADDR.ARPA"),
        PtrResult::Found(vec![format!("ns.{o}")])
    );
    assert_eq!(
        z.lookup_ptr("3.0.240.10.in-addr.arpa."),
        PtrResult::NxDomain
    );
    assert_eq!(z.lookup_ptr("1.240.10.in-addr.arpa."), PtrResult::NoData);
    assert_eq!(z.lookup_ptr("3.240.10.in-addr.arpa."), PtrResult::NxDomain);
    assert_eq!(z.lookup_ptr("240.10.in-addr.arpa."), PtrResult::NoData);
    assert_eq!(
        z.lookup_ptr("02.0.240.10.in-addr.arpa."),
        PtrResult::NxDomain
    );
    assert_eq!(
        z.lookup_ptr("2.0.241.10.in-addr.arpa."),
        PtrResult::OutOfZone
    );
    assert_eq!(ipv4_text(ip(258)), "10.240.1.2");
}

#[test]
fn reverse_origins() {
    let o = |s: &str| reverse_origin(s.parse().unwrap());
    assert_eq!(o("10.240.0.0/22"), "240.10.in-addr.arpa.");
    assert_eq!(o("10.240.3.0/24"), "3.240.10.in-addr.arpa.");
    assert_eq!(o("10.240.3.128/25"), "3.240.10.in-addr.arpa.");
    assert_eq!(o("10.0.0.0/8"), "10.in-addr.arpa.");
    assert_eq!(o("10.0.0.0/15"), "10.in-addr.arpa.");
}
