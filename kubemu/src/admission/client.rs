//! Calls one webhook: POST of an AdmissionReview over TLS, trusting only
//! the webhook's `caBundle`, within its timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use crate::Config;

/// Why a webhook could not be called.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The client configuration is unusable.
    #[error("failed to read the webhook's client configuration: {0}")]
    Config(String),
    /// No answer within the timeout.
    #[error("failed to call webhook: context deadline exceeded ({0:?})")]
    Timeout(Duration),
    /// Connection, TLS or HTTP failure.
    #[error("failed to call webhook: {0}")]
    Transport(String),
    /// An answer that is not an AdmissionReview.
    #[error("failed to decode the webhook's answer: {0}")]
    Decode(String),
}

/// Where a webhook is: address, TLS name and path.
#[derive(Debug, Clone)]
pub struct Target {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// Name the certificate must be valid for.
    pub server_name: String,
    /// Path and query.
    pub path: String,
}

fn target(config: &Config, client: &Value) -> Result<Target, CallError> {
    if let Some(url) = client["url"].as_str() {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| CallError::Config(format!("url {url:?}: {e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| CallError::Config("url without a host".into()))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let addr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => config
                .service_hosts
                .get(&host)
                .copied()
                .ok_or_else(|| CallError::Config(format!("unknown host {host:?}")))?,
        };
        let path = uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into());
        return Ok(Target {
            addr,
            server_name: host,
            path,
        });
    }
    let svc = &client["service"];
    let (Some(name), Some(ns)) = (svc["name"].as_str(), svc["namespace"].as_str()) else {
        return Err(CallError::Config("neither url nor service".into()));
    };
    let host = format!("{name}.{ns}.svc");
    let addr = config.service_hosts.get(&host).copied().ok_or_else(|| {
        CallError::Config(format!("service {host} has no address in the emulation"))
    })?;
    Ok(Target {
        addr,
        server_name: host,
        path: svc["path"].as_str().unwrap_or("/").to_string(),
    })
}

fn tls(client: &Value) -> Result<tokio_rustls::TlsConnector, CallError> {
    let bundle = client["caBundle"]
        .as_str()
        .ok_or_else(|| CallError::Config("no caBundle".into()))?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .map_err(|e| CallError::Config(format!("caBundle is not base64: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| CallError::Config(format!("caBundle: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| CallError::Config(format!("caBundle: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| CallError::Config(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn post(
    t: Target,
    connector: tokio_rustls::TlsConnector,
    body: Vec<u8>,
) -> Result<Value, CallError> {
    let transport = |e: &dyn std::fmt::Display| {
        CallError::Transport(format!("Post \"https://{}{}\": {e}", t.server_name, t.path))
    };
    let tcp = tokio::net::TcpStream::connect(t.addr)
        .await
        .map_err(|e| transport(&e))?;
    let name = ServerName::try_from(t.server_name.clone())
        .map_err(|e| CallError::Config(e.to_string()))?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| transport(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(&e))?;
    tokio::spawn(conn);
    let req = http::Request::post(&t.path)
        .header("host", &t.server_name)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| transport(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| transport(&e))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| transport(&e))?
        .to_bytes();
    if !status.is_success() {
        return Err(CallError::Transport(format!("webhook answered {status}")));
    }
    serde_json::from_slice(&bytes).map_err(|e| CallError::Decode(e.to_string()))
}

/// POSTs `review` to the webhook of `client` (a `clientConfig`).
pub async fn call(
    config: &Config,
    client: &Value,
    review: &Value,
    timeout: Duration,
) -> Result<Value, CallError> {
    let t = target(config, client)?;
    let connector = tls(client)?;
    let body = serde_json::to_vec(review).map_err(|e| CallError::Decode(e.to_string()))?;
    tokio::time::timeout(timeout, post(t, connector, body))
        .await
        .map_err(|_| CallError::Timeout(timeout))?
}
