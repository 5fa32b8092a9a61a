//! `privnet sandbox up` time of the default scenario, and convergence: how
//! long after a `scale` adds a container its private name resolves (and
//! the container answers a ping) from a container on every other node.
//!
//! ```text
//! bench-sandbox [--samples 20] [--app shop-api] [--type web]
//! ```
//! Each sample runs `privnet sandbox scale APP TYPE N+1` in the background
//! (then scales back to N, unmeasured)
//! and watches the sandbox state file (the JSON behind `status -o json`)
//! for the new container: from the moment it is attached (CNI ADD done,
//! recorded) one thread per other node, inside a container of the same
//! network there, asks the gateway for `<n>.<type>.<app>.<zone>` every
//! 2 ms until it answers the new address, then pings it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use privnet_e2e::bench::dnswire::{Client, enter_netns};
use privnet_e2e::bench::process::{self, in_netns, raw_output};
use privnet_e2e::bench::sandbox::{Container, Sandbox, Status};
use privnet_e2e::bench::stats::{Summary, Table, ms};

/// `sandbox up` and how long a new name takes to resolve on every node.
#[derive(clap::Parser)]
struct Args {
    /// Scale-ups measured.
    #[arg(long, default_value_t = 20)]
    samples: u32,
    /// The application scaled.
    #[arg(long, default_value = "shop-api")]
    app: String,
    /// Its process type.
    #[arg(long = "type", default_value = "web")]
    process_type: String,
}

/// The state file `status -o json` prints (read directly: polling it
/// every 2 ms through a subprocess would load the machine we measure).
fn read_state(name: &str) -> Option<Status> {
    let text = std::fs::read_to_string(format!("/run/privnet-sandbox/{name}/state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// One probe: from `netns`, time until `name` resolves to `ip`, then until
/// `ip` answers a ping (both from `since`).
fn probe(
    netns: String,
    server: SocketAddr,
    name: String,
    ip: Ipv4Addr,
    since: Instant,
) -> Result<(Duration, Duration)> {
    let deadline = since + Duration::from_secs(10);
    let resolved = std::thread::spawn(move || -> Result<Duration> {
        enter_netns(&netns)?;
        let mut client = Client::new(Duration::from_millis(200))?;
        loop {
            if client
                .query(server, &name)
                .is_ok_and(|a| a.addresses == [ip])
            {
                return Ok(since.elapsed());
            }
            if Instant::now() > deadline {
                bail!("{name} did not resolve to {ip} from {netns} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let resolved = resolved.join().expect("probe thread")?;
    Ok((resolved, since.elapsed()))
}

fn ping_until(netns: &str, ip: &str, since: Instant) -> Result<Duration> {
    let deadline = since + Duration::from_secs(10);
    loop {
        if raw_output(&mut in_netns(
            netns,
            "ping",
            &["-c", "1", "-W", "1", "-q", ip],
        ))?
        .status
        .success()
        {
            return Ok(since.elapsed());
        }
        if Instant::now() > deadline {
            bail!("{ip} did not answer a ping from {netns} within 10 s");
        }
    }
}

/// Samples of one scale-up: (resolved everywhere, pinged everywhere,
/// `scale` command time), each from the attach moment except the last.
fn sample(sandbox: &Sandbox, args: &Args, count: u32) -> Result<(Duration, Duration, Duration)> {
    let target = format!("{}-{}-{count}", args.app, args.process_type);
    let started = Instant::now();
    let mut scale: std::process::Child = sandbox
        .scale_command(&args.app, &args.process_type, count)
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("failed to start privnet sandbox scale")?;
    let (state, fresh) = loop {
        if let Some(s) = read_state(&sandbox.name)
            && let Some(c) = s
                .containers
                .iter()
                .find(|c| c.name == target && !c.ip.is_empty())
                .cloned()
        {
            break (s, c);
        }
        if let Ok(Some(code)) = scale.try_wait() {
            bail!("scale to {count} exited ({code}) without container {target}");
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = scale.kill();
            bail!("container {target} did not appear within 20 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let attached = Instant::now();
    let network = state.network_of(&fresh)?.clone();
    let server = SocketAddr::from((network.gateway.parse::<Ipv4Addr>()?, 53));
    let ip: Ipv4Addr = fresh.ip.parse()?;
    let name = format!("{}.", fresh.hostname.trim_end_matches('.'));
    let probes = probe_containers(&state, &fresh);
    if probes.len() + 1 < state.nodes.len() {
        bail!(
            "no container of network {} on every other node to probe from",
            network.id
        );
    }
    let handles: Vec<_> = probes
        .iter()
        .map(|p| {
            let (netns, name) = (p.netns.clone(), name.clone());
            std::thread::spawn(move || probe(netns, server, name, ip, attached))
        })
        .collect();
    let mut resolved = Duration::ZERO;
    for h in handles {
        resolved = resolved.max(h.join().expect("probe")?.0);
    }
    let mut pinged = Duration::ZERO;
    for p in &probes {
        pinged = pinged.max(ping_until(&p.netns, &fresh.ip, attached)?);
    }
    let code = scale.wait()?;
    if !code.success() {
        bail!(
            "privnet sandbox scale {} {} {count} failed ({code})",
            args.app,
            args.process_type
        );
    }
    Ok((resolved, pinged, started.elapsed()))
}

/// One container of the same network on each node other than `fresh`'s.
fn probe_containers<'s>(state: &'s Status, fresh: &Container) -> Vec<&'s Container> {
    let mut out: Vec<&Container> = Vec::new();
    for c in &state.containers {
        if c.network_id == fresh.network_id
            && c.node != fresh.node
            && !out.iter().any(|o| o.node == c.node)
        {
            out.push(c);
        }
    }
    out
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let sandbox = Sandbox::up("bs", None).context("failed to bring the sandbox up")?;
    let up = sandbox.up_time;
    let status = sandbox.status()?;
    let base = status
        .containers
        .iter()
        .filter(|c| c.application_id == args.app && c.process_type == args.process_type)
        .count() as u32;
    if base == 0 {
        bail!(
            "no {} containers of {} in the default scenario",
            args.process_type,
            args.app
        );
    }
    println!(
        "bench-sandbox: sandbox {} ({} nodes, {} containers); up {:.2} s; scaling {} {} {base} -> {} -> {base}, {} samples",
        sandbox.name,
        status.nodes.len(),
        status.containers.len(),
        up.as_secs_f64(),
        args.app,
        args.process_type,
        base + 1,
        args.samples
    );
    let (mut resolved, mut pinged, mut scale) = (Vec::new(), Vec::new(), Vec::new());
    // Up by one, measure, back down (not measured): the count stays small
    // (the agent truncates answers of 18+ records without EDNS, which
    // `scale`'s own convergence wait does not survive) and the container
    // number and name are reused each time, with a fresh address.
    for _ in 0..args.samples {
        let (r, p, s) = sample(&sandbox, &args, base + 1)?;
        resolved.push(r);
        pinged.push(p);
        scale.push(s);
        let down = process::output(
            sandbox
                .scale_command(&args.app, &args.process_type, base)
                .stderr(std::process::Stdio::piped()),
        );
        down.context("failed to scale back down")?;
    }
    let mut t = Table::new(&["measure", "samples", "p50 ms", "p99 ms", "max ms", "target"]);
    t.row(vec![
        "sandbox up (default scenario)".into(),
        "1".into(),
        format!("{:.0}", ms(up)),
        "".into(),
        "".into(),
        "< 10000 ms".into(),
    ]);
    for (label, v, target) in [
        (
            "name resolves on every other node",
            &resolved,
            "p99 < 1000 ms",
        ),
        ("container pings from every other node", &pinged, ""),
        ("`scale` command (incl. its own wait)", &scale, ""),
    ] {
        let s = Summary::of(v).context("no samples")?;
        t.row(vec![
            label.into(),
            s.count.to_string(),
            format!("{:.1}", ms(s.p50)),
            format!("{:.1}", ms(s.p99)),
            format!("{:.1}", ms(s.max)),
            target.into(),
        ]);
    }
    println!("\n{}", t.render());
    let conv = Summary::of(&resolved).context("no samples")?;
    println!(
        "up: {:.2} s (target < 10 s: {})",
        up.as_secs_f64(),
        if up < Duration::from_secs(10) {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "convergence p99 (attach -> resolvable from every other node): {:.1} ms (target < 1000 ms: {})",
        ms(conv.p99),
        if conv.p99 < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}
