//! The `/terminal` routes: create, list and end PTY sessions (attaching is `terminal_ws.rs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::AgentError;
use crate::extract::{ok, JsonBody};
use crate::state::AppState;
use crate::terminal_sessions::{self, CreateRequest};

pub(crate) async fn create_route(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<Response, AgentError> {
    let session = terminal_sessions::create(&state.terminals, req)?;
    Ok(ok(StatusCode::CREATED, session.view()))
}

pub(crate) async fn list(State(state): State<AppState>) -> Response {
    let views: Vec<Value> = state.terminals.list().iter().map(|s| s.view()).collect();
    ok(StatusCode::OK, views)
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AgentError> {
    state.terminals.remove(&id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
