//! Root test: the nftables listener of a namespace raises the drift signal
//! when privnet's guard tables are flushed away (`nft flush ruleset`), so
//! the agent checks at once instead of at the next resync. Which changes
//! count is the pure filter's (`nft_events::relevant`, unit-tested).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use privnet_agent::datapath::events::DriftSignal;
use privnet_agent::datapath::netns::{self, NetnsFd};
use privnet_agent::datapath::nft_events;

/// Deletes the namespace, even when the test panics.
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

fn nft(ns: &str, script: &str) {
    let ok = Command::new("ip")
        .args(["netns", "exec", ns, "nft", script])
        .status()
        .unwrap()
        .success();
    assert!(ok, "nft {script:?} in {ns}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_guard_raises_the_drift_signal() {
    privnet_testkit::require_root!();
    let name = format!("pnev{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    netns::create(&name).unwrap();
    let signal = Arc::new(DriftSignal::default());
    let task = tokio::spawn(nft_events::listen(
        NetnsFd::named(&name).unwrap(),
        signal.clone(),
    ));

    // Listening: a privnet table that comes and goes raises the signal
    // (retried until the listener has subscribed).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        nft(&name, "add table inet privnet-probe");
        nft(&name, "delete table inet privnet-probe");
        let raised = tokio::time::timeout(Duration::from_millis(200), signal.raised()).await;
        if raised.is_ok() && signal.take().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener never saw a deletion"
        );
    }

    // The fault: the guard and someone else's table flushed together.
    nft(&name, "add table bridge privnet-ports");
    nft(&name, "add chain bridge privnet-ports from-port");
    nft(&name, "add table inet other");
    let t0 = Instant::now();
    nft(&name, "flush ruleset");
    tokio::time::timeout(Duration::from_secs(2), signal.raised())
        .await
        .expect("a flushed guard raises the signal");
    let at = signal.take().expect("the signal says when");
    assert!(at >= t0, "raised by the flush, not before");
    task.abort();
}
