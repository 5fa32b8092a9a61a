//! Root test: the per-port guard of a network namespace drops spoofed frames.
//!
//! Scratch topology: a "network" namespace with a bridge and two "container" namespaces on
//! veths. Frames are crafted with AF_PACKET (python3) in container 1 and counted by an
//! AF_PACKET receiver in container 2; a negative control without the guard proves the
//! receiver would have seen the spoofed frames.

use crate::datapath_support;

use datapath_support::ping;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use privnet_agent::datapath::guard::{self, GuardedPort, NetworkGuard};
use privnet_agent::datapath::netns::{self, NetnsFd};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Deletes the namespaces it names, even when the test panics.
struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = netns::delete(ns);
        }
    }
}

fn sh(ns: &str, cmd: &str) -> std::process::Output {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const PY: &str = r#"
import socket, struct, sys, time
mode, ifname = sys.argv[1], sys.argv[2]
def mac(s): return bytes(int(x, 16) for x in s.split(':'))
def ip(s): return socket.inet_aton(s)
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b)//2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
if mode == 'recv':
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); s.bind((ifname, 0))
    print('ready', file=sys.stderr, flush=True)
    marker = ip(sys.argv[3]); s.settimeout(0.2); n = 0; end = time.time() + float(sys.argv[4])
    while time.time() < end:
        try: f = s.recv(2048)
        except socket.timeout: continue
        # only crafted frames: UDP with our payload from marker, or gratuitous ARP (sender = target = marker)
        # (a VLAN tag may arrive stripped into metadata: then it looks like plain UDP), or a frame
        # of another L2 protocol carrying the test payload and the marker
        if (f[12:14] == b'\x08\x00' and f[26:30] == marker and b'privnet-guard-test' in f) or (f[12:14] == b'\x08\x06' and f[28:32] == marker and f[38:42] == marker) or (f[12:14] == b'\x81\x00' and f[30:34] == marker and b'privnet-guard-test' in f) or (f[12:14] == b'\x88\xb5' and b'privnet-guard-test' + marker in f) or (f[12:14] == b'\x86\xdd' and b'privnet-guard-test' + marker in f): n += 1
    print(n)
else:
    kind, smac, dmac, sip, dip = sys.argv[3:8]
    sport = int(sys.argv[8]) if len(sys.argv) > 8 else 40000
    eth = mac(dmac) + mac(smac)
    if kind == 'arp':
        frame = eth + b'\x08\x06' + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + mac(smac) + ip(sip) + b'\x00'*6 + ip(dip)
    elif kind == 'icmp6':
        # ICMPv6 of type `sport` (134: router advertisement) from fe80::1 to all nodes.
        icmp = struct.pack('!BBH', sport, 0, 0) + b'privnet-guard-test' + ip(sip)
        src, dst = bytes.fromhex('fe80' + '00' * 13 + '01'), bytes.fromhex('ff02' + '00' * 13 + '01')
        frame = eth + b'\x86\xdd' + struct.pack('!IHBB', 0x60000000, len(icmp), 58, 255) + src + dst + icmp
    elif kind == 'other':
        frame = eth + b'\x88\xb5' + b'privnet-guard-test' + ip(sip) + b'\x00' * 24
    else:
        payload = b'privnet-guard-test'
        udp = struct.pack('!HHHH', sport, 9, 8 + len(payload), 0) + payload
        hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, ip(sip), ip(dip))
        hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
        frame = eth + (b'\x81\x00\x00\x05' if kind == 'vlan' else b'') + b'\x08\x00' + hdr + udp
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((ifname, 0))
    for _ in range(5): s.send(frame); time.sleep(0.05)
"#;

struct Topology {
    net: String,
    c1: String,
    c2: String,
}

const MAC1: &str = "0a:58:0a:f0:00:0a";
const MAC2: &str = "0a:58:0a:f0:00:0b";
const IP1: &str = "10.240.0.10";
const IP2: &str = "10.240.0.11";

/// Sends `count`ed frames from c1 and returns how many c2 saw with `marker` as source IP.
fn deliver(
    t: &Topology,
    kind: &str,
    smac: &str,
    dmac: &str,
    sip: &str,
    sport: u16,
    marker: &str,
) -> u32 {
    let mut recv = Command::new("ip")
        .args([
            "netns", "exec", &t.c2, "python3", "-c", PY, "recv", "eth1", marker, "1.5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the receiver's socket is bound (it says so), never a fixed sleep.
    let mut ready = String::new();
    let mut err = std::io::BufReader::new(recv.stderr.take().unwrap());
    std::io::BufRead::read_line(&mut err, &mut ready).unwrap();
    assert_eq!(ready.trim(), "ready", "receiver failed to start");
    let sport = sport.to_string();
    let dip = if kind == "arp" { sip } else { IP2 };
    let send = Command::new("ip")
        .args([
            "netns", "exec", &t.c1, "python3", "-c", PY, "send", "eth1", kind, smac, dmac, sip,
            dip, &sport,
        ])
        .output()
        .unwrap();
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let out = recv.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("receiver count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_guard_drops_spoofed_frames_and_passes_legit_ones() {
    datapath_support::require_root!();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let id = format!("{}{n}", std::process::id());
    let t = Topology {
        net: format!("pgn{id}"),
        c1: format!("pgc{id}a"),
        c2: format!("pgc{id}b"),
    };
    let _cleanup = Cleanup(vec![t.net.clone(), t.c1.clone(), t.c2.clone()]);
    for ns in [&t.net, &t.c1, &t.c2] {
        netns::create(ns).unwrap();
        netns::create(ns).expect("create is idempotent");
        assert!(netns::exists(ns));
    }
    sh(
        &t.net,
        "ip link set lo up && ip link add br0 type bridge stp_state 0 && ip link set br0 up",
    );
    for (c, host, mac, ip) in [(&t.c1, "pva", MAC1, IP1), (&t.c2, "pvb", MAC2, IP2)] {
        sh(
            &t.net,
            &format!(
                "ip link add {host} type veth peer name eth1 netns {c} && ip link set {host} master br0 up"
            ),
        );
        sh(
            c,
            &format!(
                "ip link set eth1 address {mac} && ip addr add {ip}/22 dev eth1 && ip link set eth1 up && ip link set lo up"
            ),
        );
    }
    // The second address lets the kernel of c1 emit a packet spoofing .99 for the ping test.
    sh(&t.c1, "ip addr add 10.240.0.99/22 dev eth1");

    let ns = NetnsFd::named(&t.net).unwrap();
    let port = |host: &str, mac: &str, ip: &str| GuardedPort {
        host_ifname: host.into(),
        mac: privnet_core::mac::parse_mac(mac).unwrap(),
        ip: ip.parse::<Ipv4Addr>().unwrap(),
    };
    let rules = guard::network_ruleset(&NetworkGuard {
        vxlan: "vx4242".into(),
        gateway_mac: [0x02, 0x70, 0x76, 0, 0x10, 0x92],
        ports: vec![port("pva", MAC1, IP1), port("pvb", MAC2, IP2)],
    })
    .unwrap();
    guard::check(&ns, &rules)
        .await
        .expect("kernel accepts the generated rules");
    guard::apply(&ns, &rules).await.unwrap();
    guard::apply(&ns, &rules)
        .await
        .expect("re-applying replaces atomically");
    let listed = sh(&t.net, "nft list tables");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("bridge privnet-ports") && listed.contains("inet privnet-gw"),
        "{listed}"
    );

    let legit = ping(&t.c1, IP1, IP2, 2, 2.0);
    assert!(
        legit.status.success(),
        "legit ping must pass: {}",
        String::from_utf8_lossy(&legit.stdout)
    );
    let spoof = ping(&t.c1, "10.240.0.99", IP2, 2, 1.0);
    assert!(
        !spoof.status.success(),
        "ping from a spoofed source must fail"
    );

    let bcast = "ff:ff:ff:ff:ff:ff";
    assert!(
        deliver(&t, "udp", MAC1, MAC2, IP1, 40000, IP1) > 0,
        "legit UDP frame"
    );
    assert_eq!(
        deliver(&t, "udp", "0a:58:de:ad:be:ef", MAC2, IP1, 40000, IP1),
        0,
        "spoofed source MAC"
    );
    assert_eq!(
        deliver(&t, "udp", MAC1, MAC2, "10.240.0.77", 40000, "10.240.0.77"),
        0,
        "spoofed source IP"
    );
    assert_eq!(
        deliver(&t, "udp", MAC1, MAC2, IP1, 67, IP1),
        0,
        "DHCP server reply from a container"
    );
    assert!(
        deliver(&t, "arp", MAC1, bcast, IP1, 0, IP1) > 0,
        "legit gratuitous ARP"
    );
    assert_eq!(
        deliver(&t, "vlan", MAC1, MAC2, IP1, 40000, IP1),
        0,
        "VLAN-tagged frame"
    );
    assert_eq!(
        deliver(&t, "other", MAC1, MAC2, IP1, 0, IP1),
        0,
        "frame of another L2 protocol"
    );
    assert_eq!(
        deliver(&t, "arp", MAC1, bcast, "10.240.0.77", 0, "10.240.0.77"),
        0,
        "gratuitous ARP for another IP"
    );

    assert!(
        deliver(&t, "icmp6", MAC1, "33:33:00:00:00:01", IP1, 128, IP1) > 0,
        "legit ICMPv6 (echo request)"
    );
    assert_eq!(
        deliver(&t, "icmp6", MAC1, "33:33:00:00:00:01", IP1, 134, IP1),
        0,
        "router advertisement from a container"
    );

    // Negative control: without the guard the same spoofed frames arrive.
    guard::apply(
        &ns,
        "table bridge privnet-ports {}\ndelete table bridge privnet-ports\n",
    )
    .await
    .unwrap();
    let n = deliver(&t, "udp", "0a:58:de:ad:be:ef", MAC2, IP1, 40000, IP1);
    assert!(n > 0, "control: a spoofed source MAC passes unguarded");
    assert!(
        deliver(&t, "udp", MAC1, MAC2, "10.240.0.77", 40000, "10.240.0.77") > 0,
        "control: spoofed IP passes unguarded"
    );
    assert!(
        deliver(&t, "arp", MAC1, bcast, "10.240.0.77", 0, "10.240.0.77") > 0,
        "control: spoofed ARP passes unguarded"
    );
    assert!(
        deliver(&t, "vlan", MAC1, MAC2, IP1, 40000, IP1) > 0,
        "control: a VLAN-tagged frame passes unguarded"
    );
    assert!(
        deliver(&t, "other", MAC1, MAC2, IP1, 0, IP1) > 0,
        "control: another L2 protocol passes unguarded"
    );
    assert!(
        deliver(&t, "udp", MAC1, MAC2, IP1, 67, IP1) > 0,
        "control: a DHCP server reply passes unguarded"
    );
    assert!(
        deliver(&t, "icmp6", MAC1, "33:33:00:00:00:01", IP1, 134, IP1) > 0,
        "control: a router advertisement passes unguarded"
    );
}

/// Root test: the node guard in the node's namespace drops privnet's VXLAN outside
/// WireGuard and nothing else. Two scratch "nodes" on a veth underlay carry two real VXLAN
/// overlays on the same UDP port 4789 (the hardest case: privnet configured onto the
/// primary CNI's port): a primary one with Calico's VNI 4096 and one with a VNI of
/// privnet's range standing in for privnet's clear-text traffic. With the guard the
/// primary overlay still answers and privnet's clear-text VXLAN does not; without any
/// rule both answer (positive control); with the old catch-all rule (`udp dport 4789
/// iifname != wg drop`) the primary overlay goes dark (the check would catch it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_guard_drops_only_privnets_vxlan() {
    datapath_support::require_root!();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let id = format!("{}{n}", std::process::id());
    let (a, b) = (format!("pgh{id}a"), format!("pgh{id}b"));
    let _cleanup = Cleanup(vec![a.clone(), b.clone()]);
    for ns in [&a, &b] {
        netns::create(ns).unwrap();
    }
    sh(
        &a,
        &format!("ip link set lo up && ip link add ul type veth peer name ul netns {b}"),
    );
    let privnet_vni = 1_048_576;
    for (ns, me, peer, host) in [
        (&a, "192.0.2.1", "192.0.2.2", 1),
        (&b, "192.0.2.2", "192.0.2.1", 2),
    ] {
        sh(
            ns,
            &format!(
                "ip link set lo up && ip addr add {me}/24 dev ul && ip link set ul up && \
                 ip link add vxprimary type vxlan id 4096 dstport 4789 local {me} remote {peer} dev ul && \
                 ip addr add 10.200.0.{host}/24 dev vxprimary && ip link set vxprimary up && \
                 ip link add vxprivnet type vxlan id {privnet_vni} dstport 4789 local {me} remote {peer} dev ul && \
                 ip addr add 10.201.0.{host}/24 dev vxprivnet && ip link set vxprivnet up"
            ),
        );
    }
    let reaches = |dst: &str| {
        let src = if dst.starts_with("10.200") {
            "10.200.0.1"
        } else {
            "10.201.0.1"
        };
        datapath_support::ping(&a, src, dst, 3, 1.0)
            .status
            .success()
    };
    assert!(reaches("10.200.0.2"), "control: the primary overlay works");
    assert!(
        reaches("10.201.0.2"),
        "control: clear-text VXLAN passes unguarded"
    );

    let node_b = NetnsFd::named(&b).unwrap();
    let rules = guard::agent_ruleset(
        &guard::NodeGuard {
            wg_ifname: "pgwg".into(),
            vxlan_port: 4789,
            vnis: privnet_vni..=privnet_core::vni::MAX_VNI,
            mesh: "198.19.0.0/16".parse().unwrap(),
        },
        false,
    )
    .unwrap();
    guard::apply(&node_b, &rules).await.unwrap();
    assert!(
        reaches("10.200.0.2"),
        "the node guard must leave the primary CNI's VXLAN alone"
    );
    assert!(
        !reaches("10.201.0.2"),
        "the node guard must drop privnet's VXLAN outside WireGuard"
    );

    // Negative control: the old catch-all rule, in a table of this test's own, cuts the
    // primary overlay: the check above is what tells the two rules apart.
    guard::apply(
        &node_b,
        &guard::agent_ruleset(
            &guard::NodeGuard {
                wg_ifname: "pgwg".into(),
                vxlan_port: 4789,
                vnis: privnet_vni..=privnet_vni,
                mesh: "198.19.0.0/16".parse().unwrap(),
            },
            true,
        )
        .unwrap(),
    )
    .await
    .unwrap();
    guard::apply(
        &node_b,
        "table inet pgh-old {\n\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\
         \t\tudp dport 4789 iifname != \"pgwg\" drop\n\t}\n\tchain output {\n\
         \t\ttype filter hook output priority filter - 10; policy accept;\n\
         \t\tudp dport 4789 oifname != \"pgwg\" drop\n\t}\n}\n",
    )
    .await
    .unwrap();
    assert!(
        !reaches("10.200.0.2"),
        "negative control: the old catch-all rule drops the primary overlay"
    );
}
