//! Cross-node connectivity inside a network (TCP, UDP, ICMP, broadcast),
//! the DNS table of the design from every container, env vars and MTU.

use crate::common;

use std::collections::BTreeSet;

use common::{Sandbox, client, spawn_server};

fn host_addresses(sb: &Sandbox, container: &str, name: &str) -> Result<BTreeSet<String>, String> {
    let out = sb.exec(container, &["host", "-t", "A", name]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(text);
    }
    Ok(text
        .lines()
        .filter_map(|l| l.split(" has address ").nth(1))
        .map(str::to_string)
        .collect())
}

#[test]
fn default_scenario_connectivity_dns_env_and_mtu() {
    common::require_root!();
    let sb = Sandbox::up("c", None);
    let containers = sb.containers();
    let shop: Vec<_> = containers
        .iter()
        .filter(|c| c["project"] == "shop")
        .collect();
    let ip = |name: &str| sb.container(name)["ip"].as_str().unwrap().to_string();
    let (web1, worker) = ("shop-api-web-1", "shop-api-worker-1");
    assert_ne!(
        sb.container(web1)["node"],
        sb.container(worker)["node"],
        "the pair must cross nodes"
    );

    // TCP and UDP on arbitrary ports, across nodes.
    for (proto, port) in [("tcp", 7777u16), ("udp", 9999)] {
        let server = spawn_server(&sb, worker, proto, port);
        let reply = client(
            &sb,
            web1,
            proto,
            &ip(worker),
            port,
            &format!("hello-{proto}"),
        );
        let out = server.wait_with_output().unwrap();
        assert_eq!(
            reply.as_deref(),
            Some(format!("ack:hello-{proto}").as_str()),
            "{proto} reply"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("hello-{proto}")
        );
    }
    // ICMP between every pair of the network.
    for a in &shop {
        for b in &shop {
            if a["name"] != b["name"] {
                sb.exec_ok(
                    a["name"].as_str().unwrap(),
                    &["ping", "-c1", "-w4", b["ip"].as_str().unwrap()],
                );
            }
        }
    }
    // Broadcast reaches another node.
    let server = spawn_server(&sb, worker, "udp", 9998);
    let reply = client(&sb, web1, "bcast", "10.240.3.255", 9998, "to-all");
    server.wait_with_output().unwrap();
    assert_eq!(reply.as_deref(), Some("ack:to-all"));

    // DNS: the design's table, from every container of the network.
    let zone = sb.network("shop")["zone"].as_str().unwrap().to_string();
    let ips_of = |app: &str, t: Option<&str>| -> BTreeSet<String> {
        shop.iter()
            .filter(|c| c["applicationId"] == app && t.is_none_or(|t| c["processType"] == t))
            .map(|c| c["ip"].as_str().unwrap().to_string())
            .collect()
    };
    for c in &shop {
        let from = c["name"].as_str().unwrap();
        assert_eq!(
            host_addresses(&sb, from, &format!("shop-api.{zone}")).unwrap(),
            ips_of("shop-api", Some("web")),
            "app name = web only"
        );
        assert_eq!(
            host_addresses(&sb, from, &format!("web.shop-api.{zone}")).unwrap(),
            ips_of("shop-api", Some("web"))
        );
        assert_eq!(
            host_addresses(&sb, from, &format!("worker.shop-api.{zone}")).unwrap(),
            ips_of("shop-api", Some("worker"))
        );
        assert_eq!(
            host_addresses(&sb, from, &format!("1.web.shop-api.{zone}")).unwrap(),
            BTreeSet::from([ip(web1)])
        );
        assert_eq!(
            host_addresses(&sb, from, &format!("db.shop-db.{zone}")).unwrap(),
            ips_of("shop-db", None)
        );
        let missing = host_addresses(&sb, from, &format!("9.web.shop-api.{zone}")).unwrap_err();
        assert!(missing.contains("NXDOMAIN"), "{missing}");
    }
    // The exact output line of the design.
    let out = sb.exec_ok(web1, &["host", &format!("shop-api.{zone}")]);
    assert!(
        out.contains(&format!("shop-api.{zone} has address {}", ip(web1))),
        "{out}"
    );

    // Another network's names answer exactly like missing names.
    let blog_zone = sb.network("blog")["zone"].as_str().unwrap().to_string();
    let other = host_addresses(&sb, web1, &format!("1.web.blog-web.{blog_zone}")).unwrap_err();
    let missing = host_addresses(&sb, web1, &format!("1.web.nope.{zone}")).unwrap_err();
    assert!(
        other.contains("NXDOMAIN") && missing.contains("NXDOMAIN"),
        "{other} / {missing}"
    );

    // Env vars.
    let env = sb.exec_ok(web1, &["env"]);
    assert!(env.contains("SCALINGO_APPLICATION_ID=shop-api"), "{env}");
    assert!(
        env.contains(&format!("SCALINGO_PRIVATE_HOSTNAME=1.web.shop-api.{zone}")),
        "{env}"
    );
    assert!(
        env.contains(&format!(
            "SCALINGO_PRIVATE_NETWORK_ID={}",
            sb.network("shop")["id"].as_str().unwrap()
        )),
        "{env}"
    );

    // MTU: exactly MTU-28 bytes of ICMP payload pass across nodes with DF, one more does not.
    let mtu = sb.network("shop")["mtu"].as_u64().unwrap();
    let link = sb.exec_ok(web1, &["cat", "/sys/class/net/eth1/mtu"]);
    let _ = link; // /sys is the host's under `ip netns exec` remount rules; checked below through ip.
    let ipl = sb.exec_ok(web1, &["ip", "-o", "link", "show", "eth1"]);
    assert!(ipl.contains(&format!("mtu {mtu}")), "{ipl}");
    sb.exec_ok(
        web1,
        &[
            "ping",
            "-c1",
            "-W2",
            "-M",
            "do",
            "-s",
            &(mtu - 28).to_string(),
            &ip(worker),
        ],
    );
    // One byte more must fail on the path, not in the sender: with the
    // container's own interface one byte larger the packet is sent (ping
    // transmits it, no local "message too long") and dropped on the way.
    sb.exec_ok(
        web1,
        &["ip", "link", "set", "eth1", "mtu", &(mtu + 1).to_string()],
    );
    let ping = |size: u64| {
        sb.exec(
            web1,
            &[
                "ping",
                "-c1",
                "-W2",
                "-M",
                "do",
                "-s",
                &size.to_string(),
                &ip(worker),
            ],
        )
    };
    // Control: the larger interface MTU does not break what fits.
    assert!(
        ping(mtu - 28).status.success(),
        "MTU-sized ping with eth1 at MTU+1"
    );
    let too_big = ping(mtu - 27);
    let (out, err) = (
        String::from_utf8_lossy(&too_big.stdout).into_owned(),
        String::from_utf8_lossy(&too_big.stderr).into_owned(),
    );
    sb.exec_ok(
        web1,
        &["ip", "link", "set", "eth1", "mtu", &mtu.to_string()],
    );
    assert!(
        !too_big.status.success(),
        "one byte more than the MTU must not pass: {out}"
    );
    assert!(
        out.contains("1 packets transmitted") && !err.contains("too long"),
        "the oversized packet must leave the sender and be dropped on the path: {out} {err}"
    );
}
