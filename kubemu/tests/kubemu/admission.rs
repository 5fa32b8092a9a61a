//! Mutating admission: a webhook over TLS (its caBundle trusted, nothing
//! else), namespace selector, denial, JSONPatch, dry-run, failure policy,
//! timeout.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::{Server, namespace};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use privnet_kubemu::{Config, tls};
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<Value>>>;

/// A webhook on loopback: annotates pods, refuses `deny-*`, stalls on `slow-*`.
async fn webhook(dir: &std::path::Path, seen: Seen) -> (u16, String, tokio::task::JoinHandle<()>) {
    let certs = tls::generate(dir, &[]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(&certs).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ca = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&certs.ca).unwrap());
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap();
                        seen.lock().unwrap().push(review.clone());
                        let request = &review["request"];
                        let name = request["name"].as_str().unwrap_or("");
                        if name.starts_with("slow-") {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                        }
                        let patch = json!([{ "op": "add", "path": "/metadata/annotations", "value": { "mutated": "yes" } }]);
                        let response = if name.starts_with("deny-") {
                            json!({ "uid": request["uid"], "allowed": false, "status": { "message": "no" } })
                        } else {
                            json!({ "uid": request["uid"], "allowed": true, "patchType": "JSONPatch",
                                    "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string()) })
                        };
                        let out = json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response });
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(out.to_string()),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, ca, task)
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({ "metadata": { "name": name }, "spec": { "containers": [{ "name": "c", "image": "i" }] } })).unwrap()
}

fn config(port: u16, ca: &str, policy: &str) -> MutatingWebhookConfiguration {
    serde_json::from_value(json!({
        "metadata": { "name": "privnet" },
        "webhooks": [{
            "name": "pods.privnet.io", "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
            "failurePolicy": policy, "timeoutSeconds": 1,
            "clientConfig": { "url": format!("https://127.0.0.1:{port}/mutate"), "caBundle": ca },
            "namespaceSelector": { "matchLabels": { "privnet": "on" } },
            "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"] }],
        }]
    }))
    .unwrap()
}

fn refusal(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_pass_the_matching_webhooks() {
    let server = Server::start(Config::default()).await;
    let client = server.client().await;
    let seen: Seen = Arc::default();
    let hook_dir = server.dir.path().join("webhook");
    let (port, ca, hook) = webhook(&hook_dir, seen.clone()).await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({ "metadata": { "name": "in", "labels": { "privnet": "on" } } }),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    namespace(&client, "out").await;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    configs
        .create(&PostParams::default(), &config(port, &ca, "Fail"))
        .await
        .unwrap();
    let inside: Api<Pod> = Api::namespaced(client.clone(), "in");
    let outside: Api<Pod> = Api::namespaced(client.clone(), "out");
    let pp = PostParams::default();

    // Selected namespace: mutated by the returned JSON patch.
    let p = inside.create(&pp, &pod("web")).await.unwrap();
    assert_eq!(
        p.metadata
            .annotations
            .unwrap()
            .get("mutated")
            .map(String::as_str),
        Some("yes")
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(seen.lock().unwrap()[0]["request"]["operation"], "CREATE");
    // Created by server-side apply: admitted the same way.
    let applied = inside
        .patch("applied", &PatchParams::apply("test"), &Patch::Apply(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "applied" }, "spec": { "containers": [{ "name": "c", "image": "i" }] } })))
        .await
        .unwrap();
    assert_eq!(
        applied
            .metadata
            .annotations
            .unwrap()
            .get("mutated")
            .map(String::as_str),
        Some("yes")
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    // Another namespace: the webhook is not called.
    let p = outside.create(&pp, &pod("web")).await.unwrap();
    assert!(p.metadata.annotations.is_none());
    assert_eq!(seen.lock().unwrap().len(), 2);
    // A refusal carries the webhook's message.
    let (code, message) = refusal(inside.create(&pp, &pod("deny-me")).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (
            400,
            "admission webhook \"pods.privnet.io\" denied the request: no"
        )
    );
    // Dry run: the webhook sees dryRun and nothing is stored.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let d = inside.create(&dry, &pod("dry")).await.unwrap();
    assert_eq!(
        d.metadata
            .annotations
            .unwrap()
            .get("mutated")
            .map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        seen.lock().unwrap().last().unwrap()["request"]["dryRun"],
        true
    );
    assert!(
        inside.get_opt("dry").await.unwrap().is_none(),
        "a dry run stores nothing"
    );
    // A webhook slower than its timeout fails the request (failurePolicy Fail).
    let (code, message) = refusal(inside.create(&pp, &pod("slow-one")).await.unwrap_err());
    assert_eq!(code, 500);
    assert!(message.contains("context deadline exceeded"), "{message}");
    // A CA that did not sign the webhook's certificate: refused, not trusted.
    let other = tls::generate(&server.dir.path().join("other"), &[]).unwrap();
    let other_ca =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(other.ca).unwrap());
    configs
        .replace("privnet", &pp, &{
            let mut c = config(port, &other_ca, "Fail");
            c.metadata.resource_version = configs
                .get("privnet")
                .await
                .unwrap()
                .metadata
                .resource_version;
            c
        })
        .await
        .unwrap();
    let (code, message) = refusal(inside.create(&pp, &pod("untrusted")).await.unwrap_err());
    assert_eq!(code, 500);
    assert!(message.contains("failed calling webhook"), "{message}");
    // Webhook down: Fail refuses pods of selected namespaces only; Ignore admits them.
    hook.abort();
    let _ = hook.await;
    configs
        .patch(
            "privnet",
            &PatchParams::default(),
            &Patch::Merge(json!({ "webhooks": [config(port, &ca, "Fail").webhooks.unwrap()[0]] })),
        )
        .await
        .unwrap();
    assert_eq!(
        refusal(inside.create(&pp, &pod("down")).await.unwrap_err()).0,
        500
    );
    assert!(
        inside.get_opt("down").await.unwrap().is_none(),
        "nothing half-created"
    );
    outside.create(&pp, &pod("still-admitted")).await.unwrap();
    configs
        .patch(
            "privnet",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "webhooks": [config(port, &ca, "Ignore").webhooks.unwrap()[0]] }),
            ),
        )
        .await
        .unwrap();
    let p = inside.create(&pp, &pod("down")).await.unwrap();
    assert!(
        p.metadata.annotations.is_none(),
        "admitted unmutated under Ignore"
    );
    server.stop().await;
}
