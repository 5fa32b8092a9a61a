//! Forwarding of out-of-zone names to the node's upstream resolver.
//!
//! The forwarding socket is created in the agent's own namespace (sockets
//! stay bound to the namespace they were created in), so containers get
//! name resolution without any route out of their private network.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// How long to wait for the upstream.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of the forwarder.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Socket I/O failed.
    #[error("failed to exchange with upstream {upstream}")]
    Io {
        /// Upstream address.
        upstream: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The upstream did not answer in time.
    #[error("upstream {0} timed out")]
    Timeout(SocketAddr),
}

/// Forwards raw DNS messages to an upstream over UDP.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstream: SocketAddr,
}

impl Forwarder {
    /// Forwarder to `upstream`.
    pub fn new(upstream: SocketAddr) -> Self {
        Self { upstream }
    }

    /// The node's first `nameserver` from a resolv.conf text (port 53).
    pub fn upstream_from_resolv_conf(text: &str) -> Option<SocketAddr> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .next()
    }

    /// Sends `query` upstream and returns the raw answer with the same id.
    /// One ephemeral socket per query: no id/port prediction across queries.
    pub async fn forward(&self, query: &[u8]) -> Result<Vec<u8>, ForwardError> {
        let io = |source| ForwardError::Io {
            upstream: self.upstream,
            source,
        };
        let bind: SocketAddr = if self.upstream.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .unwrap();
        let socket = UdpSocket::bind(bind).await.map_err(io)?;
        socket.connect(self.upstream).await.map_err(io)?;
        socket.send(query).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf))
                .await
                .map_err(|_| ForwardError::Timeout(self.upstream))?
                .map_err(io)?;
            if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_nameserver_is_the_upstream() {
        let text = "# generated\nsearch lan\nnameserver 127.0.0.53\nnameserver 1.1.1.1\n";
        assert_eq!(
            Forwarder::upstream_from_resolv_conf(text),
            Some("127.0.0.53:53".parse().unwrap())
        );
        assert_eq!(Forwarder::upstream_from_resolv_conf("search x\n"), None);
    }

    #[tokio::test]
    async fn relays_the_matching_answer_from_a_loopback_upstream() {
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, peer) = upstream.recv_from(&mut buf).await.unwrap();
            // A stale answer with another id first, then the right one.
            upstream.send_to(&[0xff, 0xff, 1], peer).await.unwrap();
            let mut answer = buf[..n].to_vec();
            answer.push(42);
            upstream.send_to(&answer, peer).await.unwrap();
        });
        let out = Forwarder::new(addr)
            .forward(&[0x12, 0x34, 7])
            .await
            .unwrap();
        assert_eq!(out, vec![0x12, 0x34, 7, 42]);
    }
}
