//! Tokens at the edge: every mutated, foreign, expired or revoked token is refused the same
//! way; revocation and deletion reach the edge within seconds; read scope cannot write.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::StreamExt;
use islet_testkit::TestServer;
use islet_tokens::Claims;
use islet_types::preview::Scope;
use islet_types::{PreviewTokenId, SandboxId, TenantId};
use rand::Rng;

use crate::{http, preview, url, APP_PORT};

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Many ways of getting a token wrong, all but the signature-valid ones from one good token.
fn mutations(good: &str, signed_elsewhere: &[String], n: usize) -> Vec<String> {
    let raw = URL_SAFE_NO_PAD.decode(&good[3..]).unwrap();
    let mut rng = rand::thread_rng();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let candidate = match out.len() % 8 {
            0..=2 => {
                let mut bytes = raw.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let bit = rng.gen_range(0..bytes.len() * 8);
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
                format!("mp_{}", URL_SAFE_NO_PAD.encode(bytes))
            }
            3 => good[..rng.gen_range(0..good.len())].to_owned(),
            4 => {
                // Other base64 spellings and junk around a valid body.
                let variants = [
                    format!("mp_{}", base64::engine::general_purpose::STANDARD.encode(&raw)),
                    format!("{good}="),
                    format!("{good}AA"),
                    good.replacen("mp_", "MP_", 1),
                    format!(" {good}x"),
                    good.to_uppercase(),
                ];
                variants[rng.gen_range(0..variants.len())].clone()
            }
            5 => {
                let mut bytes = raw.clone();
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.gen();
                bytes.truncate(rng.gen_range(1..=bytes.len()));
                format!("mp_{}", URL_SAFE_NO_PAD.encode(bytes))
            }
            _ => signed_elsewhere[rng.gen_range(0..signed_elsewhere.len())].clone(),
        };
        if candidate != good {
            out.push(candidate);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_bad_tokens_are_refused_alike() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let other_tenant = server.tenant(None).await;
    let p = preview(&client).await;
    let id: SandboxId = p.id.parse().unwrap();
    let tenant = server.state.store.get_sandbox_any(&id).await.unwrap().tenant_id;
    let (good, _) = client
        .preview_token(&p.id, serde_json::json!({ "port": APP_PORT, "expires_in": 3600 }))
        .await;

    // Signature-valid tokens for something else.
    let second = client.sandbox(serde_json::json!({})).await;
    let foreign = other_tenant.sandbox(serde_json::json!({})).await;
    let (other_sandbox, _) = client.preview_token(&second, serde_json::json!({})).await;
    let (other_port, _) = client.preview_token(&p.id, serde_json::json!({ "port": 9000 })).await;
    let (other_tenants, _) = other_tenant.preview_token(&foreign, serde_json::json!({})).await;
    let signer = &server.state.signer;
    let forged_tenant = signer.sign(&Claims {
        id: PreviewTokenId::generate(),
        tenant_id: TenantId::generate(),
        sandbox_id: id.clone(),
        port: None,
        scope: Scope::Interact,
        expires_at: now_secs() + 600,
    });
    let expired = signer.sign(&Claims {
        id: PreviewTokenId::generate(),
        tenant_id: tenant.clone(),
        sandbox_id: id.clone(),
        port: None,
        scope: Scope::Interact,
        expires_at: now_secs() - 1,
    });
    let reply = client
        .call("POST", &format!("/sandboxes/{}/preview-token", p.id), Some(serde_json::json!({})))
        .await;
    let revoked = reply.text("/data/token").to_owned();
    let revoked_id = reply.id();
    let gone = client
        .call("DELETE", &format!("/sandboxes/{}/preview-tokens/{revoked_id}", p.id), None)
        .await;
    assert_eq!(gone.status, 204);
    let signed_elsewhere =
        vec![other_sandbox, other_port, other_tenants, forged_tenant, expired, revoked];

    let edge = http(&server, &p.host);
    // The good token works (after the revocation has surely reached the edge).
    server.edge.refresh().await; // the revocation reaches the edge
    let ok = edge
        .get(url(&server, &p.host, "/echo"))
        .header("x-preview-token", &good)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let bad = mutations(&good, &signed_elsewhere, 10_000);
    let started = Instant::now();
    let answers: Vec<(u16, String)> = futures::stream::iter(bad.iter().enumerate())
        .map(|(i, token)| {
            let edge = edge.clone();
            let target = url(&server, &p.host, "/echo");
            async move {
                // Alternate between the header and the cookie.
                let request = edge.get(target).header("accept", "application/json");
                let request = match reqwest::header::HeaderValue::from_str(token) {
                    Ok(_) if i % 2 == 0 => request.header("x-preview-token", token.as_str()),
                    _ => request.header("cookie", format!("pv_session={}", urlencode(token))),
                };
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let mut body: serde_json::Value = response.json().await.unwrap();
                body["request_id"] = serde_json::Value::Null;
                (status, body.to_string())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let accepted = answers.iter().filter(|(s, _)| *s < 300).count();
    assert_eq!(accepted, 0, "mutated tokens accepted");
    let first = &answers[0];
    assert_eq!(first.0, 401);
    assert!(first.1.contains("SESSION_EXPIRED"), "{}", first.1);
    let different = answers.iter().filter(|a| *a != first).count();
    assert_eq!(different, 0, "refusals differ: {:?}", answers.iter().find(|a| *a != first));
    eprintln!(
        "10000 bad tokens refused alike in {elapsed:?} ({:.0}/s)",
        10_000.0 / elapsed.as_secs_f64()
    );
    server.stop().await;
}

fn urlencode(token: &str) -> String {
    token
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Seconds until `request` stops answering 200.
async fn seconds_until_refused(request: impl Fn() -> reqwest::RequestBuilder) -> f64 {
    let started = Instant::now();
    loop {
        let status = request().send().await.unwrap().status();
        if status != 200 {
            return started.elapsed().as_secs_f64();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still accepted after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_deletion_reach_the_edge_within_seconds_and_read_scope_cannot_write() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let p = preview(&client).await;
    let edge = http(&server, &p.host);
    let target = url(&server, &p.host, "/echo");

    // Read scope: look, don't touch.
    let (read, _) = client.preview_token(&p.id, serde_json::json!({ "scope": "read" })).await;
    let get = edge.get(&target).header("x-preview-token", &read).send().await.unwrap();
    assert_eq!(get.status(), 200);
    let post = edge
        .post(&target)
        .header("x-preview-token", &read)
        .header("accept", "application/json")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    assert!(post.text().await.unwrap().contains("READ_ONLY"));

    // Revoking a token.
    let reply = client
        .call("POST", &format!("/sandboxes/{}/preview-token", p.id), Some(serde_json::json!({})))
        .await;
    let token = reply.text("/data/token").to_owned();
    let token_id = reply.id();
    let listed = client.call("GET", &format!("/sandboxes/{}/preview-tokens", p.id), None).await;
    assert!(listed.data().as_array().unwrap().iter().any(|t| t["id"] == token_id.as_str()));
    assert!(!listed.body.to_string().contains(&token), "a listing shows a token");
    client.call("DELETE", &format!("/sandboxes/{}/preview-tokens/{token_id}", p.id), None).await;
    let revoked_after =
        seconds_until_refused(|| edge.get(&target).header("x-preview-token", &token)).await;

    // Revoking a share link.
    let share = client
        .call(
            "POST",
            &format!("/sandboxes/{}/shares", p.id),
            Some(serde_json::json!({ "scope": "read", "expires_in": 600 })),
        )
        .await;
    assert_eq!(share.status, 201, "{:?}", share.body);
    let share_url = share.text("/data/share_url").to_owned();
    let share_token = share_url.split("?ms=").nth(1).unwrap().to_owned();
    let share_id = share.text("/data/share_id").to_owned();
    let exchanged = edge.get(&share_url).send().await.unwrap();
    assert_eq!(exchanged.status(), 303, "share link exchange");
    client.call("DELETE", &format!("/sandboxes/{}/shares/{share_id}", p.id), None).await;
    let share_after =
        seconds_until_refused(|| edge.get(&target).header("x-preview-token", &share_token)).await;

    // Deleting the sandbox.
    let (token, _) = client.preview_token(&p.id, serde_json::json!({})).await;
    let reply = client.call("DELETE", &format!("/sandboxes/{}", p.id), None).await;
    assert_eq!(reply.status, 204);
    let deleted_after =
        seconds_until_refused(|| edge.get(&target).header("x-preview-token", &token)).await;
    eprintln!("refused after: revoke {revoked_after:.2} s, share revoke {share_after:.2} s, delete {deleted_after:.2} s");
    for s in [revoked_after, share_after, deleted_after] {
        assert!(s <= 5.0, "took {s} s");
    }
    server.stop().await;
}
