//! `GET /terminal/stream`: a WebSocket attached to a PTY session.
//!
//! Server → client: binary frames of raw PTY output (scrollback first), text frames for
//! control (`session`, `exit`). Client → server: binary frames are keystrokes; text frames
//! are JSON `resize`/`input` messages, or keystrokes when they are anything else.

use crate::error::AgentError;
use crate::extract::Params;
use crate::state::AppState;
use crate::terminal_sessions::{self, CreateRequest, Session, TermEvent};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

#[derive(Deserialize)]
pub(crate) struct StreamQuery {
    session_id: Option<String>,
    cols: Option<u16>,
    rows: Option<u16>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Control {
    Resize { cols: u16, rows: u16 },
    Input { data: String },
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    Params(q): Params<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, AgentError> {
    let (session, created) = match q.session_id.filter(|id| !id.is_empty()) {
        Some(id) => {
            let session = state.terminals.get(&id)?;
            if let (Some(cols), Some(rows)) = (q.cols, q.rows) {
                session.resize(cols, rows)?;
            }
            (session, false)
        }
        None => {
            let req = CreateRequest { cols: q.cols, rows: q.rows, ..CreateRequest::default() };
            (terminal_sessions::create(&state.terminals, req)?, true)
        }
    };
    Ok(ws.on_upgrade(move |socket| attach(socket, session, created)))
}

fn exit_frame(code: i32) -> Message {
    Message::Text(json!({"type": "exit", "exit_code": code}).to_string().into())
}

async fn attach(socket: WebSocket, session: Arc<Session>, created: bool) {
    let (mut tx, mut rx) = socket.split();
    let mut attached = session.attach();
    if created {
        let hello = json!({"type": "session", "session_id": session.id}).to_string();
        if tx.send(Message::Text(hello.into())).await.is_err() {
            return;
        }
    }
    if tx.send(Message::Binary(attached.scrollback.clone())).await.is_err() {
        return;
    }
    if let Some(code) = attached.exit_code {
        let _ = tx.send(exit_frame(code)).await;
        let _ = tx.close().await;
        return;
    }
    loop {
        tokio::select! {
            event = attached.events.recv() => match event {
                Ok(TermEvent::Output(bytes)) => {
                    if tx.send(Message::Binary(bytes)).await.is_err() {
                        return;
                    }
                }
                Ok(TermEvent::Exit(code)) => {
                    let _ = tx.send(exit_frame(code)).await;
                    let _ = tx.close().await;
                    return;
                }
                // A client too slow to keep up skips output rather than stalling the shell.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    if session.write(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if handle_text(&session, text.as_str()).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn handle_text(session: &Session, text: &str) -> std::io::Result<()> {
    match serde_json::from_str::<Control>(text) {
        Ok(Control::Resize { cols, rows }) => {
            if let Err(e) = session.resize(cols, rows) {
                tracing::debug!(error = %e, "ignoring bad resize");
            }
            Ok(())
        }
        Ok(Control::Input { data }) => session.write(data.as_bytes()).await,
        Err(_) => session.write(text.as_bytes()).await,
    }
}
