//! nf_tables events that may mean the guard drifted: a listener on the
//! nftables multicast group (`nft monitor`) in each namespace the agent
//! owns raises the same [`DriftSignal`] as the rtnetlink listener
//! ([`super::events`]), so an `nft flush ruleset` or a deleted guard chain
//! is checked and put back at once instead of at the next resync. Only
//! deletions of tables, chains, rules and sets of privnet's own tables
//! count ([`relevant`], pure): the agent's own changes on the ADD and DEL
//! paths are set elements, and its rewrites add, so they raise nothing.

use netlink_packet_netfilter::nftables::{
    ChainAttribute, NfTablesMessage, RuleAttribute, SetAttribute, TableAttribute,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};
use rtnetlink::sys::constants::NETLINK_NETFILTER;
use rtnetlink::sys::{AsyncSocket, SocketAddr};

use super::events::{DriftSignal, watch};
use super::netns::NetnsFd;

/// `NFNLGRP_NFTABLES`: the group nf_tables reports its changes to.
const NFTABLES_GROUP: u32 = 7;

/// Prefix of every table the agent writes.
const OWN_TABLE_PREFIX: &str = "privnet-";

fn own(table: Option<&String>) -> bool {
    table.is_some_and(|t| t.starts_with(OWN_TABLE_PREFIX))
}

/// Whether `msg` may be guard drift, and of what (for the log).
pub fn relevant(msg: &NfTablesMessage) -> Option<&'static str> {
    let (what, table) = match msg {
        NfTablesMessage::DeleteTable(m) => (
            "table deleted",
            m.attributes.iter().find_map(|a| match a {
                TableAttribute::Name(n) => Some(n),
                _ => None,
            }),
        ),
        NfTablesMessage::DeleteChain(m) => (
            "chain deleted",
            m.attributes.iter().find_map(|a| match a {
                ChainAttribute::Table(n) => Some(n),
                _ => None,
            }),
        ),
        NfTablesMessage::DeleteRule(m) => (
            "rule deleted",
            m.attributes.iter().find_map(|a| match a {
                RuleAttribute::Table(n) => Some(n),
                _ => None,
            }),
        ),
        NfTablesMessage::DeleteSet(m) => (
            "set deleted",
            m.attributes.iter().find_map(|a| match a {
                SetAttribute::Table(n) => Some(n),
                _ => None,
            }),
        ),
        _ => return None,
    };
    own(table).then_some(what)
}

/// Listens to nf_tables changes in `ns` ([`super::events::watch`]).
pub async fn listen(ns: NetnsFd, signal: std::sync::Arc<DriftSignal>) {
    let open = || {
        let (mut connection, _handle, messages) =
            rtnetlink::proto::new_connection::<NetfilterMessage>(NETLINK_NETFILTER)?;
        let socket = connection.socket_mut().socket_mut();
        socket.bind(&SocketAddr::new(0, 0))?;
        socket.add_membership(NFTABLES_GROUP)?;
        Ok((connection, messages))
    };
    let relevant = |m: &NetfilterMessage| match &m.inner {
        NetfilterMessageInner::NfTables(msg) => relevant(msg),
        _ => None,
    };
    watch(ns, "nftables", open, relevant, signal).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_netfilter::nftables::{
        ChainMessage, RuleMessage, SetElementMessage, SetMessage, TableMessage,
    };

    #[test]
    fn only_deletions_in_privnet_tables_count() {
        let table = |n: &str| TableMessage {
            attributes: vec![TableAttribute::Name(n.into())],
        };
        let rule = |t: &str| RuleMessage {
            attributes: vec![RuleAttribute::Table(t.into())],
        };
        assert_eq!(
            relevant(&NfTablesMessage::DeleteTable(table("privnet-ports"))),
            Some("table deleted")
        );
        assert_eq!(
            relevant(&NfTablesMessage::DeleteRule(rule("privnet-guard"))),
            Some("rule deleted")
        );
        assert_eq!(
            relevant(&NfTablesMessage::DeleteChain(ChainMessage {
                attributes: vec![ChainAttribute::Table("privnet-gw".into())],
            })),
            Some("chain deleted")
        );
        assert_eq!(
            relevant(&NfTablesMessage::DeleteSet(SetMessage {
                attributes: vec![SetAttribute::Table("privnet-ports".into())],
            })),
            Some("set deleted")
        );
        // Someone else's table, the agent's own additions, set elements.
        assert_eq!(
            relevant(&NfTablesMessage::DeleteTable(table("filter"))),
            None
        );
        assert_eq!(
            relevant(&NfTablesMessage::NewRule(rule("privnet-ports"))),
            None
        );
        assert_eq!(
            relevant(&NfTablesMessage::DeleteSetElement(SetElementMessage {
                attributes: vec![],
            })),
            None
        );
    }
}
