//! ADD/DEL latency of `privnet-cni` next to the reference Debian `bridge` +
//! `host-local` plugins, in the same run, sequential and in parallel.
//!
//! ```text
//! cni-bench [--runs 200] [--parallel 16] [--agent-socket PATH] [--plugin PATH]
//!           [--reference-dir /usr/lib/cni] [--no-reference]
//! ```
//! Without `--agent-socket` a built-in stand-in agent serves the plugin. The
//! reference plugin runs with its "host" namespace set to a throwaway netns
//! (spawned from threads that entered it), so its bridge never touches the
//! real host. Namespace creation is not measured; one invocation (spawn,
//! exec, work, exit) is.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use privnet_cni::standin::{StandinAgent, ip, unique_name};
use serde_json::{Value, json};

struct Args {
    runs: usize,
    parallel: usize,
    agent_socket: Option<PathBuf>,
    plugin: PathBuf,
    reference_dir: PathBuf,
    reference: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        runs: 200,
        parallel: 16,
        agent_socket: None,
        plugin: std::env::current_exe()
            .expect("exe")
            .with_file_name("privnet-cni"),
        reference_dir: PathBuf::from("/usr/lib/cni"),
        reference: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => a.runs = value().parse().expect("--runs N"),
            "--parallel" => a.parallel = value().parse().expect("--parallel N"),
            "--agent-socket" => a.agent_socket = Some(value().into()),
            "--plugin" => a.plugin = value().into(),
            "--reference-dir" => a.reference_dir = value().into(),
            "--no-reference" => a.reference = false,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A netns removed on drop.
struct Ns(String);

impl Ns {
    fn new(prefix: &str) -> Ns {
        let name = unique_name(prefix);
        ip(&["netns", "add", &name]).expect("ip netns add (run as root)");
        Ns(name)
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// One plugin under test.
struct Plugin {
    binary: PathBuf,
    conf: Value,
    cni_path: String,
    /// Namespace the plugin process runs in (reference only).
    host_netns: Option<String>,
}

impl Plugin {
    fn invoke(&self, command: &str, container: &str, netns: &str) -> Duration {
        let start = Instant::now();
        let mut child = Command::new(&self.binary)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth1")
            .env("CNI_PATH", &self.cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plugin");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let elapsed = start.elapsed();
        assert!(
            out.status.success(),
            "{} {command} failed: {} {}",
            self.binary.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        elapsed
    }

    /// `runs` ADD+DEL pairs over `workers` threads; returns (adds, dels).
    fn measure(&self, runs: usize, workers: usize, tag: &str) -> (Vec<Duration>, Vec<Duration>) {
        let namespaces: Vec<Ns> = (0..workers).map(|_| Ns::new("pnbc")).collect();
        let per_worker = runs.div_ceil(workers);
        let results: Vec<(Vec<Duration>, Vec<Duration>)> = std::thread::scope(|s| {
            let handles: Vec<_> = namespaces
                .iter()
                .enumerate()
                .map(|(w, ns)| {
                    s.spawn(move || {
                        if let Some(host) = &self.host_netns {
                            let f = File::open(format!("/run/netns/{host}")).unwrap();
                            setns(f.as_fd(), CloneFlags::CLONE_NEWNET)
                                .expect("setns on bench thread");
                        }
                        let (mut adds, mut dels) = (Vec::new(), Vec::new());
                        for i in 0..per_worker {
                            let id = format!("bench{tag}w{w}r{i}");
                            adds.push(self.invoke("ADD", &id, &ns.path()));
                            dels.push(self.invoke("DEL", &id, &ns.path()));
                        }
                        (adds, dels)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        results
            .into_iter()
            .fold((Vec::new(), Vec::new()), |(mut a, mut d), (ra, rd)| {
                a.extend(ra);
                d.extend(rd);
                (a, d)
            })
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args = parse_args();
    let dir = tempfile_dir();
    let standin = match &args.agent_socket {
        Some(_) => None,
        None => Some(
            StandinAgent::start(&dir.join("agent.sock"), &unique_name("pnbn"))
                .expect("stand-in agent"),
        ),
    };
    let socket = args
        .agent_socket
        .clone()
        .unwrap_or_else(|| dir.join("agent.sock"));
    let ours = Plugin {
        binary: args.plugin.clone(),
        conf: json!({"cniVersion": "1.0.0", "name": "privnet", "type": "privnet-cni", "agentSocket": socket}),
        cni_path: "/opt/cni/bin".into(),
        host_netns: None,
    };
    let ref_host = args.reference.then(|| Ns::new("pnbh"));
    let reference = ref_host.as_ref().map(|host| Plugin {
        binary: args.reference_dir.join("bridge"),
        conf: json!({
            "cniVersion": "1.0.0", "name": "bench-ref", "type": "bridge",
            "bridge": format!("pnbr{}", std::process::id() % 100_000), "isGateway": false, "ipMasq": false, "mtu": 1370,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.240.0.0/22"}]], "dataDir": dir.join("host-local")}
        }),
        cni_path: args.reference_dir.display().to_string(),
        host_netns: Some(host.0.clone()),
    });
    println!(
        "cni-bench: {} ADD+DEL runs; ours = {}, agent = {}",
        args.runs,
        args.plugin.display(),
        if standin.is_some() {
            "built-in stand-in"
        } else {
            "external"
        }
    );
    println!(
        "{:<12} {:<4} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "mode", "verb", "ours p50", "ours p99", "ref p50", "ref p99", "p50 x", "p99 x"
    );
    for (mode, workers) in [("sequential", 1), ("parallel", args.parallel)] {
        let (mut oa, mut od) = ours.measure(args.runs, workers, &format!("o{workers}"));
        let theirs = reference
            .as_ref()
            .map(|r| r.measure(args.runs, workers, &format!("r{workers}")));
        let (mut ra, mut rd) = theirs.unwrap_or_default();
        for (verb, o, r) in [("ADD", &mut oa, &mut ra), ("DEL", &mut od, &mut rd)] {
            let (o50, o99) = (percentile(o, 50.0), percentile(o, 99.0));
            if r.is_empty() {
                println!("{mode:<12} {verb:<4} {:>8.2}ms {:>8.2}ms", ms(o50), ms(o99));
                continue;
            }
            let (r50, r99) = (percentile(r, 50.0), percentile(r, 99.0));
            println!(
                "{mode:<12} {verb:<4} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2} {:>8.2}",
                ms(o50),
                ms(o99),
                ms(r50),
                ms(r99),
                ms(o50) / ms(r50),
                ms(o99) / ms(r99)
            );
        }
    }
    if let Some(s) = &standin {
        assert!(s.reservations().is_empty(), "stand-in reservations leaked");
    }
    drop(standin);
    drop(ref_host);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = Path::new("/tmp").join(unique_name("cni-bench-"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
