//! A stand-in for the cluster DNS service (CoreDNS), on the underlay: the
//! sandbox has no Services, so it answers the one cluster name pods use to
//! find the API (`kubernetes.default.svc.<domain>`) and NXDOMAIN for every
//! other name. The agents' responders forward non-private names here, as on
//! a cluster they forward to the cluster DNS.

use std::net::Ipv4Addr;

use tokio::net::UdpSocket;

/// The ClusterIP the stand-in gives `kubernetes.default.svc`.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

/// The reply to one query (pure): `None` for what is not a query.
pub fn answer(query: &[u8], cluster_domain: &str) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question_end = i + 4;
    query.get(..question_end)?;
    let name = labels.join(".");
    let known = name == format!("kubernetes.default.svc.{cluster_domain}");
    let mut reply = query[..question_end].to_vec();
    reply[2] = 0x80 | (query[2] & 0x01) | 0x04; // QR, RD copied, AA
    reply[3] = 0x80 | if known { 0 } else { 3 }; // RA, NOERROR / NXDOMAIN
    reply[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if known && qtype == 1 {
        reply[7] = 1;
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        reply.extend_from_slice(&KUBERNETES_SERVICE_IP.octets());
    }
    Some(reply)
}

/// Answers on `socket` until the task is dropped.
pub async fn serve(socket: UdpSocket, cluster_domain: String) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = answer(&buf[..n], &cluster_domain) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
        q
    }

    #[test]
    fn the_api_service_resolves_and_nothing_else() {
        let r = answer(
            &query("Kubernetes.default.svc.cluster.local", 1),
            "cluster.local",
        )
        .unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(r[7], 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[10, 96, 0, 1]);
        let r = answer(
            &query("nothing.default.svc.cluster.local", 1),
            "cluster.local",
        )
        .unwrap();
        assert_eq!(r[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(r[7], 0);
        let r = answer(
            &query("kubernetes.default.svc.cluster.local", 28),
            "cluster.local",
        )
        .unwrap();
        assert_eq!((r[3] & 0x0f, r[7]), (0, 0), "AAAA: no data");
        assert!(answer(&[0; 5], "cluster.local").is_none());
    }
}
