//! Kernel events that may mean drift: an rtnetlink listener (link,
//! IPv4 address and neighbour groups, as `ip monitor link address neigh`)
//! in each namespace the agent owns raises a [`DriftSignal`], and the
//! agent brings its next read-back forward instead of waiting for the
//! resync ([`crate::node::repair_plan::until_check`]). Only what the
//! read-back would call drift counts ([`relevant`], pure): the deletion or
//! downing of the bridge, the VXLAN device or the WireGuard link, a
//! change of an address on them, a deleted FDB entry of the VXLAN device.
//! Container ports, learned MACs and neighbours come and go with every
//! ADD and DEL and are left to the resync. The events only say "look
//! now"; what is wrong is still read back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rtnetlink::MulticastGroup;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAttribute, NeighbourMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use tokio::sync::Notify;

use super::netns::{self, NetnsFd};

/// Raised by the watchers, taken by the agent's loop.
#[derive(Debug, Default)]
pub struct DriftSignal {
    since: Mutex<Option<Instant>>,
    notify: Notify,
}

impl DriftSignal {
    /// A relevant event arrived at `at` (the first one since the last take is kept).
    pub fn raise(&self, at: Instant) {
        self.since.lock().expect("signal lock").get_or_insert(at);
        self.notify.notify_one();
    }

    /// When the first event since the last [`Self::take`] arrived.
    pub fn peek(&self) -> Option<Instant> {
        *self.since.lock().expect("signal lock")
    }

    /// Clears the signal (a check is about to read everything back).
    pub fn take(&self) -> Option<Instant> {
        self.since.lock().expect("signal lock").take()
    }

    /// Resolves at the next [`Self::raise`] (or at once if one came since
    /// the last wait).
    pub async fn raised(&self) {
        self.notify.notified().await;
    }
}

/// What a listener watches in its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchScope {
    /// The agent's namespace: the WireGuard link (a dead userspace daemon
    /// takes its TUN device with it).
    Mesh {
        /// The WireGuard interface.
        wg_ifname: String,
    },
    /// A network's namespace: its bridge and VXLAN device.
    Network {
        /// The bridge (carries the gateway address).
        bridge: String,
        /// The VXLAN device (carries the FDB).
        vxlan: String,
    },
}

impl WatchScope {
    fn owns(&self, name: &str) -> bool {
        match self {
            WatchScope::Mesh { wg_ifname } => name == wg_ifname,
            WatchScope::Network { bridge, vxlan } => name == bridge || name == vxlan,
        }
    }
}

fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn address_label(m: &AddressMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Label(l) => Some(l.as_str()),
        _ => None,
    })
}

/// A bridge FDB entry towards a remote VTEP (only the VXLAN device has
/// those; MACs learned on container ports carry no destination).
fn remote_fdb(m: &NeighbourMessage) -> bool {
    m.header.family == AddressFamily::Bridge
        && m.attributes
            .iter()
            .any(|a| matches!(a, NeighbourAttribute::Destination(_)))
}

/// Whether `msg` may be drift in `scope`, and of what (for the log).
pub fn relevant(scope: &WatchScope, msg: &RouteNetlinkMessage) -> Option<&'static str> {
    match msg {
        RouteNetlinkMessage::DelLink(m) if link_name(m).is_some_and(|n| scope.owns(n)) => {
            Some("link deleted")
        }
        RouteNetlinkMessage::NewLink(m)
            if link_name(m).is_some_and(|n| scope.owns(n))
                && !m.header.flags.contains(LinkFlags::Up) =>
        {
            Some("link down")
        }
        RouteNetlinkMessage::DelAddress(m) | RouteNetlinkMessage::NewAddress(m)
            if address_label(m).is_some_and(|l| scope.owns(l)) =>
        {
            Some("address changed")
        }
        RouteNetlinkMessage::DelNeighbour(m)
            if matches!(scope, WatchScope::Network { .. }) && remote_fdb(m) =>
        {
            Some("FDB entry deleted")
        }
        _ => None,
    }
}

/// How long a listener waits before listening again after its socket
/// failed (a receive-buffer overrun under a storm of events).
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// A multicast netlink connection and the messages it receives.
pub(crate) type Subscription<T> = (
    rtnetlink::proto::Connection<T>,
    futures::channel::mpsc::UnboundedReceiver<(
        rtnetlink::packet_core::NetlinkMessage<T>,
        rtnetlink::sys::SocketAddr,
    )>,
);

/// Subscribes with `open` inside `ns` and raises `signal` for every message
/// `relevant` names, until the task is aborted (or the namespace is gone).
/// A failed socket (an overrun under a storm of events: events were lost)
/// raises the signal too, then it subscribes again. `source` names the
/// listener in logs.
pub(crate) async fn watch<T, O, R>(
    ns: NetnsFd,
    source: &'static str,
    open: O,
    relevant: R,
    signal: std::sync::Arc<DriftSignal>,
) where
    T: std::fmt::Debug
        + rtnetlink::packet_core::NetlinkSerializable
        + rtnetlink::packet_core::NetlinkDeserializable
        + Unpin
        + Send
        + 'static,
    O: Fn() -> std::io::Result<Subscription<T>> + Clone + Send + 'static,
    R: Fn(&T) -> Option<&'static str>,
{
    loop {
        let runtime = tokio::runtime::Handle::current();
        let open = open.clone();
        let opened = netns::run_in_async(&ns, move || {
            let _entered = runtime.enter();
            open()
        })
        .await;
        let (connection, mut messages) = match opened {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, source, "failed to listen to kernel events");
                tokio::time::sleep(REOPEN_AFTER).await;
                continue;
            }
            // The namespace is gone: the read-back sees that.
            Err(_) => return,
        };
        // Polled here, not spawned: an aborted listener closes its socket
        // (which would otherwise keep a removed namespace alive).
        tokio::pin!(connection);
        loop {
            let message = tokio::select! {
                () = &mut connection => None,
                m = messages.next() => m,
            };
            let Some((message, _)) = message else { break };
            if let rtnetlink::packet_core::NetlinkPayload::InnerMessage(msg) = &message.payload
                && let Some(what) = relevant(msg)
            {
                tracing::debug!(source, what, "kernel event: checking the datapath early");
                signal.raise(Instant::now());
            }
        }
        signal.raise(Instant::now());
        tokio::time::sleep(REOPEN_AFTER).await;
    }
}

/// Listens to links, addresses and neighbours in `ns` ([`watch`]).
pub async fn listen(ns: NetnsFd, scope: WatchScope, signal: std::sync::Arc<DriftSignal>) {
    let open = || {
        rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Neigh,
        ])
        .map(|(connection, _handle, messages)| (connection, messages))
    };
    watch(ns, "rtnetlink", open, |m| relevant(&scope, m), signal).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::neighbour::NeighbourAddress;

    fn link(name: &str, up: bool) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        if up {
            m.header.flags = LinkFlags::Up;
        }
        m
    }

    fn fdb(remote: bool) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        if remote {
            let dst = NeighbourAddress::Inet("198.19.0.2".parse().unwrap());
            m.attributes.push(NeighbourAttribute::Destination(dst));
        }
        m
    }

    fn address(label: &str) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.attributes.push(AddressAttribute::Label(label.into()));
        m
    }

    #[test]
    fn only_what_the_read_back_calls_drift_is_an_event() {
        use RouteNetlinkMessage as M;
        let net = WatchScope::Network {
            bridge: "br0".into(),
            vxlan: "vx100".into(),
        };
        let mesh = WatchScope::Mesh {
            wg_ifname: "pnwg".into(),
        };
        assert_eq!(
            relevant(&net, &M::DelLink(link("vx100", true))),
            Some("link deleted")
        );
        assert_eq!(
            relevant(&net, &M::NewLink(link("br0", false))),
            Some("link down")
        );
        assert_eq!(
            relevant(&net, &M::DelAddress(address("br0"))),
            Some("address changed")
        );
        assert_eq!(
            relevant(&net, &M::DelNeighbour(fdb(true))),
            Some("FDB entry deleted")
        );
        assert_eq!(
            relevant(&mesh, &M::DelLink(link("pnwg", false))),
            Some("link deleted")
        );
        // Every ADD and DEL: a container port, a learned MAC, the bridge
        // still up, the agent's own FDB additions.
        for quiet in [
            M::DelLink(link("pv1234", false)),
            M::NewLink(link("pv1234", true)),
            M::NewLink(link("br0", true)),
            M::DelNeighbour(fdb(false)),
            M::NewNeighbour(fdb(true)),
        ] {
            assert_eq!(relevant(&net, &quiet), None, "{quiet:?}");
        }
        // Not the mesh's business, and not the network's.
        assert_eq!(relevant(&mesh, &M::DelLink(link("vx100", false))), None);
        assert_eq!(relevant(&mesh, &M::DelNeighbour(fdb(true))), None);
        assert_eq!(relevant(&net, &M::DelLink(link("pnwg", false))), None);
    }

    #[test]
    fn the_first_event_is_kept_until_taken() {
        let s = DriftSignal::default();
        let t0 = Instant::now();
        s.raise(t0);
        s.raise(t0 + Duration::from_secs(1));
        assert_eq!(s.peek(), Some(t0));
        assert_eq!(s.take(), Some(t0));
        assert_eq!(s.peek(), None);
    }
}
