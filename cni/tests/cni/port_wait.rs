//! Root test: ADD's wait for the bridge port (`privnet_cni::port`) sees a
//! port that cannot forward yet (its veth peer is down: no carrier) and
//! gives up at its bound, and returns as soon as the peer comes up.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{TestNetns, ip};
use privnet_cni::error::CniError;
use privnet_cni::netns::Netns;
use privnet_cni::port::wait_until_forwarding;

#[test]
fn the_wait_sees_a_port_without_carrier_and_returns_once_it_forwards() {
    common::require_root!();
    let ns = TestNetns::new("pnpw");
    for cmd in [
        "link add br0 type bridge stp_state 0",
        "link set br0 up",
        "link add pvw1 master br0 up type veth peer name cw1",
    ] {
        let mut args = vec!["-n", ns.name.as_str()];
        args.extend(cmd.split(' '));
        ip(&args).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let net = Netns::open(Path::new(&ns.path())).unwrap();
        // Peer down: no carrier, the port cannot forward; the wait is bounded.
        let err = wait_until_forwarding(&net.handle, "pvw1", &ns.path(), Duration::from_millis(50))
            .await
            .unwrap_err();
        match &err {
            CniError::PortNotForwarding { state, .. } => {
                assert!(state.contains("carrier off"), "{state}")
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(err.code(), 11, "transient: try again later");
        // Peer up: the same wait returns, within its bound.
        ip(&["-n", &ns.name, "link", "set", "cw1", "up"]).unwrap();
        let waited = wait_until_forwarding(&net.handle, "pvw1", &ns.path(), Duration::from_secs(3))
            .await
            .unwrap();
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        let shown = ip(&["-n", &ns.name, "-d", "link", "show", "pvw1"]).unwrap();
        assert!(
            shown.contains("state UP") && shown.contains("forwarding"),
            "{shown}"
        );
    });
}
