//! What every reconciler shares: the client, settings, events, metrics;
//! and the module's error type.

use std::sync::Arc;

use ipnet::Ipv4Net;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use super::metrics::Metrics;
use privnet_core::naming::{DEFAULT_DOMAIN, DEFAULT_ENV_PREFIX};

/// Settings of the controller (flags of `privnet controller`).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Namespace of the controller: zone ConfigMaps and claim Leases live here.
    pub namespace: String,
    /// DNS domain of the private zones.
    pub domain: String,
    /// Mesh (VTEP) CIDR.
    pub mesh_cidr: Ipv4Net,
    /// Prefix of the three environment variables.
    pub env_prefix: String,
    /// Range VNIs are taken from.
    pub vni_range: std::ops::RangeInclusive<u32>,
    /// How pods reach the plugin (Multus attachment or chained conflist).
    pub attach: crate::attachment::AttachMode,
    /// The cluster's DNS domain (pods' search path).
    pub cluster_domain: String,
    /// How often claims of gone pods and nodes are swept.
    pub claims_sweep_period: std::time::Duration,
    /// Claims younger than this are never collected (admission claims before the pod exists).
    pub claims_grace: std::time::Duration,
    /// How long a network outlives its deleted Project (see [`crate::orphan`]).
    pub orphan_grace: std::time::Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            namespace: privnet_core::defaults::NAMESPACE.into(),
            domain: DEFAULT_DOMAIN.into(),
            mesh_cidr: privnet_core::defaults::MESH_CIDR,
            env_prefix: DEFAULT_ENV_PREFIX.into(),
            vni_range: privnet_core::vni::DEFAULT_VNI_RANGE,
            attach: crate::attachment::AttachMode::default(),
            cluster_domain: "cluster.local".into(),
            claims_sweep_period: std::time::Duration::from_secs(60),
            claims_grace: crate::webhook::numbering::DEFAULT_GRACE,
            orphan_grace: crate::orphan::DEFAULT_ORPHAN_GRACE,
        }
    }
}

/// Shared state of the reconcilers. Holds no cluster state: every decision
/// is made from what the API returns.
#[derive(Clone)]
pub struct Context {
    /// API client.
    pub client: Client,
    /// Settings.
    pub config: ControllerConfig,
    /// Event recorder (`reportingController: privnet-controller`).
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// A context over `client`.
    pub fn new(client: Client, config: ControllerConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let reporter = Reporter {
            controller: privnet_api::keys::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
        })
    }
}

/// Errors of the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("failed to {action}")]
    Kube {
        /// What was attempted.
        action: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// An object misses a field the API always sets (name, uid).
    #[error("failed to read {0}: the object has no {1}")]
    MissingField(String, &'static str),
    /// The VNI space is exhausted or inconsistent.
    #[error("failed to allocate a VNI")]
    Vni(#[source] privnet_core::vni::VniError),
    /// The mesh CIDR is exhausted or invalid.
    #[error("failed to allocate a VTEP")]
    Mesh(#[source] privnet_core::mesh::MeshError),
    /// The zone could not be built.
    #[error("failed to build the zone of {network}")]
    Zone {
        /// Network id.
        network: String,
        /// Cause.
        #[source]
        source: privnet_core::zone::ZoneError,
    },
}

impl Error {
    /// Wraps a kube error with what was being done.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}

/// Whether `e` is an API error with HTTP status `code`.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
