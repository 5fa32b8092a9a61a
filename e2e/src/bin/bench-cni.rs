//! ADD/DEL latency of `privnet-cni` against the REAL agent of a sandbox
//! node, next to the reference Debian `bridge` + `host-local` plugins, in
//! the same run, sequential and 16 in parallel.
//!
//! ```text
//! bench-cni [--runs 200] [--parallel 16] [--reference-dir /usr/lib/cni]
//! ```
//! One timed invocation = spawn, exec, work, exit; namespace creation is
//! untimed; the reference plugin's "host" namespace is a throwaway netns.
//! The sandbox runs a dedicated scenario: 2 nodes, one project, one
//! resident container on n1 so the network's namespace stays up (the steady
//! state a node is in), and the bench attaches on n1. This is the only CNI
//! bench (`e2e/bench/cni-bench.sh` runs it): the former `cni-bench` ran
//! against a stand-in agent shipped in the plugin's library.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};
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
";

struct Args {
    runs: usize,
    parallel: usize,
    reference_dir: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        runs: 200,
        parallel: 16,
        reference_dir: "/usr/lib/cni".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => a.runs = value.parse()?,
            "--parallel" => a.parallel = value.parse()?,
            "--reference-dir" => a.reference_dir = value.into(),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// One plugin under test.
struct Plugin {
    binary: PathBuf,
    conf: Value,
    cni_path: String,
    cni_args: String,
    /// Namespace the plugin process runs in (reference only).
    host_netns: Option<String>,
}

impl Plugin {
    fn invoke(&self, command: &str, container: &str, netns: &str) -> Result<Duration> {
        let start = Instant::now();
        let mut child = Command::new(&self.binary)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth1")
            .env("CNI_PATH", &self.cni_path)
            .env("CNI_ARGS", &self.cni_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to spawn {}", self.binary.display()))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(self.conf.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        let elapsed = start.elapsed();
        if !out.status.success() {
            bail!(
                "{} {command} failed: {} {}",
                self.binary.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(elapsed)
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
                        if let Some(host) = &self.host_netns {
                            let f = File::open(format!("/run/netns/{host}"))?;
                            setns(f.as_fd(), CloneFlags::CLONE_NEWNET)
                                .context("setns on a bench thread")?;
                        }
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

fn main() -> Result<()> {
    let args = parse_args()?;
    let dir = ScratchDir::new("pnbcni")?;
    let scenario = dir.write("scenario.yaml", SCENARIO)?;
    let sandbox = Sandbox::up("bc", Some(&scenario)).context("failed to bring the sandbox up")?;
    let status = sandbox.status()?;
    let node = status.node("n1")?;
    let network = status
        .networks
        .first()
        .context("the bench scenario has a network")?;
    let cni = privnet_binary()?.with_file_name("privnet-cni");
    let ours = Plugin {
        binary: cni.clone(),
        conf: json!({"cniVersion": "1.0.0", "name": "privnet", "type": "privnet-cni",
                     "agentSocket": node.agent_socket, "network": network.id}),
        cni_path: cni
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        cni_args: "IgnoreUnknown=1;PRIVNET_APPLICATION_ID=bench;PRIVNET_PROCESS_TYPE=web".into(),
        host_netns: None,
    };
    let ref_host = ScratchNetns::new("pnbh")?;
    let reference = Plugin {
        binary: args.reference_dir.join("bridge"),
        conf: json!({
            "cniVersion": "1.0.0", "name": "bench-ref", "type": "bridge",
            "bridge": "pnbref0", "isGateway": false, "ipMasq": false, "mtu": network.mtu,
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
    drop(ref_host);
    Ok(())
}

fn ok(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
