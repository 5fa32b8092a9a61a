//! Static forwarding database of a VXLAN device (`bridge fdb … dev vx… dst X`).
//!
//! The VXLAN devices are `nolearning`: the agent alone decides where frames go. All-zero MAC
//! entries are the flood list (one per remote VTEP hosting the network, `bridge fdb append`);
//! other entries pin a remote endpoint's MAC to its node (`bridge fdb replace`).
//! rtnetlink 0.24 has AF_BRIDGE neighbour messages but no `append` flag, so the requests are
//! built here and sent through [`rtnetlink::Handle::request`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

pub use privnet_core::fdb::FLOOD_MAC;

/// Errors of FDB handling.
#[derive(Debug, thiserror::Error)]
pub enum FdbError {
    /// A netlink request failed.
    #[error("failed to {action} VXLAN fdb entries")]
    Netlink {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
}

pub use privnet_core::fdb::FdbEntry;

/// What to change to go from the kernel's entries to the desired ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdbDiff {
    /// Entries to delete (applied first).
    pub remove: Vec<FdbEntry>,
    /// Entries to add.
    pub add: Vec<FdbEntry>,
}

impl FdbDiff {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}

/// The pure diff: entries present but not desired are removed, desired ones missing are added;
/// unchanged entries are not touched.
pub fn diff(current: &BTreeSet<FdbEntry>, desired: &BTreeSet<FdbEntry>) -> FdbDiff {
    let (add, remove) = privnet_core::fdb::diff(current, desired);
    FdbDiff {
        remove: remove.into_iter().collect(),
        add: add.into_iter().collect(),
    }
}

fn message(ifindex: u32, entry: &FdbEntry) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = ifindex;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(entry.mac.to_vec()));
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            entry.dst,
        )));
    msg
}

fn parse(msg: &NeighbourMessage, ifindex: u32) -> Option<FdbEntry> {
    if msg.header.ifindex != ifindex {
        return None;
    }
    let mut mac = None;
    let mut dst = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                mac = <[u8; 6]>::try_from(l.as_slice()).ok();
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => dst = Some(*ip),
            // An AF_BRIDGE dump carries NDA_DST as raw bytes (the family says "bridge").
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) if b.len() == 4 => {
                dst = Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            }
            _ => {}
        }
    }
    Some(FdbEntry {
        mac: mac?,
        dst: dst?,
    })
}

/// The device's entries that have a `dst` (`bridge fdb show dev <vx>`), read through `handle`
/// (which must be bound to the namespace holding the device).
pub async fn read(
    handle: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<BTreeSet<FdbEntry>, FdbError> {
    let err = |source| FdbError::Netlink {
        action: "read",
        source,
    };
    let mut dump = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute();
    let mut entries = BTreeSet::new();
    while let Some(msg) = dump.try_next().await.map_err(err)? {
        entries.extend(parse(&msg, ifindex));
    }
    Ok(entries)
}

/// Sends one request and waits for its acknowledgement.
pub(crate) async fn send(
    handle: &rtnetlink::Handle,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> Result<(), rtnetlink::Error> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut response = handle.clone().request(req)?;
    while let Some(reply) = response.next().await {
        if let NetlinkPayload::Error(e) = reply.payload {
            return Err(rtnetlink::Error::NetlinkError(e));
        }
    }
    Ok(())
}

/// Adds one entry: `bridge fdb append 00:00:00:00:00:00 dev <vx> dst X` for flood entries,
/// `bridge fdb replace <mac> dev <vx> dst X` for unicast ones.
pub async fn add(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    entry: &FdbEntry,
) -> Result<(), FdbError> {
    let mode = if entry.is_flood() {
        NLM_F_APPEND
    } else {
        NLM_F_REPLACE
    };
    let msg = RouteNetlinkMessage::NewNeighbour(message(ifindex, entry));
    send(handle, msg, NLM_F_CREATE | mode)
        .await
        .map_err(|source| FdbError::Netlink {
            action: "add",
            source,
        })
}

/// Deletes one entry (`bridge fdb del <mac> dev <vx> dst X`); a missing entry is not an error.
pub async fn remove(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    entry: &FdbEntry,
) -> Result<(), FdbError> {
    let msg = RouteNetlinkMessage::DelNeighbour(message(ifindex, entry));
    match send(handle, msg, 0).await {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enoent() => Ok(()),
        other => other.map_err(|source| FdbError::Netlink {
            action: "delete",
            source,
        }),
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

/// Reads the device's entries and applies the difference to `desired`; returns what changed.
pub async fn sync(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    desired: &BTreeSet<FdbEntry>,
) -> Result<FdbDiff, FdbError> {
    let changes = diff(&read(handle, ifindex).await?, desired);
    for entry in &changes.remove {
        remove(handle, ifindex, entry).await?;
    }
    for entry in &changes.add {
        add(handle, ifindex, entry).await?;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(mac_last: u8, dst_last: u8) -> FdbEntry {
        let mac = if mac_last == 0 {
            FLOOD_MAC
        } else {
            [0x0a, 0x58, 0, 0, 0, mac_last]
        };
        FdbEntry {
            mac,
            dst: Ipv4Addr::new(10, 99, 0, dst_last),
        }
    }

    #[test]
    fn unchanged_entries_are_left_alone() {
        let set: BTreeSet<_> = [e(0, 2), e(0, 3), e(7, 2)].into();
        assert!(diff(&set, &set).is_empty());
    }

    #[test]
    fn stale_entries_go_and_missing_ones_come() {
        let current: BTreeSet<_> = [e(0, 2), e(0, 3), e(7, 2)].into();
        let desired: BTreeSet<_> = [e(0, 2), e(0, 4), e(7, 4)].into();
        let d = diff(&current, &desired);
        assert_eq!(d.remove, vec![e(0, 3), e(7, 2)]);
        assert_eq!(d.add, vec![e(0, 4), e(7, 4)]);
    }

    #[test]
    fn message_round_trips_through_parse() {
        let entry = e(9, 5);
        let msg = message(42, &entry);
        assert_eq!(parse(&msg, 42), Some(entry));
        assert_eq!(parse(&msg, 43), None);
        assert_eq!(msg.header.family, AddressFamily::Bridge);
        assert!(FdbEntry::flood(Ipv4Addr::LOCALHOST).is_flood());
        let mut dumped = msg.clone();
        dumped.attributes[1] =
            NeighbourAttribute::Destination(NeighbourAddress::Other(vec![10, 99, 0, 5]));
        assert_eq!(
            parse(&dumped, 42),
            Some(entry),
            "dumps carry the dst as raw bytes"
        );
    }
}
