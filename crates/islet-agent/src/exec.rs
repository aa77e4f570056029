//! `POST /exec` (collect everything) and `POST /exec/stream` (SSE, line by line).

use crate::command::{self, Running, Spec, Step, StreamKind};
use crate::error::AgentError;
use crate::extract::{ok, JsonBody};
use crate::lines::LineSplitter;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const DEFAULT_TIMEOUT_SECS: f64 = 60.0;
pub(crate) const MAX_TIMEOUT_SECS: u64 = 3600;
const OUTPUT_CAP: usize = 16 * 1024 * 1024;
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub(crate) struct ExecRequest {
    command: Option<String>,
    cwd: Option<String>,
    env: Option<HashMap<String, String>>,
    timeout: Option<f64>,
    timeout_sec: Option<f64>,
}

pub(crate) struct Prepared {
    pub command: String,
    pub cwd: std::path::PathBuf,
    pub env: HashMap<String, String>,
}

/// Validates the fields `/exec` and `/processes` share.
pub(crate) fn prepare(
    command: Option<String>,
    cwd: Option<&str>,
    env: Option<HashMap<String, String>>,
) -> Result<Prepared, AgentError> {
    let command = command
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| AgentError::validation("command is required and must not be empty"))?;
    if command.contains('\0') {
        return Err(AgentError::validation("command must not contain NUL bytes"));
    }
    Ok(Prepared { command, cwd: command::resolve_cwd(cwd)?, env: env.unwrap_or_default() })
}

/// Seconds from the request; `max` bounds it when set.
pub(crate) fn timeout(raw: Option<f64>, max: Option<u64>) -> Result<Option<Duration>, AgentError> {
    let Some(secs) = raw else { return Ok(None) };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(AgentError::validation("timeout must be a positive number of seconds"));
    }
    if let Some(max) = max.filter(|m| secs > *m as f64) {
        return Err(AgentError::TimeoutTooLong { requested: secs, max });
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

fn start(req: ExecRequest) -> Result<(Running, Instant), AgentError> {
    let p = prepare(req.command, req.cwd.as_deref(), req.env)?;
    let limit = timeout(
        Some(req.timeout.or(req.timeout_sec).unwrap_or(DEFAULT_TIMEOUT_SECS)),
        Some(MAX_TIMEOUT_SECS),
    )?;
    let spec = Spec { command: &p.command, cwd: p.cwd, env: &p.env };
    Ok((command::spawn(&spec, limit)?, Instant::now()))
}

#[derive(Default)]
struct Capped {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Capped {
    fn push(&mut self, data: &[u8]) {
        let room = OUTPUT_CAP.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

pub(crate) async fn exec(JsonBody(req): JsonBody<ExecRequest>) -> Result<Response, AgentError> {
    let (mut running, started) = start(req)?;
    let (mut out, mut err) = (Capped::default(), Capped::default());
    loop {
        match running.next().await {
            Step::Output(chunk) => match chunk.kind {
                StreamKind::Stdout => out.push(&chunk.data),
                StreamKind::Stderr => err.push(&chunk.data),
            },
            Step::Exited { exit_code, timed_out } => {
                let body = json!({
                    "stdout": out.text(),
                    "stderr": err.text(),
                    "exit_code": exit_code,
                    "duration_ms": started.elapsed().as_millis() as u64,
                    "timed_out": timed_out,
                    "stdout_truncated": out.truncated,
                    "stderr_truncated": err.truncated,
                });
                return Ok(ok(StatusCode::OK, body));
            }
        }
    }
}

pub(crate) async fn exec_stream(
    JsonBody(req): JsonBody<ExecRequest>,
) -> Result<Response, AgentError> {
    let (running, started) = start(req)?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(stream_task(running, started, tx));
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive"))
        .into_response())
}

fn line_event(kind: StreamKind, text: &str) -> Event {
    Event::default()
        .event(kind.as_str())
        .data(json!({ "type": kind.as_str(), "line": text }).to_string())
}

async fn stream_task(
    mut running: Running,
    started: Instant,
    tx: mpsc::Sender<Result<Event, Infallible>>,
) {
    let mut splitters = [LineSplitter::default(), LineSplitter::default()];
    loop {
        let step = tokio::select! {
            step = running.next() => step,
            // Client gone: dropping `running` kills the process group.
            _ = tx.closed() => return,
        };
        match step {
            Step::Output(chunk) => {
                let splitter = &mut splitters[chunk.kind as usize];
                for line in splitter.push(&chunk.data) {
                    if tx.send(Ok(line_event(chunk.kind, &line.text))).await.is_err() {
                        return;
                    }
                }
            }
            Step::Exited { exit_code, timed_out } => {
                for (kind, splitter) in
                    [StreamKind::Stdout, StreamKind::Stderr].into_iter().zip(splitters.iter_mut())
                {
                    if let Some(tail) = splitter.finish() {
                        let _ = tx.send(Ok(line_event(kind, &tail.text))).await;
                    }
                }
                let exit = json!({
                    "type": "exit",
                    "exit_code": exit_code,
                    "duration_ms": started.elapsed().as_millis() as u64,
                    "timed_out": timed_out,
                });
                let _ = tx.send(Ok(Event::default().event("exit").data(exit.to_string()))).await;
                return;
            }
        }
    }
}
