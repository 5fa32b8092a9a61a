//! Kernel protocol counters of a network namespace (`/proc/net/snmp` and
//! `/proc/net/netstat`), to tell where a benchmark's retransmits come from:
//! fragmentation or "fragmentation needed" errors would mean an MTU problem,
//! receive-buffer drops at the tunnel's UDP socket mean plain overload.

use std::collections::BTreeMap;

use super::process::{ProcessError, in_netns, output};

/// Counters by `<Group><Name>` as `nstat` spells them (`UdpRcvbufErrors`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<String, u64>);

impl Counters {
    /// Parses the header/value line pairs of `/proc/net/snmp` or `netstat`.
    pub fn parse(text: &str) -> Self {
        let mut map = BTreeMap::new();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            let (Some((group, names)), Some((group2, values))) =
                (names.split_once(':'), values.split_once(':'))
            else {
                continue;
            };
            if group != group2 {
                continue;
            }
            for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
                if let Ok(v) = value.parse::<u64>() {
                    map.insert(format!("{group}{name}"), v);
                }
            }
        }
        Self(map)
    }

    /// Reads both files inside `netns`.
    pub fn read(netns: &str) -> Result<Self, ProcessError> {
        let text = output(&mut in_netns(
            netns,
            "cat",
            &["/proc/net/snmp", "/proc/net/netstat"],
        ))?;
        Ok(Self::parse(&text))
    }

    /// One counter (0 when absent).
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// `self - before` for one counter (saturating: counters only grow).
    pub fn delta(&self, before: &Self, name: &str) -> u64 {
        self.get(name).saturating_sub(before.get(name))
    }
}

/// Counters whose growth would point at the MTU: packets fragmented or
/// dropped for being too big, reassemblies, and ICMP "destination
/// unreachable" (which carries "fragmentation needed").
pub const MTU_SIGNS: [&str; 5] = [
    "IpFragCreates",
    "IpFragFails",
    "IpReasmReqds",
    "IcmpInDestUnreachs",
    "IcmpOutDestUnreachs",
];

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL FragCreates\n\
                        Ip: 2 64 3\n\
                        Udp: InDatagrams RcvbufErrors\n\
                        Udp: 10 7\n\
                        TcpExt: SyncookiesSent TCPOFOQueue\n\
                        TcpExt: 0 42\n";

    #[test]
    fn reads_named_counters_of_every_group() {
        let c = Counters::parse(SNMP);
        assert_eq!(c.get("IpFragCreates"), 3);
        assert_eq!(c.get("UdpRcvbufErrors"), 7);
        assert_eq!(c.get("TcpExtTCPOFOQueue"), 42);
        assert_eq!(c.get("Nope"), 0);
    }

    #[test]
    fn deltas_never_go_negative() {
        let before = Counters::parse(SNMP);
        let after = Counters::parse(&SNMP.replace("Udp: 10 7", "Udp: 15 9"));
        assert_eq!(after.delta(&before, "UdpRcvbufErrors"), 2);
        assert_eq!(before.delta(&after, "UdpRcvbufErrors"), 0);
    }

    #[test]
    fn mismatched_pairs_are_skipped() {
        let c = Counters::parse("Ip: A B\nUdp: 1 2\n");
        assert!(c.0.is_empty());
    }
}
