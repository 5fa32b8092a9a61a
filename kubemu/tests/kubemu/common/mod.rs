//! A kubemu server on loopback for one test: HTTPS with its own CA, a
//! kubeconfig, a kube client, the repository's CRDs.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config as KubeConfig};
use privnet_kubemu::{Config, Emulator, tls};
use tokio::sync::oneshot;

pub struct Server {
    pub emulator: Arc<Emulator>,
    pub url: String,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let certs = tls::generate(dir.path(), &[]).unwrap();
        let server_tls = tls::server_config(&certs).unwrap();
        let url = format!("https://{addr}");
        let kubeconfig = dir.path().join("kubeconfig");
        tls::write_kubeconfig(&kubeconfig, &url, &certs.ca).unwrap();
        let emulator = Emulator::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(privnet_kubemu::serve(
            listener,
            Some(server_tls),
            emulator.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            emulator,
            url,
            kubeconfig,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = KubeConfig::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        Client::try_from(config).unwrap()
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

/// Creates the repository's CRDs (`crds/*.yaml`).
pub async fn apply_crds(client: &Client) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
        api.create(&PostParams::default(), &crd).await.unwrap();
        n += 1;
    }
    assert_eq!(n, 3, "the repository has three CRDs");
}

/// Creates a namespace.
pub async fn namespace(client: &Client, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}
