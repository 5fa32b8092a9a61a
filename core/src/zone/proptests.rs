use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const PN: &str = "pn-prop";
const APPS: [&str; 3] = ["a", "b", "web"];
const TYPES: [&str; 3] = ["web", "worker", "a"];

#[derive(Debug, Clone)]
enum Op {
    Upsert(usize, usize, u32, u32),
    Remove(usize, usize, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..3usize, 1..4u32, 2..20u32).prop_map(|(a, t, n, ip)| Op::Upsert(a, t, n, ip)),
        (0..3usize, 0..3usize, 1..4u32).prop_map(|(a, t, n)| Op::Remove(a, t, n)),
    ]
}

fn name(a: usize, t: usize, n: u32) -> PrivateName {
    PrivateName::new(n, TYPES[t], APPS[a], PN, DEFAULT_DOMAIN).unwrap()
}

type Model = BTreeMap<(usize, usize, u32), Ipv4Addr>;

/// Naive answer: filter the whole endpoint list for the name.
fn naive(model: &Model, relative: &str) -> Result<Vec<Ipv4Addr>, bool> {
    let labels: Vec<&str> = relative.split('.').collect();
    let matching: Vec<(&(usize, usize, u32), &Ipv4Addr)> = model
        .iter()
        .filter(|((a, t, n), _)| match labels.as_slice() {
            [app] => APPS[*a] == *app,
            [ty, app] => APPS[*a] == *app && TYPES[*t] == *ty,
            [num, ty, app] => APPS[*a] == *app && TYPES[*t] == *ty && n.to_string() == *num,
            _ => false,
        })
        .collect();
    if matching.is_empty() {
        return Err(false); // NXDOMAIN
    }
    let mut addrs: Vec<Ipv4Addr> = matching
        .iter()
        .filter(|((_, t, _), _)| labels.len() > 1 || TYPES[*t] == "web")
        .map(|(_, a)| **a)
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        Err(true)
    } else {
        Ok(addrs)
    }
}

fn candidates() -> Vec<String> {
    let mut out = vec!["zzz".to_string(), "1.1.web.a".to_string()];
    for app in APPS {
        out.push(app.to_string());
        for ty in TYPES {
            out.push(format!("{ty}.{app}"));
            for n in 1..5 {
                out.push(format!("{n}.{ty}.{app}"));
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn lookup_matches_naive_and_serial_increases(ops in proptest::collection::vec(op(), 1..60)) {
        let subnet: Ipv4Net = "10.1.0.0/24".parse().unwrap();
        let mut zone = Zone::new(PN, subnet, ZoneConfig::default()).unwrap();
        let mut model = Model::new();
        for op in ops {
            let before = zone.serial();
            let changed = match op {
                Op::Upsert(a, t, n, last) => {
                    let address = Ipv4Addr::new(10, 1, 0, last as u8);
                    let changed = zone.upsert(&ZoneEndpoint { name: name(a, t, n), address }).unwrap();
                    prop_assert_eq!(changed, model.insert((a, t, n), address) != Some(address));
                    changed
                }
                Op::Remove(a, t, n) => {
                    let removed = zone.remove(&name(a, t, n));
                    prop_assert_eq!(removed, model.remove(&(a, t, n)));
                    removed.is_some()
                }
            };
            if changed {
                prop_assert!(serial_gt(zone.serial(), before));
            } else {
                prop_assert_eq!(zone.serial(), before);
            }
            for rel in candidates() {
                let got = match zone.lookup(&format!("{rel}.{PN}.private-network.internal.")) {
                    LookupResult::Found(a) => Ok(a.to_vec()),
                    LookupResult::NoData => Err(true),
                    LookupResult::NxDomain => Err(false),
                    LookupResult::OutOfZone => panic!("in-zone name out of zone"),
                };
                prop_assert_eq!(got, naive(&model, &rel), "name {}", rel);
            }
        }
        // Deterministic render: the same content inserted in another order
        // (with the serial aligned) renders byte for byte the same.
        let text = zone.render();
        prop_assert_eq!(&text, &zone.render());
        let start = zone.serial().wrapping_sub(model.len() as u32);
        let mut other = Zone::new(PN, subnet, ZoneConfig { initial_serial: start, ..Default::default() }).unwrap();
        for ((a, t, n), address) in model.iter().rev() {
            other.upsert(&ZoneEndpoint { name: name(*a, *t, *n), address: *address }).unwrap();
        }
        prop_assert_eq!(&other.render(), &text);
        prop_assert_eq!(other.render_reverse(), zone.render_reverse());
    }
}
