//! A webhook receiver on 127.0.0.1 whose behaviour a test sets: answer, fail, hang, redirect,
//! refuse connections, stream an endless body. It records every request it gets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub enum Mode {
    Ok,
    Status(u16),
    /// `status` with `Retry-After: value`.
    RetryAfter(u16, String),
    /// Accept, read the request, never answer.
    Hang,
    /// 302 to `/elsewhere`.
    Redirect,
    /// 200 with a body that never ends.
    Endless,
    /// Close the listener: connections are refused.
    Refuse,
}

#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// What the receiver answered (0 when it did not).
    pub answered: u16,
}

impl Hit {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

struct Inner {
    mode: Mutex<Mode>,
    hits: Mutex<Vec<Hit>>,
    /// A queue of modes used once each before `mode` applies.
    script: Mutex<Vec<Mode>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(status: u16, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r
}

impl Receiver {
    pub async fn start() -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let inner = Arc::new(Inner {
            mode: Mutex::new(Mode::Ok),
            hits: Mutex::default(),
            script: Mutex::default(),
        });
        let r = Arc::new(Self { addr, inner, accept: Mutex::new(None) });
        r.serve(listener);
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn serve(&self, listener: TcpListener) {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let inner = inner.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(inner.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.accept.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// Change behaviour. `Refuse` closes the listener; leaving it binds the same port again.
    pub async fn set(&self, mode: Mode) {
        let was_refusing =
            matches!(*self.inner.mode.lock().unwrap_or_else(|p| p.into_inner()), Mode::Refuse);
        *self.inner.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode.clone();
        match (was_refusing, matches!(mode, Mode::Refuse)) {
            (false, true) => {
                let task = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(task) = task {
                    task.abort();
                    let _ = task.await;
                }
            }
            (true, false) => {
                let listener = loop {
                    match TcpListener::bind(self.addr).await {
                        Ok(l) => break l,
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                };
                self.serve(listener);
            }
            _ => {}
        }
    }

    /// Answer the next requests with these modes, in order, then with the current mode.
    pub fn script(&self, modes: Vec<Mode>) {
        let mut s = self.inner.script.lock().unwrap_or_else(|p| p.into_inner());
        *s = modes.into_iter().rev().collect();
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner.hits.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Wait until `pred` holds over the hits, up to `timeout`.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + timeout;
        loop {
            let hits = self.hits();
            if pred(&hits) || Instant::now() > deadline {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    inner: Arc<Inner>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let at = Instant::now();
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mode = {
        let scripted = inner.script.lock().unwrap_or_else(|p| p.into_inner()).pop();
        scripted.unwrap_or_else(|| inner.mode.lock().unwrap_or_else(|p| p.into_inner()).clone())
    };
    let (answered, response) = match mode {
        Mode::Ok | Mode::Refuse => (200, full(200, "ok")),
        Mode::Status(s) => (s, full(s, "no")),
        Mode::RetryAfter(s, after) => {
            let mut r = full(s, "later");
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_str(&after).unwrap_or(http::HeaderValue::from_static("1")),
            );
            (s, r)
        }
        Mode::Redirect => {
            let mut r = full(302, "moved");
            r.headers_mut()
                .insert(http::header::LOCATION, http::HeaderValue::from_static("/elsewhere"));
            (302, r)
        }
        Mode::Endless => {
            let chunks = futures::stream::repeat_with(|| {
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))
            });
            (200, Response::new(BodyExt::boxed(StreamBody::new(chunks))))
        }
        Mode::Hang => {
            inner.hits.lock().unwrap_or_else(|p| p.into_inner()).push(Hit {
                at,
                path,
                headers,
                body,
                answered: 0,
            });
            return std::future::pending().await;
        }
    };
    inner.hits.lock().unwrap_or_else(|p| p.into_inner()).push(Hit {
        at,
        path,
        headers,
        body,
        answered,
    });
    Ok(response)
}
