//! ADD/DEL latency of `privnet-cni` against the REAL agent of a sandbox
//! node, next to the reference Debian `bridge` + `host-local` plugins
//! (`isGateway`), in the same run, sequential and 16 in parallel; and the
//! headline "ADD → first reply": from exec of ADD to the first ICMP echo
//! reply, one echo sent as soon as ADD exits (what a container's first
//! connection sees: a dropped first ARP costs the kernel's ~1 s retry) —
//! from the gateway the result names, and from a peer container: ours on
//! the other node (over VXLAN in WireGuard), the reference's on the same
//! bridge (it has no other node).
//!
//! ```text
//! bench-cni [--runs 200] [--parallel 16] [--reference-dir /usr/lib/cni] [--plugin-log FILE] [--plugin PATH]
//! ```
//! `--plugin-log` runs our plugin at `logLevel: debug` into FILE: each ADD
//! that had to wait for its bridge port to forward logs how long.
//! One timed invocation = spawn, exec, work, exit; namespace creation is
//! untimed; the reference plugin's "host" namespace is a throwaway netns.
//! The sandbox runs a dedicated scenario: 2 nodes, one project, one
//! resident container on n1 so the network's namespace stays up (the steady
//! state a node is in) and the peer on n2, and the bench attaches on n1. This is the only CNI
//! bench (`e2e/bench/cni-bench.sh` runs it): the former `cni-bench` ran
//! against a stand-in agent shipped in the plugin's library.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sched::{CloneFlags, setns};
use privnet_e2e::bench::plugin::CniPlugin;
use privnet_e2e::bench::process::{ScratchDir, ScratchNetns};
use privnet_e2e::bench::sandbox::{Sandbox, privnet_binary};
use privnet_e2e::bench::stats::{Summary, Table, ms, ratio};
use serde_json::{Value, json};

const SCENARIO: &str = "nodes: 2
projects:
  - apiVersion: privnet.io/v1alpha1
    kind: Project
    metadata: {name: bench}
    spec: {namespaces: [bench]}
workloads:
  - project: bench
    application: resident
    processes: {web: 1}
    nodes: [n1]
  - project: bench
    application: peer
    processes: {web: 1}
    nodes: [n2]
";

/// ADD/DEL latency and ADD → first reply of `privnet-cni` against the
/// reference `bridge` + `host-local` plugins, in the same run.
#[derive(clap::Parser)]
struct Args {
    /// ADD+DEL runs per mode (and first-reply runs per target).
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Callers of the parallel mode.
    #[arg(long, default_value_t = 16)]
    parallel: usize,
    /// Where the reference plugins are.
    #[arg(long, default_value = "/usr/lib/cni")]
    reference_dir: PathBuf,
    /// Run our plugin at `logLevel: debug` into this file (where an ADD's time goes).
    #[arg(long)]
    plugin_log: Option<PathBuf>,
    /// Our plugin binary (default: `privnet-cni` beside `privnet`); the
    /// shipped one is static: `--plugin "$(scripts/build-cni-static)"`.
    #[arg(long)]
    plugin: Option<PathBuf>,
}

/// The plugin calls of the bench (the invocation itself is the toolkit's).
trait Bench {
    fn first_reply(&self, runs: usize, tag: &str, to: Target) -> Result<Vec<Duration>>;
    fn measure(
        &self,
        runs: usize,
        workers: usize,
        tag: &str,
    ) -> Result<(Vec<Duration>, Vec<Duration>)>;
}

impl Bench for CniPlugin {
    /// `runs` times, sequentially: exec of ADD to the first echo reply from
    /// `to` (one echo, sent when ADD exits), then an untimed DEL.
    fn first_reply(&self, runs: usize, tag: &str, to: Target) -> Result<Vec<Duration>> {
        let ns = ScratchNetns::new("pnbr")?;
        let icmp = icmp::socket_in(&ns.path())?;
        std::thread::scope(|s| {
            s.spawn(|| -> Result<Vec<Duration>> {
                enter_host_netns(self)?;
                let mut samples = Vec::with_capacity(runs);
                for i in 0..runs {
                    let id = format!("bench{tag}r{i}");
                    let start = Instant::now();
                    let (_, out) = self.invoke_output("ADD", &id, &ns.path())?;
                    let target = match to {
                        Target::Gateway => gateway_of(&out)?,
                        Target::Peer(ip) => ip,
                    };
                    icmp::echo(&icmp, target, i as u16, REPLY_TIMEOUT)
                        .with_context(|| format!("no reply from {target} after ADD {id}"))?;
                    samples.push(start.elapsed());
                    self.invoke("DEL", &id, &ns.path())?;
                }
                Ok(samples)
            })
            .join()
            .expect("bench thread")
        })
    }

    /// `runs` ADD+DEL pairs over `workers` threads, a container netns each.
    fn measure(
        &self,
        runs: usize,
        workers: usize,
        tag: &str,
    ) -> Result<(Vec<Duration>, Vec<Duration>)> {
        let namespaces = (0..workers)
            .map(|_| ScratchNetns::new("pnbc"))
            .collect::<Result<Vec<_>, _>>()?;
        let per_worker = runs.div_ceil(workers);
        let results: Vec<Result<(Vec<Duration>, Vec<Duration>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = namespaces
                .iter()
                .enumerate()
                .map(|(w, ns)| {
                    s.spawn(move || -> Result<(Vec<Duration>, Vec<Duration>)> {
                        enter_host_netns(self)?;
                        let (mut adds, mut dels) = (Vec::new(), Vec::new());
                        for i in 0..per_worker {
                            let id = format!("bench{tag}w{w}r{i}");
                            adds.push(self.invoke("ADD", &id, &ns.path())?);
                            dels.push(self.invoke("DEL", &id, &ns.path())?);
                        }
                        Ok((adds, dels))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("bench thread"))
                .collect()
        });
        let (mut adds, mut dels) = (Vec::new(), Vec::new());
        for r in results {
            let (a, d) = r?;
            adds.extend(a);
            dels.extend(d);
        }
        Ok((adds, dels))
    }
}

/// Moves the calling thread into the plugin's "host" namespace, if it has
/// one (the reference's bridge must never land in the machine's own).
fn enter_host_netns(plugin: &CniPlugin) -> Result<()> {
    if let Some(host) = &plugin.host_netns {
        let f = File::open(format!("/run/netns/{host}"))?;
        setns(f.as_fd(), CloneFlags::CLONE_NEWNET).context("setns on a bench thread")?;
    }
    Ok(())
}

/// Runs `f` on a thread of its own in the plugin's "host" namespace.
fn in_host_netns<R: Send>(plugin: &CniPlugin, f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_host_netns(plugin)?;
            f()
        })
        .join()
        .expect("bench thread")
    })
}

/// Whom the first echo goes to.
#[derive(Clone, Copy)]
enum Target {
    /// The gateway of the ADD's result.
    Gateway,
    /// A container attached before the runs.
    Peer(Ipv4Addr),
}

/// How long to wait for the first reply (a lost first ARP costs ~1 s).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The gateway of the first address of an ADD result.
fn gateway_of(result: &[u8]) -> Result<Ipv4Addr> {
    let v: Value = serde_json::from_slice(result).context("ADD result is not JSON")?;
    v["ips"][0]["gateway"]
        .as_str()
        .context("ADD result names no gateway")?
        .parse()
        .context("ADD result's gateway is not IPv4")
}

/// The first address of an ADD result.
fn address_of(result: &[u8]) -> Result<Ipv4Addr> {
    let v: Value = serde_json::from_slice(result).context("ADD result is not JSON")?;
    let cidr = v["ips"][0]["address"]
        .as_str()
        .context("ADD result names no address")?;
    cidr.split('/')
        .next()
        .unwrap_or(cidr)
        .parse()
        .context("ADD result's address is not IPv4")
}

/// One ICMP echo over a raw socket opened in the container's namespace.
mod icmp {
    use std::fs::File;
    use std::net::Ipv4Addr;
    use std::os::fd::{AsFd, OwnedFd};
    use std::time::{Duration, Instant};

    use anyhow::{Context, Result, bail};
    use nix::sched::{CloneFlags, setns};
    use nix::sys::socket::{
        AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recv, sendto,
        setsockopt, socket, sockopt,
    };
    use nix::sys::time::TimeVal;

    /// A raw ICMP socket in the namespace at `path` (made on a thread of
    /// its own: the socket stays in the namespace it was created in).
    pub fn socket_in(path: &str) -> Result<OwnedFd> {
        let path = path.to_string();
        std::thread::spawn(move || -> Result<OwnedFd> {
            let f = File::open(&path).with_context(|| format!("failed to open {path}"))?;
            setns(f.as_fd(), CloneFlags::CLONE_NEWNET).context("setns into the container")?;
            Ok(socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::Icmp,
            )?)
        })
        .join()
        .expect("socket thread")
    }

    fn checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// Sends one echo request to `to` and waits for its reply.
    pub fn echo(fd: &OwnedFd, to: Ipv4Addr, seq: u16, timeout: Duration) -> Result<()> {
        let id = (std::process::id() & 0xffff) as u16;
        let mut pkt = [
            8u8, 0, 0, 0, 0, 0, 0, 0, b'p', b'r', b'i', b'v', b'n', b'e', b't', 0,
        ];
        pkt[4..6].copy_from_slice(&id.to_be_bytes());
        pkt[6..8].copy_from_slice(&seq.to_be_bytes());
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
        sendto(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            &pkt,
            &SockaddrIn::from(std::net::SocketAddrV4::new(to, 0)),
            MsgFlags::empty(),
        )
        .context("failed to send the echo")?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 1500];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no echo reply within {timeout:?}");
            }
            let tv = TimeVal::new(left.as_secs() as i64, left.subsec_micros().max(1) as i64);
            setsockopt(fd, sockopt::ReceiveTimeout, &tv)?;
            let n = match recv(
                std::os::fd::AsRawFd::as_raw_fd(fd),
                &mut buf,
                MsgFlags::empty(),
            ) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("failed to receive"),
            };
            // A raw socket hands over the IP header too.
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            let icmp = &buf[ihl.min(n)..n];
            let from = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
            if icmp.len() >= 8
                && icmp[0] == 0
                && from == to
                && icmp[4..6] == id.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                return Ok(());
            }
        }
    }
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let dir = ScratchDir::new("pnbcni")?;
    let scenario = dir.write("scenario.yaml", SCENARIO)?;
    let sandbox =
        Sandbox::up_files("bc", Some(&scenario)).context("failed to bring the sandbox up")?;
    let status = sandbox.status()?;
    let node = status.node("n1")?;
    let network = status
        .networks
        .first()
        .context("the bench scenario has a network")?;
    let cni = match &args.plugin {
        Some(p) => p.clone(),
        None => privnet_binary()?.with_file_name("privnet-cni"),
    };
    let mut conf = json!({"cniVersion": "1.0.0", "name": "privnet", "type": "privnet-cni",
                          "agentSocket": node.agent_socket, "network": network.id});
    if let Some(log) = &args.plugin_log {
        conf["logLevel"] = json!("debug");
        conf["logFile"] = json!(log);
    }
    let ours = CniPlugin {
        binary: cni.clone(),
        conf,
        cni_path: cni
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        cni_args: "IgnoreUnknown=1;PRIVNET_APPLICATION_ID=bench;PRIVNET_PROCESS_TYPE=web".into(),
        host_netns: None,
    };
    let ref_host = ScratchNetns::new("pnbh")?;
    let reference = CniPlugin {
        binary: args.reference_dir.join("bridge"),
        conf: json!({
            "cniVersion": "1.0.0", "name": "bench-ref", "type": "bridge",
            "bridge": "pnbref0", "isGateway": true, "ipMasq": false, "mtu": network.mtu,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": network.subnet}]], "dataDir": dir.path.join("host-local")}
        }),
        cni_path: args.reference_dir.display().to_string(),
        cni_args: String::new(),
        host_netns: Some(ref_host.name.clone()),
    };
    println!(
        "bench-cni: sandbox {}; real agent of n1 ({}), network {}; {} ADD+DEL runs, parallel = {}",
        sandbox.name, node.agent_socket, network.id, args.runs, args.parallel
    );
    let mut t = Table::new(&[
        "mode", "verb", "ours p50", "ours p99", "ref p50", "ref p99", "p50 x", "p99 x", "targets",
    ]);
    for (mode, workers) in [("sequential", 1), ("parallel", args.parallel)] {
        let (oa, od) = ours.measure(args.runs, workers, &format!("o{workers}"))?;
        let (ra, rd) = reference.measure(args.runs, workers, &format!("r{workers}"))?;
        for (verb, o, r) in [("ADD", &oa, &ra), ("DEL", &od, &rd)] {
            let (o, r) = (
                Summary::of(o).context("no samples")?,
                Summary::of(r).context("no samples")?,
            );
            let (x50, x99) = (ratio(ms(o.p50), ms(r.p50)), ratio(ms(o.p99), ms(r.p99)));
            let target = if verb == "ADD" {
                format!("p50<=0.5x {}, p99<=1x {}", ok(x50 <= 0.5), ok(x99 <= 1.0))
            } else {
                String::new()
            };
            t.row(vec![
                mode.into(),
                verb.into(),
                format!("{:.2}ms", ms(o.p50)),
                format!("{:.2}ms", ms(o.p99)),
                format!("{:.2}ms", ms(r.p50)),
                format!("{:.2}ms", ms(r.p99)),
                format!("{x50:.2}"),
                format!("{x99:.2}"),
                target,
            ]);
        }
    }
    println!("\n{}", t.render());
    // The headline: usable, not merely returned. Ours reaches a peer on
    // the other node; the reference's peer is on its own bridge.
    let peer = status
        .containers
        .iter()
        .find(|c| c.node == "n2")
        .context("the bench scenario has a container on n2")?;
    let our_peer: Ipv4Addr = peer.ip.parse().context("the peer's address")?;
    let ref_peer_ns = ScratchNetns::new("pnbp")?;
    let ref_peer = in_host_netns(&reference, || {
        let (_, out) = reference.invoke_output("ADD", "benchrefpeer", &ref_peer_ns.path())?;
        address_of(&out)
    })?;
    let mut h = Table::new(&[
        "ADD -> first reply, sequential",
        "ours p50",
        "ours p99",
        "ours worst",
        "ref p50",
        "ref p99",
        "ref worst",
        "p50 x",
        "worst x",
        "targets",
    ]);
    for (what, tag, ours_to, ref_to) in [
        ("gateway", "g", Target::Gateway, Target::Gateway),
        (
            "peer (ours on n2)",
            "p",
            Target::Peer(our_peer),
            Target::Peer(ref_peer),
        ),
    ] {
        let o = ours.first_reply(args.runs, &format!("o{tag}"), ours_to)?;
        let r = reference.first_reply(args.runs, &format!("r{tag}"), ref_to)?;
        let (o, r) = (
            Summary::of(&o).context("no samples")?,
            Summary::of(&r).context("no samples")?,
        );
        let (x50, xmax) = (ratio(ms(o.p50), ms(r.p50)), ratio(ms(o.max), ms(r.max)));
        h.row(vec![
            format!("{what}, {} runs", o.count),
            format!("{:.2}ms", ms(o.p50)),
            format!("{:.2}ms", ms(o.p99)),
            format!("{:.2}ms", ms(o.max)),
            format!("{:.2}ms", ms(r.p50)),
            format!("{:.2}ms", ms(r.p99)),
            format!("{:.2}ms", ms(r.max)),
            format!("{x50:.2}"),
            format!("{xmax:.2}"),
            format!(
                "p50<=0.5x {}, worst<100ms {}",
                ok(x50 <= 0.5),
                ok(o.max < Duration::from_millis(100))
            ),
        ]);
    }
    println!("\n{}", h.render());
    in_host_netns(&reference, || {
        reference.invoke("DEL", "benchrefpeer", &ref_peer_ns.path())?;
        Ok(())
    })?;
    drop(ref_host);
    Ok(())
}

fn ok(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
