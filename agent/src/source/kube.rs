//! The Kubernetes backend: reflectors over Nodes, PrivateNetworks, Projects,
//! PrivateEndpoints and this node's Pods feed an in-memory cache; every
//! watch event bumps a revision; [`cluster_view`] (pure) turns the cache into
//! a [`ClusterView`]. Outputs: Node annotations (key, endpoint),
//! PrivateEndpoints owned by their Pod (garbage-collected with it), and
//! address claims as Leases created with create-only semantics
//! (`409 AlreadyExists` = taken).

use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;

use super::{AddressClaim, Source, SourceError};
use privnet_api::keys::{
    AGENT_FIELD_MANAGER, APPLICATION_LABEL, CLAIM_KIND_LABEL, CONTAINER_NUMBER_ANNOTATION,
    NETWORK_ID_ANNOTATION, NETWORK_LABEL, PROCESS_TYPE_LABEL,
};
use privnet_api::readers::{
    endpoint_info, endpoint_spec, network_info, node_annotations, node_info, workload_of,
};
use privnet_api::readers::{held_namespaces, namespace_conflicts};
use privnet_api::{PrivateEndpoint, PrivateNetwork, Project};
use privnet_core::rpc::Workload;
use privnet_core::view::{ClusterView, EndpointInfo, NodeInfo};

pub use privnet_api::keys::ADDRESS_CLAIM_KIND;
/// How long `publish_endpoint` waits for its Pod to reach the cache.
const POD_WAIT: Duration = Duration::from_secs(10);

/// The view of the cluster from the cached objects (pure).
pub fn cluster_view(
    nodes: &[Node],
    networks: &[PrivateNetwork],
    projects: &[Project],
    endpoints: &[PrivateEndpoint],
) -> ClusterView {
    let mut view = ClusterView {
        nodes: nodes
            .iter()
            .filter_map(node_info)
            .filter(|n| n.vtep.is_some())
            .collect(),
        networks: networks.iter().filter_map(network_info).collect(),
        ..Default::default()
    };
    for p in projects {
        let Some(id) = p.status.as_ref().and_then(|s| s.network_id.clone()) else {
            continue;
        };
        let conflicts = namespace_conflicts(p, projects);
        view.namespace_networks.extend(
            held_namespaces(p, &conflicts)
                .into_iter()
                .map(|ns| (ns, id.clone())),
        );
    }
    view.endpoints = endpoints
        .iter()
        .filter_map(|e| endpoint_info(&e.spec))
        .collect();
    view.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    view.networks.sort_by(|a, b| a.id.cmp(&b.id));
    view.namespace_networks.sort();
    view.endpoints.sort_by(|a, b| {
        (&a.node, &a.container_id, &a.interface).cmp(&(&b.node, &b.container_id, &b.interface))
    });
    view
}

/// The Pod (on this node) an endpoint belongs to: the webhook annotated it
/// with the network and number, labelled it with application and type.
pub fn pod_of<'a>(pods: impl IntoIterator<Item = &'a Pod>, ep: &EndpointInfo) -> Option<&'a Pod> {
    pods.into_iter().find(|p| {
        let (a, l) = (p.annotations(), p.labels());
        a.get(NETWORK_ID_ANNOTATION) == Some(&ep.network_id)
            && a.get(CONTAINER_NUMBER_ANNOTATION) == Some(&ep.container_number.to_string())
            && l.get(APPLICATION_LABEL) == Some(&ep.application_id)
            && l.get(PROCESS_TYPE_LABEL) == Some(&ep.process_type)
            && p.meta().deletion_timestamp.is_none()
    })
}

/// Name of the Lease claiming `ip` in `network_id`.
pub fn address_claim_name(network_id: &str, ip: Ipv4Addr) -> String {
    format!(
        "privnet-ip-{network_id}-{}",
        ip.to_string().replace('.', "-")
    )
}

/// An address claim Lease held by an attachment of `node` (its address
/// read back from the name [`address_claim_name`] gave it).
fn address_claim_of(lease: &Lease, node: &str) -> Option<AddressClaim> {
    let owner = lease.spec.as_ref()?.holder_identity.clone()?;
    let (holder, _, _) = privnet_api::keys::parse_address_claim_owner(&owner)?;
    if holder != node {
        return None;
    }
    let network_id = lease.labels().get(NETWORK_LABEL)?.clone();
    let ip = lease
        .name_any()
        .strip_prefix(&format!("privnet-ip-{network_id}-"))?
        .replace('-', ".")
        .parse()
        .ok()?;
    Some(AddressClaim {
        network_id,
        ip,
        owner,
    })
}

fn owned<K: Clone>(cached: Vec<std::sync::Arc<K>>) -> Vec<K> {
    cached.into_iter().map(|a| (*a).clone()).collect()
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> SourceError {
    let path = what.into();
    move |e| SourceError::Io {
        path,
        source: std::io::Error::other(e),
    }
}

/// The Kubernetes source of one node's agent.
#[derive(Clone)]
pub struct KubeSource {
    client: Client,
    node: String,
    namespace: String,
    domain: String,
    nodes: Store<Node>,
    networks: Store<PrivateNetwork>,
    projects: Store<Project>,
    endpoints: Store<PrivateEndpoint>,
    pods: Store<Pod>,
    revision: watch::Receiver<u64>,
}

fn spawn_reflector<K>(api: Api<K>, config: watcher::Config, bump: watch::Sender<u64>) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(stream.for_each(move |event| {
        if let Err(e) = &event {
            tracing::warn!(error = %e, kind = %K::kind(&()), "watch failed; retrying");
        }
        bump.send_modify(|r| *r = r.wrapping_add(1).max(1));
        async {}
    }));
    reader
}

impl KubeSource {
    /// Starts the watches (inside a tokio runtime). `namespace` holds the
    /// address claims; `domain` is the private DNS domain.
    pub fn start(client: Client, node: &str, namespace: &str, domain: &str) -> Self {
        let (bump, revision) = watch::channel(0u64);
        let all = watcher::Config::default();
        KubeSource {
            nodes: spawn_reflector(Api::<Node>::all(client.clone()), all.clone(), bump.clone()),
            networks: spawn_reflector(
                Api::<PrivateNetwork>::all(client.clone()),
                all.clone(),
                bump.clone(),
            ),
            projects: spawn_reflector(
                Api::<Project>::all(client.clone()),
                all.clone(),
                bump.clone(),
            ),
            endpoints: spawn_reflector(
                Api::<PrivateEndpoint>::all(client.clone()),
                all,
                bump.clone(),
            ),
            pods: spawn_reflector(
                Api::<Pod>::all(client.clone()),
                watcher::Config::default().fields(&format!("spec.nodeName={node}")),
                bump,
            ),
            client,
            node: node.into(),
            namespace: namespace.into(),
            domain: domain.into(),
            revision,
        }
    }

    async fn ready(&self) {
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.networks.wait_until_ready().await;
        let _ = self.projects.wait_until_ready().await;
        let _ = self.endpoints.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
    }

    fn view(&self) -> ClusterView {
        cluster_view(
            &owned(self.nodes.state()),
            &owned(self.networks.state()),
            &owned(self.projects.state()),
            &owned(self.endpoints.state()),
        )
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

impl Source for KubeSource {
    async fn next_view(&self, since: u64) -> Result<(u64, ClusterView), SourceError> {
        self.ready().await;
        let mut rx = self.revision.clone();
        loop {
            let rev = (*rx.borrow_and_update()).max(1);
            if rev != since {
                return Ok((rev, self.view()));
            }
            if rx.changed().await.is_err() {
                return Ok((rev, self.view()));
            }
        }
    }

    async fn publish_node(&self, node: &NodeInfo) -> Result<(), SourceError> {
        // Server-side apply of every annotation the agent owns: one left out
        // (a finished rotation's next key) is removed.
        let body = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": node.name,
            "annotations": node_annotations(node) } });
        Api::<Node>::all(self.client.clone())
            .patch(
                &node.name,
                &PatchParams::apply(AGENT_FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map_err(kube_err(format!("nodes/{}", node.name)))?;
        Ok(())
    }

    fn endpoint_owner_exists(&self, ep: &EndpointInfo) -> bool {
        pod_of(self.pods.state().iter().map(|a| &**a), ep).is_some()
    }

    async fn publish_endpoint(&self, ep: &EndpointInfo) -> Result<(), SourceError> {
        let deadline = tokio::time::Instant::now() + POD_WAIT;
        let pod = loop {
            if let Some(p) = pod_of(self.pods.state().iter().map(|a| &**a), ep).cloned() {
                break p;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SourceError::Decode {
                    path: format!("pods on {}", self.node),
                    message: format!(
                        "no pod carries {}/{}/{} number {}",
                        ep.network_id, ep.application_id, ep.process_type, ep.container_number
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let namespace = pod.namespace().unwrap_or_default();
        let name = format!("{}-{}", pod.name_any(), ep.interface);
        let mut spec = endpoint_spec(ep);
        spec.hostname = format!(
            "{}.{}.{}.{}.{}",
            ep.container_number, ep.process_type, ep.application_id, ep.network_id, self.domain
        );
        let owner = pod.controller_owner_ref(&()).map(|mut o| {
            o.controller = Some(false);
            o
        });
        let body = json!({
            "apiVersion": "privnet.io/v1alpha1", "kind": "PrivateEndpoint",
            "metadata": { "name": name, "namespace": namespace, "labels": { NETWORK_LABEL: ep.network_id }, "ownerReferences": owner.into_iter().collect::<Vec<_>>() },
            "spec": spec,
        });
        Api::<PrivateEndpoint>::namespaced(self.client.clone(), &namespace)
            .patch(
                &name,
                &PatchParams::apply(AGENT_FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map_err(kube_err(format!("privateendpoints/{namespace}/{name}")))?;
        Ok(())
    }

    async fn claim_address(
        &self,
        network_id: &str,
        ip: Ipv4Addr,
        owner: &str,
    ) -> Result<bool, SourceError> {
        let name = address_claim_name(network_id, ip);
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [
                        (CLAIM_KIND_LABEL.to_string(), ADDRESS_CLAIM_KIND.to_string()),
                        (NETWORK_LABEL.to_string(), network_id.to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(owner.into()),
                acquire_time: Some(MicroTime(Timestamp::now())),
                ..Default::default()
            }),
        };
        match self.leases().create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let current = self
                    .leases()
                    .get_opt(&name)
                    .await
                    .map_err(kube_err(format!("leases/{name}")))?;
                Ok(current.and_then(|l| l.spec?.holder_identity).as_deref() == Some(owner))
            }
            Err(e) => Err(kube_err(format!("leases/{name}"))(e)),
        }
    }

    async fn release_address(
        &self,
        network_id: &str,
        ip: Ipv4Addr,
        owner: &str,
    ) -> Result<(), SourceError> {
        let name = address_claim_name(network_id, ip);
        let Some(current) = self
            .leases()
            .get_opt(&name)
            .await
            .map_err(kube_err(format!("leases/{name}")))?
        else {
            return Ok(());
        };
        if current
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            != Some(owner)
        {
            return Ok(());
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: current.resource_version(),
                uid: None,
            }),
            ..Default::default()
        };
        match self.leases().delete(&name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(kube_err(format!("leases/{name}"))(e)),
        }
    }

    async fn node_claims(&self, node: &str) -> Result<Vec<AddressClaim>, SourceError> {
        let selector = format!("{CLAIM_KIND_LABEL}={ADDRESS_CLAIM_KIND}");
        let leases = self
            .leases()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_err("leases (address claims)"))?;
        Ok(leases
            .items
            .iter()
            .filter_map(|l| address_claim_of(l, node))
            .collect())
    }

    async fn withdraw_endpoint(&self, ep: &EndpointInfo) -> Result<(), SourceError> {
        let found: Vec<_> = self
            .endpoints
            .state()
            .into_iter()
            .filter(|e| {
                e.spec.node == self.node
                    && e.spec.container_id == ep.container_id
                    && e.spec.interface == ep.interface
            })
            .collect();
        for e in found {
            let ns = e.namespace().unwrap_or_default();
            match Api::<PrivateEndpoint>::namespaced(self.client.clone(), &ns)
                .delete(&e.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(err) => {
                    return Err(kube_err(format!("privateendpoints/{ns}/{}", e.name_any()))(
                        err,
                    ));
                }
            }
        }
        Ok(())
    }

    async fn pod_workload(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Workload>, SourceError> {
        let key = reflector::ObjectRef::<Pod>::new(name).within(namespace);
        if let Some(pod) = self.pods.get(&key) {
            return Ok(workload_of(&pod));
        }
        // Not in the cache yet (the watch may trail the kubelet): ask the API.
        let pod = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(kube_err(format!("pods/{namespace}/{name}")))?;
        Ok(pod.as_ref().and_then(workload_of))
    }

    fn numbers_from_admission(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use privnet_api::keys::{WG_ENDPOINT_ANNOTATION, WG_PUBLIC_KEY_ANNOTATION};
    use privnet_api::{PrivateNetworkSpec, PrivateNetworkStatus, ProjectSpec, ProjectStatus};

    #[test]
    fn view_from_cached_objects() {
        let node: Node = serde_json::from_value(json!({ "metadata": { "name": "n1", "annotations": {
            WG_PUBLIC_KEY_ANNOTATION: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", WG_ENDPOINT_ANNOTATION: "192.0.2.1:51820", "privnet.io/vtep": "100.64.0.1" } } }))
        .unwrap();
        let unmeshed: Node = serde_json::from_value(json!({ "metadata": { "name": "n2", "annotations": {
            WG_PUBLIC_KEY_ANNOTATION: "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", WG_ENDPOINT_ANNOTATION: "192.0.2.2:51820" } } }))
        .unwrap();
        let mut pn = PrivateNetwork::new(
            "shop",
            PrivateNetworkSpec {
                project: "shop".into(),
                subnet: "10.240.0.0/22".into(),
                mtu: None,
            },
        );
        pn.status = Some(PrivateNetworkStatus {
            id: Some("pn-1".into()),
            vni: Some(4096),
            ..Default::default()
        });
        let pending = PrivateNetwork::new(
            "new",
            PrivateNetworkSpec {
                project: "new".into(),
                subnet: "10.240.0.0/22".into(),
                mtu: None,
            },
        );
        let mut p = Project::new(
            "shop",
            ProjectSpec {
                namespaces: vec!["a".into(), "b".into()],
                public_web: true,
                network: None,
            },
        );
        p.status = Some(ProjectStatus {
            network_id: Some("pn-1".into()),
            ..Default::default()
        });
        let view = cluster_view(&[node, unmeshed], &[pn, pending], &[p], &[]);
        assert_eq!(
            view.nodes.len(),
            1,
            "only nodes with a VTEP are in the mesh"
        );
        assert_eq!(view.networks.len(), 1, "only complete networks");
        assert_eq!(view.network_of_namespace("b").unwrap().vni, 4096);
        assert!(view.network_of_namespace("c").is_none());
        assert_eq!(
            address_claim_name("pn-1", "10.240.0.7".parse().unwrap()),
            "privnet-ip-pn-1-10-240-0-7"
        );
    }

    #[test]
    fn an_address_claim_lease_reads_back_for_its_node_only() {
        let lease = |owner: &str| Lease {
            metadata: ObjectMeta {
                name: Some(address_claim_name("pn-1", "10.240.0.7".parse().unwrap())),
                labels: Some([(NETWORK_LABEL.to_string(), "pn-1".to_string())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(owner.into()),
                ..Default::default()
            }),
        };
        let claim = address_claim_of(&lease("n1/c1/eth1"), "n1").unwrap();
        assert_eq!(claim.ip.to_string(), "10.240.0.7");
        assert_eq!(claim.network_id, "pn-1");
        assert_eq!(claim.owner, "n1/c1/eth1");
        assert!(address_claim_of(&lease("n2/c1/eth1"), "n1").is_none());
    }
}
