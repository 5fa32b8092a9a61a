//! The real `kubectl` against the emulation, with the kubeconfig it wrote:
//! get, apply --server-side, label, -o json, delete, get -w, and a CEL
//! refusal worded as a cluster words it.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Server;
use privnet_kubemu::Config;
use serde_json::Value;

fn kubectl(server: &Server, args: &[&str]) -> Output {
    tokio::task::block_in_place(|| {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &server.kubeconfig)
            .output()
            .expect("kubectl runs")
    })
}

fn ok(server: &Server, args: &[&str]) -> String {
    let out = kubectl(server, args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(server: &Server, name: &str, text: &str) -> String {
    let path = server.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_applies_labels_watches_and_deletes() {
    let server = Server::start(Config::default()).await;
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds");
    let applied = ok(&server, &["apply", "--server-side", "-f", crds]);
    assert!(
        applied.contains(
            "customresourcedefinition.apiextensions.k8s.io/projects.privnet.io serverside-applied"
        ),
        "{applied}"
    );
    let ns = write(
        &server,
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
    );
    assert!(ok(&server, &["create", "-f", &ns]).contains("namespace/demo created"));
    let cm = write(
        &server,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\n  namespace: demo\ndata:\n  a: \"1\"\n",
    );
    assert!(
        ok(&server, &["apply", "--server-side", "-f", &cm])
            .contains("configmap/cm1 serverside-applied")
    );
    // Re-applying is idempotent.
    assert!(ok(&server, &["apply", "--server-side", "-f", &cm]).contains("serverside-applied"));
    let table = ok(&server, &["get", "configmaps", "-n", "demo"]);
    assert!(
        table.starts_with("NAME") && table.contains("cm1"),
        "{table}"
    );
    assert!(
        ok(&server, &["label", "cm", "cm1", "-n", "demo", "team=a"])
            .contains("configmap/cm1 labeled")
    );
    let json: Value = serde_json::from_str(&ok(
        &server,
        &["get", "cm", "-n", "demo", "-l", "team=a", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 1);
    assert_eq!(json["items"][0]["metadata"]["labels"]["team"], "a");
    assert_eq!(json["items"][0]["data"]["a"], "1");
    let none: Value = serde_json::from_str(&ok(
        &server,
        &["get", "cm", "-n", "demo", "-l", "team=b", "-o", "json"],
    ))
    .unwrap();
    assert!(
        none["items"].as_array().unwrap().is_empty(),
        "the selector filters"
    );
    // A Project breaking a CEL rule is refused with the rule's message.
    let bad = write(
        &server,
        "bad.yaml",
        "apiVersion: privnet.io/v1alpha1\nkind: Project\nmetadata:\n  name: dup\nspec:\n  namespaces: [Not_A_Label]\n",
    );
    let refused = kubectl(&server, &["apply", "--server-side", "-f", &bad]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("The Project \"dup\" is invalid: spec.namespaces[0]: Invalid value: \"string\": every namespace must be a DNS label"), "{stderr}");
    let good = write(
        &server,
        "good.yaml",
        "apiVersion: privnet.io/v1alpha1\nkind: Project\nmetadata:\n  name: fine\nspec:\n  namespaces: [a, b]\n",
    );
    assert!(
        ok(&server, &["apply", "--server-side", "-f", &good])
            .contains("project.privnet.io/fine serverside-applied")
    );
    // get -w: the current object, then a new one as it is created.
    let mut watch = tokio::task::block_in_place(|| {
        Command::new("kubectl")
            .args(["get", "cm", "-n", "demo", "-w", "--output-watch-events"])
            .env("KUBECONFIG", &server.kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl runs")
    });
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        tokio::task::block_in_place(|| {
            loop {
                let line = lines
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|_| panic!("no {what} from kubectl get -w"));
                if line.contains(what) {
                    return line;
                }
            }
        })
    };
    assert!(next("cm1").contains("ADDED"));
    let cm2 = write(
        &server,
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm2\n  namespace: demo\n",
    );
    ok(&server, &["apply", "--server-side", "-f", &cm2]);
    assert!(next("cm2").contains("ADDED"));
    assert!(
        ok(&server, &["delete", "cm", "cm1", "-n", "demo"]).contains("configmap \"cm1\" deleted")
    );
    assert!(next("cm1").contains("DELETED"));
    watch.kill().unwrap();
    watch.wait().unwrap();
    let missing = kubectl(&server, &["get", "cm", "cm1", "-n", "demo"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("Error from server (NotFound): configmaps \"cm1\" not found")
    );
    server.stop().await;
}
