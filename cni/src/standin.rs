//! A small in-process stand-in for the node agent, speaking [`privnet_core::rpc`]
//! over a real unix socket. Used by the integration tests and `cni-bench`
//! (never by the plugin itself). On the first Attach it creates a real
//! network namespace holding a bridge, as the agent does.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ipnet::Ipv4Net;

use privnet_core::rpc::{Attachment, AttachmentKey, Dns, ErrorKind, Request, Response};

/// Network id the stand-in serves; any other explicit id is unknown.
pub const STANDIN_NETWORK_ID: &str = "pn-standin";
/// Bridge name inside the stand-in's network namespace.
pub const STANDIN_BRIDGE: &str = "br0";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique name `<prefix><pid>x<counter>` (for namespaces, sockets …).
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `ip <args>`, failing on a non-zero exit.
pub fn ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Debug, Default)]
struct State {
    reservations: BTreeMap<AttachmentKey, Attachment>,
    netns_created: bool,
    bridge_override: Option<String>,
    not_ready: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    netns_name: String,
    subnet: Ipv4Net,
    mtu: u32,
    stop: AtomicBool,
}

/// The running stand-in; dropping it stops it and deletes its namespace.
#[derive(Debug)]
pub struct StandinAgent {
    shared: Arc<Shared>,
    socket: PathBuf,
    accept: Option<JoinHandle<()>>,
}

impl StandinAgent {
    /// Listens on `socket`; the network namespace is named `netns_name`.
    pub fn start(socket: &Path, netns_name: &str) -> io::Result<StandinAgent> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            netns_name: netns_name.to_string(),
            subnet: "10.240.0.0/22".parse().expect("valid"),
            mtu: 1370,
            stop: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let s = accept_shared.clone();
                    std::thread::spawn(move || {
                        let _ = serve(&s, stream);
                    });
                }
            }
        });
        Ok(StandinAgent {
            shared,
            socket: socket.to_path_buf(),
            accept: Some(accept),
        })
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Path of the network namespace (exists after the first Attach).
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.shared.netns_name)
    }

    /// Name of the network namespace.
    pub fn netns_name(&self) -> &str {
        &self.shared.netns_name
    }

    /// Current reservations.
    pub fn reservations(&self) -> Vec<Attachment> {
        self.shared
            .state
            .lock()
            .expect("lock")
            .reservations
            .values()
            .cloned()
            .collect()
    }

    /// Makes Attach answer with this bridge name (fault injection).
    pub fn set_bridge_override(&self, bridge: Option<&str>) {
        self.shared.state.lock().expect("lock").bridge_override = bridge.map(str::to_string);
    }

    /// Makes Status/Attach answer NotReady.
    pub fn set_not_ready(&self, not_ready: bool) {
        self.shared.state.lock().expect("lock").not_ready = not_ready;
    }

    /// Creates the network namespace and bridge now (normally lazy).
    pub fn ensure_network(&self) -> io::Result<()> {
        ensure_network(&self.shared, &mut self.shared.state.lock().expect("lock"))
    }
}

impl Drop for StandinAgent {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
        if self
            .shared
            .state
            .lock()
            .map(|s| s.netns_created)
            .unwrap_or(true)
        {
            let _ = ip(&["netns", "del", &self.shared.netns_name]);
        }
    }
}

fn ensure_network(shared: &Shared, state: &mut State) -> io::Result<()> {
    if !state.netns_created {
        let ns = shared.netns_name.as_str();
        ip(&["netns", "add", ns])?;
        state.netns_created = true;
        ip(&["-n", ns, "link", "add", STANDIN_BRIDGE, "type", "bridge"])?;
        // An explicit MTU and MAC pin them: otherwise the kernel derives both
        // from the ports and they change as containers come and go.
        let mtu = shared.mtu.to_string();
        let mac = "02:50:00:00:00:01";
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            STANDIN_BRIDGE,
            "mtu",
            &mtu,
            "address",
            mac,
            "up",
        ])?;
    }
    Ok(())
}

fn serve(shared: &Shared, stream: UnixStream) -> io::Result<()> {
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(req) => handle(shared, req),
        Err(e) => Response::Error {
            kind: ErrorKind::Invalid,
            message: e.to_string(),
        },
    };
    let mut out = serde_json::to_vec(&response).map_err(io::Error::other)?;
    out.push(b'\n');
    (&stream).write_all(&out)
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

fn handle(shared: &Shared, req: Request) -> Response {
    let mut state = shared.state.lock().expect("lock");
    if state.not_ready {
        return error(ErrorKind::NotReady, "stand-in not ready");
    }
    match req {
        Request::Status => Response::Ready,
        Request::Attach(a) => {
            if let Some(id) = a.network.network_id.as_deref()
                && id != STANDIN_NETWORK_ID
            {
                return error(ErrorKind::UnknownNetwork, format!("unknown network {id}"));
            }
            if let Some(existing) = state.reservations.get(&a.key) {
                return Response::Attached(Box::new(existing.clone()));
            }
            if let Err(e) = ensure_network(shared, &mut state) {
                return error(ErrorKind::Internal, e.to_string());
            }
            let used: Vec<Ipv4Addr> = state
                .reservations
                .values()
                .map(|r| r.address.addr())
                .collect();
            let gateway = shared.subnet.hosts().next().expect("non-empty subnet");
            let Some(addr) = shared.subnet.hosts().skip(1).find(|h| !used.contains(h)) else {
                return error(ErrorKind::Exhausted, format!("{} is full", shared.subnet));
            };
            let o = addr.octets();
            let attachment = Attachment {
                key: a.key.clone(),
                network_id: STANDIN_NETWORK_ID.into(),
                address: Ipv4Net::new(addr, shared.subnet.prefix_len()).expect("valid prefix"),
                gateway,
                mac: format!("02:50:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]),
                mtu: shared.mtu,
                network_netns: format!("/run/netns/{}", shared.netns_name),
                bridge: state
                    .bridge_override
                    .clone()
                    .unwrap_or_else(|| STANDIN_BRIDGE.into()),
                host_ifname: format!("pv{:08x}", u32::from(addr)),
                hostname: format!("{}.standin", a.key.container_id),
                dns: Dns {
                    nameservers: vec![gateway.to_string()],
                    search: vec!["standin.internal".into()],
                },
            };
            state.reservations.insert(a.key, attachment.clone());
            Response::Attached(Box::new(attachment))
        }
        Request::Release(key) => Response::Released {
            freed: usize::from(state.reservations.remove(&key).is_some()),
        },
        Request::Check(key) => match state.reservations.get(&key) {
            Some(a) => Response::Attached(Box::new(a.clone())),
            None => error(
                ErrorKind::NotFound,
                format!("{}/{} is not attached", key.container_id, key.ifname),
            ),
        },
        Request::Gc { valid, .. } => {
            let before = state.reservations.len();
            state.reservations.retain(|k, _| valid.contains(k));
            Response::Released {
                freed: before - state.reservations.len(),
            }
        }
    }
}
