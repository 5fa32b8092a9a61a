//! Invalid custom resources are rejected by the CRD's own CEL rules, with the
//! message a user sees from the API server (evaluated client-side by kube-cel).

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use privnet_api::{PrivateEndpoint, PrivateNetwork, Project};
use serde_json::{Value, json};

fn schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn errors<K: CustomResourceExt>(obj: Value, old: Option<Value>) -> String {
    match Validator::new().validate(&schema::<K>(), &obj, old.as_ref()) {
        Ok(()) => String::new(),
        Err(e) => format!("{e:?}"),
    }
}

fn project(namespaces: Value) -> Value {
    json!({"apiVersion": "privnet.io/v1alpha1", "kind": "Project", "metadata": {"name": "p"},
           "spec": {"namespaces": namespaces}})
}

#[test]
fn project_namespaces_must_be_dns_labels() {
    assert_eq!(
        errors::<Project>(project(json!(["shop", "shop-staging"])), None),
        ""
    );
    let e = errors::<Project>(project(json!(["Shop_Prod"])), None);
    assert!(e.contains("every namespace must be a DNS label"), "{e}");
}

#[test]
fn project_namespaces_must_not_repeat() {
    let e = errors::<Project>(project(json!(["a", "a"])), None);
    assert!(e.contains("namespaces must not repeat"), "{e}");
}

fn network(subnet: &str, project: &str) -> Value {
    json!({"apiVersion": "privnet.io/v1alpha1", "kind": "PrivateNetwork", "metadata": {"name": "n"},
           "spec": {"project": project, "subnet": subnet}})
}

#[test]
fn network_subnet_and_project_are_immutable() {
    let old = network("10.240.0.0/22", "p");
    assert_eq!(
        errors::<PrivateNetwork>(network("10.240.0.0/22", "p"), Some(old.clone())),
        ""
    );
    let e = errors::<PrivateNetwork>(network("10.241.0.0/22", "p"), Some(old.clone()));
    assert!(e.contains("subnet is immutable"), "{e}");
    let e = errors::<PrivateNetwork>(network("10.240.0.0/22", "q"), Some(old));
    assert!(e.contains("project is immutable"), "{e}");
}

#[test]
fn network_subnet_octets_are_checked() {
    let e = errors::<PrivateNetwork>(network("10.300.0.0/22", "p"), None);
    assert!(e.contains("subnet octets must be 0-255"), "{e}");
}

#[test]
fn endpoint_hostname_must_follow_the_naming_contract() {
    let ep = |hostname: &str| {
        json!({"apiVersion": "privnet.io/v1alpha1", "kind": "PrivateEndpoint", "metadata": {"name": "e", "namespace": "x"},
               "spec": {"networkId": "pn-1", "applicationId": "app", "processType": "web", "containerNumber": 1,
                        "hostname": hostname, "ip": "10.240.0.2", "mac": "02:00:00:00:00:01", "node": "n1",
                        "containerId": "c", "interface": "eth1"}})
    };
    assert_eq!(
        errors::<PrivateEndpoint>(ep("1.web.app.pn-1.private-network.internal"), None),
        ""
    );
    let e = errors::<PrivateEndpoint>(ep("2.web.app.pn-1.private-network.internal"), None);
    assert!(e.contains("hostname must be"), "{e}");
}
