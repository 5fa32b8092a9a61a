//! The reverse (PTR) zone of a network, under the smallest octet-aligned
//! `in-addr.arpa` prefix enclosing the subnet (`240.10.in-addr.arpa.` for
//! `10.240.0.0/22`).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::Zone;
use super::render::push_u32;

/// Result of a PTR lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtrResult {
    /// Absolute names of the address (the gateway answers `ns.<origin>`).
    Found(Vec<String>),
    /// The name exists (origin or a prefix of used addresses) without PTR.
    NoData,
    /// Nothing at that name.
    NxDomain,
    /// Not under the reverse origin.
    OutOfZone,
}

/// Reverse origin of `subnet`: its first `prefix / 8` octets, reversed.
pub fn reverse_origin(subnet: Ipv4Net) -> String {
    let octets = subnet.network().octets();
    let mut origin = String::new();
    for octet in octets[..usize::from(subnet.prefix_len() / 8)].iter().rev() {
        push_u32(&mut origin, u32::from(*octet));
        origin.push('.');
    }
    origin.push_str("in-addr.arpa.");
    origin
}

impl Zone {
    /// `(origin, zone file)` of the reverse zone: SOA/NS as the forward
    /// zone, a PTR per endpoint address and one for the gateway.
    pub fn render_reverse(&self) -> (String, String) {
        let origin = reverse_origin(self.subnet);
        let fixed = usize::from(self.subnet.prefix_len() / 8);
        let ns = format!("ns.{}", self.origin);
        let mut out = String::with_capacity(512 + self.by_address.len() * 120);
        self.push_header(&mut out, &origin, &ns);
        let push_ptr = |out: &mut String, addr: Ipv4Addr, target: &str| {
            let octets = addr.octets();
            for (i, octet) in octets[fixed..].iter().rev().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u32(out, u32::from(*octet));
            }
            out.push_str("\tIN\tPTR\t");
            out.push_str(target);
            out.push('\n');
        };
        push_ptr(&mut out, self.gateway(), &ns);
        for (addr, keys) in &self.by_address {
            for key in keys {
                push_ptr(&mut out, *addr, &self.fqdn_of(key));
            }
        }
        (origin, out)
    }

    /// PTR records of `qname` (a name under the reverse origin, any case).
    pub fn lookup_ptr(&self, qname: &str) -> PtrResult {
        let origin = reverse_origin(self.subnet);
        let name = qname
            .strip_suffix('.')
            .unwrap_or(qname)
            .to_ascii_lowercase();
        let origin = &origin[..origin.len() - 1];
        let relative = if name == origin {
            ""
        } else {
            match name.strip_suffix(origin).and_then(|r| r.strip_suffix('.')) {
                Some(r) => r,
                None => return PtrResult::OutOfZone,
            }
        };
        let mut octets: Vec<u8> =
            self.subnet.network().octets()[..usize::from(self.subnet.prefix_len() / 8)].to_vec();
        if !relative.is_empty() {
            for label in relative.rsplit('.') {
                // Canonical decimal only: "01" or "256" are not names we publish.
                match label.parse::<u8>() {
                    Ok(o) if o.to_string() == label && octets.len() < 4 => octets.push(o),
                    _ => return PtrResult::NxDomain,
                }
            }
        }
        if octets.len() == 4 {
            let addr = Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]);
            if addr == self.gateway() {
                return PtrResult::Found(vec![format!("ns.{}", self.origin)]);
            }
            return match self.by_address.get(&addr) {
                Some(keys) => PtrResult::Found(keys.iter().map(|k| self.fqdn_of(k)).collect()),
                None => PtrResult::NxDomain,
            };
        }
        // A partial name exists when some published address starts with it.
        let depth = octets.len();
        octets.resize(4, 0);
        let low = Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]);
        let span = 1u64 << (8 * (4 - depth));
        let high = Ipv4Addr::from((u64::from(u32::from(low)) + span - 1) as u32);
        let gateway_below = (low..=high).contains(&self.gateway());
        if gateway_below || self.by_address.range(low..=high).next().is_some() {
            PtrResult::NoData
        } else {
            PtrResult::NxDomain
        }
    }
}
