//! The admission webhook against the mocked API: container numbers under
//! concurrent admissions (the fake API does the create-only CAS), reuse of
//! freed numbers, pods that are not ours, a network not ready, the HTTP
//! front end; and leader election over a Lease.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::admission::AdmissionReview;
use privnet_controller::leader::LeaderElector;
use privnet_controller::webhook::{Admitter, admit, serve_tls};
use privnet_controller::{ControllerConfig, Metrics};
use privnet_testkit::FakeApi;
use serde_json::{Value, json};

const NETWORK_ID: &str = "pn-7d3b2f4e-0000-4000-8000-000000000001";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/privnet-system/leases";

fn setup(network_ready: bool) -> (Arc<FakeApi>, Admitter) {
    let api = FakeApi::new();
    api.seed("/apis/privnet.io/v1alpha1/projects", json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "Project", "metadata": { "name": "shop" }, "spec": { "namespaces": ["shop"] } }));
    let status = if network_ready {
        json!({ "id": NETWORK_ID, "vni": 4096 })
    } else {
        json!({})
    };
    api.seed(
        "/apis/privnet.io/v1alpha1/privatenetworks",
        json!({ "apiVersion": "privnet.io/v1alpha1", "kind": "PrivateNetwork", "metadata": { "name": "shop" }, "spec": { "project": "shop", "subnet": "10.240.0.0/22" }, "status": status }),
    );
    let admitter = Admitter {
        client: api.client(),
        config: ControllerConfig::default(),
        metrics: Arc::new(Metrics::default()),
        grace: Duration::from_secs(120),
    };
    (api, admitter)
}

fn review(uid: &str, namespace: &str, labels: Value) -> AdmissionReview<Pod> {
    serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": { "group": "", "version": "v1", "kind": "Pod" }, "resource": { "group": "", "version": "v1", "resource": "pods" },
            "requestKind": { "group": "", "version": "v1", "kind": "Pod" }, "requestResource": { "group": "", "version": "v1", "resource": "pods" },
            "name": "", "namespace": namespace, "operation": "CREATE", "userInfo": {}, "dryRun": false,
            "object": { "apiVersion": "v1", "kind": "Pod", "metadata": { "generateName": "web-", "namespace": namespace, "labels": labels },
                        "spec": { "containers": [{ "name": "app", "image": "app" }] } },
        }
    }))
    .unwrap()
}

/// The patched pod of an allowed review (`None` when unchanged).
fn patched(review: &AdmissionReview<Pod>, answer: &Value) -> Option<Pod> {
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "{answer}");
    // kube serializes the patch bytes as a JSON array of numbers (Go's
    // decoder accepts it for []byte); accept a base64 string too.
    let bytes: Vec<u8> = match &response["patch"] {
        Value::Null => return None,
        Value::String(b64) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
        }
        other => serde_json::from_value(other.clone()).unwrap(),
    };
    let ops: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut pod =
        serde_json::to_value(review.request.as_ref().unwrap().object.as_ref().unwrap()).unwrap();
    json_patch::patch(&mut pod, &ops).unwrap();
    Some(serde_json::from_value(pod).unwrap())
}

fn web() -> Value {
    json!({ "privnet.io/application": "app", "privnet.io/process-type": "web" })
}

async fn admit_one(admitter: &Admitter, uid: &str) -> Pod {
    let r = review(uid, "shop", web());
    let answer = serde_json::to_value(admit(admitter, r.clone()).await).unwrap();
    patched(&r, &answer).expect("a project pod is patched")
}

fn number(pod: &Pod) -> u32 {
    pod.metadata.annotations.as_ref().unwrap()["privnet.io/container-number"]
        .parse()
        .unwrap()
}

#[tokio::test]
async fn twenty_concurrent_admissions_get_distinct_lowest_numbers() {
    let (api, admitter) = setup(true);
    let admitter = Arc::new(admitter);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let admitter = admitter.clone();
            tokio::spawn(async move { admit_one(&admitter, &format!("uid-{i}")).await })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        let pod = t.await.unwrap();
        let env = pod.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let n = number(&pod);
        let hostname = env
            .iter()
            .find(|e| e.name == "SCALINGO_PRIVATE_HOSTNAME")
            .unwrap()
            .value
            .clone()
            .unwrap();
        assert_eq!(
            hostname,
            format!("{n}.web.app.{NETWORK_ID}.private-network.internal")
        );
        assert_eq!(
            env.iter()
                .find(|e| e.name == "SCALINGO_PRIVATE_NETWORK_ID")
                .unwrap()
                .value
                .as_deref(),
            Some(NETWORK_ID)
        );
        numbers.push(n);
    }
    let unique: BTreeSet<u32> = numbers.iter().copied().collect();
    assert_eq!(unique, (1..=20).collect(), "numbers: {numbers:?}");
    assert_eq!(api.list(LEASES).len(), 20, "one claim Lease per number");
    // Concurrency really happened: some creates lost the race with 409.
    let creates = api.requests("POST", LEASES);
    assert!(
        creates.len() > 20,
        "expected CAS conflicts, saw {} creates",
        creates.len()
    );
    assert_eq!(
        admitter.metrics.claim_conflicts.get() as usize,
        creates.len() - 20
    );
}

#[tokio::test]
async fn a_freed_number_is_reused_after_the_grace_period() {
    let (api, admitter) = setup(true);
    for i in 0..3 {
        admit_one(&admitter, &format!("u{i}")).await;
    }
    // Pods 1 and 3 are alive; 2 never came (or is gone). Claims are old.
    for n in [1, 3] {
        api.seed(
            "/api/v1/namespaces/shop/pods",
            json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": format!("web-{n}"), "namespace": "shop", "labels": web(),
                    "annotations": { "privnet.io/container-number": n.to_string(), "privnet.io/network-id": NETWORK_ID } } }),
        );
    }
    let fresh = admit_one(&admitter, "too-early").await;
    assert_eq!(number(&fresh), 4, "a young claim is never reclaimed");
    for lease in api.list(LEASES) {
        let name = lease["metadata"]["name"].as_str().unwrap().to_string();
        api.edit(&format!("{LEASES}/{name}"), |l| {
            l["spec"]["acquireTime"] = json!("2020-01-01T00:00:00.000000Z")
        });
    }
    let reused = admit_one(&admitter, "later").await;
    assert_eq!(number(&reused), 2);
    let deletes: Vec<_> = api
        .log()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert!(
        deletes
            .iter()
            .any(|d| d.path.ends_with("-web-2")
                && !d.body["preconditions"]["resourceVersion"].is_null()),
        "{deletes:#?}"
    );
}

#[tokio::test]
async fn unrelated_pods_pass_unchanged_and_unready_networks_are_refused() {
    let (api, admitter) = setup(false);
    for (ns, labels) in [("elsewhere", web()), ("shop", json!({ "app": "x" }))] {
        let r = review("u", ns, labels);
        let answer = serde_json::to_value(admit(&admitter, r.clone()).await).unwrap();
        assert!(patched(&r, &answer).is_none(), "{answer}");
    }
    let answer = serde_json::to_value(admit(&admitter, review("u", "shop", web())).await).unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("private network of project shop is not ready"),
        "{message}"
    );
    assert!(api.requests("POST", LEASES).is_empty(), "nothing claimed");
    let bad = serde_json::to_value(
        admit(
            &setup(true).1,
            review(
                "u",
                "shop",
                json!({ "privnet.io/application": "App_1", "privnet.io/process-type": "web" }),
            ),
        )
        .await,
    )
    .unwrap();
    assert_eq!(bad["response"]["allowed"], false);
    assert!(
        bad["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("application id"),
        "{bad}"
    );
}

#[tokio::test]
async fn the_http_front_end_answers_reviews() {
    let (_api, admitter) = setup(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(listener, None, Arc::new(admitter), async {
        let _ = stopped.await;
    }));
    let body = serde_json::to_vec(&review("http-1", "shop", web())).unwrap();
    let request = format!(
        "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let json: Value = serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["response"]["uid"], "http-1");
    assert_eq!(json["response"]["patchType"], "JSONPatch");
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn leader_election_is_a_compare_and_swap_on_the_lease() {
    let api = FakeApi::new();
    let lease_api = |api: &Arc<FakeApi>| Api::<Lease>::namespaced(api.client(), "privnet-system");
    let a = LeaderElector::new(
        lease_api(&api),
        "privnet-controller",
        "pod-a",
        Duration::from_secs(15),
    );
    let b = LeaderElector::new(
        lease_api(&api),
        "privnet-controller",
        "pod-b",
        Duration::from_secs(15),
    );
    let t0 = Timestamp::from_second(1_800_000_000).unwrap();
    let at = |s: i64| t0 + k8s_openapi::jiff::SignedDuration::from_secs(s);
    assert!(a.round(at(0)).await.unwrap(), "a creates the lease");
    assert!(!b.round(at(1)).await.unwrap(), "b follows a live lease");
    assert!(a.round(at(5)).await.unwrap(), "a renews");
    let renew = api.requests("PUT", &format!("{LEASES}/privnet-controller"));
    assert_eq!(renew.len(), 1);
    assert!(
        renew[0].body["metadata"]["resourceVersion"].is_string(),
        "renewal is a CAS at the read version"
    );
    assert!(
        !b.round(at(19)).await.unwrap(),
        "not expired yet (renewed at 5 + 15)"
    );
    assert!(
        b.round(at(21)).await.unwrap(),
        "a stopped renewing: b takes over"
    );
    let lease = api.get(&format!("{LEASES}/privnet-controller")).unwrap();
    assert_eq!(
        (
            lease["spec"]["holderIdentity"].as_str(),
            lease["spec"]["leaseTransitions"].as_i64()
        ),
        (Some("pod-b"), Some(1))
    );
    assert!(!a.round(at(22)).await.unwrap(), "a is now a follower");
    // Two writers racing on the same read version: only one wins.
    api.edit(&format!("{LEASES}/privnet-controller"), |l| {
        l["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z")
    });
    let (ra, rb) = tokio::join!(a.round(at(100)), b.round(at(100)));
    let lease = api.get(&format!("{LEASES}/privnet-controller")).unwrap();
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap();
    assert_eq!(ra.unwrap(), holder == "pod-a");
    assert_eq!(rb.unwrap(), holder == "pod-b");
    // The holder releases on shutdown: the other leads at once, long before
    // the lease would have expired. A non-holder's release changes nothing.
    let (holder, other) = if holder == "pod-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert!(
        !other.round(at(101)).await.unwrap(),
        "control: lease is live"
    );
    other.release().await.unwrap();
    assert!(
        !other.round(at(101)).await.unwrap(),
        "not the holder: no release"
    );
    holder.release().await.unwrap();
    let lease = api.get(&format!("{LEASES}/privnet-controller")).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "");
    assert!(
        other.round(at(102)).await.unwrap(),
        "released: taken at once"
    );
}

/// A one-day self-signed certificate for `cn` from `openssl` (and its key),
/// written to `<dir>/<cn>.crt` and `<dir>/<cn>.key`.
fn self_signed(
    dir: &std::path::Path,
    cn: &str,
    san: Option<&str>,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let mut cmd = std::process::Command::new("openssl");
    cmd.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
    ])
    .arg("-subj")
    .arg(format!("/CN={cn}"));
    if let Some(san) = san {
        cmd.arg("-addext").arg(format!("subjectAltName={san}"));
    }
    let made = cmd
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

/// The TLS front end, as the API server reaches it: a certificate from
/// `openssl` (like the chart's Secret), `curl` verifying it against the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_front_end_answers_reviews_with_a_verified_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(
        dir.path(),
        "privnet-webhook",
        Some("DNS:localhost,IP:127.0.0.1"),
    );
    let (tls, reloading) = privnet_controller::webhook::tls_config_from_pem(&cert, &key).unwrap();

    let (_api, admitter) = setup(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(listener, Some(tls), Arc::new(admitter), async {
        let _ = stopped.await;
    }));
    let body = dir.path().join("review.json");
    std::fs::write(
        &body,
        serde_json::to_vec(&review("tls-1", "shop", web())).unwrap(),
    )
    .unwrap();
    let url = format!("https://127.0.0.1:{}/mutate", addr.port());
    let curl = |ca: &std::path::Path| {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                "-H",
                "content-type: application/json",
                "--cacert",
            ])
            .arg(ca)
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(&url)
            .output()
            .expect("curl runs")
    };
    let out = tokio::task::block_in_place(|| curl(&cert));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["response"]["uid"], "tls-1");
    assert_eq!(json["response"]["allowed"], true);
    // Negative control: a client trusting another CA refuses the handshake.
    let (other, _) = self_signed(dir.path(), "other", None);
    let refused = tokio::task::block_in_place(|| curl(&other));
    assert!(
        !refused.status.success(),
        "an unverified certificate must be refused"
    );

    // The Secret is rotated: the same files get a new pair, served without a
    // restart; clients trusting only the old one are now refused.
    assert!(!reloading.reload_if_changed().unwrap(), "unchanged files");
    let old = dir.path().join("old.crt");
    std::fs::copy(&cert, &old).unwrap();
    let (new_cert, new_key) = self_signed(
        dir.path(),
        "privnet-webhook-2",
        Some("DNS:localhost,IP:127.0.0.1"),
    );
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    assert!(
        reloading.reload_if_changed().unwrap(),
        "rotated files reload"
    );
    let out = tokio::task::block_in_place(|| curl(&new_cert));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tokio::task::block_in_place(|| curl(&old)).status.success());
    // A broken pair is refused and the current one stays in service.
    std::fs::write(&key, "not a key").unwrap();
    assert!(reloading.reload_if_changed().is_err());
    assert!(
        tokio::task::block_in_place(|| curl(&new_cert))
            .status
            .success()
    );
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_dry_run_previews_a_number_and_claims_nothing() {
    let (api, admitter) = setup(true);
    let mut r = review("dry", "shop", json!({ "privnet.io/application": "app" }));
    r.request.as_mut().unwrap().dry_run = true;
    let answer = serde_json::to_value(admit(&admitter, r.clone()).await).unwrap();
    let pod = patched(&r, &answer).expect("a dry run is still patched");
    assert_eq!(number(&pod), 1);
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()["privnet.io/process-type"],
        "web"
    );
    assert!(api.requests("POST", LEASES).is_empty(), "{:#?}", api.log());
    // Control: the same pod admitted for real claims number 1 with a Lease,
    // and the next dry run previews 2.
    let real = admit_one(&admitter, "real").await;
    assert_eq!(number(&real), 1);
    assert_eq!(api.requests("POST", LEASES).len(), 1);
    let answer = serde_json::to_value(admit(&admitter, r.clone()).await).unwrap();
    assert_eq!(number(&patched(&r, &answer).unwrap()), 2);
    assert_eq!(api.requests("POST", LEASES).len(), 1);
}

#[tokio::test]
async fn project_pods_get_the_multus_network_and_the_gateway_resolver() {
    let (api, admitter) = setup(true);
    api.edit("/apis/privnet.io/v1alpha1/privatenetworks/shop", |n| {
        n["status"]["gateway"] = json!("10.240.0.1")
    });
    let pod = admit_one(&admitter, "dns").await;
    let networks = &pod.metadata.annotations.as_ref().unwrap()["k8s.v1.cni.cncf.io/networks"];
    assert_eq!(networks, r#"[{"interface":"eth1","name":"privnet"}]"#);
    let spec = pod.spec.unwrap();
    assert_eq!(spec.dns_policy.as_deref(), Some("None"));
    let dns = spec.dns_config.unwrap();
    assert_eq!(dns.nameservers.unwrap(), ["10.240.0.1"]);
    assert_eq!(dns.searches.unwrap()[0], "shop.svc.cluster.local");
    // Control: a pod outside any project is left exactly as it was.
    let r = review("other", "elsewhere", web());
    let answer = serde_json::to_value(admit(&admitter, r.clone()).await).unwrap();
    assert!(patched(&r, &answer).is_none());
}
