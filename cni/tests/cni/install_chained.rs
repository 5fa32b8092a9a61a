//! The chained installer against a temporary CNI directory: it chains
//! privnet into the primary conflist, puts the entry back when the primary
//! CNI rewrites its file, follows a new primary, leaves a broken file as it
//! is, and takes its entry out on shutdown. Needs no root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use privnet_cni::install::conflist::{Entry, has_entry};
use privnet_cni::install::{Change, Install, InstallError, Mode};

const CALICO: &str = r#"{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{"type":"calico","ipam":{"type":"calico-ipam"}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

/// Writes as a CNI daemon does: a temp file, then rename.
fn primary_writes(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-primary");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// An error with its causes, as the binary logs it.
fn chain(e: &InstallError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Waits (bounded) until `cond` holds, re-reading the directory.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn chained(path: &Path) -> bool {
    fs::read_to_string(path).is_ok_and(|t| has_entry(&t))
}

#[test]
fn the_entry_survives_primary_rewrites_and_leaves_on_shutdown() {
    let root = tempfile::tempdir().unwrap();
    let (conf, bin) = (root.path().join("net.d"), root.path().join("bin"));
    fs::create_dir_all(&conf).unwrap();
    let plugin = root.path().join("privnet-cni");
    fs::write(&plugin, b"#!/bin/true\n").unwrap();
    let primary = conf.join("10-calico.conflist");
    primary_writes(&primary, CALICO);
    // Not a network configuration: never touched.
    fs::write(conf.join("calico-kubeconfig"), "kubeconfig").unwrap();

    let install = Install {
        mode: Mode::Chained,
        conf_dir: conf.clone(),
        bin_dir: bin.clone(),
        plugin,
        entry: Entry {
            agent_socket: "/run/privnet/agent.sock".into(),
            interface_name: "eth1".into(),
            log_level: "info".into(),
        },
    };
    let (stop, stopped) = mpsc::channel();
    let (events, changes) = mpsc::channel::<String>();
    let runner = std::thread::spawn(move || {
        install.run(false, Duration::from_millis(20), &stopped, |r| {
            let line = match r {
                Ok(Change::Plugin(p)) => format!("plugin {}", p.display()),
                Ok(c) => format!("{c:?}"),
                Err(e) => format!("error {}", chain(&e)),
            };
            let _ = events.send(line);
        })
    });

    wait_for("the entry in the primary", || chained(&primary));
    let installed = bin.join("privnet-cni");
    assert_eq!(fs::read(&installed).unwrap(), b"#!/bin/true\n");
    assert_eq!(
        fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let doc: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&primary).unwrap()).unwrap();
    assert_eq!(doc["plugins"][0]["type"], "calico", "primary first");
    assert_eq!(doc["plugins"][2]["type"], "privnet-cni", "privnet last");
    assert_eq!(doc["plugins"][2]["chained"], true);

    // The primary CNI restarts and rewrites its file: the entry comes back.
    primary_writes(&primary, CALICO);
    assert!(!chained(&primary), "the rewrite dropped the entry");
    wait_for("the entry back after a rewrite", || chained(&primary));

    // A file that sorts first becomes the node's network: the entry follows it.
    let newer = conf.join("05-cilium.conflist");
    primary_writes(
        &newer,
        r#"{"name":"cilium","cniVersion":"1.0.0","plugins":[{"type":"cilium-cni"}]}"#,
    );
    wait_for("the entry in the new primary", || {
        chained(&newer) && !chained(&primary)
    });

    // A broken primary is reported and left exactly as it is.
    let broken = conf.join("01-broken.conflist");
    fs::write(&broken, "{\"plugins\": [").unwrap();
    let mut seen = String::new();
    wait_for("the broken file reported", || {
        while let Ok(line) = changes.try_recv() {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen.contains("01-broken.conflist")
    });
    assert!(seen.contains("failed to parse"), "{seen}");
    assert_eq!(fs::read_to_string(&broken).unwrap(), "{\"plugins\": [");
    fs::remove_file(&broken).unwrap();

    // Shutdown: no file keeps the entry; the files are the primaries' own.
    stop.send(()).unwrap();
    runner.join().unwrap().unwrap();
    assert!(!chained(&newer) && !chained(&primary));
    let back: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&primary).unwrap()).unwrap();
    assert_eq!(
        back,
        serde_json::from_str::<serde_json::Value>(CALICO).unwrap()
    );
    assert_eq!(
        fs::read_to_string(conf.join("calico-kubeconfig")).unwrap(),
        "kubeconfig"
    );
    // No temporary file left behind.
    let names: Vec<_> = fs::read_dir(&conf)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with('.')), "{names:?}");
}

#[test]
fn multus_mode_writes_privnets_own_conflist_once() {
    let root = tempfile::tempdir().unwrap();
    let plugin = root.path().join("privnet-cni");
    fs::write(&plugin, b"bin").unwrap();
    let install = Install {
        mode: Mode::Multus {
            file: "privnet.conflist".into(),
            network: "privnet".into(),
        },
        conf_dir: root.path().join("multus"),
        bin_dir: root.path().join("bin"),
        plugin,
        entry: Entry {
            agent_socket: "/run/privnet/agent.sock".into(),
            interface_name: "eth1".into(),
            log_level: "info".into(),
        },
    };
    let (_stop, stopped) = mpsc::channel::<()>();
    let mut changes = Vec::new();
    install
        .run(true, Duration::from_millis(10), &stopped, |c| {
            changes.push(c.unwrap())
        })
        .unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    let doc: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(root.path().join("multus/privnet.conflist")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["name"], "privnet");
    assert_eq!(doc["plugins"][0]["type"], "privnet-cni");
    assert!(doc["plugins"][0].get("chained").is_none());
    // A second run has nothing to do (idempotent).
    let mut again = Vec::new();
    install
        .run(true, Duration::from_millis(10), &stopped, |c| {
            again.push(c.unwrap())
        })
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
}
