//! ADD answers only once the container's bridge port forwards.
//!
//! The host end of the veth is enslaved before it has carrier; the kernel
//! applies the carrier change in its link-watch work (under RTNL): the port's
//! operational state goes up, its transmit queue is activated (until then it
//! drops every frame) and the bridge enables the port (STP is off on
//! privnet's bridges, so enabled means forwarding at once). That work
//! normally runs within microseconds, but it queues behind whoever holds RTNL
//! (another container's teardown, a namespace being deleted): if the plugin
//! answers first, the container's first ARP is dropped and its first packet
//! waits for the kernel's ~1 s ARP retry. So ADD waits, bounded, until the
//! kernel reports all four — as the reference `bridge` plugin waits for its
//! host veth to be operationally up.

use std::time::{Duration, Instant};

use rtnetlink::Handle;
use rtnetlink::packet_route::link::{
    BridgePortState, InfoBridgePort, InfoPortData, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    State,
};

use crate::error::CniError;

/// What the kernel reports about a bridge port, as far as forwarding goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortState {
    /// The link has carrier (`LOWER_UP`: the peer end is up).
    pub carrier: bool,
    /// RFC 2863 operational state is `UP` (link-watch has run since carrier came).
    pub oper_up: bool,
    /// Its queueing discipline (`noop` until link-watch activates it: every frame dropped).
    pub qdisc: Option<String>,
    /// Its bridge port state (`IFLA_BRPORT_STATE`); `None` when not a bridge port.
    pub bridge: Option<BridgePortState>,
}

impl PortState {
    /// Reads the state from a kernel link message (`ip -d link show`).
    pub fn of(msg: &LinkMessage) -> PortState {
        let mut s = PortState {
            carrier: msg.header.flags.contains(LinkFlags::LowerUp),
            ..PortState::default()
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::OperState(state) => s.oper_up = *state == State::Up,
                LinkAttribute::Qdisc(q) => s.qdisc = Some(q.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::PortData(InfoPortData::BridgePort(attrs)) = info {
                            for a in attrs {
                                if let InfoBridgePort::State(st) = a {
                                    s.bridge = Some(*st);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        s
    }

    /// Frames cross the port in both directions: carrier, operationally up,
    /// a real queue, and the bridge forwarding on it. A port the bridge
    /// enabled at enslavement (before link-watch had marked it down) reads
    /// "forwarding" too early, hence the other three.
    pub fn forwards(&self) -> bool {
        self.carrier
            && self.oper_up
            && self.qdisc.as_deref().is_some_and(|q| q != "noop")
            && self.bridge == Some(BridgePortState::Forwarding)
    }
}

impl std::fmt::Display for PortState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "carrier {}, operstate {}, qdisc {}, bridge port {}",
            if self.carrier { "on" } else { "off" },
            if self.oper_up { "up" } else { "not up" },
            self.qdisc.as_deref().unwrap_or("none"),
            self.bridge
                .map_or_else(|| "none".to_string(), |s| format!("{s:?}").to_lowercase()),
        )
    }
}

/// How long ADD waits for a port to forward before failing (the reference
/// `bridge` plugin gives up after ~2.5 s).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

/// Pause between two reads of the port's state (the runtime's timer has
/// millisecond resolution).
const POLL: Duration = Duration::from_millis(1);

/// The next pause, or `None` once `deadline` has passed (pure; the clock
/// is an argument).
pub fn next_poll(now: Instant, deadline: Instant) -> Option<Duration> {
    let left = deadline.checked_duration_since(now)?;
    (!left.is_zero()).then(|| left.min(POLL))
}

/// Waits until the bridge port `name` (in the namespace of `handle`)
/// forwards; returns how long it waited (zero when the port forwarded at
/// the first look).
pub async fn wait_until_forwarding(
    handle: &Handle,
    name: &str,
    netns: &str,
    timeout: Duration,
) -> Result<Duration, CniError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut first = true;
    loop {
        let msg = privnet_sys::link::get(handle, name)
            .await
            .map_err(CniError::from)?
            .ok_or_else(|| {
                CniError::Internal(format!("{name} vanished from {netns} after creation"))
            })?;
        let state = PortState::of(&msg);
        if state.forwards() {
            return Ok(if first {
                Duration::ZERO
            } else {
                start.elapsed()
            });
        }
        first = false;
        match next_poll(Instant::now(), deadline) {
            Some(pause) => tokio::time::sleep(pause).await,
            None => {
                return Err(CniError::PortNotForwarding {
                    port: name.to_string(),
                    netns: netns.to_string(),
                    waited: timeout,
                    state: state.to_string(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(flags: LinkFlags, attrs: Vec<LinkAttribute>) -> PortState {
        let mut msg = LinkMessage::default();
        msg.header.flags = flags;
        msg.attributes = attrs;
        PortState::of(&msg)
    }

    fn bridge_port(state: BridgePortState) -> LinkAttribute {
        LinkAttribute::LinkInfo(vec![LinkInfo::PortData(InfoPortData::BridgePort(vec![
            InfoBridgePort::State(state),
        ]))])
    }

    #[test]
    fn a_port_forwards_only_with_carrier_oper_up_a_queue_and_the_bridge_forwarding() {
        let up = LinkFlags::Up | LinkFlags::LowerUp;
        let ready = port(
            up,
            vec![
                LinkAttribute::OperState(State::Up),
                LinkAttribute::Qdisc("noqueue".into()),
                bridge_port(BridgePortState::Forwarding),
            ],
        );
        assert!(ready.forwards(), "{ready}");
        // Each missing piece alone keeps it from forwarding.
        let mut no_carrier = ready.clone();
        no_carrier.carrier = false;
        let mut down = ready.clone();
        down.oper_up = false;
        let mut noop = ready.clone();
        noop.qdisc = Some("noop".into());
        let mut disabled = ready.clone();
        disabled.bridge = Some(BridgePortState::Disabled);
        let mut learning = ready.clone();
        learning.bridge = Some(BridgePortState::Learning);
        let mut not_a_port = ready.clone();
        not_a_port.bridge = None;
        for s in [no_carrier, down, noop, disabled, learning, not_a_port] {
            assert!(!s.forwards(), "{s}");
        }
        // What a freshly enslaved port without carrier looks like.
        let fresh = port(
            LinkFlags::Up,
            vec![
                LinkAttribute::OperState(State::Unknown),
                LinkAttribute::Qdisc("noop".into()),
                bridge_port(BridgePortState::Forwarding),
            ],
        );
        assert!(!fresh.forwards());
        assert_eq!(
            fresh.to_string(),
            "carrier off, operstate not up, qdisc noop, bridge port forwarding"
        );
    }

    #[test]
    fn polling_stops_at_the_deadline() {
        let t0 = Instant::now();
        assert_eq!(next_poll(t0, t0 + Duration::from_secs(1)), Some(POLL));
        assert_eq!(
            next_poll(t0, t0 + Duration::from_micros(300)),
            Some(Duration::from_micros(300))
        );
        assert_eq!(next_poll(t0, t0), None);
        assert_eq!(next_poll(t0 + Duration::from_millis(5), t0), None);
    }
}
