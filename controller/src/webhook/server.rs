//! The webhook's HTTPS server (rustls; certificate and key from PEM files
//! mounted from a Secret). Takes its listener and shutdown signal as
//! arguments so tests can run it.

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionReview;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::cert::ReloadingCert;
use super::{Admitter, admit};

/// Errors of the webhook server.
#[derive(Debug, thiserror::Error)]
pub enum WebhookServerError {
    /// The certificate or key is not valid PEM.
    #[error("failed to parse {path}")]
    Pem {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate or key file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate and key do not form a valid config.
    #[error("failed to build the TLS configuration")]
    Tls(#[source] rustls::Error),
}

/// A rustls server config serving `cert`, which reloads itself when its
/// files change (run [`ReloadingCert::watch`]).
pub fn tls_config(
    cert: Arc<ReloadingCert>,
) -> Result<Arc<rustls::ServerConfig>, WebhookServerError> {
    let config = rustls::ServerConfig::builder_with_provider(cert.provider())
        .with_safe_default_protocol_versions()
        .map_err(WebhookServerError::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    Ok(Arc::new(config))
}

/// A rustls server config from PEM files, with the reloading certificate
/// that backs it.
pub fn tls_config_from_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Arc<rustls::ServerConfig>, Arc<ReloadingCert>), WebhookServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let reloading = Arc::new(ReloadingCert::load(cert, key, provider)?);
    Ok((tls_config(reloading.clone())?, reloading))
}

async fn handle(admitter: Arc<Admitter>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("static parts")
    };
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/mutate") => {}
        (_, "/healthz") => return reply(StatusCode::OK, b"{}".to_vec()),
        _ => return reply(StatusCode::NOT_FOUND, b"{}".to_vec()),
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, b"{}".to_vec()),
    };
    let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("{{\"error\":{:?}}}", e.to_string()).into_bytes(),
            );
        }
    };
    let answer = admit(&admitter, review).await;
    reply(
        StatusCode::OK,
        serde_json::to_vec(&answer).expect("reviews serialize"),
    )
}

/// Serves HTTPS (`POST /mutate`) until `shutdown` resolves. With `tls`
/// `None` it serves plain HTTP (tests, or TLS terminated elsewhere).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    admitter: Arc<Admitter>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let admitter = admitter.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let admitter = admitter.clone();
                async move { Ok::<_, Infallible>(handle(admitter, req).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                },
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}
