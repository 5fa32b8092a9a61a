//! The check every e2e test ends with (`common::leftovers`, run by the
//! `Sandbox` guard after `down`) can fail: each kind of leftover is made by
//! hand under a sandbox name nobody uses, and the check names each one;
//! once they are removed it reports nothing.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};

use crate::common;
use common::leftovers;

fn run(program: &str, args: &[&str]) {
    let ok = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "{program} {args:?}");
}

/// Removes what the test made, even when it fails.
struct Strays {
    name: String,
    children: Vec<Child>,
}

impl Drop for Strays {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let n = &self.name;
        let short = leftovers::short(n);
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("{n}-stray")])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{short}wg9")])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &format!("privnet-{n}")])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(leftovers::root_of(n));
    }
}

#[test]
fn the_teardown_check_reports_each_kind_of_leftover() {
    common::require_root!();
    let name = format!("lk{}", std::process::id() % 100_000);
    let short = leftovers::short(&name);
    let tables_before = leftovers::host_nft_tables();
    assert!(
        leftovers::find(&name, &BTreeSet::new(), &tables_before).is_empty(),
        "nothing of an unused name to begin with"
    );
    let mut strays = Strays {
        name: name.clone(),
        children: Vec::new(),
    };
    let root = leftovers::root_of(&name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(format!("{root}/agent.log"), "left").unwrap();
    run("ip", &["netns", "add", &format!("{name}-stray")]);
    // A process that names nothing of the sandbox but runs in its namespace.
    strays.children.push(
        Command::new("ip")
            .args(["netns", "exec", &format!("{name}-stray"), "sleep", "60"])
            .spawn()
            .unwrap(),
    );
    // A process whose command line names the sandbox's root.
    strays.children.push(
        Command::new("sh")
            .args(["-c", "sleep 60", &format!("{root}/agent")])
            .spawn()
            .unwrap(),
    );
    // (this kernel has no dummy links: a veth pair, down, carries nothing)
    let peer = format!("{name}-p");
    let wg = format!("{short}wg9");
    run(
        "ip",
        &["link", "add", &wg, "type", "veth", "peer", "name", &peer],
    );
    run("nft", &["add", "table", "inet", &format!("privnet-{name}")]);
    let inodes = leftovers::namespace_inodes(&name);
    assert_eq!(inodes.len(), 1, "the stray namespace's inode");
    let namespace_held = || {
        leftovers::find(&name, &inodes, &tables_before)
            .iter()
            .any(|l| l.contains("sleep 60") && l.ends_with("in a namespace of the sandbox"))
    };
    assert!(
        common::observe::wait_for(std::time::Duration::from_secs(5), namespace_held).is_some(),
        "the process in the namespace is seen once it runs"
    );

    let left = leftovers::find(&name, &inodes, &tables_before);
    let has = |what: &str| left.iter().any(|l| l.contains(what));
    for what in [
        format!("network namespace {name}-stray"),
        format!("directory {root}"),
        format!("link {short}wg9 in the host namespace"),
        format!("link {name}-p in the host namespace"),
        format!("nft table inet privnet-{name}"),
        format!("{root}/agent"),
    ] {
        assert!(has(&what), "{what} not reported: {left:#?}");
    }

    // The namespace's name gone, the process keeps it alive: still reported.
    run("ip", &["netns", "del", &format!("{name}-stray")]);
    assert!(
        namespace_held(),
        "a process holding an unmounted namespace of the sandbox is reported"
    );

    // Everything removed: the check passes.
    drop(strays);
    let left = leftovers::find(&name, &inodes, &tables_before);
    assert!(left.is_empty(), "{left:#?}");
}

const ONE_CONTAINER: &str = r#"
nodes: 1
projects:
  - {apiVersion: privnet.io/v1alpha1, kind: Project, metadata: {name: lt}, spec: {namespaces: [lt]}}
workloads:
  - {project: lt, application: app, processes: {web: 1}}
"#;

/// The guard itself: a process left in a node's namespace (one `down` does
/// not know) outlives `down`, and dropping the sandbox fails naming it.
#[test]
fn a_sandbox_whose_down_leaves_a_process_fails_its_test() {
    common::require_root!();
    let sb = common::Sandbox::up_files("lt", Some(ONE_CONTAINER));
    let node_ns = sb.status()["nodes"][0]["netns"]
        .as_str()
        .unwrap()
        .to_string();
    let mut stray = Command::new("ip")
        .args(["netns", "exec", &node_ns, "sleep", "60"])
        .spawn()
        .unwrap();
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(sb)));
    let _ = stray.kill();
    let _ = stray.wait();
    let report = dropped.expect_err("the guard must fail when down leaves a process");
    let report = report.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        report.contains("sleep 60") && report.contains("in a namespace of the sandbox"),
        "{report}"
    );
}
