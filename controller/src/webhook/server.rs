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
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{Admitter, admit};

/// Errors of the webhook server.
#[derive(Debug, thiserror::Error)]
pub enum WebhookServerError {
    /// The certificate or key could not be read.
    #[error("failed to read {path}")]
    Pem {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate and key do not form a valid config.
    #[error("failed to build the TLS configuration")]
    Tls(#[source] rustls::Error),
}

/// A rustls server config from PEM files.
pub fn tls_config_from_pem(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, WebhookServerError> {
    fn pem(p: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> WebhookServerError + '_ {
        move |source| WebhookServerError::Pem {
            path: p.display().to_string(),
            source,
        }
    }
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(pem(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem(key))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(WebhookServerError::Tls)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(WebhookServerError::Tls)?;
    Ok(Arc::new(config))
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
