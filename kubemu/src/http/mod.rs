//! The HTTP(S) front end: hyper HTTP/1.1 over a listener passed in,
//! optionally wrapped in TLS, until the shutdown signal resolves.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request as HttpRequest, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::{Emulator, Reply, Request};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Turns a reply into an HTTP response.
fn response(reply: Reply) -> Response<Body> {
    match reply {
        Reply::Json(code, v) => Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&v).unwrap_or_default())).boxed_unsync())
            .unwrap_or_default(),
        Reply::Stream(rx) => {
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("transfer-encoding", "chunked")
                .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
                .unwrap_or_default()
        }
    }
}

async fn answer(
    em: Arc<Emulator>,
    req: HttpRequest<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let request = Request {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        content_type: header("content-type"),
        accept: header("accept"),
        body,
    };
    tracing::debug!(method = %request.method, path = %request.path, query = %request.query, "request");
    Ok(response(em.handle(request).await))
}

/// Serves `em` on `listener` (TLS when `tls` is given) until `shutdown`
/// resolves; open connections (watches included) are then dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    em: Arc<Emulator>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "failed to accept a connection");
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let em = em.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| answer(em.clone(), req));
            let http = hyper::server::conn::http1::Builder::new();
            let result = match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => http.serve_connection(TokioIo::new(tls), service).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "failed TLS handshake");
                        return;
                    }
                },
                None => http.serve_connection(TokioIo::new(stream), service).await,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
}
