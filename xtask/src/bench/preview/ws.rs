//! WebSocket message round trip: one connection through the proxy to the backend's echo, one
//! 32-byte text message at a time; each sample is send → its echo back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use hyper::header::HOST;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::super::signals;
use super::load::{Outcome, Shape, Tally, TOKEN_HEADER};

const MESSAGE: &str = "islet-bench-websocket-echo-32byt";
const TIMEOUT: Duration = Duration::from_secs(10);

/// `warmup` untimed echoes, then `echoes` timed ones.
pub(super) async fn round_trips(
    addr: SocketAddr,
    shape: &Shape,
    warmup: usize,
    echoes: usize,
) -> anyhow::Result<Outcome> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut request = format!("ws://{addr}/ws").into_client_request()?;
    request.headers_mut().insert(HOST, shape.host().clone());
    request.headers_mut().insert(TOKEN_HEADER, shape.token().clone());
    let (mut socket, _) =
        tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, tcp))
            .await
            .context("WebSocket handshake timed out")?
            .context("WebSocket handshake")?;
    let mut tally = Tally::default();
    let mut timed_from = None;
    for i in 0..warmup + echoes {
        if signals::stopping() {
            break;
        }
        let sent = Instant::now();
        if i == warmup {
            timed_from = Some(sent);
        }
        let echoed = tokio::time::timeout(TIMEOUT, async {
            socket.send(Message::text(MESSAGE)).await?;
            loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) if text.as_str() == MESSAGE => return Ok(()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(other)) => bail!("unexpected message {other:?}"),
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("the connection closed"),
                }
            }
        })
        .await
        .context("no echo within 10 s")
        .and_then(|r| r);
        let done = Instant::now();
        match echoed {
            Ok(()) if i >= warmup => tally.latency_ms.push((done - sent).as_secs_f64() * 1000.0),
            Ok(()) => {}
            // The connection is in doubt after a failure: report what was measured so far.
            Err(e) => {
                tally.error(&e);
                break;
            }
        }
    }
    let _ = socket.close(None).await;
    let seconds = timed_from.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok(tally.outcome(seconds, None))
}
