//! `GET /sandboxes/{id}/terminal/stream`: the caller's WebSocket bridged to the agent's terminal
//! WebSocket. Frames pass through unchanged (raw PTY bytes as binary frames; JSON control
//! messages such as resize as text frames).

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as TMessage;

use super::forward::{keep_active, touch};
use crate::api::extract::{RunningSandbox, Upgrade};
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn stream(
    State(state): State<AppState>,
    // Ownership first: a foreign sandbox is 404 whatever the request looks like.
    RunningSandbox(record): RunningSandbox,
    RawQuery(query): RawQuery,
    Upgrade(upgrade): Upgrade,
) -> Result<Response, ApiError> {
    touch(&state, &record);
    let stream =
        state.runtime.agent(&record.id).connect().await.map_err(|_| ApiError::AgentUnavailable)?;
    let url = match query {
        Some(q) => format!("ws://agent/terminal/stream?{q}"),
        None => "ws://agent/terminal/stream".to_owned(),
    };
    let (agent, response) =
        tokio_tungstenite::client_async(url, stream).await.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 404 => {
                ApiError::NotFound("terminal session")
            }
            other => {
                tracing::warn!(error = %other, "terminal upgrade at the agent failed");
                ApiError::AgentUnavailable
            }
        })?;
    drop(response);
    let active = keep_active(&state, &record);
    Ok(upgrade.on_upgrade(move |client| async move {
        bridge(client, agent).await;
        drop(active);
    }))
}

async fn bridge<S>(client: WebSocket, agent: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client_tx, mut client_rx) = client.split();
    let (mut agent_tx, mut agent_rx) = agent.split();
    let upstream = async {
        while let Some(Ok(message)) = client_rx.next().await {
            let out = match message {
                Message::Binary(b) => TMessage::Binary(b),
                Message::Text(t) => TMessage::Text(t.as_str().into()),
                Message::Ping(p) => TMessage::Ping(p),
                Message::Pong(p) => TMessage::Pong(p),
                Message::Close(_) => break,
            };
            if agent_tx.send(out).await.is_err() {
                break;
            }
        }
        let _ = agent_tx.close().await;
    };
    let downstream = async {
        while let Some(Ok(message)) = agent_rx.next().await {
            let out = match message {
                TMessage::Binary(b) => Message::Binary(b),
                TMessage::Text(t) => Message::Text(t.as_str().into()),
                TMessage::Ping(p) => Message::Ping(p),
                TMessage::Pong(p) => Message::Pong(p),
                TMessage::Close(_) | TMessage::Frame(_) => break,
            };
            if client_tx.send(out).await.is_err() {
                break;
            }
        }
        let _ = client_tx.close().await;
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}
