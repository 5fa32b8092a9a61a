//! Every manifest the chart renders (files written by `scripts/helm-check`,
//! default and non-default values) parses into its k8s-openapi type with no
//! unknown field (typed round trip equals the rendered document), and holds
//! what the design asks: 2 controller replicas, a privileged hostNetwork
//! agent with its CNI installer, a webhook that can only see project pods,
//! least-privilege RBAC.

use std::path::PathBuf;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn rendered(case: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/helm")
        .join(format!("rendered-{case}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {} ({e}): run scripts/helm-check first (it renders the chart with the Helm SDK)", path.display())
    });
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    assert!(
        docs.len() >= 10,
        "{} holds only {} documents",
        path.display(),
        docs.len()
    );
    docs
}

/// Parses `doc` as `K` and checks nothing was dropped on the way.
fn typed<K: DeserializeOwned + serde::Serialize>(doc: &Value) -> K {
    let k: K = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc:#}"));
    let back = serde_json::to_value(&k).unwrap();
    assert_eq!(
        strip_nulls(doc.clone()),
        back,
        "fields lost or renamed in {} {}",
        doc["kind"],
        doc["metadata"]["name"]
    );
    k
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn parse_all(docs: &[Value]) {
    for doc in docs {
        match doc["kind"].as_str().unwrap_or_default() {
            "ConfigMap" => drop(typed::<ConfigMap>(doc)),
            "Secret" => drop(typed::<Secret>(doc)),
            "Service" => drop(typed::<Service>(doc)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(doc)),
            "Deployment" => drop(typed::<Deployment>(doc)),
            "DaemonSet" => drop(typed::<DaemonSet>(doc)),
            "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(doc)),
            "ClusterRole" => drop(typed::<ClusterRole>(doc)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc)),
            "Role" => drop(typed::<Role>(doc)),
            "RoleBinding" => drop(typed::<RoleBinding>(doc)),
            "MutatingWebhookConfiguration" => drop(typed::<MutatingWebhookConfiguration>(doc)),
            other => panic!("unexpected kind {other:?} rendered: {doc:#}"),
        }
    }
}

fn args(d: &Value) -> Vec<String> {
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn default_values_render_the_design() {
    let docs = rendered("default");
    parse_all(&docs);
    let controller: Deployment = typed(find(&docs, "Deployment", "privnet-controller"));
    assert_eq!(controller.spec.replicas, Some(2));
    let agent: DaemonSet = typed(find(&docs, "DaemonSet", "privnet-agent"));
    let pod = agent.spec.template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.containers[0]
            .security_context
            .as_ref()
            .unwrap()
            .privileged,
        Some(true)
    );
    // Multus mode: the installer (atomic writes, privnet_cni::install) runs
    // once as an init container; no chaining sidecar.
    let install = &pod.init_containers.unwrap()[0];
    let install_args = install.args.as_ref().unwrap();
    for want in ["cni-install", "--mode=multus", "--once"] {
        assert!(
            install_args.iter().any(|a| a == want),
            "{want} not in {install_args:?}"
        );
    }
    assert_eq!(pod.containers.len(), 1, "no sidecar in multus mode");
    assert!(pod.volumes.unwrap().iter().any(|v| {
        v.host_path
            .as_ref()
            .is_some_and(|h| h.path == "/opt/cni/bin")
    }));

    let webhook: MutatingWebhookConfiguration =
        typed(find(&docs, "MutatingWebhookConfiguration", "privnet"));
    let w = &webhook.webhooks.unwrap()[0];
    assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
    let ns = w
        .namespace_selector
        .as_ref()
        .unwrap()
        .match_expressions
        .as_ref()
        .unwrap();
    assert!(
        ns.iter()
            .any(|e| e.key == "privnet.io/project" && e.operator == "Exists")
    );
    let obj = w
        .object_selector
        .as_ref()
        .unwrap()
        .match_expressions
        .as_ref()
        .unwrap();
    assert!(
        obj.iter()
            .any(|e| e.key == "privnet.io/application" && e.operator == "Exists")
    );
    let ca = w.client_config.ca_bundle.as_ref().expect("caBundle set");
    assert!(String::from_utf8_lossy(&ca.0).contains("BEGIN CERTIFICATE"));
    let secret: Secret = typed(find(&docs, "Secret", "privnet-webhook-tls"));
    let data = secret.data.unwrap();
    assert!(String::from_utf8_lossy(&data["tls.key"].0).contains("PRIVATE KEY"));

    // Least privilege: no wildcard, no secrets, writes only where needed.
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in doc["rules"].as_array().unwrap() {
            for field in ["verbs", "resources", "apiGroups"] {
                assert!(
                    !rule[field].as_array().unwrap().iter().any(|v| v == "*"),
                    "wildcard in {doc:#}"
                );
            }
            assert!(
                !rule["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v == "secrets"),
                "secrets access in {doc:#}"
            );
        }
    }
    let agent_role: ClusterRole = typed(find(&docs, "ClusterRole", "privnet-agent"));
    let writes_networks = agent_role.rules.unwrap().iter().any(|r| {
        r.resources
            .as_ref()
            .unwrap()
            .contains(&"privatenetworks".to_string())
            && r.verbs
                .iter()
                .any(|v| v != "get" && v != "list" && v != "watch")
    });
    assert!(!writes_networks, "the agent must not write PrivateNetworks");
    // The chart's defaults are privnet-core's (the flags' defaults and the sandbox's).
    use privnet_core::defaults::{MESH_CIDR, VXLAN_PORT, WIREGUARD_PORT};
    let vnis = privnet_core::vni::VniRange::DEFAULT;
    let agent_args = args(find(&docs, "DaemonSet", "privnet-agent"));
    for want in [
        format!("--mesh-cidr={MESH_CIDR}"),
        format!("--vxlan-port={VXLAN_PORT}"),
        format!("--vni-range={vnis}"),
        format!("--wg-port={WIREGUARD_PORT}"),
        format!("--endpoint=$(HOST_IP):{WIREGUARD_PORT}"),
        "--gro-flush-timeout-us=20".to_string(),
    ] {
        assert!(agent_args.contains(&want), "{want} not in {agent_args:?}");
    }
    let controller_args = args(find(&docs, "Deployment", "privnet-controller"));
    for want in [
        format!("--mesh-cidr={MESH_CIDR}"),
        format!("--vni-range={vnis}"),
    ] {
        assert!(
            controller_args.contains(&want),
            "{want} not in {controller_args:?}"
        );
    }
}

#[test]
fn non_default_values_reach_the_manifests() {
    let docs = rendered("custom");
    parse_all(&docs);
    let controller = find(&docs, "Deployment", "privnet-controller");
    assert_eq!(controller["spec"]["replicas"], 3);
    assert_eq!(
        controller["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/privnet:1.2.3"
    );
    let a = args(controller);
    for want in [
        "--env-prefix=ACME",
        "--domain=pn.example.internal",
        "--mesh-cidr=10.99.0.0/20",
        "--vni-range=2000000-2999999",
        "--webhook-addr=0.0.0.0:9443",
    ] {
        assert!(a.contains(&want.to_string()), "{want} not in {a:?}");
    }
    let a = args(find(&docs, "DaemonSet", "privnet-agent"));
    for want in [
        "--wireguard=userspace",
        "--wg-port=51999",
        "--vxlan-port=4800",
        "--vni-range=2000000-2999999",
        "--underlay-mtu=9000",
        "--endpoint=$(HOST_IP):51999",
        "--gro-flush-timeout-us=0",
    ] {
        assert!(a.contains(&want.to_string()), "{want} not in {a:?}");
    }
    // An existing Secret: none generated, the given CA is used.
    assert!(
        !docs.iter().any(|d| d["kind"] == "Secret"),
        "no Secret with webhook.tls.existingSecret"
    );
    let w = find(&docs, "MutatingWebhookConfiguration", "privnet");
    assert_eq!(w["webhooks"][0]["failurePolicy"], "Ignore");
    assert_eq!(w["webhooks"][0]["clientConfig"]["caBundle"], "Zm9v");
    let ds = find(&docs, "DaemonSet", "privnet-agent");
    let install = &ds["spec"]["template"]["spec"]["initContainers"][0]["args"];
    for want in ["--conf-name=05-privnet.conflist", "--network-name=private"] {
        assert!(
            install.as_array().unwrap().iter().any(|a| a == want),
            "{want} not in {install}"
        );
    }
}

#[test]
fn chained_attachment_renders_a_watching_sidecar() {
    let docs = rendered("chained");
    parse_all(&docs);
    let agent: DaemonSet = typed(find(&docs, "DaemonSet", "privnet-agent"));
    let pod = agent.spec.template.spec.unwrap();
    assert!(
        pod.init_containers.is_none(),
        "no one-shot install in chained mode"
    );
    let chain = pod
        .containers
        .iter()
        .find(|c| c.name == "cni-chain")
        .expect("sidecar");
    let chain_args = chain.args.as_ref().unwrap();
    for want in [
        "cni-install",
        "--mode=chained",
        "--pod-interface=net9",
        "--poll-interval-ms=250",
    ] {
        assert!(
            chain_args.iter().any(|a| a == want),
            "{want} not in {chain_args:?}"
        );
    }
    assert!(!chain_args.iter().any(|a| a == "--once"), "it watches");
    // The primary CNI's own directory, which must already exist.
    let conf = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "cni-conf")
        .unwrap();
    let host = conf.host_path.unwrap();
    assert_eq!(
        (host.path.as_str(), host.type_.as_deref()),
        ("/etc/cni/net.d", Some("Directory"))
    );
    let controller = args(find(&docs, "Deployment", "privnet-controller"));
    assert!(
        controller.contains(&"--attach-mode=chained".to_string()),
        "{controller:?}"
    );
}

#[test]
fn chart_crds_parse_and_match_the_types() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    for (file, crd) in privnet_api::all_crds() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../charts/privnet/crds")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            crd,
            "{} is stale: run `privnet crds --out charts/privnet/crds`",
            path.display()
        );
    }
}
