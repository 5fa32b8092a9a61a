//! Invalid custom resources are rejected by the CRD's own CEL rules, with the
//! message a user sees from the API server (evaluated client-side by kube-cel),
//! and by the schema's bounds (`maxItems`, `maxLength`, list-type `set`).

use crate::schema_bounds;

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

/// The schema's bound violations of `obj`, one per line.
fn bounds<K: CustomResourceExt>(obj: &Value) -> String {
    schema_bounds::bound_errors(&schema::<K>(), obj).join("\n")
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
    assert_eq!(bounds::<Project>(&project(json!(["a", "b"]))), "");
    let e = bounds::<Project>(&project(json!(["a", "b", "a"])));
    assert_eq!(e, r#"spec.namespaces[2]: Duplicate value: "a""#);
}

#[test]
fn project_namespace_list_is_bounded() {
    let names = |n: usize| json!((0..n).map(|i| format!("ns-{i}")).collect::<Vec<_>>());
    let most = privnet_api::MAX_NAMESPACES;
    assert_eq!(bounds::<Project>(&project(names(most))), "");
    assert_eq!(errors::<Project>(project(names(most)), None), "");
    let e = bounds::<Project>(&project(names(most + 1)));
    assert_eq!(
        e,
        "spec.namespaces: Too many: 257: must have at most 256 items"
    );
}

#[test]
fn project_namespace_is_at_most_a_label_long() {
    let label = "a".repeat(63);
    assert_eq!(bounds::<Project>(&project(json!([label]))), "");
    let e = bounds::<Project>(&project(json!([format!("{label}b")])));
    assert_eq!(e, "spec.namespaces[0]: Too long: may not be longer than 63");
}

#[test]
fn project_subnet_override_is_checked_and_bounded() {
    let with_subnet = |subnet: &str| {
        json!({"apiVersion": "privnet.io/v1alpha1", "kind": "Project", "metadata": {"name": "p"},
               "spec": {"namespaces": [], "network": {"subnet": subnet}}})
    };
    assert_eq!(bounds::<Project>(&with_subnet("255.255.255.255/30")), "");
    assert_eq!(errors::<Project>(with_subnet("10.250.0.0/24"), None), "");
    let e = errors::<Project>(with_subnet("10.300.0.0/22"), None);
    assert!(e.contains("subnet octets must be 0-255"), "{e}");
    let e = bounds::<Project>(&with_subnet("0010.240.000.000/22"));
    assert_eq!(
        e,
        "spec.network.subnet: Too long: may not be longer than 18"
    );
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
    for good in [
        "10.240.0.0/22",
        "0.0.0.0/8",
        "255.255.255.255/30",
        "192.168.100.9/24",
    ] {
        assert_eq!(
            errors::<PrivateNetwork>(network(good, "p"), None),
            "",
            "{good}"
        );
    }
    for bad in [
        "10.300.0.0/22",
        "256.0.0.0/8",
        "10.0.0.260/30",
        "10.01.0.0/22",
    ] {
        let e = errors::<PrivateNetwork>(network(bad, "p"), None);
        assert!(e.contains("subnet octets must be 0-255"), "{bad}: {e}");
    }
}

#[test]
fn network_subnet_is_bounded() {
    assert_eq!(bounds::<PrivateNetwork>(&network("10.240.0.0/22", "p")), "");
    let e = bounds::<PrivateNetwork>(&network("0010.240.000.000/22", "p"));
    assert_eq!(e, "spec.subnet: Too long: may not be longer than 18");
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
    let mut twelve = ep("12.web.app.pn-1.private-network.internal");
    twelve["spec"]["containerNumber"] = json!(12);
    assert_eq!(errors::<PrivateEndpoint>(twelve, None), "");
    for bad in [
        "2.web.app.pn-1.private-network.internal",
        "11.web.app.pn-1.private-network.internal",
        "01.web.app.pn-1.private-network.internal",
        "x.web.app.pn-1.private-network.internal",
        "1.worker.app.pn-1.private-network.internal",
        "1.web.other.pn-1.private-network.internal",
        "1.web.app.pn-2.private-network.internal",
        "1.web.app.pn-1",
        "1",
        "",
    ] {
        let e = errors::<PrivateEndpoint>(ep(bad), None);
        assert!(e.contains("hostname must be"), "{bad:?}: {e}");
    }
    let e = bounds::<PrivateEndpoint>(&ep(&"a".repeat(254)));
    assert_eq!(e, "spec.hostname: Too long: may not be longer than 253");
}
