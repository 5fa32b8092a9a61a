//! Sockets of a responder. The caller creates them (inside the network's
//! namespace, bound to the gateway address) and hands them over, so the
//! server itself is namespace-agnostic and testable on loopback.
//!
//! UDP — nearly all DNS traffic — is served by one OS thread per
//! SO_REUSEPORT socket running the [`WirePath`] (cached encoded answers);
//! TCP by hickory-server with the same decisions ([`PrivateDns`]).

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_server::Server;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};

use super::answer::ZoneSource;
use super::forward::Forwarder;
use super::handler::{DnsCounters, PrivateDns};
use super::wire::{Reply, WirePath};

/// Queries handled per system call at most.
const BATCH: usize = 32;
/// Largest query accepted over UDP (EDNS payloads beyond this are not queries).
const MAX_QUERY: usize = 2048;

/// How often a UDP thread checks whether it must stop.
const STOP_POLL: Duration = Duration::from_millis(200);

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
) -> std::io::Result<Vec<UdpSocket>> {
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

/// A running responder; call [`Responder::stop`] to stop it.
pub struct Responder {
    tcp: Server<PrivateDns>,
    stop: Arc<AtomicBool>,
    udp_threads: Vec<JoinHandle<()>>,
}

impl Responder {
    /// Starts serving `zone` on the given bound sockets. Must be called
    /// within a tokio runtime (forwarding and TCP run on it).
    pub fn start<Z: ZoneSource>(
        udp: Vec<UdpSocket>,
        tcp: std::net::TcpListener,
        zone: Arc<Z>,
        forwarder: Option<Forwarder>,
        counters: Arc<DnsCounters>,
    ) -> Result<Self, DnsServerError> {
        tcp.set_nonblocking(true)
            .map_err(DnsServerError::Register)?;
        let zone: Arc<dyn ZoneSource> = zone;
        let mut server = Server::new(PrivateDns::new(
            zone.clone(),
            forwarder.clone(),
            counters.clone(),
        ));
        server.register_listener(
            tokio::net::TcpListener::from_std(tcp).map_err(DnsServerError::Register)?,
            Duration::from_secs(5),
            64 * 1024,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let wire = Arc::new(WirePath::new(zone));
        let runtime = tokio::runtime::Handle::current();
        let mut udp_threads = Vec::new();
        for socket in udp {
            socket
                .set_read_timeout(Some(STOP_POLL))
                .map_err(DnsServerError::Register)?;
            let worker = UdpWorker {
                socket: Arc::new(socket),
                wire: wire.clone(),
                forwarder: forwarder.clone(),
                counters: counters.clone(),
                stop: stop.clone(),
                runtime: runtime.clone(),
            };
            let thread = std::thread::Builder::new()
                .name("privnet-dns-udp".into())
                .spawn(move || worker.run())
                .map_err(DnsServerError::Register)?;
            udp_threads.push(thread);
        }
        Ok(Self {
            tcp: server,
            stop,
            udp_threads,
        })
    }

    /// Whether every UDP thread is still serving (one that died takes its
    /// socket's share of the queries with it).
    pub fn is_running(&self) -> bool {
        self.udp_threads.iter().all(|t| !t.is_finished())
    }

    /// Stops the responder and waits for its threads and tasks.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut self.udp_threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        let _ = self.tcp.shutdown_gracefully().await;
    }
}

struct UdpWorker {
    socket: Arc<UdpSocket>,
    wire: Arc<WirePath>,
    forwarder: Option<Forwarder>,
    counters: Arc<DnsCounters>,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
}

impl UdpWorker {
    /// Receives up to [`BATCH`] queries per system call (`recvmmsg`, waiting
    /// for the first only) and sends the answers back with one `sendmmsg`:
    /// under load the per-query cost is a lookup and a copy, not two syscalls.
    fn run(self) {
        let fd = self.socket.as_raw_fd();
        let mut bufs = vec![[0u8; MAX_QUERY]; BATCH];
        let mut recv_headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
        let mut send_headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
        while !self.stop.load(Ordering::Relaxed) {
            let received: Vec<(usize, Option<SockaddrIn>)> = {
                let mut iovs: Vec<[IoSliceMut; 1]> = bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                match recvmmsg(
                    fd,
                    &mut recv_headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(msgs) => msgs.map(|m| (m.bytes, m.address)).collect(),
                    Err(_) => continue, // timeout (stop check) or a transient error
                }
            };
            let mut replies: Vec<(Vec<u8>, SockaddrIn)> = Vec::with_capacity(received.len());
            for (i, (n, peer)) in received.into_iter().enumerate() {
                let Some(peer) = peer else { continue };
                match self.wire.reply(&bufs[i][..n]) {
                    Reply::Send(out) => {
                        let negative =
                            out.len() > 3 && out[3] & 0x0f != 0 || out.get(6..8) == Some(&[0, 0]);
                        let counter = if negative {
                            &self.counters.negative
                        } else {
                            &self.counters.answered
                        };
                        counter.inc();
                        replies.push((out, peer));
                    }
                    Reply::Forward => {
                        self.forward(bufs[i][..n].to_vec(), SocketAddr::V4(peer.into()))
                    }
                    Reply::Drop => {
                        self.counters.failed.inc();
                    }
                }
            }
            if replies.is_empty() {
                continue;
            }
            let iovs: Vec<[IoSlice; 1]> = replies.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
            let addrs: Vec<Option<SockaddrIn>> = replies.iter().map(|(_, a)| Some(*a)).collect();
            if sendmmsg(fd, &mut send_headers, &iovs, addrs, [], MsgFlags::empty()).is_err() {
                // Fall back to one send per answer (e.g. a full socket buffer).
                for (b, a) in &replies {
                    let _ = self.socket.send_to(b, SocketAddr::V4((*a).into()));
                }
            }
        }
    }

    /// Relays the query upstream on the runtime and the answer back as is;
    /// REFUSED when the node has no upstream.
    fn forward(&self, query: Vec<u8>, peer: std::net::SocketAddr) {
        let Some(forwarder) = self.forwarder.clone() else {
            if let Some(refused) = refused(&query) {
                let _ = self.socket.send_to(&refused, peer);
            }
            self.counters.failed.inc();
            return;
        };
        let (socket, counters) = (self.socket.clone(), self.counters.clone());
        self.runtime.spawn(async move {
            match forwarder.forward(&query).await {
                Ok(answer) => {
                    counters.forwarded.inc();
                    let _ = socket.send_to(&answer, peer);
                }
                Err(_) => {
                    counters.failed.inc();
                }
            }
        });
    }
}

/// A REFUSED answer echoing the query's header and question.
fn refused(query: &[u8]) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    let q = Message::from_vec(query).ok()?;
    let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.response_code = ResponseCode::Refused;
    for question in q.queries {
        r.add_query(question);
    }
    r.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::process::Command;
    use std::sync::RwLock;

    use super::*;
    use privnet_core::naming::PrivateName;
    use privnet_core::zone::{Zone, ZoneConfig, ZoneEndpoint};

    fn dig(port: u16, args: &[&str]) -> String {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=2"])
            .args(args)
            .output()
            .expect("dig runs (apt-get install bind9-dnsutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The real client against the real sockets: UDP (fast path, with and
    /// without EDNS) and TCP (hickory-server) agree.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dig_gets_the_same_answers_over_udp_and_tcp() {
        let mut zone = Zone::new(
            "pn-1",
            "10.240.0.0/22".parse().unwrap(),
            ZoneConfig::default(),
        )
        .unwrap();
        for n in 1..=3 {
            let name = PrivateName {
                number: n,
                process_type: "web".into(),
                application_id: "app".into(),
                network_id: "pn-1".into(),
            };
            zone.upsert(&ZoneEndpoint {
                name,
                address: Ipv4Addr::new(10, 240, 0, 1 + n as u8),
            })
            .unwrap();
        }
        let zone = Arc::new(RwLock::new(zone));
        let udp = bind_udp_reuseport("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let port = udp[0].local_addr().unwrap().port();
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let counters = Arc::new(DnsCounters::default());
        let responder = Responder::start(udp, tcp, zone.clone(), None, counters.clone()).unwrap();
        let name = "app.pn-1.private-network.internal";
        let out = tokio::task::spawn_blocking(move || {
            [
                dig(port, &["+short", "+noedns", name]),
                dig(port, &["+short", name]),
                dig(port, &["+short", "+tcp", name]),
            ]
        })
        .await
        .unwrap();
        for o in &out {
            let mut ips: Vec<&str> = o.lines().collect();
            ips.sort();
            assert_eq!(ips, ["10.240.0.2", "10.240.0.3", "10.240.0.4"], "{o}");
        }
        let nx =
            tokio::task::spawn_blocking(move || dig(port, &["nope.pn-1.private-network.internal"]))
                .await
                .unwrap();
        assert!(
            nx.contains("status: NXDOMAIN") && nx.contains("SOA"),
            "{nx}"
        );
        // A change is visible at once (the cache follows the zone version).
        zone.write().unwrap().remove(&PrivateName {
            number: 3,
            process_type: "web".into(),
            application_id: "app".into(),
            network_id: "pn-1".into(),
        });
        let after = tokio::task::spawn_blocking(move || dig(port, &["+short", "+noedns", name]))
            .await
            .unwrap();
        assert_eq!(after.lines().count(), 2, "{after}");
        let refused = tokio::task::spawn_blocking(move || dig(port, &["example.org"]))
            .await
            .unwrap();
        assert!(
            refused.contains("status: REFUSED"),
            "no upstream: {refused}"
        );
        assert!(counters.answered.get() >= 3);
        responder.stop().await;
    }

    /// The real client, the real sockets: successive lookups of a name with
    /// four containers start with each container in turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dig_sees_each_of_four_containers_first_in_turn() {
        let mut zone = Zone::new(
            "pn-1",
            "10.240.0.0/22".parse().unwrap(),
            ZoneConfig::default(),
        )
        .unwrap();
        for n in 1..=4 {
            let name = PrivateName {
                number: n,
                process_type: "web".into(),
                application_id: "app".into(),
                network_id: "pn-1".into(),
            };
            let address = Ipv4Addr::new(10, 240, 0, 1 + n as u8);
            zone.upsert(&ZoneEndpoint { name, address }).unwrap();
        }
        let udp = bind_udp_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let port = udp[0].local_addr().unwrap().port();
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let zone = Arc::new(RwLock::new(zone));
        let responder =
            Responder::start(udp, tcp, zone, None, Arc::new(DnsCounters::default())).unwrap();
        // One dig, 200 lookups (dig runs one query per name given).
        let names = vec!["app.pn-1.private-network.internal"; 200];
        let out = tokio::task::spawn_blocking(move || {
            let mut args = vec!["+short"];
            args.extend(names);
            dig(port, &args)
        })
        .await
        .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 800, "200 answers of 4 addresses: {out}");
        let mut firsts = std::collections::BTreeMap::<&str, usize>::new();
        for answer in lines.chunks(4) {
            let mut sorted = answer.to_vec();
            sorted.sort();
            assert_eq!(
                sorted,
                ["10.240.0.2", "10.240.0.3", "10.240.0.4", "10.240.0.5"]
            );
            *firsts.entry(answer[0]).or_default() += 1;
        }
        assert_eq!(firsts.len(), 4, "{firsts:?}");
        for (ip, n) in &firsts {
            assert!((40..=60).contains(n), "{ip} first {n} times of 200");
        }
        responder.stop().await;
    }
}
