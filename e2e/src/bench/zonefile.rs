//! The zone of one network, rendered from `status -o json` for BIND (the
//! agent keeps its zone in memory), and the dnsperf query mix over it.
//!
//! Records follow the design's table: `<app>` → web containers,
//! `<type>.<app>` → that type's containers, `<n>.<type>.<app>` → one
//! container, `ns` → the gateway.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::sandbox::{Container, Network};

/// Domain every network zone lives under.
pub const PRIVATE_DOMAIN: &str = "private-network.internal";

/// Aggregate and per-container names of a network, relative to its zone,
/// each with its sorted addresses.
pub fn records(network: &Network, containers: &[Container]) -> BTreeMap<String, Vec<Ipv4Addr>> {
    let mut names: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for c in containers.iter().filter(|c| c.network_id == network.id) {
        let Ok(ip) = c.ip.parse::<Ipv4Addr>() else {
            continue;
        };
        let (app, t) = (&c.application_id, &c.process_type);
        if t == "web" {
            names.entry(app.clone()).or_default().push(ip);
        }
        names.entry(format!("{t}.{app}")).or_default().push(ip);
        names
            .entry(format!("{}.{t}.{app}", c.number))
            .or_default()
            .push(ip);
    }
    for v in names.values_mut() {
        v.sort();
    }
    names
}

/// RFC 1035 master file of the network's zone.
pub fn render_zone(network: &Network, containers: &[Container]) -> String {
    let mut out = format!(
        "$ORIGIN {zone}.\n$TTL 5\n@\tIN\tSOA\tns hostmaster 1 300 60 86400 5\n@\tIN\tNS\tns\nns\tIN\tA\t{gw}\n",
        zone = network.zone,
        gw = network.gateway
    );
    for (name, addrs) in records(network, containers) {
        for a in addrs {
            out.push_str(&format!("{name}\tIN\tA\t{a}\n"));
        }
    }
    out
}

/// The parent zone (SOA and NS only): names of other networks answer
/// NXDOMAIN from BIND as they do from the agent's responder.
pub fn render_parent_zone() -> String {
    format!(
        "$ORIGIN {PRIVATE_DOMAIN}.\n$TTL 5\n@\tIN\tSOA\tns hostmaster 1 300 60 86400 5\n@\tIN\tNS\tns\nns\tIN\tA\t127.0.0.1\n"
    )
}

/// Fully-qualified query names: every existing name (app, `web.<app>`,
/// each type, each container) and as many NXDOMAIN names (a missing
/// container number, a missing app, another network's name).
pub fn query_names(network: &Network, containers: &[Container]) -> Vec<String> {
    let zone = &network.zone;
    let recs = records(network, containers);
    let mut names: Vec<String> = recs.keys().map(|n| format!("{n}.{zone}.")).collect();
    let existing = names.len();
    let apps: Vec<&String> = recs.keys().filter(|n| !n.contains('.')).collect();
    let mut missing = Vec::new();
    for app in &apps {
        missing.push(format!("999.web.{app}.{zone}."));
        missing.push(format!(
            "{app}.pn-00000000-0000-0000-0000-000000000000.{PRIVATE_DOMAIN}."
        ));
    }
    let mut i = 0;
    while missing.len() < existing {
        missing.push(format!("no-such-app-{i}.{zone}."));
        i += 1;
    }
    names.extend(missing.into_iter().take(existing.max(1)));
    names
}

/// dnsperf's data file: one `<name> A` per line.
pub fn dnsperf_file(names: &[String]) -> String {
    names.iter().map(|n| format!("{n} A\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Network {
        Network {
            project: "shop".into(),
            id: "pn-1".into(),
            vni: 1,
            subnet: "10.240.0.0/22".into(),
            gateway: "10.240.0.1".into(),
            mtu: 1370,
            zone: "pn-1.private-network.internal".into(),
        }
    }

    fn c(app: &str, t: &str, n: u32, ip: &str, net: &str) -> Container {
        Container {
            name: format!("{app}-{t}-{n}"),
            node: "n1".into(),
            netns: String::new(),
            ip: ip.into(),
            hostname: String::new(),
            application_id: app.into(),
            process_type: t.into(),
            number: n,
            network_id: net.into(),
        }
    }

    fn sample() -> Vec<Container> {
        vec![
            c("api", "web", 2, "10.240.0.5", "pn-1"),
            c("api", "web", 1, "10.240.0.4", "pn-1"),
            c("api", "worker", 1, "10.240.0.6", "pn-1"),
            c("other", "web", 1, "10.240.0.4", "pn-2"),
        ]
    }

    #[test]
    fn records_follow_the_design_table() {
        let r = records(&net(), &sample());
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(r["api"], vec![ip("10.240.0.4"), ip("10.240.0.5")]);
        assert_eq!(r["web.api"], r["api"]);
        assert_eq!(r["worker.api"], vec![ip("10.240.0.6")]);
        assert_eq!(r["2.web.api"], vec![ip("10.240.0.5")]);
        assert!(
            !r.keys().any(|k| k.contains("other")),
            "other networks stay out"
        );
    }

    #[test]
    fn zone_has_header_and_every_record() {
        let z = render_zone(&net(), &sample());
        assert!(z.starts_with("$ORIGIN pn-1.private-network.internal.\n"));
        assert!(z.contains("ns\tIN\tA\t10.240.0.1\n"));
        assert!(z.contains("1.worker.api\tIN\tA\t10.240.0.6\n"));
        assert_eq!(
            z.lines().filter(|l| l.contains("\tA\t")).count(),
            1 + 2 + 2 + 1 + 1 + 1 + 1
        );
    }

    #[test]
    fn query_mix_is_half_negative() {
        let names = query_names(&net(), &sample());
        let negatives = names
            .iter()
            .filter(|n| n.starts_with("999.") || n.starts_with("no-such") || n.contains("pn-0000"))
            .count();
        assert_eq!(negatives * 2, names.len());
        assert!(names.contains(&"1.web.api.pn-1.private-network.internal.".to_string()));
        assert!(dnsperf_file(&names).lines().all(|l| l.ends_with(". A")));
    }

    /// BIND's own checker accepts both rendered zones.
    #[test]
    fn named_checkzone_accepts_the_zones() {
        let dir = std::env::temp_dir().join(crate::bench::process::unique_name("pnzt"));
        std::fs::create_dir_all(&dir).unwrap();
        for (origin, text) in [
            (
                "pn-1.private-network.internal",
                render_zone(&net(), &sample()),
            ),
            (PRIVATE_DOMAIN, render_parent_zone()),
        ] {
            let f = dir.join("zone");
            std::fs::write(&f, text).unwrap();
            let out = std::process::Command::new("named-checkzone")
                .arg(origin)
                .arg(&f)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
