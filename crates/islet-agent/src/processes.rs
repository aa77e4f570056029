//! Background processes: the `/processes` routes. Ids are OS pids.

use crate::command::{self, Spec};
use crate::error::AgentError;
use crate::exec::{prepare, timeout, KEEPALIVE};
use crate::extract::{ok, JsonBody, Params};
use crate::process_table::ProcEvent;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, Stream, StreamExt};
use nix::sys::signal::Signal;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

const TERM_GRACE: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
pub(crate) struct StartRequest {
    command: Option<String>,
    cwd: Option<String>,
    env: Option<HashMap<String, String>>,
    timeout: Option<f64>,
    timeout_sec: Option<f64>,
    name: Option<String>,
}

pub(crate) async fn start(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<StartRequest>,
) -> Result<Response, AgentError> {
    let p = prepare(req.command, req.cwd.as_deref(), req.env)?;
    // No upper bound here: long-running services are what background processes are for.
    let limit = timeout(req.timeout.or(req.timeout_sec), None)?;
    let spec = Spec { command: &p.command, cwd: p.cwd.clone(), env: &p.env };
    let running = command::spawn(&spec, limit)?;
    let proc = state.processes.adopt(running, p.command, req.name);
    Ok(ok(StatusCode::CREATED, proc.view()))
}

pub(crate) async fn list(State(state): State<AppState>) -> Response {
    let views: Vec<Value> = state.processes.all().iter().map(|p| p.view()).collect();
    ok(StatusCode::OK, views)
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path(pid): Path<String>,
) -> Result<Response, AgentError> {
    Ok(ok(StatusCode::OK, state.processes.get(&pid)?.view()))
}

#[derive(Deserialize)]
pub(crate) struct LogsQuery {
    tail: Option<usize>,
}

pub(crate) async fn logs(
    State(state): State<AppState>,
    Path(pid): Path<String>,
    Params(q): Params<LogsQuery>,
) -> Result<Response, AgentError> {
    let proc = state.processes.get(&pid)?;
    Ok(ok(StatusCode::OK, proc.logs(q.tail)))
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

/// Buffered output first, then live output, ending with the exit.
pub(crate) async fn stream(
    State(state): State<AppState>,
    Path(pid): Path<String>,
) -> Result<Response, AgentError> {
    let sub = state.processes.get(&pid)?.subscribe();
    let mut first: Vec<ProcEvent> = sub.replay.into_iter().map(ProcEvent::Line).collect();
    let live: BoxStream<'static, ProcEvent> = match sub.exit_code {
        Some(code) => {
            first.push(ProcEvent::Exit(code));
            stream::empty().boxed()
        }
        None => live_events(sub.live).boxed(),
    };
    let events = stream::iter(first).chain(live).map(|ev| Ok::<_, Infallible>(event_of(&ev)));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive"))
        .into_response())
}

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

pub(crate) async fn kill(
    State(state): State<AppState>,
    Path(pid): Path<String>,
) -> Result<Response, AgentError> {
    let proc = state.processes.get(&pid)?;
    if proc.exited() {
        state.processes.remove(proc.pid);
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
