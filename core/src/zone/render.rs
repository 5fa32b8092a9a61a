//! RFC 1035 master-file rendering of the forward zone (CoreDNS `file`
//! plugin compatible). Deterministic: apps, then types, then numbers in
//! order; addresses ascending. Hand-rolled number formatting keeps a
//! 100k-endpoint zone well under 100 ms.

use std::net::Ipv4Addr;

use super::{NS_LABEL, Zone};

impl Zone {
    /// The zone file: `$ORIGIN`, `$TTL`, SOA, NS, `ns` A, then every name.
    pub fn render(&self) -> String {
        // ~3 lines per endpoint of ~60 bytes.
        let mut out = String::with_capacity(512 + self.endpoints.len() * 200);
        self.push_header(&mut out, &self.origin, "ns");
        push_a(&mut out, NS_LABEL, self.gateway());
        let mut type_name = String::new();
        let mut current_app: Option<&str> = None;
        let mut current_type: Option<&str> = None;
        for (key, addr) in &self.endpoints {
            if current_app != Some(key.application_id.as_str()) {
                current_app = Some(&key.application_id);
                current_type = None;
                self.push_name(&mut out, &key.application_id);
            }
            if current_type != Some(key.process_type.as_str()) {
                current_type = Some(&key.process_type);
                type_name.clear();
                type_name.push_str(&key.process_type);
                type_name.push('.');
                type_name.push_str(&key.application_id);
                self.push_name(&mut out, &type_name);
            }
            push_u32(&mut out, key.number);
            out.push('.');
            out.push_str(&type_name);
            push_a_rdata(&mut out, *addr);
        }
        out
    }

    /// `$ORIGIN`, `$TTL`, SOA and NS lines; `ns_target` as written in the NS record.
    pub(super) fn push_header(&self, out: &mut String, origin: &str, ns_target: &str) {
        let soa = self.soa();
        out.push_str("$ORIGIN ");
        out.push_str(origin);
        out.push_str("\n$TTL ");
        push_u32(out, self.config.ttl);
        out.push_str("\n@\tIN\tSOA\t");
        out.push_str(&soa.mname);
        out.push(' ');
        out.push_str(&soa.rname);
        for value in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
            out.push(' ');
            push_u32(out, value);
        }
        out.push_str("\n@\tIN\tNS\t");
        out.push_str(ns_target);
        out.push('\n');
    }

    /// The A records of an aggregate name (`<app>` or `<type>.<app>`), if any.
    fn push_name(&self, out: &mut String, name: &str) {
        if let Some(entry) = self.names.get(name) {
            for addr in &entry.addrs {
                push_a(out, name, *addr);
            }
        }
    }
}

fn push_a(out: &mut String, name: &str, addr: Ipv4Addr) {
    out.push_str(name);
    push_a_rdata(out, addr);
}

fn push_a_rdata(out: &mut String, addr: Ipv4Addr) {
    out.push_str("\tIN\tA\t");
    push_ipv4(out, addr);
    out.push('\n');
}

/// Dotted-quad without `Display`'s padding machinery.
fn push_ipv4(out: &mut String, addr: Ipv4Addr) {
    let [a, b, c, d] = addr.octets();
    for (i, octet) in [a, b, c, d].into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_u32(out, u32::from(octet));
    }
}

/// Decimal `value` without going through `fmt`.
pub(super) fn push_u32(out: &mut String, mut value: u32) {
    let mut buf = [0u8; 10];
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for &digit in &buf[pos..] {
        out.push(char::from(digit));
    }
}

/// Dotted quad of `addr` through the hand-rolled formatter.
#[cfg(test)]
pub(super) fn ipv4_text(addr: Ipv4Addr) -> String {
    let mut s = String::new();
    push_ipv4(&mut s, addr);
    s
}
