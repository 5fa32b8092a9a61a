//! Queries/s and latency of the agent's private DNS responder next to BIND
//! `named` serving the same zone, in the same run, with the same dnsperf
//! client, duration and query file.
//!
//! ```text
//! bench-dns [--seconds 8] [--rate 2000]
//! ```
//! The client runs in a sandbox container. Our responder is the network's
//! gateway (`<gw>:53`, across the container's veth and the network bridge);
//! named runs in the same container namespace on 127.0.0.1:53 (loopback:
//! a shorter path than ours, so that comparison favours BIND), from a
//! config and zone files under a temp dir, killed by PID at the end. The
//! `same-path` placement keeps the client in the container and puts named
//! on a second address of the network's bridge, so both servers are reached
//! over the same veth, bridge and guard rules (the fair comparison). A third
//! placement puts client and named in the network's namespace, where the
//! gateway is a local address too.
//! Phase 1 is flat out (queries/s); phase 2 is paced at `--rate` (p99 of
//! per-query latency from `dnsperf -v`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use privnet_e2e::bench::dnsperf::{self, DnsperfRun};
use privnet_e2e::bench::dnswire::{Answer, Client, enter_netns};
use privnet_e2e::bench::process::{Daemon, ScratchDir, in_netns, output, wait_until};
use privnet_e2e::bench::sandbox::{Network, Sandbox};
use privnet_e2e::bench::stats::{Summary, Table, ms, ratio};
use privnet_e2e::bench::zonefile::{
    PRIVATE_DOMAIN, dnsperf_file, query_names, render_parent_zone, render_zone,
};

/// The DNS responder against the reference server, at a fixed query rate.
#[derive(clap::Parser)]
struct Args {
    /// Seconds per dnsperf run.
    #[arg(long, default_value_t = 8)]
    seconds: u32,
    /// Queries per second.
    #[arg(long, default_value_t = 2000)]
    rate: u32,
}

fn named_conf(dir: &Path, zone: &str, listen: Ipv4Addr) -> String {
    let d = dir.display();
    format!(
        r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port 53 {{ {listen}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
zone "{zone}" {{ type primary; file "{d}/network.zone"; }};
zone "{PRIVATE_DOMAIN}" {{ type primary; file "{d}/parent.zone"; }};
"#
    )
}

/// Asks both servers every name from inside `netns` (a thread of its own).
fn answers(
    netns: &str,
    servers: [SocketAddr; 2],
    names: &[String],
) -> Result<Vec<[Option<Answer>; 2]>> {
    let (netns, names) = (netns.to_string(), names.to_vec());
    std::thread::spawn(move || -> Result<Vec<[Option<Answer>; 2]>> {
        enter_netns(&netns)?;
        let mut client = Client::new(Duration::from_millis(500))?;
        Ok(names
            .iter()
            .map(|n| servers.map(|s| client.query(s, n).ok()))
            .collect())
    })
    .join()
    .expect("query thread")
}

fn dnsperf_run(
    netns: &str,
    server: &str,
    file: &Path,
    seconds: u32,
    rate: Option<u32>,
) -> Result<DnsperfRun> {
    let (secs, file) = (seconds.to_string(), file.display().to_string());
    let mut args = vec![
        "-s", server, "-d", &file, "-l", &secs, "-c", "4", "-q", "200", "-t", "2",
    ];
    let rate = rate.map(|r| r.to_string());
    if let Some(r) = &rate {
        args.extend(["-Q", r, "-v"]);
    }
    let out = output(&mut in_netns(netns, "dnsperf", &args))?;
    let run = dnsperf::parse(&out)?;
    if run.completed == 0 {
        bail!("dnsperf against {server}: no query answered");
    }
    Ok(run)
}

/// Where the client and named run: a container (the spec's setup), or the
/// network's own namespace, where both servers are local addresses.
struct Placement {
    label: &'static str,
    /// Where dnsperf runs.
    netns: String,
    /// Where named runs, and its address.
    named_netns: String,
    named_addr: Ipv4Addr,
    /// False where named's path is shorter than ours (its own loopback
    /// against our veth and bridge): printed for scale, not judged.
    judged: bool,
}

/// named + the answer check + both dnsperf phases against both servers.
fn measure(
    place: &Placement,
    dir: &ScratchDir,
    network: &Network,
    names: &[String],
    qfile: &Path,
    args: &Args,
) -> Result<Vec<Row>> {
    let sub = dir.path.join(place.label);
    std::fs::create_dir_all(&sub)?;
    std::fs::copy(dir.path.join("network.zone"), sub.join("network.zone"))?;
    std::fs::copy(dir.path.join("parent.zone"), sub.join("parent.zone"))?;
    let conf = sub.join("named.conf");
    std::fs::write(&conf, named_conf(&sub, &network.zone, place.named_addr))?;
    let conf = conf.display().to_string();
    let mut named = Daemon::spawn(
        &mut in_netns(&place.named_netns, "named", &["-4", "-f", "-c", &conf]),
        Some(&sub.join("named.log")),
    )?;
    let gateway: Ipv4Addr = network.gateway.parse()?;
    let servers = [
        SocketAddr::from((gateway, 53)),
        SocketAddr::from((place.named_addr, 53)),
    ];
    let probe = format!("ns.{}.", network.zone);
    wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        answers(&place.netns, servers, std::slice::from_ref(&probe))
            .is_ok_and(|a| a[0].iter().all(Option::is_some))
    })
    .with_context(|| {
        format!(
            "named or the responder did not answer within 10 s in {} (see {}/named.log)",
            place.netns,
            sub.display()
        )
    })?;
    named.ensure_alive()?;
    // Same questions, same answers: otherwise the comparison means nothing.
    let mut mismatches = 0;
    for (name, [ours, bind]) in names.iter().zip(answers(&place.netns, servers, names)?) {
        if ours != bind {
            mismatches += 1;
            eprintln!("answer differs for {name}: responder {ours:?}, named {bind:?}");
        }
    }
    println!(
        "{}: answers identical for {}/{} names",
        place.label,
        names.len() - mismatches,
        names.len()
    );
    let mut rows = Vec::new();
    let named_addr = place.named_addr.to_string();
    for (server, addr) in [
        ("privnet responder", network.gateway.as_str()),
        ("BIND named", named_addr.as_str()),
    ] {
        let flat = dnsperf_run(&place.netns, addr, qfile, args.seconds, None)?;
        let paced = dnsperf_run(&place.netns, addr, qfile, args.seconds, Some(args.rate))?;
        let lat = Summary::of(&paced.latencies).context("dnsperf -v printed no latency")?;
        rows.push(Row {
            place: place.label,
            judged: place.judged,
            server,
            flat,
            paced,
            lat,
        });
    }
    named.ensure_alive()?;
    Ok(rows)
}

struct Row {
    place: &'static str,
    judged: bool,
    server: &'static str,
    flat: DnsperfRun,
    paced: DnsperfRun,
    lat: Summary,
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let sandbox = Sandbox::up("bn", None).context("failed to bring the sandbox up")?;
    let status = sandbox.status()?;
    let client = status.container("a container", |_| true)?;
    let network = status.network_of(client)?;
    let node = status.node(&client.node)?;
    let dir = ScratchDir::new("pnbdns")?;
    dir.write("network.zone", &render_zone(network, &status.containers))?;
    dir.write("parent.zone", &render_parent_zone())?;
    let names = query_names(network, &status.containers);
    let qfile = dir.write("queries.txt", &dnsperf_file(&names))?;
    println!(
        "bench-dns: sandbox {}; client {} ({}); {} names ({} negative), zone {}; {} s per run",
        sandbox.name,
        client.name,
        client.ip,
        names.len(),
        names.len() / 2,
        network.zone,
        args.seconds
    );
    let network_netns = format!("{}{}", node.network_netns_prefix, network.vni);
    // A second address on the network's bridge (the top of the subnet, never
    // allocated by the sandbox) lets named sit exactly where the responder
    // is: the client then reaches both over the same veth and bridge.
    let same_path_addr: Ipv4Addr =
        Ipv4Addr::from(u32::from(network.gateway.parse::<Ipv4Addr>()?) + 1021);
    output(&mut in_netns(
        &network_netns,
        "ip",
        &["addr", "add", &format!("{same_path_addr}/32"), "dev", "br0"],
    ))?;
    let placements = [
        Placement {
            label: "container",
            netns: client.netns.clone(),
            named_netns: client.netns.clone(),
            named_addr: Ipv4Addr::LOCALHOST,
            judged: false,
        },
        Placement {
            label: "same-path",
            netns: client.netns.clone(),
            named_netns: network_netns.clone(),
            named_addr: same_path_addr,
            judged: true,
        },
        Placement {
            label: "network-netns",
            netns: network_netns.clone(),
            named_netns: network_netns.clone(),
            named_addr: Ipv4Addr::LOCALHOST,
            judged: true,
        },
    ];
    let mut rows = Vec::new();
    for place in &placements {
        rows.extend(measure(place, &dir, network, &names, &qfile, &args)?);
    }
    let mut t = Table::new(&[
        "client in",
        "server",
        "qps (flat out)",
        "lost",
        "avg ms",
        &format!("p50 ms @{}qps", args.rate),
        "p99 ms",
        "max ms",
        "lost",
    ]);
    for r in &rows {
        t.row(vec![
            r.place.to_string(),
            r.server.to_string(),
            format!("{:.0}", r.flat.qps),
            r.flat.lost.to_string(),
            format!("{:.3}", ms(r.flat.avg_latency)),
            format!("{:.3}", ms(r.lat.p50)),
            format!("{:.3}", ms(r.lat.p99)),
            format!("{:.3}", ms(r.lat.max)),
            r.paced.lost.to_string(),
        ]);
    }
    println!("\n{}", t.render());
    for pair in rows.chunks(2) {
        let (ours, bind) = (&pair[0], &pair[1]);
        let q = ratio(ours.flat.qps, bind.flat.qps);
        let p99 = ratio(ms(ours.lat.p99), ms(bind.lat.p99));
        if !ours.judged {
            println!(
                "{:<14} qps responder/named {q:.2}x, p99 {p99:.2}x (named on the client's loopback, a shorter path: for scale, not the target comparison)",
                ours.place
            );
            continue;
        }
        println!(
            "{:<14} qps responder/named {q:.2}x (target >= 1x: {}); p99 responder/named {p99:.2}x (target <= 1x: {})",
            ours.place,
            if q >= 1.0 { "met" } else { "MISSED" },
            if p99 <= 1.0 { "met" } else { "MISSED" }
        );
    }
    Ok(())
}
