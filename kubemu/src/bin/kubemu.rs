//! Runs the emulated API server standalone: `kubemu --dir /tmp/kubemu
//! --listen 127.0.0.1:6443 [--crds crds/]` writes `ca.crt` and
//! `kubeconfig` in the directory, applies the CRDs, and serves until Ctrl-C.

use std::path::PathBuf;

mod run {
    use std::path::PathBuf;
    use std::sync::Arc;

    use privnet_kubemu::{Config, Emulator, Request, tls};

    /// Applies every YAML document of every file in `dir` (CRDs first).
    pub async fn preload(em: &Arc<Emulator>, dir: &PathBuf) -> Result<(), String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("failed to read {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| format!("failed to read {}: {e}", f.display()))?;
            for doc in text.split("\n---") {
                let obj: serde_json::Value = match serde_yaml::from_str(doc) {
                    Ok(v) => v,
                    Err(e) => return Err(format!("failed to parse {}: {e}", f.display())),
                };
                if obj.is_null() {
                    continue;
                }
                let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions".to_string();
                let reply = em
                    .handle(Request {
                        method: http::Method::POST,
                        path,
                        query: String::new(),
                        content_type: "application/json".into(),
                        accept: "application/json".into(),
                        body: serde_json::to_vec(&obj).unwrap_or_default().into(),
                    })
                    .await;
                if let privnet_kubemu::Reply::Json(code, v) = reply
                    && code >= 300
                {
                    return Err(format!(
                        "failed to create {} from {}: {}",
                        obj["metadata"]["name"],
                        f.display(),
                        v["message"]
                    ));
                }
            }
        }
        Ok(())
    }

    pub async fn run(
        listen: std::net::SocketAddr,
        dir: PathBuf,
        crds: Option<PathBuf>,
        services: Vec<(String, std::net::SocketAddr)>,
    ) -> Result<(), String> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("failed to bind {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let certs = tls::generate(&dir, &[addr.ip().to_string()]).map_err(|e| e.to_string())?;
        let config = tls::server_config(&certs).map_err(|e| e.to_string())?;
        let kubeconfig = dir.join("kubeconfig");
        tls::write_kubeconfig(&kubeconfig, &format!("https://{addr}"), &certs.ca)
            .map_err(|e| e.to_string())?;
        let em = Emulator::new(Config {
            service_hosts: services.into_iter().collect(),
            ..Config::default()
        });
        if let Some(crds) = crds {
            preload(&em, &crds).await?;
        }
        println!(
            "kubemu serving on https://{addr}; KUBECONFIG={}",
            kubeconfig.display()
        );
        privnet_kubemu::serve(listener, Some(config), em, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        Ok(())
    }
}

/// Command line.
#[derive(clap::Parser)]
struct Args {
    /// Address to listen on (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: std::net::SocketAddr,
    /// Directory for the CA, the server certificate and the kubeconfig.
    #[arg(long)]
    dir: PathBuf,
    /// Directory of CRD manifests to serve from the start.
    #[arg(long)]
    crds: Option<PathBuf>,
    /// Where a webhook service is: `<name>.<namespace>.svc=<ip:port>` (repeatable).
    #[arg(long = "service-host", value_parser = service_host)]
    service_hosts: Vec<(String, std::net::SocketAddr)>,
}

fn service_host(s: &str) -> Result<(String, std::net::SocketAddr), String> {
    let (host, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected <name>.<namespace>.svc=<ip:port>, got {s:?}"))?;
    let addr = addr
        .parse()
        .map_err(|e| format!("failed to parse {addr:?}: {e}"))?;
    Ok((host.to_string(), addr))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = <Args as clap::Parser>::parse();
    match run::run(args.listen, args.dir, args.crds, args.service_hosts).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubemu: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
