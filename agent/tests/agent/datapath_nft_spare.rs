//! Root test: the spare `nft` of a network namespace applies rulesets there,
//! never in an older namespace that had the same name, and is gone once its
//! network is discarded (a process left inside would keep the namespace
//! and its devices alive).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use privnet_agent::datapath::netns;
use privnet_agent::datapath::nft_spare::NftSpares;

/// Deletes the namespace, even when the test panics.
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

fn tables(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "tables"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// PIDs of `nft` processes whose network namespace is `ns`.
fn nft_pids_in(ns: &str) -> Vec<u32> {
    let target = std::fs::metadata(netns::path_of(ns).unwrap()).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    let Ok(target) = target else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let ino = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        });
        if comm.trim() == "nft" && ino.ok() == Some(target) {
            pids.push(pid);
        }
    }
    pids
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spare_applies_in_the_current_namespace_and_goes_with_it() {
    privnet_testkit::require_root!();
    let name = format!("pnspare{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    netns::create(&name).unwrap();
    let spares = Arc::new(NftSpares::default());

    // First apply: no spare yet (nft started now); a spare follows.
    spares
        .apply(&name, "table inet privnet-one {}\n")
        .await
        .unwrap();
    assert!(tables(&name).contains("table inet privnet-one"));
    wait_for("a spare nft in the namespace", || {
        nft_pids_in(&name).len() == 1
    });
    let spare = nft_pids_in(&name)[0];

    // Second apply goes through that spare: it is consumed, the rules land.
    spares
        .apply(&name, "table inet privnet-two {}\n")
        .await
        .unwrap();
    assert!(tables(&name).contains("table inet privnet-two"));
    wait_for("the used spare to exit and a new one", || {
        let pids = nft_pids_in(&name);
        pids.len() == 1 && pids[0] != spare
    });

    // The namespace is replaced under the same name: the old spare (inside
    // the old namespace) must not take the next ruleset.
    netns::delete(&name).unwrap();
    netns::create(&name).unwrap();
    spares
        .apply(&name, "table inet privnet-three {}\n")
        .await
        .unwrap();
    let now = tables(&name);
    assert!(
        now.contains("table inet privnet-three") && !now.contains("privnet-two"),
        "the ruleset went to the namespace now under that name:\n{now}"
    );

    // A failing ruleset is reported, through a spare as without one.
    wait_for("a spare in the new namespace", || {
        nft_pids_in(&name).len() == 1
    });
    let err = spares
        .apply(&name, "table inet privnet-bad { chain c { nonsense } }\n")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nft -f -"), "{err}");

    // Discarded with its network: no nft left in the namespace.
    wait_for("the refill after the failure", || {
        nft_pids_in(&name).len() == 1
    });
    spares.discard(&name);
    assert!(
        nft_pids_in(&name).is_empty(),
        "discard waits until the spare is gone"
    );
}
