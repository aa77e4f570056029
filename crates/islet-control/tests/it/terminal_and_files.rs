//! Terminals and large files through the control plane, as a tenant's UI would use them.

use futures::{SinkExt, StreamExt};
use islet_testkit::TestServer;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

async fn read_until(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    needle: &str,
) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !seen.contains(needle) {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        match next {
            Ok(Some(Ok(Message::Binary(bytes)))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Some(Ok(Message::Text(text)))) => seen.push_str(text.as_str()),
            Ok(Some(Ok(_))) => {}
            other => panic!("stream ended before {needle:?} (saw {seen:?}): {other:?}"),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_over_websocket_survives_a_reconnect() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({})).await;
    let created = client
        .call("POST", &format!("/sandboxes/{id}/terminal"), Some(json!({"cols": 100, "rows": 30})))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let session = created.text("/data/session_id").to_owned();

    let url = format!(
        "{}/sandboxes/{id}/terminal/stream?session_id={session}",
        client.base.replace("http://", "ws://")
    );
    let connect = |url: String, key: String| async move {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        tokio_tungstenite::connect_async(request).await.unwrap().0
    };
    let mut ws = connect(url.clone(), client.key.clone()).await;
    ws.send(Message::Binary(b"echo marker-$((40+2))\n".to_vec().into())).await.unwrap();
    read_until(&mut ws, "marker-42").await;
    ws.send(Message::Text(r#"{"type":"resize","cols":120,"rows":40}"#.into())).await.unwrap();
    ws.send(Message::Binary(b"stty size\n".to_vec().into())).await.unwrap();
    read_until(&mut ws, "40 120").await;
    ws.send(Message::Binary(b"export KEPT=yes\n".to_vec().into())).await.unwrap();
    drop(ws);

    // Reconnect: the scrollback comes first, and the shell kept its state.
    let mut ws = connect(url, client.key.clone()).await;
    read_until(&mut ws, "marker-42").await;
    ws.send(Message::Binary(b"echo kept=$KEPT\n".to_vec().into())).await.unwrap();
    read_until(&mut ws, "kept=yes").await;

    // Another tenant cannot attach.
    let intruder = server.tenant(None).await;
    let foreign = format!(
        "{}/sandboxes/{id}/terminal/stream?session_id={session}",
        client.base.replace("http://", "ws://")
    );
    let mut request = foreign.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", intruder.key).parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("a foreign tenant attached: {:?}", other.map(|_| ())),
    }
    assert_eq!(
        client.status("DELETE", &format!("/sandboxes/{id}/terminal/{session}"), None).await,
        204
    );
    server.stop().await;
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_file_streams_both_ways_without_being_held_in_memory() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({})).await;
    let local = server.data_dir.join("big.bin");
    let mut expected = Sha256::new();
    {
        let mut file = tokio::fs::File::create(&local).await.unwrap();
        let mut block = vec![0u8; 1 << 20];
        for i in 0..100u32 {
            block.iter_mut().enumerate().for_each(|(j, b)| *b = (i as usize * 31 + j) as u8);
            expected.update(&block);
            file.write_all(&block).await.unwrap();
        }
    }
    let expected = hex::encode(expected.finalize());
    let before = peak_rss_kib();

    let file = tokio::fs::File::open(&local).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let uploaded = client
        .http
        .put(format!("{}/sandboxes/{id}/fs/upload", client.base))
        .query(&[("path", "/root/big.bin")])
        .bearer_auth(&client.key)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(uploaded.status().is_success(), "{}", uploaded.status());
    let (_, out, _) = client.exec(&id, "sha256sum /root/big.bin").await;
    assert_eq!(out.split_whitespace().next().unwrap(), expected, "the sandbox has the same bytes");

    let response = client
        .http
        .get(format!("{}/sandboxes/{id}/fs/download", client.base))
        .query(&[("path", "/root/big.bin")])
        .bearer_auth(&client.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    let mut stream = response.bytes_stream();
    let mut got = Sha256::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len();
        got.update(&chunk);
    }
    assert_eq!(total, 100 << 20);
    assert_eq!(hex::encode(got.finalize()), expected, "the download has the same bytes");
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 50, "this process (client and control plane) held {grown_mib} MiB at peak");
    server.stop().await;
}
