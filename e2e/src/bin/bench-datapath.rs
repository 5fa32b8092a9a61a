//! Cross-node TCP throughput container → container (VXLAN inside the
//! WireGuard mesh) next to the raw WireGuard tunnel between the same two
//! nodes, in the same run; retransmits of both; the path MTU check.
//!
//! ```text
//! bench-datapath [--rounds 5] [--seconds 6]
//! ```
//! Needs root and release builds of privnet/privnet-cni next to it (or
//! `PRIVNET_BIN`). Traffic stays inside the sandbox's namespaces.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use privnet_e2e::bench::iperf::{TcpRun, parse_tcp_report};
use privnet_e2e::bench::process::{Daemon, in_netns, output, raw_output, wait_until};
use privnet_e2e::bench::sandbox::Sandbox;
use privnet_e2e::bench::snmp::{Counters, MTU_SIGNS};
use privnet_e2e::bench::stats::{Table, ratio};

const PORT: &str = "5201";

/// Throughput and latency of the datapath against the reference paths.
#[derive(clap::Parser)]
struct Args {
    /// Rounds per path.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 6)]
    seconds: u32,
}

/// One end of a measured path: the namespace and address of each side.
struct Path {
    label: &'static str,
    client_netns: String,
    server_netns: String,
    server_ip: String,
}

impl Path {
    fn server(&self) -> Result<Daemon> {
        let d = Daemon::spawn(
            &mut in_netns(
                &self.server_netns,
                "iperf3",
                &["-s", "-B", &self.server_ip, "-p", PORT],
            ),
            None,
        )?;
        // Measured once the server listens, not after a guessed pause.
        let listening = || {
            output(&mut in_netns(
                &self.server_netns,
                "ss",
                &["-Hltn", &format!("src {}:{PORT}", self.server_ip)],
            ))
            .is_ok_and(|out| !out.trim().is_empty())
        };
        if wait_until(Duration::from_secs(5), Duration::from_millis(5), listening).is_none() {
            bail!("iperf3 does not listen on {}:{PORT}", self.server_ip);
        }
        Ok(d)
    }

    /// One client run; `rate` paces it (`-b`), otherwise as fast as it goes.
    fn run(&self, seconds: u32, rate: Option<u64>) -> Result<TcpRun> {
        let secs = seconds.to_string();
        let mut args = vec![
            "-c",
            &self.server_ip,
            "-p",
            PORT,
            "-t",
            &secs,
            "-O",
            "1",
            "-J",
            "--connect-timeout",
            "3000",
        ];
        let bitrate = rate.map(|r| r.to_string());
        if let Some(b) = &bitrate {
            args.extend(["-b", b]);
        }
        let out = raw_output(&mut in_netns(&self.client_netns, "iperf3", &args))?;
        parse_tcp_report(&String::from_utf8_lossy(&out.stdout))
            .with_context(|| format!("iperf3 over the {} path", self.label))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `ping -M do -s size` once from `netns`; true when it got an answer.
fn ping_df(netns: &str, ip: &str, size: u32) -> Result<bool> {
    let size = size.to_string();
    let out = raw_output(&mut in_netns(
        netns,
        "ping",
        &["-M", "do", "-s", &size, "-c", "2", "-W", "1", "-q", ip],
    ))?;
    Ok(out.status.success())
}

/// What the kernel counted during one run: signs of an MTU problem on any
/// of the watched namespaces, and datagrams the receiving node's tunnel
/// socket dropped for a full receive buffer (overload, not MTU).
struct Causes {
    mtu_signs: u64,
    tunnel_socket_drops: u64,
}

impl Causes {
    fn describe(&self) -> String {
        format!(
            "fragments or ICMP unreachables: {}, tunnel socket drops: {}",
            self.mtu_signs, self.tunnel_socket_drops
        )
    }
}

fn paced_with_causes(
    path: &Path,
    args: &Args,
    pace: u64,
    watched: &[&str],
    receiving_node: &str,
) -> Result<(TcpRun, Causes)> {
    let before: Vec<Counters> = watched
        .iter()
        .map(|ns| Counters::read(ns))
        .collect::<Result<_, _>>()?;
    let run = path.run(args.seconds, Some(pace))?;
    let mut causes = Causes {
        mtu_signs: 0,
        tunnel_socket_drops: 0,
    };
    for (ns, before) in watched.iter().zip(&before) {
        let after = Counters::read(ns)?;
        causes.mtu_signs += MTU_SIGNS
            .iter()
            .map(|c| after.delta(before, c))
            .sum::<u64>();
        if *ns == receiving_node {
            causes.tunnel_socket_drops = after.delta(before, "UdpRcvbufErrors");
        }
    }
    Ok((run, causes))
}

fn gbps(bps: f64) -> String {
    format!("{:.3}", bps / 1e9)
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let sandbox = Sandbox::up("bd", None).context("failed to bring the sandbox up")?;
    let status = sandbox.status()?;
    let server = status.container("a container on n2", |c| c.node == "n2")?;
    let client = status.container("a container on n1 in the same network", |c| {
        c.node == "n1" && c.network_id == server.network_id
    })?;
    let network = status.network_of(server)?;
    let (n1, n2) = (status.node("n1")?, status.node("n2")?);
    println!(
        "bench-datapath: sandbox {} ({:.1} s up); {} (n1) -> {} (n2), network MTU {}; raw tunnel {} -> {}",
        sandbox.name,
        sandbox.up_time.as_secs_f64(),
        client.name,
        server.name,
        network.mtu,
        n1.vtep,
        n2.vtep
    );
    let overlay = Path {
        label: "container",
        client_netns: client.netns.clone(),
        server_netns: server.netns.clone(),
        server_ip: server.ip.clone(),
    };
    let raw = Path {
        label: "raw WireGuard",
        client_netns: n1.netns.clone(),
        server_netns: n2.netns.clone(),
        server_ip: n2.vtep.clone(),
    };
    let _servers = (overlay.server()?, raw.server()?);

    // Alternate the two paths so background load hits both alike.
    let (mut ov, mut rw) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        ov.push(overlay.run(args.seconds, None)?);
        rw.push(raw.run(args.seconds, None)?);
        eprintln!(
            "round {}: container {} Gbit/s ({} retr), raw {} Gbit/s ({} retr)",
            round + 1,
            gbps(ov[round].received_bps),
            ov[round].retransmits,
            gbps(rw[round].received_bps),
            rw[round].retransmits
        );
    }
    let ov_bps = median(ov.iter().map(|r| r.received_bps).collect());
    let rw_bps = median(rw.iter().map(|r| r.received_bps).collect());
    // Paced at half the raw rate: queue drops vanish, so retransmits left
    // here would come from the path itself (MTU black holes, fragments).
    let pace = (rw_bps / 2.0) as u64;
    let watched = [&*client.netns, &server.netns, &n1.netns, &n2.netns];
    let (ov_paced, ov_why) = paced_with_causes(&overlay, &args, pace, &watched, &n2.netns)?;
    let (rw_paced, rw_why) = paced_with_causes(&raw, &args, pace, &watched, &n2.netns)?;

    let fits = network.mtu - 28;
    let fits_ok = ping_df(&client.netns, &server.ip, fits)?;
    let too_big_blocked = !ping_df(&client.netns, &server.ip, fits + 1)?;

    let mut t = Table::new(&[
        "path",
        "Gbit/s (median)",
        "retransmits (sum)",
        "paced Gbit/s",
        "paced retransmits",
    ]);
    for (label, runs, bps, paced) in [
        ("container -> container", &ov, ov_bps, &ov_paced),
        ("raw WireGuard n1 -> n2", &rw, rw_bps, &rw_paced),
    ] {
        t.row(vec![
            label.into(),
            gbps(bps),
            runs.iter().map(|r| r.retransmits).sum::<u64>().to_string(),
            gbps(paced.received_bps),
            paced.retransmits.to_string(),
        ]);
    }
    println!("\n{}", t.render());
    let r = ratio(ov_bps, rw_bps);
    println!(
        "throughput ratio container/raw: {r:.2}x (target >= 0.90x: {})",
        if r >= 0.9 { "met" } else { "MISSED" }
    );
    println!(
        "MTU {}: ping -M do -s {fits} {}; -s {} {}",
        network.mtu,
        if fits_ok { "passes" } else { "FAILS" },
        fits + 1,
        if too_big_blocked {
            "is refused"
        } else {
            "PASSES (wrong)"
        }
    );
    println!(
        "retransmits when paced at {} Gbit/s: container {} ({}), raw {} ({})",
        gbps(pace as f64),
        ov_paced.retransmits,
        ov_why.describe(),
        rw_paced.retransmits,
        rw_why.describe()
    );
    if !fits_ok || !too_big_blocked {
        bail!("the path MTU check failed");
    }
    if ov_why.mtu_signs > 0 {
        bail!("the container path fragmented or got ICMP unreachables: an MTU problem");
    }
    Ok(())
}
