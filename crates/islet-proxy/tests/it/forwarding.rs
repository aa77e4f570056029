//! Requests through the edge: token exchange, what reaches the app, bodies, streams, WebSockets,
//! HTTP/2, refused framing, activity.

use futures::{SinkExt, StreamExt};
use islet_testkit::TestServer;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{http, preview, url, APP_PORT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_sees_no_credentials_and_only_our_forwarding_headers() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let p = preview(&client).await;
    let (token, token_url) = client
        .preview_token(&p.id, serde_json::json!({ "scope": "interact", "expires_in": 600 }))
        .await;
    assert!(token.starts_with("mp_"));
    assert!(token_url.contains(&format!("?mt={token}")), "{token_url}");
    let edge = http(&server, &p.host);

    // The token in the URL is exchanged for a cookie and a redirect to the same URL without it.
    let with_token = url(&server, &p.host, &format!("/echo/a?x=1&mt={token}&y=2"));
    let response = edge.get(&with_token).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/echo/a?x=1&y=2");
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("pv_session={token};")), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "host-only: {cookie}");

    // With the cookie (and every other way of presenting credentials at once), the app sees
    // none of them, and forwarding headers are the edge's own.
    let response = edge
        .post(url(&server, &p.host, "/echo/a?x=1&y=2"))
        .header("cookie", format!("theme=dark; pv_session={token}; lang=en"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-preview-token", &token)
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "gopher")
        .header("forwarded", "for=6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    let headers = &seen["headers"];
    let all = serde_json::to_string(&seen).unwrap();
    assert!(!all.contains(&token), "token reached the app: {all}");
    assert!(!all.contains("pv_session"), "cookie reached the app: {all}");
    assert!(
        !all.contains("6.6.6.6") && !all.contains("evil.example") && !all.contains("gopher"),
        "{all}"
    );
    assert!(headers.get("authorization").is_none(), "{all}");
    assert_eq!(headers["cookie"], "theme=dark; lang=en");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"].as_str().unwrap().split(':').next().unwrap(), p.host);
    assert_eq!(headers["host"], format!("localhost:{APP_PORT}"));
    assert_eq!(seen["path"], "/echo/a?x=1&y=2");
    assert_eq!(seen["body_len"], 5);

    // An app's own Basic credentials pass.
    let response = edge
        .get(url(&server, &p.host, "/echo"))
        .header("x-preview-token", &token)
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["headers"]["authorization"], "Basic dXNlcjpwdw==");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_and_upgrades_work() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let p = preview(&client).await;
    let (token, _) = client.preview_token(&p.id, serde_json::json!({ "scope": "interact" })).await;
    let edge = http(&server, &p.host);

    // 8 MiB up, checksummed by the app; 8 MiB down.
    let upload: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let seen: Value = edge
        .put(url(&server, &p.host, "/echo"))
        .header("x-preview-token", &token)
        .body(upload.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["body_len"], upload.len());
    assert_eq!(seen["body_sha256"], hex::encode(Sha256::digest(&upload)));
    let down = edge
        .get(url(&server, &p.host, "/bytes?n=8388608"))
        .header("x-preview-token", &token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(down.len(), 8 * 1024 * 1024);

    // Server-sent events arrive as they are sent, not at the end.
    let mut sse = edge
        .get(url(&server, &p.host, "/sse"))
        .header("x-preview-token", &token)
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let first = sse.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: 0"));
    assert!(started.elapsed() < std::time::Duration::from_millis(550), "first event was held back");
    let mut rest = Vec::new();
    while let Some(chunk) = sse.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).contains("data: 2"));

    // A WebSocket through the edge, with the token as a header.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}:{}/ws",
            p.host,
            server.preview_http.port()
        ))
        .unwrap();
    request.headers_mut().insert("x-preview-token", token.parse().unwrap());
    let stream = tokio::net::TcpStream::connect(server.preview_http).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    assert_eq!(response.status(), 101);
    for i in 0..20 {
        let text = format!("ping {i}");
        ws.send(tokio_tungstenite::tungstenite::Message::text(text.clone())).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    let _ = ws.close(None).await;

    // HTTP/2 without TLS (prior knowledge) works too.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve(&p.host, server.preview_http)
        .build()
        .unwrap();
    let response = h2
        .get(url(&server, &p.host, "/echo"))
        .header("x-preview-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    server.stop().await;
}

async fn raw(server: &TestServer, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.preview_http).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_and_traffic_is_activity() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let p = preview(&client).await;
    let (token, _) = client.preview_token(&p.id, serde_json::json!({ "scope": "interact" })).await;
    let smuggle_te = format!(
        "POST /echo HTTP/1.1\r\nHost: {}\r\nX-Preview-Token: {token}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        p.host
    );
    let answer = raw(&server, smuggle_te).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let double_cl = format!(
        "POST /echo HTTP/1.1\r\nHost: {}\r\nX-Preview-Token: {token}\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
        p.host
    );
    assert!(raw(&server, double_cl).await.starts_with("HTTP/1.1 400"));
    let fine = format!(
        "POST /echo HTTP/1.1\r\nHost: {}\r\nX-Preview-Token: {token}\r\nContent-Length: 4\r\n\r\nabcd",
        p.host
    );
    assert!(raw(&server, fine).await.starts_with("HTTP/1.1 200"));

    // Preview requests move the sandbox's last activity forward.
    let id = p.id.parse().unwrap();
    let before = server.state.store.get_sandbox_any(&id).await.unwrap().last_activity_at;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let edge = http(&server, &p.host);
    let mut after = before;
    for _ in 0..50 {
        edge.get(url(&server, &p.host, "/echo"))
            .header("x-preview-token", &token)
            .send()
            .await
            .unwrap();
        after = server.state.store.get_sandbox_any(&id).await.unwrap().last_activity_at;
        if after > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(after > before, "preview traffic did not count as activity");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_urls_stay_at_the_edge() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let p = preview(&client).await;
    let (token, _) = client.preview_token(&p.id, serde_json::json!({ "scope": "interact" })).await;
    let edge = http(&server, &p.host);

    // The exchange never redirects off the host, however the path is spelled.
    for (path, location) in [
        ("//evil.example/x", "/evil.example/x"),
        ("/%2F/evil.example", "/%2F/evil.example"),
        ("/a/b", "/a/b"),
    ] {
        let response =
            edge.get(url(&server, &p.host, &format!("{path}?mt={token}"))).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], location, "{path}");
    }

    // A Referer carrying the token reaches the app without it.
    let seen: Value = edge
        .get(url(&server, &p.host, "/echo"))
        .header("x-preview-token", &token)
        .header("referer", format!("http://{}/page?x=1&mt={token}", p.host))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["referer"], format!("http://{}/page?x=1", p.host));

    // A WebSocket may carry the token in its URL (browsers cannot set headers on one); it is
    // used, not exchanged, and the app does not see it.
    let ws_url = format!("ws://{}:{}/ws?mt={token}", p.host, server.preview_http.port());
    let stream = tokio::net::TcpStream::connect(server.preview_http).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(ws_url, stream).await.unwrap();
    assert_eq!(response.status(), 101);
    ws.send(tokio_tungstenite::tungstenite::Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_text().unwrap().as_str(), "hi");

    // A read-only token may not open a WebSocket (a channel for input).
    let (read, _) = client.preview_token(&p.id, serde_json::json!({ "scope": "read" })).await;
    let stream = tokio::net::TcpStream::connect(server.preview_http).await.unwrap();
    let refused = tokio_tungstenite::client_async(
        format!("ws://{}:{}/ws?mt={read}", p.host, server.preview_http.port()),
        stream,
    )
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("a read token opened a WebSocket: {other:?}"),
    }

    // A public port: a token in the URL is still taken out of it.
    client
        .call(
            "POST",
            &format!("/sandboxes/{}/expose", p.id),
            Some(serde_json::json!({ "port": APP_PORT, "visibility": "public" })),
        )
        .await;
    // At once: the edge sees what the API committed before the API answered.
    let open = edge.get(url(&server, &p.host, "/echo")).send().await.unwrap();
    assert_eq!(open.status(), 200, "a public port needs no token, from the expose's answer on");
    let response =
        edge.get(url(&server, &p.host, &format!("/echo?mt={token}"))).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/echo");
    server.stop().await;
}
