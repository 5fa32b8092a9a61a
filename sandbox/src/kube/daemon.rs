//! The cluster daemon of a sandbox on the Kubernetes path (`privnet sandbox
//! cluster-daemon`, started by `up`): the emulated API server on loopback
//! (the user's `kubectl`, the controllers, the kubelets) and on the
//! underlay (the agents, in the node namespaces), the webhook Service (a TCP
//! forwarder to the first controller replica that accepts), a cluster DNS
//! stand-in, a scheduler binding unbound pods round-robin, and one kubelet
//! role per node.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use privnet_kubemu::{Config, Emulator, tls};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::kubelet::Kubelet;
use super::objects::webhook_host;
use super::{
    CLUSTER_DOMAIN, KubeError, UNDERLAY_API_ADDRESS, UNDERLAY_API_PORT, api_dir, cluster_dns,
    kubeconfig, node_kubeconfig, ready_file, webhook_backends, webhook_tls_dir,
};
use crate::state::{SandboxState, root_of, write_atomic};

/// Runs the daemon of sandbox `name` until SIGTERM; `cni` is the plugin.
pub fn run(name: &str, cni: PathBuf) -> Result<(), KubeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(KubeError::Runtime)?;
    rt.block_on(serve(name.to_string(), cni))
}

/// A socket bound inside the underlay namespace (a thread enters it).
fn bind_in_underlay<T: Send + 'static>(
    underlay: &str,
    what: &str,
    bind: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, KubeError> {
    let path = format!("/run/netns/{underlay}");
    let ns = std::fs::File::open(&path).map_err(|source| KubeError::Bind {
        what: path.clone(),
        source,
    })?;
    privnet_sys::netns::run_in(ns, bind)?.map_err(|source| KubeError::Bind {
        what: what.to_string(),
        source,
    })
}

async fn serve(name: String, cni: PathBuf) -> Result<(), KubeError> {
    let root = root_of(&name);
    let state = SandboxState::load(&name)?;
    let dir = api_dir(&root);
    let certs = tls::generate(&dir, &[UNDERLAY_API_ADDRESS.to_string()])?;
    let server_tls = tls::server_config(&certs)?;
    let host = webhook_host();
    tls::generate(
        &webhook_tls_dir(&root),
        &[host.clone(), host.trim_end_matches(".svc").to_string()],
    )?;
    let bind = |what: &str, e| KubeError::Bind {
        what: what.to_string(),
        source: e,
    };
    let local = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| bind("127.0.0.1:0", e))?;
    let local_addr = local.local_addr().map_err(|e| bind("127.0.0.1:0", e))?;
    let underlay_addr = SocketAddr::from((
        UNDERLAY_API_ADDRESS.parse::<Ipv4Addr>().expect("address"),
        UNDERLAY_API_PORT,
    ));
    let std_underlay = bind_in_underlay(
        &state.underlay_netns,
        "the API on the underlay",
        move || {
            let l = std::net::TcpListener::bind(underlay_addr)?;
            l.set_nonblocking(true)?;
            Ok(l)
        },
    )?;
    let underlay = TcpListener::from_std(std_underlay).map_err(|e| bind("underlay", e))?;
    let dns_addr = SocketAddr::from((underlay_addr.ip(), 53));
    let std_dns = bind_in_underlay(
        &state.underlay_netns,
        "the cluster DNS stand-in",
        move || {
            let s = std::net::UdpSocket::bind(dns_addr)?;
            s.set_nonblocking(true)?;
            Ok(s)
        },
    )?;
    let dns = UdpSocket::from_std(std_dns).map_err(|e| bind("dns", e))?;
    let service = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| bind("the webhook service", e))?;
    let service_addr = service.local_addr().map_err(|e| bind("service", e))?;

    let em = Emulator::new(Config {
        service_hosts: BTreeMap::from([(host, service_addr)]),
        ..Config::default()
    });
    tokio::spawn(privnet_kubemu::serve(
        local,
        Some(server_tls.clone()),
        em.clone(),
        std::future::pending(),
    ));
    tokio::spawn(privnet_kubemu::serve(
        underlay,
        Some(server_tls),
        em,
        std::future::pending(),
    ));
    tokio::spawn(forward_service(service, webhook_backends(&root)));
    tokio::spawn(cluster_dns::serve(dns, CLUSTER_DOMAIN.into()));
    tls::write_kubeconfig(
        &kubeconfig(&root),
        &format!("https://{local_addr}"),
        &certs.ca,
    )?;
    tls::write_kubeconfig(
        &node_kubeconfig(&root),
        &format!("https://{underlay_addr}"),
        &certs.ca,
    )?;

    let client = super::client::client(&kubeconfig(&root)).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in privnet_api::all_crds() {
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(source) => {
                return Err(KubeError::Api {
                    what: format!("create the CRD {}", crd.name_any()),
                    source,
                });
            }
        }
    }
    let (pods, changed) = pod_cache(client.clone());
    // Once, here: an empty cache before the first list would read as "no
    // pods" (and the store's readiness wakes only one of several waiters).
    let _ = pods.wait_until_ready().await;
    tokio::spawn(schedule(
        client.clone(),
        pods.clone(),
        changed.clone(),
        name.clone(),
    ));
    tokio::spawn(run_kubelets(client, name, cni, pods, changed));
    write_atomic(&ready_file(&root), &local_addr.to_string())?;
    tracing::info!(api = %local_addr, underlay = %underlay_addr, "cluster daemon ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handlers can be installed");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    Ok(())
}

/// Every pod, cached; the receiver changes on each watch event.
fn pod_cache(client: Client) -> (Store<Pod>, tokio::sync::watch::Receiver<u64>) {
    let (reader, writer) = reflector::store();
    let (bump, changed) = tokio::sync::watch::channel(0u64);
    let stream = reflector::reflector(
        writer,
        watcher(Api::<Pod>::all(client), watcher::Config::default()).default_backoff(),
    );
    tokio::spawn(stream.for_each(move |_| {
        bump.send_modify(|r| *r = r.wrapping_add(1));
        async {}
    }));
    (reader, changed)
}

/// The Service in front of the controllers' webhooks: each connection goes
/// to the first backend that accepts it (a dead replica refuses at once).
async fn forward_service(listener: TcpListener, backends: PathBuf) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let backends = backends.clone();
        tokio::spawn(async move {
            let list = std::fs::read_to_string(&backends).unwrap_or_default();
            for addr in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let connect =
                    tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr));
                if let Ok(Ok(mut outbound)) = connect.await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
        });
    }
}

/// Binds each pod without a node to the next node, round-robin.
async fn schedule(
    client: Client,
    pods: Store<Pod>,
    mut changed: tokio::sync::watch::Receiver<u64>,
    name: String,
) {
    let mut next = 0usize;
    loop {
        let nodes: Vec<String> = SandboxState::load(&name)
            .map(|s| s.nodes.into_iter().map(|n| n.name).collect())
            .unwrap_or_default();
        for pod in pods.state() {
            let bound = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some();
            if bound || nodes.is_empty() || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let node = &nodes[next % nodes.len()];
            next += 1;
            let api: Api<Pod> =
                Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            let patch = serde_json::json!({ "spec": { "nodeName": node } });
            if let Err(e) = api
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!(pod = %pod.name_any(), error = %e, "failed to bind the pod");
            }
        }
        tokio::select! {
            _ = changed.changed() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
    }
}

/// One kubelet per node of the state file (nodes come and go with `apply`).
async fn run_kubelets(
    client: Client,
    name: String,
    cni: PathBuf,
    pods: Store<Pod>,
    changed: tokio::sync::watch::Receiver<u64>,
) {
    let root = root_of(&name);
    let mut running: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        if let Ok(state) = SandboxState::load(&name) {
            for node in &state.nodes {
                if running.contains_key(&node.name) {
                    continue;
                }
                let kubelet = Kubelet {
                    client: client.clone(),
                    sandbox: name.clone(),
                    root: root.clone(),
                    node: node.clone(),
                    cni: cni.clone(),
                    cni_log: cni_log(&root),
                    cluster_dns: UNDERLAY_API_ADDRESS.into(),
                    cluster_domain: CLUSTER_DOMAIN.into(),
                };
                running.insert(
                    node.name.clone(),
                    tokio::spawn(kubelet.run(pods.clone(), changed.clone())),
                );
            }
            running.retain(|n, task| {
                let keep = state.nodes.iter().any(|x| &x.name == n);
                if !keep {
                    task.abort();
                }
                keep
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn cni_log(root: &Path) -> String {
    root.join("cni.log").display().to_string()
}
