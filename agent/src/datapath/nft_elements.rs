//! The port sets' elements, changed over nfnetlink from the agent itself.
//!
//! ADD answers once its port's guard is in: two set elements
//! ([`super::guard`]). Through `nft` that costs a process (even one started
//! ahead of time still parses, reads the table back and exits: 2–5 ms);
//! one batch on a netfilter socket opened in the network's namespace costs
//! a fraction of that. Rulesets (network bring-up, repairs) still go
//! through `nft -f`: they are rare, and their text is what the doctor and
//! the drift check read back.
//!
//! The messages come from `netlink-packet-netfilter` (rust-netlink, as
//! `rtnetlink`); this file only lays out the keys and frames one batch.

use std::io;

use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList,
    SetElementMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::sys::{Socket, constants::NETLINK_NETFILTER};

use super::guard::{GuardedPort, PORT_IPS, PORT_MACS, PORTS_TABLE_NAME, PortChange};
use super::netns::{self, NetnsError, NetnsFd};

/// `NFNL_SUBSYS_NFTABLES`: the batch is for nf_tables.
const NFTABLES_SUBSYSTEM: u16 = 10;
/// `IFNAMSIZ`: an interface name in a key is NUL-padded to this.
const IFNAME_LEN: usize = 16;

/// An interface name as the kernel keys it (`ifname` type: 16 bytes).
fn ifname_bytes(name: &str) -> [u8; IFNAME_LEN] {
    let mut out = [0; IFNAME_LEN];
    let n = name.len().min(IFNAME_LEN - 1);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// The `port-mac` key of a port: `ifname . ether_addr`, each field in whole
/// 32-bit registers (the MAC's 6 bytes padded to 8).
pub fn mac_key(port: &GuardedPort) -> Vec<u8> {
    let mut key = ifname_bytes(&port.host_ifname).to_vec();
    key.extend_from_slice(&port.mac);
    key.extend_from_slice(&[0, 0]);
    key
}

/// The `port-ip` key of a port: `ifname . ipv4_addr`.
pub fn ip_key(port: &GuardedPort) -> Vec<u8> {
    let mut key = ifname_bytes(&port.host_ifname).to_vec();
    key.extend_from_slice(&port.ip.octets());
    key
}

/// Batch delimiters name the subsystem; commands name the table's family.
fn delimiter(inner: ControlMessage) -> NetlinkMessage<NetfilterMessage> {
    NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFTABLES_SUBSYSTEM),
        inner,
    ))
}

fn command(inner: NfTablesMessage) -> NetlinkMessage<NetfilterMessage> {
    NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Bridge, 0, 0),
        inner,
    ))
}

fn elements(set: &str, keys: Vec<Vec<u8>>) -> SetElementMessage {
    SetElementMessage {
        attributes: vec![
            SetElementList::Table(PORTS_TABLE_NAME.to_string()),
            SetElementList::Set(set.to_string()),
            SetElementList::Elements(
                keys.into_iter()
                    .map(|k| {
                        ListAttribute::Element(vec![SetElementAttribute::Key(
                            DataAttribute::Value(k),
                        )])
                    })
                    .collect(),
            ),
        ],
    }
}

/// The batch for `change`: removals, then additions, each acknowledged;
/// sequence numbers from `seq` on (pure).
pub fn batch(change: &PortChange, seq: u32) -> Vec<NetlinkMessage<NetfilterMessage>> {
    let mut msgs = vec![delimiter(ControlMessage::BatchBegin)];
    for (adding, ports) in [(false, &change.remove), (true, &change.add)] {
        if ports.is_empty() {
            continue;
        }
        for (set, key) in [
            (PORT_MACS, mac_key as fn(&GuardedPort) -> Vec<u8>),
            (PORT_IPS, ip_key),
        ] {
            let body = elements(set, ports.iter().map(key).collect());
            let mut msg = command(if adding {
                NfTablesMessage::NewSetElement(body)
            } else {
                NfTablesMessage::DeleteSetElement(body)
            });
            msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | if adding { NLM_F_CREATE } else { 0 };
            msgs.push(msg);
        }
    }
    msgs.push(delimiter(ControlMessage::BatchEnd));
    for (i, msg) in msgs.iter_mut().enumerate() {
        msg.header.flags |= NLM_F_REQUEST;
        msg.header.sequence_number = seq.wrapping_add(i as u32);
        msg.finalize();
    }
    msgs
}

/// The number of acknowledgements a batch asks for.
fn acks_expected(msgs: &[NetlinkMessage<NetfilterMessage>]) -> usize {
    msgs.iter()
        .filter(|m| m.header.flags & NLM_F_ACK != 0)
        .count()
}

/// How long a batch may wait for the kernel's answer.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends a batch on a new netfilter socket (of the calling thread's
/// namespace) and reads its acknowledgements: the first error, or `Ok`
/// once every message asking one is acknowledged. A socket per batch: an
/// aborted batch leaves the acknowledgements of its other messages queued.
fn send(msgs: &[NetlinkMessage<NetfilterMessage>]) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0),
    )
    .map_err(io::Error::from)?;
    let len: usize = msgs.iter().map(|m| m.buffer_len()).sum();
    let mut buf = vec![0u8; len];
    let mut at = 0;
    for m in msgs {
        m.serialize(&mut buf[at..at + m.buffer_len()]);
        at += m.buffer_len();
    }
    socket.send(&buf, 0)?;
    let ours = |seq: u32| msgs.iter().any(|m| m.header.sequence_number == seq);
    let mut left = acks_expected(msgs);
    let mut rx = Vec::with_capacity(16 * 1024);
    while left > 0 {
        rx.clear();
        let n = socket.recv(&mut rx, 0)?;
        let mut at = 0;
        while at < n {
            let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&rx[at..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let size = msg.header.length as usize;
            if let NetlinkPayload::Error(e) = &msg.payload
                && ours(msg.header.sequence_number)
            {
                if e.code.is_some() {
                    return Err(e.to_io());
                }
                left = left.saturating_sub(1);
            }
            if size == 0 {
                break;
            }
            at += (size + 3) & !3;
        }
    }
    Ok(())
}

/// Applies `change` in the network namespace `ns` in one transaction. A
/// removal of elements already gone (an `nft` flush, a repair) would fail
/// the whole batch with `ENOENT`; it is then sent again without removals,
/// which were moot.
pub async fn apply(ns: &NetnsFd, change: &PortChange) -> Result<(), NetnsError> {
    if change.is_empty() {
        return Ok(());
    }
    let change = change.clone();
    let result = netns::run_in_async(ns, move || match send(&batch(&change, 1)) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) && !change.remove.is_empty() => {
            let adds = PortChange {
                remove: Vec::new(),
                add: change.add.clone(),
            };
            if adds.is_empty() {
                return Ok(());
            }
            send(&batch(&adds, 1))
        }
        other => other,
    })
    .await?;
    result.map_err(|e| NetnsError::Command {
        command: "nfnetlink: change the port sets".into(),
        stderr: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_netfilter::NetfilterMessageInner;

    fn port() -> GuardedPort {
        GuardedPort {
            host_ifname: "pv1a".into(),
            mac: [0x0a, 0x58, 1, 2, 3, 4],
            ip: "10.240.0.5".parse().unwrap(),
        }
    }

    #[test]
    fn keys_put_each_field_in_whole_registers() {
        let mac = mac_key(&port());
        assert_eq!(mac.len(), 24, "16-byte ifname + 6-byte MAC padded to 8");
        assert_eq!(&mac[..5], b"pv1a\0");
        assert_eq!(&mac[16..], &[0x0a, 0x58, 1, 2, 3, 4, 0, 0]);
        let ip = ip_key(&port());
        assert_eq!(ip.len(), 20);
        assert_eq!(&ip[16..], &[10, 240, 0, 5]);
    }

    #[test]
    fn a_batch_removes_first_and_asks_an_ack_per_change() {
        let change = PortChange {
            remove: vec![port()],
            add: vec![GuardedPort {
                ip: "10.240.0.6".parse().unwrap(),
                ..port()
            }],
        };
        let msgs = batch(&change, 7);
        let kinds: Vec<String> = msgs
            .iter()
            .map(|m| match &m.payload {
                NetlinkPayload::InnerMessage(NetfilterMessage { inner, .. }) => match inner {
                    NetfilterMessageInner::None(c) => format!("{c:?}"),
                    NetfilterMessageInner::NfTables(NfTablesMessage::NewSetElement(e)) => {
                        format!("add {:?}", e.attributes[1])
                    }
                    NetfilterMessageInner::NfTables(NfTablesMessage::DeleteSetElement(e)) => {
                        format!("delete {:?}", e.attributes[1])
                    }
                    other => format!("{other:?}"),
                },
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "BatchBegin",
                "delete Set(\"port-mac\")",
                "delete Set(\"port-ip\")",
                "add Set(\"port-mac\")",
                "add Set(\"port-ip\")",
                "BatchEnd"
            ]
        );
        assert_eq!(acks_expected(&msgs), 4);
        let seqs: Vec<u32> = msgs.iter().map(|m| m.header.sequence_number).collect();
        assert_eq!(seqs, [7, 8, 9, 10, 11, 12]);
        assert_eq!(batch(&PortChange::default(), 1).len(), 2);
    }
}
