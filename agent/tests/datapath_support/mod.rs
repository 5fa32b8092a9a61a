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

/// Fails the calling test at once, with one line, unless it runs as root:
/// `<test>: needs root (network namespaces); run scripts/test-all as root`.
/// A macro so the line names the test (its function's path).
macro_rules! require_root {
    () => {{
        fn here() {}
        let path = std::any::type_name_of_val(&here);
        $crate::datapath_support::fail_unless_root(
            path.trim_end_matches("::here")
                .trim_end_matches("::{{closure}}"),
        )
    }};
}
pub(crate) use require_root;

/// The body of [`require_root!`]: the one line, then an unwind that skips the
/// panic hook (no "panicked at" location deep in a helper).
pub fn fail_unless_root(test: &str) {
    // Effective uid from /proc (no libc call needed): the second field of `Uid:`.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        let line = format!("{test}: needs root (network namespaces); run scripts/test-all as root");
        eprintln!("{line}");
        std::panic::resume_unwind(Box::new(line));
    }
}
