//! Client of the node agent's unix socket (protocol in [`privnet_core::rpc`]).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::time::{Instant, sleep, timeout};

use crate::error::CniError;
use privnet_core::rpc::{ErrorKind, Request, Response};

/// Pause between connection attempts while waiting for the agent.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Largest response accepted (an attachment is a few hundred bytes).
const MAX_RESPONSE: u64 = 1 << 20;

/// Failures talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Could not connect (agent down, socket missing).
    #[error("failed to connect to {path}: {source}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The exchange failed or timed out.
    #[error("failed to exchange with {path}: {source}")]
    Exchange {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The answer is not a protocol response.
    #[error("failed to decode the agent response: {0}")]
    Decode(#[source] serde_json::Error),
    /// The agent answered with an error.
    #[error("agent error ({kind:?}): {message}")]
    Agent {
        /// Kind.
        kind: ErrorKind,
        /// Message.
        message: String,
    },
    /// The agent answered with a response that does not fit the request.
    #[error("failed to understand the agent: unexpected response {0}")]
    Unexpected(String),
}

impl AgentError {
    /// The agent could not be reached at all (worth retrying).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Exchange { .. })
            || matches!(
                self,
                Self::Agent {
                    kind: ErrorKind::NotReady,
                    ..
                }
            )
    }

    /// The agent does not know the key (CHECK/DEL).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Agent {
                kind: ErrorKind::NotFound,
                ..
            }
        )
    }

    /// The pod is not privnet's (its webhook did not admit it).
    pub fn is_not_admitted(&self) -> bool {
        matches!(
            self,
            Self::Agent {
                kind: ErrorKind::NotAdmitted,
                ..
            }
        )
    }

    /// Maps to the plugin error for a verb talking to `socket`.
    pub fn into_cni(self, socket: &Path) -> CniError {
        match self {
            e if e.is_unreachable() => CniError::TryAgainLater {
                socket: socket.display().to_string(),
                reason: e.to_string(),
            },
            Self::Agent {
                kind: ErrorKind::UnknownNetwork | ErrorKind::Invalid | ErrorKind::NotAdmitted,
                message,
            } => CniError::config("network", message),
            Self::Agent {
                kind: ErrorKind::Exhausted,
                message,
            } => CniError::PoolExhausted { message },
            Self::Agent {
                kind: ErrorKind::NoSpace,
                message,
            } => CniError::NodeFull { message },
            Self::Agent {
                kind: ErrorKind::NotFound,
                message,
            } => CniError::CheckMismatch {
                what: format!("not attached: {message}"),
            },
            e => CniError::Internal(e.to_string()),
        }
    }
}

/// One agent endpoint with a per-exchange timeout.
#[derive(Debug, Clone)]
pub struct AgentClient {
    socket: PathBuf,
    timeout: Duration,
}

impl AgentClient {
    /// A client of `socket`; `timeout` bounds each connect and each exchange.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One request, one response (agent errors become [`AgentError::Agent`]).
    pub async fn call(&self, request: &Request) -> Result<Response, AgentError> {
        self.call_keeping(request).await.map(|(answer, _)| answer)
    }

    /// Like [`call`](Self::call), but waits for the agent to come up (socket
    /// missing, connection refused, not ready) until the timeout elapses.
    pub async fn call_with_retry(&self, request: &Request) -> Result<Response, AgentError> {
        self.call_with_retry_keeping(request)
            .await
            .map(|(answer, _)| answer)
    }

    /// [`call_with_retry`](Self::call_with_retry), keeping the connection
    /// for a final answer when the first is [`Response::Wire`].
    pub async fn call_with_retry_keeping(
        &self,
        request: &Request,
    ) -> Result<(Response, Pending), AgentError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.call_keeping(request).await {
                Err(e) if e.is_unreachable() && Instant::now() + RETRY_PAUSE < deadline => {
                    sleep(RETRY_PAUSE).await
                }
                other => return other,
            }
        }
    }

    async fn call_keeping(&self, request: &Request) -> Result<(Response, Pending), AgentError> {
        let stream = timeout(self.timeout, UnixStream::connect(&self.socket))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            .and_then(|r| r)
            .map_err(|source| AgentError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let mut line = serde_json::to_vec(request).map_err(AgentError::Decode)?;
        line.push(b'\n');
        let (read, mut write) = stream.into_split();
        let mut pending = Pending {
            client: self.clone(),
            reader: BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_RESPONSE)),
            _write: None,
        };
        let sent = async {
            write.write_all(&line).await?;
            write.flush().await
        };
        timeout(self.timeout, sent)
            .await
            .map_err(|_| pending.io_err(io::Error::new(io::ErrorKind::TimedOut, "send timed out")))?
            .map_err(|e| pending.io_err(e))?;
        pending._write = Some(write);
        let answer = pending.read().await?;
        Ok((answer, pending))
    }
}

/// The connection of an exchange, for an answer that follows the first.
#[derive(Debug)]
pub struct Pending {
    client: AgentClient,
    reader: BufReader<tokio::io::Take<tokio::net::unix::OwnedReadHalf>>,
    /// Kept open: the agent sees the plugin go away when it is dropped.
    _write: Option<tokio::net::unix::OwnedWriteHalf>,
}

impl Pending {
    fn io_err(&self, source: io::Error) -> AgentError {
        AgentError::Exchange {
            path: self.client.socket.clone(),
            source,
        }
    }

    /// Reads the next answer, within the client's timeout.
    pub async fn read(&mut self) -> Result<Response, AgentError> {
        let mut answer = String::new();
        timeout(self.client.timeout, self.reader.read_line(&mut answer))
            .await
            .map_err(|_| self.io_err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")))?
            .map_err(|e| self.io_err(e))?;
        if answer.trim().is_empty() {
            return Err(self.io_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed without answer",
            )));
        }
        match serde_json::from_str(&answer).map_err(AgentError::Decode)? {
            Response::Error { kind, message } => Err(AgentError::Agent { kind, message }),
            ok => Ok(ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::UnixListener;

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn round_trip_and_error_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        rt().block_on(async {
            let listener = UnixListener::bind(&path).unwrap();
            tokio::spawn(async move {
                for answer in [
                    r#"{"result":"ready"}"#,
                    r#"{"result":"error","kind":"unknownNetwork","message":"no network pn-x"}"#,
                ] {
                    let (s, _) = listener.accept().await.unwrap();
                    let (r, mut w) = s.into_split();
                    let mut line = String::new();
                    BufReader::new(r).read_line(&mut line).await.unwrap();
                    assert!(line.contains(r#""op":"status""#));
                    w.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
                }
            });
            let client = AgentClient::new(&path, Duration::from_secs(1));
            assert_eq!(
                client.call(&Request::Status).await.unwrap(),
                Response::Ready
            );
            let err = client.call(&Request::Status).await.unwrap_err();
            let cni = err.into_cni(&path);
            assert_eq!(cni.code(), 7);
            assert!(cni.to_string().contains("pn-x"));
        });
    }

    #[test]
    fn retry_gives_up_with_try_again_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.sock");
        rt().block_on(async {
            let client = AgentClient::new(&path, Duration::from_millis(200));
            let start = Instant::now();
            let err = client.call_with_retry(&Request::Status).await.unwrap_err();
            assert!(start.elapsed() >= Duration::from_millis(100));
            assert!(start.elapsed() < Duration::from_secs(2));
            assert_eq!(err.into_cni(&path).code(), 11);
        });
    }

    #[test]
    fn agent_kinds_map_to_codes() {
        let p = Path::new("/s");
        let agent = |kind| AgentError::Agent {
            kind,
            message: "m".into(),
        };
        assert_eq!(agent(ErrorKind::NotReady).into_cni(p).code(), 11);
        assert_eq!(agent(ErrorKind::UnknownNetwork).into_cni(p).code(), 7);
        assert_eq!(agent(ErrorKind::Invalid).into_cni(p).code(), 7);
        // Outside chained mode a pod the webhook did not admit is a config error.
        assert_eq!(agent(ErrorKind::NotAdmitted).into_cni(p).code(), 7);
        assert_eq!(agent(ErrorKind::Exhausted).into_cni(p).code(), 102);
        assert_eq!(agent(ErrorKind::NoSpace).into_cni(p).code(), 11);
        assert_eq!(agent(ErrorKind::NotFound).into_cni(p).code(), 103);
        assert_eq!(agent(ErrorKind::Internal).into_cni(p).code(), 999);
    }
}
