//! Failure pages: the tenant's branding, never the platform's name, HTML or JSON by `Accept`.

use islet_testkit::TestServer;

use crate::{http, preview, url};

fn branding() -> serde_json::Value {
    serde_json::json!({
        "product_name": "Acme Code",
        "logo_url": "https://cdn.acme.dev/logo.svg",
        "support_url": "https://acme.dev/help",
        "support_email": "help@acme.dev",
        "primary_color": "#ff6600",
        "background_color": "#101010",
    })
}

/// Status, headers as text, body.
async fn fetch(
    edge: &reqwest::Client,
    target: &str,
    accept: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let mut request = edge.get(target).header("accept", accept);
    if let Some(t) = token {
        request = request.header("x-preview-token", t);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = format!("{:?}", response.headers());
    (status, headers, response.text().await.unwrap())
}

fn assert_branded(status: u16, headers: &str, body: &str, expect: u16, words: &str) {
    assert_eq!(status, expect, "{body}");
    assert!(body.contains("Acme Code"), "no product name: {body}");
    assert!(body.contains("https://cdn.acme.dev/logo.svg"), "no logo: {body}");
    assert!(body.contains("help@acme.dev"), "no support: {body}");
    assert!(body.contains(words), "expected {words:?}: {body}");
    for text in [body, headers] {
        assert!(!text.to_ascii_lowercase().contains("islet"), "the platform shows: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_pages_carry_the_tenants_brand_and_nothing_of_ours() {
    let server = TestServer::builder()
        .edge(|edge| {
            edge.rate_limit_per_sec = 2;
            edge.rate_limit_burst = 4;
        })
        .start()
        .await;
    let client = server.tenant(None).await;
    // Branding: validated, both spellings of the API.
    let bad = client
        .call(
            "PUT",
            "/tenant/branding",
            Some(serde_json::json!({ "branding": { "logo_url": "javascript:alert(1)" } })),
        )
        .await;
    assert_eq!(bad.status, 400);
    let set = client
        .call("PUT", "/tenant/branding", Some(serde_json::json!({ "branding": branding() })))
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    let flat = client.call("GET", "/settings/branding", None).await;
    assert_eq!(flat.data()["product_name"], "Acme Code");

    let p = preview(&client).await;
    let (token, _) = client.preview_token(&p.id, serde_json::json!({ "scope": "interact" })).await;
    server.edge.refresh().await; // branding reaches the edge
    let html = "text/html,application/xhtml+xml";

    // Port not listening: 502.
    let closed = p.host.replacen("8000-", "8001-", 1);
    let edge = http(&server, &closed);
    let (s, h, b) = fetch(&edge, &url(&server, &closed, "/"), html, Some(&token)).await;
    assert_branded(s, &h, &b, 502, "No server is listening");
    // The same as JSON for API clients.
    let (s, _, b) =
        fetch(&edge, &url(&server, &closed, "/"), "application/json", Some(&token)).await;
    assert_eq!(s, 502);
    let json: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(json["error"]["code"], "PORT_NOT_LISTENING");

    // Token missing, and a bad token: the page tells the parent frame.
    let edge = http(&server, &p.host);
    let (s, h, b) = fetch(&edge, &url(&server, &p.host, "/"), html, None).await;
    assert_branded(s, &h, &b, 401, "private");
    let (s, h, b) = fetch(&edge, &url(&server, &p.host, "/"), html, Some("mp_nope")).await;
    assert_branded(s, &h, &b, 401, "expired");
    assert!(b.contains("postMessage") && b.contains("preview.session_expired"), "{b}");
    assert!(b.contains(&p.id), "{b}");

    // Too many requests.
    let mut limited = None;
    for _ in 0..20 {
        let (s, h, b) = fetch(&edge, &url(&server, &p.host, "/"), html, Some(&token)).await;
        if s == 429 {
            limited = Some((s, h, b));
            break;
        }
    }
    let (s, h, b) = limited.expect("never rate limited");
    assert_branded(s, &h, &b, 429, "Too many requests");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    // Not running: a stopped sandbox.
    let stopped = client.call("POST", &format!("/sandboxes/{}/stop", p.id), None).await;
    assert_eq!(stopped.status, 200, "{:?}", stopped.body);
    client.wait_for_state(&p.id, "stopped", 30).await;
    let (s, h, b) = fetch(&edge, &url(&server, &p.host, "/"), html, Some(&token)).await;
    assert_branded(s, &h, &b, 503, "not running");

    // Not found: a destroyed sandbox is the tenant's own page.
    client.call("DELETE", &format!("/sandboxes/{}", p.id), None).await;
    let (s, h, b) = fetch(&edge, &url(&server, &p.host, "/"), html, Some(&token)).await;
    assert_branded(s, &h, &b, 404, "does not exist");

    // A sandbox nobody has: a neutral page, still no platform name.
    let nobody = "8000-sbx-aaaaaaaaaaaaaaaaaaaa.preview.localhost";
    let (s, h, b) = fetch(&http(&server, nobody), &url(&server, nobody, "/"), html, None).await;
    assert_eq!(s, 404);
    assert!(!b.to_ascii_lowercase().contains("islet") && !h.to_ascii_lowercase().contains("islet"));
    server.stop().await;
}
