//! The soak: thousands of CNI ADD/DEL cycles against the real agent of one
//! sandbox node (files mode: the bench calls the plugin itself, as
//! `bench-cni` does), over three networks — two kept up by a resident
//! container, one that comes and goes with the cycles — in blocks that
//! alternate sequential and parallel callers. The agent's resources and
//! everything it makes per container are sampled when idle, after the
//! warm-up (start), half-way (middle) and at the end, each time once the
//! agent has settled; [`verdict::verdict`] says which limit broke.

pub mod sample;
pub mod verdict;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use self::sample::{NodeFiles, SampleError};
use self::verdict::{Broken, COUNTS, Sample};
use super::plugin::CniPlugin;
use super::process::{ProcessError, ScratchDir, ScratchNetns};
use super::sandbox::{Sandbox, SandboxError};
use super::stats::{Summary, Table, ms};

/// Two nodes (the networks have a remote peer, so FDB and zone entries
/// come from the mesh too), three projects; `soak-a` and `soak-b` keep a
/// resident container on n1, `soak-c` has none there, so its network is
/// brought up and removed with the cycles.
const SCENARIO: &str = "nodes: 2
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: soak-a}, spec: {namespaces: [soak-a]}}
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: soak-b}, spec: {namespaces: [soak-b]}}
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: soak-c}, spec: {namespaces: [soak-c]}}
workloads:
  - {project: soak-a, application: resident-a, processes: {web: 1}, nodes: [n1]}
  - {project: soak-a, application: remote-a, processes: {web: 1}, nodes: [n2]}
  - {project: soak-b, application: resident-b, processes: {web: 1}, nodes: [n1]}
  - {project: soak-c, application: remote-c, processes: {web: 1}, nodes: [n2]}
";

/// Cycles per block; blocks alternate one caller and `parallel` callers.
const BLOCK: usize = 50;
/// How long the agent may take to settle before a sample (retired ports
/// are purged once a network is quiet, an unused network is removed).
const SETTLE: Duration = Duration::from_secs(60);
/// One agent heap trim period (10 s) and a margin.
const TRIMMED_AFTER: Duration = Duration::from_secs(11);

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// The `privnet` binary (`privnet-cni` next to it).
    pub privnet: PathBuf,
    /// ADD/DEL cycles.
    pub cycles: usize,
    /// Callers of the parallel blocks.
    pub parallel: usize,
    /// Growth allowed between the start and a later sample (0.05 = 5 %).
    pub limit: f64,
    /// The projects whose networks the cycles use, in turn (`soak-a` and
    /// `soak-b` stay up, `soak-c` comes and goes).
    pub projects: Vec<String>,
}

impl SoakConfig {
    /// Every project of the scenario.
    pub fn all_projects() -> Vec<String> {
        ["soak-a", "soak-b", "soak-c"].map(String::from).to_vec()
    }
}

/// Errors of the soak (a failed cycle is a finding, not an error).
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// The sandbox could not be brought up or read.
    #[error("failed to run the soak's sandbox")]
    Sandbox(#[from] SandboxError),
    /// A scratch namespace or file could not be made.
    #[error("failed to prepare the soak")]
    Prepare(#[from] ProcessError),
    /// A sample could not be read.
    #[error("failed to sample the agent")]
    Sample(#[from] SampleError),
    /// The sandbox lacks something the soak needs.
    #[error("failed to find {0} in the sandbox")]
    Missing(String),
}

/// What a soak found.
#[derive(Debug)]
pub struct SoakReport {
    /// `idle`, `start`, `middle`, `end`.
    pub samples: Vec<Sample>,
    /// Limits broken (empty: the soak passed).
    pub broken: Vec<Broken>,
    /// ADD/DEL calls that failed, and the first few errors.
    pub failures: (usize, Vec<String>),
    /// ADD and DEL latency from the start to the middle, and from the middle to the end.
    pub latency: [(Option<Summary>, Option<Summary>); 2],
    /// Wall clock of the cycles.
    pub elapsed: Duration,
    /// Cycles run.
    pub cycles: usize,
    /// What one ADD left without its DEL broke (the positive control: the
    /// sampler sees a leak).
    pub control: Vec<Broken>,
}

/// What the cycles of one stretch measured.
#[derive(Default)]
struct Stretch {
    adds: Vec<Duration>,
    dels: Vec<Duration>,
    failures: usize,
    errors: Vec<String>,
}

impl Stretch {
    fn absorb(&mut self, other: Stretch) {
        self.adds.extend(other.adds);
        self.dels.extend(other.dels);
        self.failures += other.failures;
        let room = 5usize.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
    }

    /// One cycle: ADD, then DEL whatever ADD did (a runtime cleans up a failed ADD too).
    fn cycle(&mut self, plugin: &CniPlugin, id: &str, netns: &str) {
        for verb in ["ADD", "DEL"] {
            match plugin.invoke(verb, id, netns) {
                Ok(d) if verb == "ADD" => self.adds.push(d),
                Ok(d) => self.dels.push(d),
                Err(e) => {
                    self.failures += 1;
                    if self.errors.len() < 5 {
                        self.errors.push(format!("{verb} {id}: {e}"));
                    }
                }
            }
        }
    }
}

/// Runs cycles `from..to`: blocks of [`BLOCK`], odd blocks over every
/// namespace in parallel. Cycle `i` goes to network `i % 3`.
fn run_cycles(
    plugins: &[CniPlugin],
    namespaces: &[ScratchNetns],
    from: usize,
    to: usize,
) -> Stretch {
    let mut out = Stretch::default();
    let mut i = from;
    while i < to {
        let end = (i + BLOCK).min(to);
        let workers = if (i / BLOCK) % 2 == 1 {
            namespaces.len()
        } else {
            1
        };
        let parts: Vec<Stretch> = std::thread::scope(|s| {
            let handles: Vec<_> = namespaces[..workers]
                .iter()
                .enumerate()
                .map(|(w, ns)| {
                    s.spawn(move || {
                        let mut st = Stretch::default();
                        for c in (i + w..end).step_by(workers) {
                            let plugin = &plugins[c % plugins.len()];
                            st.cycle(plugin, &format!("soak{w}x{c}"), &ns.path());
                        }
                        st
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("soak caller"))
                .collect()
        });
        for p in parts {
            out.absorb(p);
        }
        i = end;
    }
    out
}

/// Whether the per-container counts of `a` and `b` are the same.
fn same_counts(a: &Sample, b: &Sample) -> bool {
    COUNTS.iter().all(|(_, get)| get(a) == get(b)) && a.threads == b.threads
}

/// Waits (up to [`SETTLE`]) until the agent is back to `idle`'s counts (or,
/// for the idle sample itself, until two reads agree) and its threads and
/// fds hold still, then returns that sample (the last one on timeout: the
/// verdict reports what is off).
fn settled(
    node: &NodeFiles,
    idle: Option<&Sample>,
    label: &str,
    cycles: usize,
) -> Result<Sample, SoakError> {
    let started = Instant::now();
    let deadline = started + SETTLE;
    let mut last = sample::take(node, label, cycles)?;
    let mut steady = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = sample::take(node, label, cycles)?;
        let at_idle = idle.is_none_or(|i| {
            COUNTS
                .iter()
                .filter(|(name, _)| !verdict::WARM.contains(name))
                .all(|(_, get)| get(i) == get(&now))
        });
        // Three reads alike, 1.5 s: the agent's idle blocking threads are gone (1 s).
        steady = if at_idle && same_counts(&last, &now) {
            steady + 1
        } else {
            0
        };
        // RSS is read once the agent's periodic heap trim (every 10 s,
        // `privnet_agent::heap`) has run since the last cycle: what it keeps
        // then is what it holds, not what glibc has not handed back yet.
        let trimmed = started.elapsed() >= TRIMMED_AFTER;
        if (steady >= 2 && trimmed) || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Brings a sandbox up, runs the soak, takes it down.
pub fn run(cfg: &SoakConfig) -> Result<SoakReport, SoakError> {
    let dir = ScratchDir::new("pnsoak")?;
    let scenario = dir.write("scenario.yaml", SCENARIO)?;
    let sandbox = Sandbox::up_files_using(cfg.privnet.clone(), "sk", Some(&scenario))?;
    let status = sandbox.status()?;
    let n1 = status.node("n1")?;
    let node = NodeFiles {
        agent_pid: n1.agent_pid,
        node_netns: n1.netns.clone(),
        network_prefix: n1.network_netns_prefix.clone(),
        state_dir: n1.state_dir.clone(),
        cluster_dir: format!("{}/cluster", status.root),
        node: n1.name.clone(),
    };
    let cni = cfg.privnet.with_file_name("privnet-cni");
    let mut plugins = Vec::new();
    for project in &cfg.projects {
        let net = status
            .networks
            .iter()
            .find(|n| &n.project == project)
            .ok_or_else(|| SoakError::Missing(format!("the network of {project}")))?;
        plugins.push(CniPlugin {
            binary: cni.clone(),
            conf: json!({"cniVersion": "1.0.0", "name": "privnet", "type": "privnet-cni",
                         "agentSocket": n1.agent_socket, "network": net.id}),
            cni_path: cni
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            cni_args: "IgnoreUnknown=1;PRIVNET_APPLICATION_ID=soak;PRIVNET_PROCESS_TYPE=web".into(),
            host_netns: None,
        });
    }
    let namespaces = (0..cfg.parallel.max(1))
        .map(|_| ScratchNetns::new("pnsk"))
        .collect::<Result<Vec<_>, _>>()?;

    let up = sandbox.up_time;
    eprintln!("soak: sandbox up in {:.1} s; settling", up.as_secs_f64());
    let idle = settled(&node, None, "idle", 0)?;
    let warm = (cfg.cycles / 10).max(1).min(cfg.cycles);
    let middle = warm + (cfg.cycles - warm) / 2;
    let started = Instant::now();
    let progress = |what: &str| {
        eprintln!("soak: {what} at {:.1} s", started.elapsed().as_secs_f64());
    };
    let mut total = run_cycles(&plugins, &namespaces, 0, warm);
    progress("warm-up done");
    let start = settled(&node, Some(&idle), "start", warm)?;
    progress("start sampled");
    let first = run_cycles(&plugins, &namespaces, warm, middle);
    progress("first half done");
    let mid = settled(&node, Some(&idle), "middle", middle)?;
    progress("middle sampled");
    let second = run_cycles(&plugins, &namespaces, middle, cfg.cycles);
    progress("second half done");
    let elapsed = started.elapsed();
    let end = settled(&node, Some(&idle), "end", cfg.cycles)?;
    progress("end sampled");
    let control = leak_control(
        &plugins[0],
        &namespaces[0],
        &node,
        &[idle.clone(), start.clone()],
    )?;
    let latency = [&first, &second].map(|s| (Summary::of(&s.adds), Summary::of(&s.dels)));
    total.absorb(first);
    total.absorb(second);
    let samples = vec![idle, start, mid, end];
    let broken = verdict::verdict(&samples, cfg.limit, total.failures);
    drop(namespaces);
    drop(sandbox);
    Ok(SoakReport {
        samples,
        broken,
        failures: (total.failures, total.errors),
        latency,
        elapsed,
        cycles: cfg.cycles,
        control,
    })
}

/// The positive control: one ADD left without its DEL must break the
/// verdict (a record, a claim, a port, its guard, an endpoint and a name
/// more). Returns what it broke; the container is deleted afterwards.
fn leak_control(
    plugin: &CniPlugin,
    ns: &ScratchNetns,
    node: &NodeFiles,
    before: &[Sample; 2],
) -> Result<Vec<Broken>, SoakError> {
    let id = "soakleak";
    let added = plugin.invoke("ADD", id, &ns.path());
    let leaked = settled(node, None, "leak", 0);
    let _ = plugin.invoke("DEL", id, &ns.path());
    added?;
    let mut samples = before.to_vec();
    samples.push(leaked?);
    Ok(verdict::verdict(&samples, f64::INFINITY, 0))
}

impl SoakReport {
    /// The figures as tables: one column per sample, then latency.
    pub fn render(&self) -> String {
        let mut headers = vec!["agent of n1"];
        headers.extend(self.samples.iter().map(|s| s.label.as_str()));
        headers.push("start -> end");
        let mut t = Table::new(&headers);
        let mut row = |name: &str, get: &dyn Fn(&Sample) -> u64| {
            let mut cells = vec![name.to_string()];
            cells.extend(self.samples.iter().map(|s| get(s).to_string()));
            if let (Some(a), Some(b)) = (self.samples.get(1), self.samples.last()) {
                cells.push(format!("{:+.1} %", verdict::growth(get(a), get(b)) * 100.0));
            }
            t.row(cells);
        };
        row("cycles done", &|s| s.cycles as u64);
        for (name, get) in verdict::RESOURCES {
            row(name, &get);
        }
        for (name, get) in COUNTS.iter().filter(|(n, _)| *n != "fds") {
            row(name, get);
        }
        let mut l = Table::new(&["latency", "ADD p50", "ADD p99", "DEL p50", "DEL p99"]);
        for (name, (add, del)) in ["start -> middle", "middle -> end"]
            .iter()
            .zip(&self.latency)
        {
            let f = |s: &Option<Summary>, p99: bool| {
                s.map_or("-".into(), |s| {
                    format!("{:.2}ms", ms(if p99 { s.p99 } else { s.p50 }))
                })
            };
            l.row(vec![
                name.to_string(),
                f(add, false),
                f(add, true),
                f(del, false),
                f(del, true),
            ]);
        }
        let mut out = format!(
            "{} cycles in {:.1} s ({:.0} cycles/s), {} failed calls\n\n{}\n{}",
            self.cycles,
            self.elapsed.as_secs_f64(),
            self.cycles as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.failures.0,
            t.render(),
            l.render()
        );
        for e in &self.failures.1 {
            out.push_str(&format!("failure: {e}\n"));
        }
        out.push_str(&format!(
            "\ncontrol (one ADD without DEL): {} limits broken ({})\n",
            self.control.len(),
            self.control
                .iter()
                .map(|b| b.1.split(':').next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if self.broken.is_empty() {
            out.push_str("\nverdict: no limit broken\n");
        } else {
            for b in &self.broken {
                out.push_str(&format!("\nBROKEN: {b}"));
            }
            out.push('\n');
        }
        out
    }
}
