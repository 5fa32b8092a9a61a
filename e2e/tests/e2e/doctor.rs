//! `privnet doctor` on a real sandbox node: all ok first (the positive
//! control), then one fault at a time — a guard rule deleted, an FDB entry
//! deleted, a port's MTU changed (each end), a WireGuard peer removed, the DNS
//! responder blocked, the agent stopped — each seen by the check that
//! watches it (exit 1, that check `fail`, no other), and all ok again once
//! the fault is undone. The agents resync every 10 minutes here, so no fault
//! is repaired behind the doctor's back. Prints the doctor's wall time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Sandbox, bin, require_root};

/// One node's doctor, run as on a node: inside the node's namespace
/// (`nsenter --net`, as the agent runs), against its socket and the API.
struct Doctor {
    netns: String,
    socket: String,
    kubeconfig: String,
}

impl Doctor {
    /// Exit code, report, wall time.
    fn run(&self) -> (i32, Value, Duration) {
        let started = Instant::now();
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(bin("privnet"))
            .args(["doctor", "--socket", &self.socket])
            .args(["--kubeconfig", &self.kubeconfig, "-o", "json"])
            .stdin(Stdio::null())
            .output()
            .expect("privnet doctor runs");
        let wall = started.elapsed();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor printed no JSON ({e}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report, wall)
    }

    fn status<'a>(report: &'a Value, check: &str) -> &'a str {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .unwrap_or_else(|| panic!("no check {check} in {report}"))["status"]
            .as_str()
            .unwrap()
    }

    /// Asserts exit 0 and every check ok.
    fn all_ok(&self, walls: &mut Vec<Duration>) {
        let (code, report, wall) = self.run();
        walls.push(wall);
        assert_eq!(code, 0, "doctor should find nothing wrong:\n{report:#}");
        for c in report["checks"].as_array().unwrap() {
            assert_eq!(c["status"], "ok", "{report:#}");
        }
    }

    /// Runs until all is ok (after a fault is undone and something had to
    /// come back, e.g. a handshake), at most `within`.
    fn until_ok(&self, within: Duration, walls: &mut Vec<Duration>) {
        let deadline = Instant::now() + within;
        loop {
            let (code, report, _) = self.run();
            if code == 0 {
                return self.all_ok(walls);
            }
            assert!(
                Instant::now() < deadline,
                "doctor never got back to ok:\n{report:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Asserts exit 1, `check` failing with a problem containing `words`,
    /// and (unless `others_skip`) no other check failing.
    fn fails(&self, check: &str, words: &str, walls: &mut Vec<Duration>) {
        let (code, report, wall) = self.run();
        walls.push(wall);
        assert_eq!(code, 1, "doctor should exit 1:\n{report:#}");
        assert_eq!(Self::status(&report, check), "fail", "{report:#}");
        let problems = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .unwrap()["problems"]
            .to_string();
        assert!(
            problems.contains(words),
            "{check}: no problem mentions {words:?}:\n{report:#}"
        );
        for c in report["checks"].as_array().unwrap() {
            if c["name"] != check {
                assert_ne!(c["status"], "fail", "only {check} should fail:\n{report:#}");
            }
        }
    }
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    sh(&all)
}

#[test]
fn doctor_names_each_fault_it_is_shown() {
    require_root!();
    let sb = Sandbox::up_with_env(
        "doc",
        None,
        &["--api", "kube"],
        &[("PRIVNET_RESYNC_MS", "600000")],
    );
    let status = sb.status();
    let n1 = &status["nodes"][0];
    let doctor = Doctor {
        netns: n1["netns"].as_str().unwrap().into(),
        socket: n1["agentSocket"].as_str().unwrap().into(),
        // The one the node's agent uses: the API on the underlay.
        kubeconfig: format!("{}/api/node-kubeconfig", status["root"].as_str().unwrap()),
    };
    let net = &status["networks"][0];
    let vni = net["vni"].as_u64().unwrap();
    let mtu = net["mtu"].as_u64().unwrap().to_string();
    let netns = format!("{}{vni}", n1["networkNetnsPrefix"].as_str().unwrap());
    let vxlan = format!("vx{vni}");
    let mut walls = Vec::new();

    // Positive control: a healthy node, and `sandbox doctor` on every node.
    doctor.all_ok(&mut walls);
    let all = sb.privnet(&["doctor", "-o", "json"]);
    assert_eq!(
        all.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&all.stdout)
    );
    let reports: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(
        reports.as_array().unwrap().len(),
        status["nodes"].as_array().unwrap().len()
    );

    // A doctor that cannot run at all says so with exit code 2.
    let cannot = Command::new(bin("privnet"))
        .args([
            "doctor",
            "--node-netns",
            "no-such-node-namespace",
            "--no-api",
        ])
        .output()
        .unwrap();
    assert_eq!(
        cannot.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&cannot.stderr)
    );

    // The port chain's final `drop` rule deleted (the doctor compares
    // every rule; the agent's read-back comes only with its next resync).
    let listing = in_ns(
        &netns,
        &["nft", "-a", "list", "table", "bridge", "privnet-ports"],
    );
    let port = listing
        .split('"')
        .find(|w| w.starts_with("pv") && !w.contains('*'))
        .map(str::to_string)
        .expect("a guarded port in the port sets");
    let chain = "from-port".to_string();
    let block: Vec<&str> = listing
        .split(&format!("chain {chain} {{"))
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.trim() != "}")
        .collect();
    let last = block
        .iter()
        .rev()
        .find(|l| l.trim().starts_with("drop"))
        .unwrap();
    let handle = last.rsplit("handle ").next().unwrap().trim();
    in_ns(
        &netns,
        &[
            "nft",
            "delete",
            "rule",
            "bridge",
            "privnet-ports",
            &chain,
            "handle",
            handle,
        ],
    );
    doctor.fails(
        "guard",
        &format!("chain {chain} has 10 rules, should have 11"),
        &mut walls,
    );
    in_ns(
        &netns,
        &[
            "nft",
            "add",
            "rule",
            "bridge",
            "privnet-ports",
            &chain,
            "drop",
        ],
    );
    doctor.all_ok(&mut walls);

    // A unicast FDB entry deleted.
    let fdb = in_ns(&netns, &["bridge", "fdb", "show", "dev", &vxlan]);
    let entry = fdb
        .lines()
        .find(|l| l.contains(" dst ") && !l.starts_with("00:00:00:00:00:00"))
        .expect("a unicast FDB entry");
    let (mac, dst) = (
        entry.split_whitespace().next().unwrap(),
        entry
            .split(" dst ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap(),
    );
    in_ns(
        &netns,
        &["bridge", "fdb", "del", mac, "dev", &vxlan, "dst", dst],
    );
    doctor.fails(
        "fdb",
        &format!("FDB entry {mac} → {dst} is missing"),
        &mut walls,
    );
    in_ns(
        &netns,
        &[
            "bridge",
            "fdb",
            "replace",
            mac,
            "dev",
            &vxlan,
            "dst",
            dst,
            "self",
            "permanent",
        ],
    );
    doctor.all_ok(&mut walls);

    // A container port's MTU changed.
    in_ns(&netns, &["ip", "link", "set", "dev", &port, "mtu", "1280"]);
    doctor.fails(
        "mtu",
        &format!("{port} has MTU 1280, should be {mtu}"),
        &mut walls,
    );
    in_ns(&netns, &["ip", "link", "set", "dev", &port, "mtu", &mtu]);
    doctor.all_ok(&mut walls);
    // ... and the container end's.
    let c = status["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node"] == n1["name"] && c["networkId"] == net["id"])
        .expect("a container of that network on n1");
    let (c_netns, c_if) = (
        c["netns"].as_str().unwrap(),
        c["interface"].as_str().unwrap(),
    );
    in_ns(c_netns, &["ip", "link", "set", "dev", c_if, "mtu", "1400"]);
    doctor.fails(
        "mtu",
        &format!("container end {c_if} of port pv"),
        &mut walls,
    );
    in_ns(c_netns, &["ip", "link", "set", "dev", c_if, "mtu", &mtu]);
    doctor.all_ok(&mut walls);

    // The DNS responder blocked by a table of the test's own.
    let block = "table inet doctortest {\n chain input {\n  type filter hook input priority 0; policy accept;\n  udp dport 53 drop\n }\n}\n";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(nft.stdin.as_mut().unwrap(), block.as_bytes()).unwrap();
    drop(nft.stdin.take());
    assert!(nft.wait().unwrap().success());
    doctor.fails("dns", "does not answer", &mut walls);
    in_ns(&netns, &["nft", "delete", "table", "inet", "doctortest"]);
    doctor.all_ok(&mut walls);

    // A WireGuard peer removed (undone by restarting the agent: it sets its
    // peers again on start; the handshake follows).
    let n2_key = status["nodes"][1]["publicKey"].as_str().unwrap();
    let n2_name = status["nodes"][1]["name"].as_str().unwrap();
    let wg = n1["wireguardInterface"].as_str().unwrap();
    let remove = ["wg", "set", wg, "peer", n2_key, "remove"];
    if sb.wireguard_backend() == "kernel" {
        in_ns(&doctor.netns, &remove);
    } else {
        sh(&remove);
    }
    doctor.fails("wireguard", &format!("peer {n2_name}"), &mut walls);

    // The agent stopped: its check fails, the others have nothing to compare with.
    let node = n1["name"].as_str().unwrap();
    let kill = sb.privnet(&["agent", node, "kill"]);
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let (code, report, wall) = doctor.run();
    walls.push(wall);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(Doctor::status(&report, "agent"), "fail", "{report:#}");
    assert_eq!(Doctor::status(&report, "fdb"), "skip", "{report:#}");
    let start = sb.privnet(&["agent", node, "start"]);
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    doctor.until_ok(Duration::from_secs(20), &mut walls);

    walls.sort();
    eprintln!(
        "doctor wall time over {} runs: median {:?}, max {:?}",
        walls.len(),
        walls[walls.len() / 2],
        walls[walls.len() - 1]
    );
}
