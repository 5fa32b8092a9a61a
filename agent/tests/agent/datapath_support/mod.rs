//! Helpers shared by the datapath kernel tests.

use std::process::Command;

/// A `ping -I SRC DST` over a raw socket that also sends from an address
/// the interface does not carry (the spoofing checks): exit 0 on any reply.
const PING: &str = r#"
import socket, struct, sys, time, os
src, dst, count, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b)//2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.bind((src, 0)); s.settimeout(0.2)
ident = os.getpid() & 0xffff; got = 0
for seq in range(count):
    body = struct.pack('!BBHHH', 8, 0, 0, ident, seq) + b'privnet'
    s.sendto(body[:2] + struct.pack('!H', csum(body)) + body[4:], (dst, 0))
    end = time.time() + wait
    while time.time() < end:
        try: pkt, addr = s.recvfrom(2048)
        except socket.timeout: continue
        icmp = pkt[(pkt[0] & 15) * 4:]
        if addr[0] == dst and icmp[0] == 0 and struct.unpack('!H', icmp[4:6])[0] == ident:
            got += 1; break
print('%d/%d replies' % (got, count)); sys.exit(0 if got else 1)
"#;

pub fn ping(ns: &str, src: &str, dst: &str, count: u32, wait: f32) -> std::process::Output {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "python3",
            "-c",
            PING,
            src,
            dst,
            &count.to_string(),
            &wait.to_string(),
        ])
        .output()
        .unwrap()
}

/// The one-line root check shared by every root-only test tier.
pub(crate) use privnet_testkit::require_root;
