//! Helpers that wait on the thing itself (a capture listening, a condition
//! true) instead of sleeping, and the underlay capture of the fault and
//! security tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Sandbox;

/// Polls `f` every 20 ms until it holds or `timeout` passes; returns how
/// long it took.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns `cmd` (stderr piped) and returns once a stderr line contains
/// `marker` (tcpdump's "listening on"), or panics after `timeout`. The rest
/// of stderr is drained in the background.
pub fn spawn_until_stderr(mut cmd: Command, marker: &str, timeout: Duration) -> Child {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let wanted = marker.to_string();
    std::thread::spawn(move || {
        let mut seen = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !seen && line.contains(&wanted) {
                seen = true;
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(timeout).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("`{cmd:?}` never printed {marker:?}");
    }
    child
}

/// tcpdump on the sandbox's underlay bridge, writing a pcap; started once
/// tcpdump says it is listening.
pub struct UnderlayCapture {
    child: Option<Child>,
    file: PathBuf,
}

impl UnderlayCapture {
    /// Starts capturing everything on the underlay.
    pub fn start(sb: &Sandbox, tag: &str) -> Self {
        let file = std::env::temp_dir().join(format!("{}-{tag}.pcap", sb.name));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &format!("{}-ul", sb.name)])
            // Immediate mode: every packet is written as it comes, not when
            // the kernel's ring block times out (which a stop could cut off).
            .args(["tcpdump", "--immediate-mode", "-i", "ul0", "-n", "-U", "-w"])
            .arg(&file)
            .stdout(Stdio::null());
        let child = spawn_until_stderr(cmd, "listening on", Duration::from_secs(10));
        UnderlayCapture {
            child: Some(child),
            file,
        }
    }

    /// Stops the capture (SIGINT: tcpdump flushes) and counts the packets
    /// matching each filter.
    pub fn stop_and_count(&mut self, filters: &[&str]) -> Vec<usize> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        filters
            .iter()
            .map(|f| {
                let out = Command::new("tcpdump")
                    .args(["-n", "-r"])
                    .arg(&self.file)
                    .arg(f)
                    .stderr(Stdio::null())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "tcpdump -r {f} failed");
                String::from_utf8_lossy(&out.stdout).lines().count()
            })
            .collect()
    }
}

impl Drop for UnderlayCapture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// `ping -i <interval>` from a container's namespace until stopped; the
/// summary gives what was lost.
pub struct PingStream {
    child: Option<Child>,
}

impl PingStream {
    /// Starts pinging `ip` from `container` every `interval_ms`.
    pub fn start(sb: &Sandbox, container: &str, ip: &str, interval_ms: u32) -> Self {
        let c = sb.container(container);
        let interval = format!("{}", f64::from(interval_ms) / 1000.0);
        let child = Command::new("ip")
            .args(["netns", "exec", c["netns"].as_str().unwrap()])
            .args(["ping", "-n", "-i", &interval, "-W", "1", ip])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping runs");
        PingStream { child: Some(child) }
    }

    /// Stops (SIGINT) and returns (transmitted, received).
    pub fn stop(&mut self) -> (u64, u64) {
        let child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("no ping summary in {text}"));
        let num = |word: &str| -> u64 {
            let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            let i = words.iter().position(|w| w.starts_with(word)).unwrap();
            words[i - 1].parse().unwrap()
        };
        (num("packets"), num("received"))
    }
}

impl Drop for PingStream {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits (up to 10 s) until a TCP socket listens on `port` in `netns`
/// (`ss -Hltn sport = :<port>`); panics if none does.
pub fn wait_listening(netns: &str, port: u16) {
    let listening = wait_for(Duration::from_secs(10), || {
        let out = Command::new("ip")
            .args(["netns", "exec", netns, "ss", "-Hltn"])
            .arg(format!("sport = :{port}"))
            .output()
            .unwrap();
        out.status.success() && !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert!(listening.is_some(), "nothing listens on {port} in {netns}");
}
