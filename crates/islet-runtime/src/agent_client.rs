//! HTTP/1.1 to a sandbox's agent over its Unix socket: one connection per request, which
//! costs tens of microseconds and keeps long streams independent of each other.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// How long one health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot reach the agent: {0}")]
    Connect(std::io::Error),
    #[error("agent protocol error: {0}")]
    Http(#[from] hyper::Error),
}

/// A client for one sandbox's agent.
#[derive(Debug, Clone)]
pub struct AgentClient {
    socket: PathBuf,
}

impl AgentClient {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    /// Open a raw connection (for WebSocket upgrades, which need the stream itself).
    ///
    /// The socket's directory is writable from inside the sandbox, so the tenant could put a
    /// symlink where the socket should be (to another sandbox's agent, or any host socket).
    /// The path is therefore opened without following a final symlink, checked to be a
    /// socket, and connected to through that very file (`/proc/self/fd/N`). The directories
    /// above it belong to the host.
    pub async fn connect(&self) -> Result<UnixStream, AgentError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let pinned = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
            .open(&self.socket)
            .map_err(AgentError::Connect)?;
        let is_socket = pinned.metadata().map_err(AgentError::Connect)?.file_type().is_socket();
        if !is_socket {
            return Err(AgentError::Connect(std::io::Error::other(
                "the agent socket is not a socket",
            )));
        }
        let via = format!("/proc/self/fd/{}", pinned.as_raw_fd());
        let stream = UnixStream::connect(via).await.map_err(AgentError::Connect);
        drop(pinned);
        stream
    }

    /// Send one request; the response body streams from the agent.
    pub async fn send<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<Incoming>, AgentError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = self.connect().await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "agent connection ended");
            }
        });
        Ok(sender.send_request(request).await?)
    }

    /// `GET /health` answered 200.
    pub async fn healthy(&self) -> bool {
        let Ok(request) = http::Request::get("/health")
            .header(http::header::HOST, "agent")
            .body(Empty::<Bytes>::new())
        else {
            return false;
        };
        // Whatever answers on that socket is under the tenant's control: never wait long.
        let answer = tokio::time::timeout(HEALTH_TIMEOUT, async {
            let response = self.send(request).await.ok()?;
            let ok = response.status().is_success();
            let _ = response.into_body().collect().await;
            Some(ok)
        });
        matches!(answer.await, Ok(Some(true)))
    }

    /// Poll until the agent answers: every millisecond for the first 100 ms (a healthy agent
    /// answers within a few), then backing off to 20 ms.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(1);
        loop {
            if self.healthy().await {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                return Err(format!("no answer on {}", self.socket.display()));
            }
            tokio::time::sleep(delay).await;
            if start.elapsed() > Duration::from_millis(100) {
                delay = (delay * 2).min(Duration::from_millis(20));
            }
        }
    }
}
