//! TCP tunnels over WebSocket: bytes reach a port inside the sandbox and come back, a port
//! nothing listens on is refused before the upgrade, and another tenant cannot open one.

use futures::{SinkExt, StreamExt};
use islet_testkit::{Client, TestServer};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// An upper-casing line server on port 7000 inside the sandbox.
const SERVER: &str = "python3 -c \"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 7000)); s.listen(4)
while True:
    c, _ = s.accept()
    while True:
        b = c.recv(65536)
        if not b: break
        c.sendall(b.upper())
    c.close()
\"";

async fn open(
    client: &Client,
    path: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let url = format!("{}{path}", client.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", client.key).parse().unwrap());
    tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
}

fn refused(result: Result<impl Sized, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("not an HTTP refusal: {other}"),
        Ok(_) => panic!("the tunnel opened"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_relays_bytes_to_a_port_inside() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({})).await;
    let started = client
        .call("POST", &format!("/sandboxes/{id}/processes"), Some(json!({"command": SERVER})))
        .await;
    assert!(started.status < 300, "{:?}", started.body);

    // Before anything listens, and on a port nothing ever listens on: refused before the
    // upgrade, in the envelope.
    let closed = client.call("GET", &format!("/sandboxes/{id}/tunnel/7001"), None).await;
    assert_eq!(closed.status, 400, "no upgrade: {:?}", closed.body);
    assert_eq!(refused(open(&client, &format!("/sandboxes/{id}/tunnel/7001")).await), 409);
    assert_eq!(refused(open(&client, &format!("/sandboxes/{id}/ssh-tunnel")).await), 409);
    for bad in ["0", "70000", "http"] {
        assert_eq!(
            refused(open(&client, &format!("/sandboxes/{id}/tunnel/{bad}")).await),
            400,
            "{bad}"
        );
    }

    // Once the server listens, bytes go through both ways, binary and text frames alike.
    let mut ws = None;
    for _ in 0..100 {
        match open(&client, &format!("/sandboxes/{id}/tunnel/7000")).await {
            Ok(socket) => {
                ws = Some(socket);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let mut ws = ws.expect("the tunnel opened once the server listened");
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    ws.send(Message::Binary(big.clone().into())).await.unwrap();
    ws.send(Message::Text("done\n".into())).await.unwrap();
    let mut got = Vec::new();
    let want: Vec<u8> =
        big.iter().map(u8::to_ascii_uppercase).chain(b"DONE\n".iter().copied()).collect();
    while got.len() < want.len() {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("bytes back in time")
            .expect("the tunnel stays open")
            .unwrap();
        if let Message::Binary(b) = frame {
            got.extend_from_slice(&b);
        }
    }
    assert_eq!(got, want);
    ws.close(None).await.unwrap();

    // An open tunnel ends when its sandbox leaves `running`, even when nothing inside closes
    // the connection: a paused sandbox's server is frozen with its socket open.
    let mut ws = open(&client, &format!("/sandboxes/{id}/tunnel/7000")).await.unwrap();
    assert_eq!(client.status("POST", &format!("/sandboxes/{id}/pause"), None).await, 200);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the tunnel stayed open after its sandbox was paused");
    assert_eq!(client.status("POST", &format!("/sandboxes/{id}/resume"), None).await, 200);

    // Another tenant cannot tunnel into it: 404, as for every route of a foreign sandbox.
    let intruder = server.tenant(None).await;
    assert_eq!(refused(open(&intruder, &format!("/sandboxes/{id}/tunnel/7000")).await), 404);
    // A read-only key cannot either: a tunnel is a channel for input, like the terminal.
    let reader = client
        .call("POST", "/api-keys", Some(json!({"name": "r", "scopes": ["sandboxes:read"]})))
        .await;
    let reader = Client::new(&client.base, reader.text("/data/token"));
    assert_eq!(refused(open(&reader, &format!("/sandboxes/{id}/tunnel/7000")).await), 403);
    client.destroy(&id).await;
    server.stop().await;
}
