//! `/healthz`, `/readyz` and Prometheus `/metrics` on a local port.
//! The listener and the shutdown signal are arguments, so tests run it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the endpoints report.
pub trait HealthSource: Send + Sync + 'static {
    /// Ready to serve CNI requests?
    fn ready(&self) -> Result<(), String>;
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
}

fn respond<H: HealthSource>(h: &H, path: &str) -> Response<Full<Bytes>> {
    let (status, body, ctype) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" => match h.ready() {
            Ok(()) => (StatusCode::OK, "ready\n".to_string(), "text/plain"),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{why}\n"),
                "text/plain",
            ),
        },
        "/metrics" => (
            StatusCode::OK,
            h.metrics(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_string(),
            "text/plain",
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Serves until `shutdown` resolves.
pub async fn serve<H: HealthSource>(
    listener: TcpListener,
    health: Arc<H>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let health = health.clone();
                async move { Ok::<_, Infallible>(respond(&*health, req.uri().path())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Fake(bool);
    impl HealthSource for Fake {
        fn ready(&self) -> Result<(), String> {
            if self.0 {
                Ok(())
            } else {
                Err("waiting for the mesh".into())
            }
        }
        fn metrics(&self) -> String {
            "privnet_attachments 3\n# EOF\n".into()
        }
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn reports_readiness_and_metrics() {
        for ready in [true, false] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, Arc::new(Fake(ready)), async {
                rx.await.ok();
            }));
            assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
            let r = get(addr, "/readyz").await;
            if ready {
                assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            } else {
                assert!(
                    r.starts_with("HTTP/1.1 503") && r.contains("waiting for the mesh"),
                    "{r}"
                );
            }
            assert!(
                get(addr, "/metrics")
                    .await
                    .contains("privnet_attachments 3")
            );
            assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
            tx.send(()).unwrap();
            task.await.unwrap();
        }
    }
}
