//! The route table. Paths are the public API: the control plane forwards them verbatim.

use crate::error::AgentError;
use crate::extract::{ok, BODY_LIMIT};
use crate::state::AppState;
use crate::{exec, files, fsops, listing, logs, processes, terminal, terminal_ws, watch};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde_json::json;

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/exec", post(exec::exec))
        .route("/exec/stream", post(exec::exec_stream))
        .route("/processes", post(processes::start).get(processes::list))
        .route("/processes/{pid}", get(processes::get).delete(processes::kill))
        .route("/processes/{pid}/logs", get(processes::logs))
        .route("/processes/{pid}/stream", get(processes::stream))
        .route("/logs", get(logs::logs))
        .route("/logs/stream", get(logs::stream))
        .route("/fs/write", post(files::write))
        .route("/fs/upload", put(files::upload).layer(DefaultBodyLimit::disable()))
        .route("/fs/write-many", post(files::write_many))
        .route("/fs/download", get(files::download))
        .route("/fs/stat", post(fsops::stat))
        .route("/fs/mkdir", post(fsops::mkdir))
        .route("/fs/move", post(fsops::rename))
        .route("/fs/remove", post(fsops::remove_body))
        .route("/files", post(files::write_legacy).get(listing::list).delete(fsops::remove_query))
        // Static segments win over the wildcard below, so these are not downloads.
        .route("/files/tree", get(listing::tree))
        .route("/files/watch", get(watch::watch))
        .route("/files/stat", post(fsops::stat))
        .route("/files/write-many", post(files::write_many))
        .route("/files/{*rest}", get(files::download_legacy))
        .route("/terminal", post(terminal::create_route).get(terminal::list))
        .route("/terminal/stream", get(terminal_ws::stream))
        .route("/terminal/{session_id}", delete(terminal::delete))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn health() -> Response {
    ok(StatusCode::OK, json!({"ready": true}))
}

async fn no_route() -> AgentError {
    AgentError::not_found("no such route")
}
