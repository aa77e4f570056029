//! Background processes: `/processes` routes. Ids are OS pids.

use crate::command::{self, Running, Spec, Step, StreamKind};
use crate::error::AgentError;
use crate::exec::{prepare, timeout, KEEPALIVE};
use crate::extract::{now_rfc3339, ok, JsonBody, Params};
use crate::lines::LineSplitter;
use crate::logbuf::{Entry, LogBuf, LOG_CAP};
use crate::state::{lock, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use nix::sys::signal::Signal;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// Exited processes kept for inspection; the oldest are forgotten first.
const MAX_EXITED: usize = 256;
const TERM_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct ProcessTable {
    procs: Mutex<HashMap<i32, Arc<Proc>>>,
}

#[derive(Clone)]
enum ProcEvent {
    Line(Entry),
    Exit(i32),
}

pub struct Proc {
    pid: i32,
    command: String,
    name: Option<String>,
    started_at: String,
    inner: Mutex<Inner>,
    events: broadcast::Sender<ProcEvent>,
    done: watch::Sender<bool>,
}

struct Inner {
    log: LogBuf,
    exit_code: Option<i32>,
    ended_at: Option<String>,
}

impl Proc {
    fn view(&self) -> Value {
        let inner = lock(&self.inner);
        json!({
            "pid": self.pid,
            "state": if inner.exit_code.is_some() { "exited" } else { "running" },
            "exit_code": inner.exit_code,
            "command": self.command,
            "name": self.name,
            "started_at": self.started_at,
            "ended_at": inner.ended_at,
        })
    }

    fn exited(&self) -> bool {
        *self.done.borrow()
    }

    // Log and broadcast under one lock so a subscriber never misses or repeats a line.
    fn record(&self, entry: Entry) {
        let mut inner = lock(&self.inner);
        inner.log.push(entry.clone());
        let _ = self.events.send(ProcEvent::Line(entry));
    }

    fn finish(&self, exit_code: i32) {
        let mut inner = lock(&self.inner);
        inner.exit_code = Some(exit_code);
        inner.ended_at = Some(now_rfc3339());
        let _ = self.events.send(ProcEvent::Exit(exit_code));
        self.done.send_replace(true);
    }

    async fn wait_exit(&self, limit: Duration) -> bool {
        let mut rx = self.done.subscribe();
        let exited = tokio::time::timeout(limit, rx.wait_for(|d| *d)).await;
        exited.is_ok()
    }
}

impl ProcessTable {
    fn get(&self, raw_pid: &str) -> Result<Arc<Proc>, AgentError> {
        raw_pid
            .parse::<i32>()
            .ok()
            .and_then(|pid| lock(&self.procs).get(&pid).cloned())
            .ok_or_else(|| AgentError::not_found(format!("no such process: {raw_pid}")))
    }

    fn insert(&self, proc: Arc<Proc>) {
        let mut procs = lock(&self.procs);
        let mut exited: Vec<(String, i32)> = procs
            .values()
            .filter_map(|p| lock(&p.inner).ended_at.clone().map(|t| (t, p.pid)))
            .collect();
        if exited.len() >= MAX_EXITED {
            exited.sort();
            for (_, pid) in exited.iter().take(exited.len() + 1 - MAX_EXITED) {
                procs.remove(pid);
            }
        }
        procs.insert(proc.pid, proc);
    }
}

#[derive(Deserialize)]
pub struct StartRequest {
    command: Option<String>,
    cwd: Option<String>,
    env: Option<HashMap<String, String>>,
    timeout: Option<f64>,
    timeout_sec: Option<f64>,
    name: Option<String>,
}

pub async fn start(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<StartRequest>,
) -> Result<Response, AgentError> {
    let p = prepare(req.command, req.cwd.as_deref(), req.env)?;
    let limit = timeout(req.timeout.or(req.timeout_sec), None)?;
    let spec = Spec {
        command: &p.command,
        cwd: p.cwd.clone(),
        env: &p.env,
    };
    let running = command::spawn(&spec, limit)?;
    let proc = Arc::new(Proc {
        pid: running.pid,
        command: p.command,
        name: req.name,
        started_at: now_rfc3339(),
        inner: Mutex::new(Inner {
            log: LogBuf::new(LOG_CAP),
            exit_code: None,
            ended_at: None,
        }),
        events: broadcast::channel(1024).0,
        done: watch::channel(false).0,
    });
    state.processes.insert(proc.clone());
    tokio::spawn(drive(proc.clone(), running));
    Ok(ok(StatusCode::CREATED, proc.view()))
}

async fn drive(proc: Arc<Proc>, mut running: Running) {
    let mut splitters = [LineSplitter::default(), LineSplitter::default()];
    loop {
        match running.next().await {
            Step::Output(chunk) => {
                for line in splitters[chunk.kind as usize].push(&chunk.data) {
                    proc.record(Entry {
                        kind: chunk.kind,
                        line,
                    });
                }
            }
            Step::Exited { exit_code, .. } => {
                for (kind, s) in [StreamKind::Stdout, StreamKind::Stderr]
                    .into_iter()
                    .zip(splitters.iter_mut())
                {
                    if let Some(line) = s.finish() {
                        proc.record(Entry { kind, line });
                    }
                }
                proc.finish(exit_code);
                return;
            }
        }
    }
}

pub async fn list(State(state): State<AppState>) -> Response {
    let mut procs: Vec<Arc<Proc>> = lock(&state.processes.procs).values().cloned().collect();
    procs.sort_by_key(|p| p.pid);
    let views: Vec<Value> = procs.iter().map(|p| p.view()).collect();
    ok(StatusCode::OK, views)
}

pub async fn get(
    State(state): State<AppState>,
    Path(pid): Path<String>,
) -> Result<Response, AgentError> {
    Ok(ok(StatusCode::OK, state.processes.get(&pid)?.view()))
}

#[derive(Deserialize)]
pub struct LogsQuery {
    tail: Option<usize>,
}

pub async fn logs(
    State(state): State<AppState>,
    Path(pid): Path<String>,
    Params(q): Params<LogsQuery>,
) -> Result<Response, AgentError> {
    let proc = state.processes.get(&pid)?;
    let text = lock(&proc.inner).log.tail(q.tail);
    Ok(ok(StatusCode::OK, text))
}

fn event_of(ev: &ProcEvent) -> Event {
    match ev {
        ProcEvent::Line(e) => Event::default()
            .event(e.kind.as_str())
            .data(json!({ "type": e.kind.as_str(), "line": e.line.text }).to_string()),
        ProcEvent::Exit(code) => Event::default()
            .event("exit")
            .data(json!({ "type": "exit", "exit_code": code }).to_string()),
    }
}

pub async fn stream(
    State(state): State<AppState>,
    Path(pid): Path<String>,
) -> Result<Response, AgentError> {
    let proc = state.processes.get(&pid)?;
    let (replay, rx, exit_code) = {
        let inner = lock(&proc.inner);
        (
            inner.log.snapshot(),
            proc.events.subscribe(),
            inner.exit_code,
        )
    };
    let mut first: Vec<ProcEvent> = replay.into_iter().map(ProcEvent::Line).collect();
    let live: std::pin::Pin<Box<dyn Stream<Item = ProcEvent> + Send>> = match exit_code {
        Some(code) => {
            first.push(ProcEvent::Exit(code));
            Box::pin(stream::empty())
        }
        None => Box::pin(live_events(rx)),
    };
    let events = stream::iter(first)
        .chain(live)
        .map(|ev| Ok::<_, Infallible>(event_of(&ev)));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive"))
        .into_response())
}

/// Live events up to and including the exit.
fn live_events(rx: broadcast::Receiver<ProcEvent>) -> impl Stream<Item = ProcEvent> + Send {
    stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        loop {
            match rx.recv().await {
                Ok(ev @ ProcEvent::Exit(_)) => return Some((ev, None)),
                Ok(ev) => return Some((ev, Some(rx))),
                // A slow reader loses lines rather than holding up the process.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

pub async fn kill(
    State(state): State<AppState>,
    Path(pid): Path<String>,
) -> Result<Response, AgentError> {
    let proc = state.processes.get(&pid)?;
    if proc.exited() {
        lock(&state.processes.procs).remove(&proc.pid);
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    command::signal_group(proc.pid, Signal::SIGTERM);
    let deadline = Instant::now() + TERM_GRACE;
    // The group outlives its leader when children ignore SIGTERM; wait for all of it.
    while command::group_alive(proc.pid) {
        if Instant::now() >= deadline {
            command::signal_group(proc.pid, Signal::SIGKILL);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // So that a GET right after the 204 already reports the exit.
    proc.wait_exit(Duration::from_secs(3)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
