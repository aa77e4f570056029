//! TCP tunnels into a sandbox over WebSocket (contract §8): `GET /sandboxes/{id}/tunnel/{port}`
//! relays the socket's bytes to `port` inside the sandbox (a database, a language server), and
//! `GET /sandboxes/{id}/ssh-tunnel` does the same to port 22 for an sshd the template runs.
//!
//! The connection to the port is made before the upgrade, so a port nothing listens on is a
//! plain `409 PORT_NOT_LISTENING` answer, not a socket that opens and closes at once. Bytes go
//! both ways as binary frames; a text frame from the client is sent as its UTF-8 bytes. The
//! tunnel keeps the sandbox active while it is open, and ends when either side closes, when the
//! sandbox stops running (checked every second) or when the server shuts down.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::forward::keep_active;
use crate::api::extract::{PortParam, RunningSandbox, TextPath, Upgrade};
use crate::error::ApiError;
use crate::state::AppState;

/// The port an sshd listens on.
const SSH_PORT: u16 = 22;
/// How long the sandbox's port has to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the sandbox may still send after the client closed its side.
const DRAIN: Duration = Duration::from_secs(5);
/// How often an open tunnel checks that its sandbox still runs.
const STATE_CHECK: Duration = Duration::from_secs(1);
/// The largest read relayed as one frame.
const CHUNK: usize = 64 * 1024;

/// `GET /sandboxes/{id}/tunnel/{port}` (WebSocket).
pub(crate) async fn tunnel(
    State(state): State<AppState>,
    RunningSandbox(record): RunningSandbox,
    TextPath(port, _): TextPath<PortParam>,
    Upgrade(upgrade): Upgrade,
) -> Result<Response, ApiError> {
    let port = parse_port(&port)?;
    open(&state, &record, port, upgrade).await
}

/// `GET /sandboxes/{id}/ssh-tunnel` (WebSocket): the tunnel to port 22.
pub(crate) async fn ssh_tunnel(
    State(state): State<AppState>,
    RunningSandbox(record): RunningSandbox,
    Upgrade(upgrade): Upgrade,
) -> Result<Response, ApiError> {
    open(&state, &record, SSH_PORT, upgrade).await
}

fn parse_port(raw: &str) -> Result<u16, ApiError> {
    raw.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::validation("port must be an integer from 1 to 65535", "port"))
}

async fn open(
    state: &AppState,
    record: &islet_store::SandboxRecord,
    port: u16,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let index = record.net_index.ok_or_else(|| ApiError::NotRunning("without a network".into()))?;
    let address = SocketAddr::new(IpAddr::V4(state.runtime.sandbox_ip(index)), port);
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            tracing::debug!(sandbox_id = %record.id, port, error = %e, "tunnel connect refused");
            return Err(ApiError::PortNotListening { port });
        }
        Err(_) => return Err(ApiError::PortNotListening { port }),
    };
    let _ = tcp.set_nodelay(true);
    let active = keep_active(state, record);
    let (store, sandbox) = (state.store.clone(), record.id.clone());
    let shutdown = state.shutdown.clone();
    Ok(upgrade.on_upgrade(move |socket| async move {
        tokio::select! {
            () = relay(socket, tcp) => {}
            () = left_running(&store, &sandbox) => {}
            () = shutdown.cancelled() => {}
        }
        tracing::debug!(sandbox_id = %sandbox, port, "tunnel closed");
        drop(active);
    }))
}

/// Returns once the sandbox is no longer running (stopped, paused, destroyed): its network is
/// gone or frozen, and an idle host-side socket would never learn it.
async fn left_running(store: &islet_store::Store, id: &islet_types::SandboxId) {
    loop {
        tokio::time::sleep(STATE_CHECK).await;
        match store.get_sandbox_any(id).await {
            Ok(r) if r.state == islet_types::SandboxState::Running => {}
            _ => return,
        }
    }
}

/// Pump bytes both ways until either side ends.
async fn relay(socket: WebSocket, tcp: TcpStream) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut tcp_rx, mut tcp_tx) = tcp.into_split();
    let inbound = async {
        while let Some(Ok(message)) = ws_rx.next().await {
            let bytes = match message {
                Message::Binary(b) => b,
                Message::Text(t) => bytes::Bytes::copy_from_slice(t.as_str().as_bytes()),
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => break,
            };
            if tcp_tx.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = tcp_tx.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match tcp_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]));
                    if ws_tx.send(frame).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.close().await;
    };
    // The sandbox closing its end ends the tunnel; the client closing its end leaves the
    // sandbox a moment to send its last bytes.
    tokio::select! {
        () = outbound => {}
        () = async { inbound.await; tokio::time::sleep(DRAIN).await } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_one_to_65535() {
        assert_eq!(parse_port("22").expect("valid"), 22);
        assert_eq!(parse_port("65535").expect("valid"), 65535);
        for bad in ["0", "65536", "-1", "abc", "", "22 "] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }
}
