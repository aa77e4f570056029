//! The HTTP load generator: hyper's HTTP/1.1 client on keep-alive connections, opened before
//! the clock starts. Two shapes of load:
//! - closed loop: each connection sends its next request as soon as the last one answered
//!   (maximum throughput);
//! - open loop: requests are due at a fixed rate whatever the answers do, and latency counts
//!   from each request's due time, so a stall is charged to every request it delays (no
//!   coordinated omission). Idle connections take the due requests in turn.
//!
//! Every request carries the preview Host and `X-Preview-Token`, to the edge and to nginx
//! alike; an answer counts only if it is a 200 with the whole expected body.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use super::super::signals;
use super::super::stats::{summarize, Summary};

/// Longest wait for one answer before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an open-loop run may take past its last due time to drain what is in flight.
const DRAIN: Duration = Duration::from_secs(15);
const MIB: usize = 1 << 20;

/// What is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `GET /small`: 13 bytes.
    Small,
    /// `GET /big`: 1 MiB.
    Big,
    /// `POST /upload` of 1 MiB; the answer is the length read.
    Upload,
}

impl Kind {
    fn expected_len(self) -> usize {
        match self {
            Self::Small => 13,
            Self::Big => MIB,
            Self::Upload => MIB.to_string().len(),
        }
    }

    /// MiB carried by one request's body (either direction), for the MiB/s figures.
    fn mib(self) -> Option<f64> {
        match self {
            Self::Small => None,
            Self::Big | Self::Upload => Some(1.0),
        }
    }
}

/// The headers every request carries.
pub(super) struct Shape {
    host: HeaderValue,
    token: HeaderValue,
    upload: Bytes,
}

impl Shape {
    pub(super) fn new(host: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            host: HeaderValue::from_str(host)?,
            token: HeaderValue::from_str(token)?,
            upload: Bytes::from(vec![b'u'; MIB]),
        })
    }

    pub(super) fn host(&self) -> &HeaderValue {
        &self.host
    }

    pub(super) fn token(&self) -> &HeaderValue {
        &self.token
    }

    fn request(&self, kind: Kind) -> Request<Full<Bytes>> {
        let (method, path, body) = match kind {
            Kind::Small => (Method::GET, "/small", Bytes::new()),
            Kind::Big => (Method::GET, "/big", Bytes::new()),
            // A clone of `Bytes` shares the buffer: no 1 MiB copy per request.
            Kind::Upload => (Method::POST, "/upload", self.upload.clone()),
        };
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = Uri::from_static(path);
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(TOKEN_HEADER, self.token.clone());
        request
    }
}

pub(super) const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-preview-token");

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive connection, reopened after a failure.
struct Conn {
    addr: SocketAddr,
    sender: Option<Sender>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        let sender = connect(addr).await.ok();
        Self { addr, sender }
    }

    async fn exchange(&mut self, shape: &Shape, kind: Kind) -> anyhow::Result<()> {
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => self.sender.insert(connect(self.addr).await?),
        };
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, send(sender, shape, kind)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")),
        };
        if result.is_err() {
            // The connection's state is unknown after a failure: start afresh.
            self.sender = None;
        }
        result
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn send(sender: &mut Sender, shape: &Shape, kind: Kind) -> anyhow::Result<()> {
    sender.ready().await?;
    let response = sender.send_request(shape.request(kind)).await?;
    let status = response.status();
    // Count the body as it streams rather than collecting 1 MiB per answer.
    let mut body = response.into_body();
    let mut length = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            length += data.len();
        }
    }
    ensure!(status == 200, "HTTP {status}");
    if length != kind.expected_len() {
        bail!("body of {length} bytes, not {}", kind.expected_len());
    }
    Ok(())
}

/// What one side of a scenario measured.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Outcome {
    /// Answers that counted.
    pub requests: usize,
    pub errors: usize,
    /// Open loop: requests due that never finished (drain time ran out).
    pub unfinished: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub mib_per_second: Option<f64>,
    /// Open loop: the rate asked for.
    pub offered_per_second: Option<f64>,
    /// Closed loop: send → whole answer. Open loop: due time → whole answer.
    pub latency_ms: Option<Summary>,
    /// Open loop only: send → whole answer (without the wait for a free connection).
    pub service_ms: Option<Summary>,
    /// A few of the errors, for the report.
    pub first_errors: Vec<String>,
}

/// Samples and errors of one connection (merged afterwards).
#[derive(Default)]
pub(super) struct Tally {
    pub latency_ms: Vec<f64>,
    pub service_ms: Vec<f64>,
    pub errors: usize,
    pub first_errors: Vec<String>,
    pub last_done: Option<Instant>,
}

impl Tally {
    pub(super) fn error(&mut self, error: &anyhow::Error) {
        self.errors += 1;
        let text = format!("{error:#}");
        if self.first_errors.len() < 3 && !self.first_errors.contains(&text) {
            self.first_errors.push(text);
        }
    }

    fn merge(&mut self, other: Self) {
        self.latency_ms.extend(other.latency_ms);
        self.service_ms.extend(other.service_ms);
        self.errors += other.errors;
        for e in other.first_errors {
            if self.first_errors.len() < 3 && !self.first_errors.contains(&e) {
                self.first_errors.push(e);
            }
        }
        self.last_done = self.last_done.max(other.last_done);
    }

    pub(super) fn outcome(self, seconds: f64, mib: Option<f64>) -> Outcome {
        let requests = self.latency_ms.len();
        let per_second = if seconds > 0.0 { requests as f64 / seconds } else { 0.0 };
        Outcome {
            requests,
            errors: self.errors,
            unfinished: 0,
            seconds,
            per_second,
            mib_per_second: mib.map(|m| m * per_second),
            offered_per_second: None,
            latency_ms: summarize(&self.latency_ms),
            service_ms: summarize(&self.service_ms),
            first_errors: self.first_errors,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn open_all(addr: SocketAddr, connections: usize) -> Vec<Conn> {
    let opening: Vec<_> = (0..connections).map(|_| tokio::spawn(Conn::open(addr))).collect();
    let mut conns = Vec::with_capacity(connections);
    for task in opening {
        conns.push(match task.await {
            Ok(conn) => conn,
            // Opening never panics; if it somehow did, the connection is retried on first use.
            Err(_) => Conn { addr, sender: None },
        });
    }
    conns
}

/// Closed loop on `connections` connections for `duration`: maximum throughput. Only answers
/// completed within the window count.
pub(super) async fn closed(
    addr: SocketAddr,
    shape: Arc<Shape>,
    kind: Kind,
    connections: usize,
    duration: Duration,
) -> Outcome {
    let conns = open_all(addr, connections).await;
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let shape = shape.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline && !signals::stopping() {
                    let sent = Instant::now();
                    let result = conn.exchange(&shape, kind).await;
                    let done = Instant::now();
                    if done > deadline {
                        break;
                    }
                    match result {
                        Ok(()) => tally.latency_ms.push(ms(done - sent)),
                        Err(e) => {
                            tally.error(&e);
                            // Not a hot loop against a target that refuses everything.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        if let Ok(tally) = task.await {
            total.merge(tally);
        }
    }
    let seconds = start.elapsed().min(duration).as_secs_f64();
    total.outcome(seconds, kind.mib())
}

/// Open loop: `rate` requests per second due over `duration`, taken by whichever of the
/// `connections` is free. Latency counts from each request's due time.
pub(super) async fn open(
    addr: SocketAddr,
    shape: Arc<Shape>,
    kind: Kind,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> Outcome {
    let conns = open_all(addr, connections).await;
    let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let due_rx = Arc::new(tokio::sync::Mutex::new(due_rx));
    let tallies: Vec<Arc<Mutex<Tally>>> = (0..connections).map(|_| Arc::default()).collect();
    let mut workers: Vec<_> = conns
        .into_iter()
        .zip(&tallies)
        .map(|(mut conn, tally)| {
            let (shape, due_rx, tally) = (shape.clone(), due_rx.clone(), tally.clone());
            tokio::spawn(async move {
                loop {
                    // The lock is fair: idle connections queue for the next due request.
                    let due = due_rx.lock().await.recv().await;
                    let Some(due) = due else { break };
                    let sent = Instant::now();
                    let result = conn.exchange(&shape, kind).await;
                    let done = Instant::now();
                    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                    match result {
                        Ok(()) => {
                            tally.latency_ms.push(ms(done - due));
                            tally.service_ms.push(ms(done - sent));
                            tally.last_done = Some(done);
                        }
                        Err(e) => tally.error(&e),
                    }
                }
            })
        })
        .collect();
    let start = Instant::now() + Duration::from_millis(10);
    // A thread of its own for the schedule: tokio's timer rounds to whole milliseconds, which
    // would bunch requests and add up to 1 ms to every latency; a thread's sleep is far finer.
    let pacer = tokio::task::spawn_blocking(move || pace(&due_tx, start, rate, duration));
    let scheduled = pacer.await.unwrap_or(0);
    let drained = tokio::time::timeout(DRAIN, async {
        for worker in &mut workers {
            let _ = worker.await;
        }
    })
    .await;
    if drained.is_err() {
        for worker in &workers {
            worker.abort();
        }
    }
    let mut total = Tally::default();
    for tally in tallies {
        let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
        total.merge(tally);
    }
    let seconds = total
        .last_done
        .map_or(duration, |done| done.saturating_duration_since(start))
        .max(duration)
        .as_secs_f64();
    let counted = total.latency_ms.len() + total.errors;
    let mut outcome = total.outcome(seconds, kind.mib());
    outcome.unfinished = scheduled.saturating_sub(counted);
    outcome.offered_per_second = Some(rate);
    outcome
}

/// Send each due time into `due` when it comes; returns how many were sent.
fn pace(
    due: &tokio::sync::mpsc::UnboundedSender<Instant>,
    start: Instant,
    rate: f64,
    duration: Duration,
) -> usize {
    let end = start + duration;
    let mut sent = 0;
    loop {
        let at = start + Duration::from_secs_f64(sent as f64 / rate);
        if at >= end || signals::stopping() {
            return sent;
        }
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        if due.send(at).is_err() {
            return sent;
        }
        sent += 1;
    }
}

/// One request of `kind` on a fresh connection: whether the target serves it at all.
pub(super) async fn probe(addr: SocketAddr, shape: &Shape, kind: Kind) -> anyhow::Result<()> {
    let mut conn = Conn { addr, sender: Some(connect(addr).await?) };
    conn.exchange(shape, kind).await
}
