//! The unix-socket server the CNI plugin talks to (protocol in
//! `privnet_core::rpc`). Request handling is behind [`RpcHandler`] so the
//! server is tested with a fake and the agent logic without a socket.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use privnet_core::rpc::{ErrorKind, Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Longest request accepted (a GC list of a few thousand keys fits).
const MAX_REQUEST: usize = 4 << 20;

/// Errors of the RPC server.
#[derive(Debug, thiserror::Error)]
pub enum RpcServerError {
    /// Creating the socket failed.
    #[error("failed to bind the agent socket {path}")]
    Bind {
        /// Socket path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where a handler may send a first answer before its final one (Attach
/// with `answerEarly`); both are written, one line each.
pub type Early = Option<tokio::sync::oneshot::Sender<Response>>;

/// Answers one request.
pub trait RpcHandler: Send + Sync + 'static {
    /// Handles `req`; may answer early on `early`.
    fn handle(&self, req: Request, early: Early) -> impl Future<Output = Response> + Send;
}

/// Binds the agent socket at `path`: parent directory 0700, socket 0600,
/// a stale socket from a previous run replaced.
pub fn bind(path: &Path) -> Result<UnixListener, RpcServerError> {
    let err = |source| RpcServerError::Bind {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Serves connections until `shutdown` resolves.
pub async fn serve<H: RpcHandler>(
    listener: UnixListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_one(stream, &*handler).await {
                            tracing::debug!(error = %e, "agent socket connection failed");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "failed to accept on the agent socket"),
            }
        }
    }
}

async fn serve_one<H: RpcHandler>(stream: UnixStream, handler: &H) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
    reader.read_until(b'\n', &mut line).await?;
    let response = match serde_json::from_slice::<Request>(&line) {
        Ok(req) => {
            let (tx, mut first) = tokio::sync::oneshot::channel();
            let handling = handler.handle(req, Some(tx));
            tokio::pin!(handling);
            let mut answered_early = false;
            let response = tokio::select! {
                biased;
                Ok(early) = &mut first => {
                    answered_early = true;
                    write_line(&mut write, &early).await?;
                    handling.await
                }
                response = &mut handling => response,
            };
            // An early answer sent in the handler's last poll goes first.
            if !answered_early && let Ok(early) = first.try_recv() {
                write_line(&mut write, &early).await?;
            }
            response
        }
        Err(e) => Response::Error {
            kind: ErrorKind::Invalid,
            message: format!("failed to decode the request: {e}"),
        },
    };
    write_line(&mut write, &response).await?;
    write.shutdown().await
}

async fn write_line(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(response).expect("responses serialize");
    out.push(b'\n');
    write.write_all(&out).await
}

use tokio::io::AsyncReadExt as _;

#[cfg(test)]
mod tests {
    use super::*;
    use privnet_core::rpc::AttachmentKey;

    struct Echo;
    impl RpcHandler for Echo {
        async fn handle(&self, req: Request, early: Early) -> Response {
            match req {
                Request::Status => Response::Ready,
                // Two answers: an early one, then the final one.
                Request::Release(k) if k.container_id == "two" => {
                    let _ = early.unwrap().send(Response::Ready);
                    Response::Released { freed: 2 }
                }
                Request::Release(_) => Response::Released { freed: 1 },
                _ => Response::Error {
                    kind: ErrorKind::Internal,
                    message: "unexpected".into(),
                },
            }
        }
    }

    async fn call(path: &Path, body: &[u8]) -> Response {
        let mut s = UnixStream::connect(path).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        serde_json::from_str(&out).unwrap()
    }

    #[tokio::test]
    async fn serves_requests_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/agent.sock");
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(Echo), async {
            rx.await.ok();
        }));
        assert_eq!(call(&path, b"{\"op\":\"status\"}\n").await, Response::Ready);
        let rel = serde_json::to_vec(&Request::Release(AttachmentKey {
            container_id: "c".into(),
            ifname: "eth1".into(),
        }))
        .unwrap();
        assert_eq!(
            call(&path, &[rel, b"\n".to_vec()].concat()).await,
            Response::Released { freed: 1 }
        );
        let two = serde_json::to_vec(&Request::Release(AttachmentKey {
            container_id: "two".into(),
            ifname: "eth1".into(),
        }))
        .unwrap();
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(&[two, b"\n".to_vec()].concat()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let lines: Vec<Response> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, [Response::Ready, Response::Released { freed: 2 }]);
        match call(&path, b"not json\n").await {
            Response::Error {
                kind: ErrorKind::Invalid,
                message,
            } => assert!(message.contains("decode"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
        tx.send(()).unwrap();
        server.await.unwrap();
        // A second bind replaces the stale socket file.
        bind(&path).unwrap();
    }
}
