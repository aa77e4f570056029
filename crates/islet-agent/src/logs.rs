//! `/logs`: the sandbox's output, every background process's lines in the order they came
//! (the last 1 MiB), as JSON or followed as SSE.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;

use crate::error::AgentError;
use crate::extract::{ok, Params};
use crate::process_table::LogLine;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LogsQuery {
    lines: Option<usize>,
}

fn line_json(l: &LogLine) -> serde_json::Value {
    json!({
        "at": l.at,
        "pid": l.pid,
        "stream": l.entry.kind.as_str(),
        "line": l.entry.line.text,
    })
}

/// `GET /logs?lines=N`: the last N lines (default 200, at most 10,000), oldest first, and the
/// same as one text.
pub(crate) async fn logs(
    State(state): State<AppState>,
    Params(q): Params<LogsQuery>,
) -> Result<Response, AgentError> {
    let n = q.lines.unwrap_or(200);
    if !(1..=10_000).contains(&n) {
        return Err(AgentError::validation("lines must be 1..=10000"));
    }
    let (lines, _) = state.processes.log().tail_and_follow(Some(n));
    let text: String = lines.iter().map(|l| format!("{}\n", l.entry.line.text)).collect();
    let entries: Vec<_> = lines.iter().map(line_json).collect();
    Ok(ok(StatusCode::OK, json!({ "lines": entries, "logs": text, "count": entries.len() })))
}

/// `GET /logs/stream`: the last lines, then every new one, as `event: log` frames.
pub(crate) async fn stream(State(state): State<AppState>) -> impl IntoResponse {
    let (recent, live) = state.processes.log().tail_and_follow(Some(200));
    let event = |l: &LogLine| {
        Ok::<_, Infallible>(Event::default().event("log").data(line_json(l).to_string()))
    };
    let replay = futures::stream::iter(recent.iter().map(event).collect::<Vec<_>>());
    // A follower too slow for the broadcast skips what it missed rather than stalling writers.
    let live =
        BroadcastStream::new(live).filter_map(move |l| async move { l.ok().map(|l| event(&l)) });
    Sse::new(replay.chain(live)).keep_alive(KeepAlive::default())
}
