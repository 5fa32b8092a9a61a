//! Sockets of a responder. The caller creates them (inside the network's
//! namespace, bound to the gateway address) and hands them over, so the
//! server itself is namespace-agnostic and testable on loopback.

use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;

use super::answer::ZoneSource;
use super::forward::Forwarder;
use super::handler::{DnsCounters, PrivateDns};

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsServerError {
    /// Converting the sockets to tokio failed.
    #[error("failed to register the DNS sockets")]
    Register(#[source] std::io::Error),
}

/// Binds `count` UDP sockets on `addr` with SO_REUSEPORT (in the calling
/// thread's namespace).
pub fn bind_udp_reuseport(
    addr: std::net::SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::UdpSocket>> {
    (0..count.max(1))
        .map(|_| {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            socket.set_reuse_port(true)?;
            socket.bind(&addr.into())?;
            Ok(socket.into())
        })
        .collect()
}

/// A running responder; dropping it does not stop it, call [`Responder::stop`].
pub struct Responder {
    server: Server<PrivateDns>,
}

impl Responder {
    /// Starts serving `zone` on the given bound sockets (std, non-blocking
    /// set here). Must be called within a tokio runtime.
    pub fn start<Z: ZoneSource>(
        udp: Vec<std::net::UdpSocket>,
        tcp: std::net::TcpListener,
        zone: Arc<Z>,
        forwarder: Option<Forwarder>,
        counters: Arc<DnsCounters>,
    ) -> Result<Self, DnsServerError> {
        tcp.set_nonblocking(true)
            .map_err(DnsServerError::Register)?;
        let mut server = Server::new(PrivateDns::new(zone, forwarder, counters));
        // Several SO_REUSEPORT sockets: the kernel spreads queries over
        // them and each has its own receive loop, so every core answers.
        for socket in udp {
            socket
                .set_nonblocking(true)
                .map_err(DnsServerError::Register)?;
            server.register_socket(
                tokio::net::UdpSocket::from_std(socket).map_err(DnsServerError::Register)?,
            );
        }
        server.register_listener(
            tokio::net::TcpListener::from_std(tcp).map_err(DnsServerError::Register)?,
            Duration::from_secs(5),
            64 * 1024,
        );
        Ok(Self { server })
    }

    /// Stops the responder and waits for its tasks.
    pub async fn stop(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }
}
