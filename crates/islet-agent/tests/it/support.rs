//! Test harness: an agent on a socket in a temp dir, and a tiny HTTP client for it.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use islet_agent::CancellationToken;
use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::net::UnixStream;

pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "islet-agent-it-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) struct Agent {
    pub socket: PathBuf,
    /// Scratch space for the test's files, apart from the socket.
    pub root: PathBuf,
    shutdown: CancellationToken,
    _dir: TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) async fn within<T>(secs: u64, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut).await.expect("test step timed out")
}

/// Polls `check` until it returns Some, for at most `secs`.
pub(crate) async fn eventually<T, F, Fut>(secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(secs, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

impl Agent {
    pub(crate) async fn start() -> Self {
        let dir = TempDir::new();
        let socket = dir.path().join("run/agent.sock");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).expect("create root");
        let listener = islet_agent::bind_socket(&socket).expect("bind");
        let shutdown = CancellationToken::new();
        tokio::spawn(islet_agent::run(listener, shutdown.clone()));
        Self { socket, root, shutdown, _dir: dir }
    }

    /// An absolute path under the test's scratch root, as a string for JSON bodies.
    pub(crate) fn path(&self, rel: &str) -> String {
        self.root.join(rel).to_string_lossy().into_owned()
    }

    pub(crate) async fn send<B>(&self, req: Request<B>) -> Response<Incoming>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = UnixStream::connect(&self.socket).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("send request")
    }

    pub(crate) async fn raw(
        &self,
        method: Method,
        uri: &str,
        body: impl Into<Bytes>,
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "agent")
            .body(Full::new(body.into()))
            .expect("request");
        let resp = self.send(req).await;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, bytes)
    }

    /// Sends a JSON body (or none for `Value::Null`) and parses the JSON answer.
    pub(crate) async fn call(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        let bytes = if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) };
        let (status, _, bytes) = self.raw(method, uri, bytes).await;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        (status, value)
    }

    pub(crate) async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, uri, body).await
    }

    pub(crate) async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, Value::Null).await
    }

    /// Opens an SSE stream; panics unless it answers 200 with `text/event-stream`.
    pub(crate) async fn sse(&self, method: Method, uri: &str, body: Value) -> Sse {
        let bytes = if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) };
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "agent")
            .body(Full::new(bytes))
            .expect("request");
        let resp = self.send(req).await;
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        let ctype = resp.headers().get("content-type").cloned();
        assert_eq!(
            ctype.as_ref().and_then(|v| v.to_str().ok()),
            Some("text/event-stream"),
            "{uri}"
        );
        Sse { body: resp.into_body(), buf: String::new() }
    }
}

pub(crate) fn assert_error(status: StatusCode, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status.as_u16(), want_status, "body: {body}");
    let err = &body["error"];
    assert_eq!(err["code"], code, "body: {body}");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(err["retryable"], false, "{body}");
}

pub(crate) struct Sse {
    body: Incoming,
    buf: String,
}

#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: Value,
}

impl Sse {
    /// The next event (comments skipped); None when the stream ends.
    pub(crate) async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).expect("SSE data is JSON");
                return Some(SseEvent { event, data });
            }
            let frame = self.body.frame().await?.expect("SSE body");
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}
