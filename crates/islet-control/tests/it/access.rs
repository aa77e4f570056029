//! Scoped credentials (contract §12): restricted keys, keys bound to one end user and browser
//! tokens reach only what their scopes and their user allow (404 for other users' sandboxes,
//! 403 for routes outside their scope), and never mint more than they hold.

use std::time::Duration;

use islet_testkit::{Client, TestServer};
use serde_json::{json, Value};

fn as_key(tenant: &Client, key: &str) -> Client {
    Client::new(&tenant.base, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_carry_scopes_rotate_and_revoke() {
    let server = TestServer::start().await;
    let tenant = server.tenant(None).await;
    let made = tenant
        .call("POST", "/api-keys", Some(json!({"name": "ci reader", "scopes": ["sandboxes:read"]})))
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let token = made.text("/data/token").to_owned();
    let id = made.id();
    assert!(token.starts_with("msk_live_"));
    assert_eq!(made.data()["scopes"], json!(["sandboxes:read"]));
    let reader = as_key(&tenant, &token);
    assert_eq!(reader.status("GET", "/sandboxes", None).await, 200);
    let denied = reader.call("POST", "/sandboxes", Some(json!({}))).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body["error"]["code"], "INSUFFICIENT_SCOPE");
    assert_eq!(reader.status("GET", "/webhooks", None).await, 403);
    assert_eq!(reader.status("GET", "/api-keys", None).await, 403);
    // A method a route does not declare is checked as the route's changing method, then 405.
    assert_eq!(reader.status("PUT", "/webhooks", None).await, 403);
    assert_eq!(tenant.status("PUT", "/webhooks", None).await, 405);
    assert_eq!(reader.status("PUT", "/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa/stop", None).await, 403);
    // A restricted key cannot mint a wider one.
    let writer = tenant
        .call(
            "POST",
            "/api-keys",
            Some(json!({"name": "w", "scopes": ["sandboxes:write", "keys:write"]})),
        )
        .await;
    let writer = as_key(&tenant, writer.text("/data/token"));
    let wider = writer
        .call("POST", "/api-keys", Some(json!({"name": "x", "scopes": ["webhooks:write"]})))
        .await;
    assert_eq!(wider.status, 403, "{:?}", wider.body);
    let unscoped = writer.call("POST", "/api-keys", Some(json!({"name": "x"}))).await;
    assert_eq!(unscoped.status, 201);
    assert_eq!(
        unscoped.data()["scopes"],
        json!([
            "sandboxes:read",
            "sandboxes:create",
            "sandboxes:exec",
            "sandboxes:write",
            "keys:read",
            "keys:write"
        ])
    );
    // Nor manage a key that holds more than it does.
    let all = tenant.call("GET", "/api-keys", None).await;
    let full = all.data().as_array().unwrap().iter().find(|k| k["scopes"] == json!(["*"])).unwrap()
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(writer.status("POST", &format!("/api-keys/{full}/rotate"), None).await, 403);
    assert_eq!(writer.status("DELETE", &format!("/api-keys/{full}"), None).await, 403);
    assert_eq!(
        writer
            .status("PATCH", &format!("/api-keys/{full}"), Some(json!({"name": "mine now"})))
            .await,
        403
    );
    let narrowed = tenant
        .call("PATCH", &format!("/api-keys/{full}"), Some(json!({"scopes": ["sandboxes:read"]})))
        .await;
    assert_eq!(narrowed.status, 409, "the last full key cannot be narrowed: {:?}", narrowed.body);
    let bad = tenant
        .call("POST", "/api-keys", Some(json!({"name": "x", "scopes": ["sandboxes:fly"]})))
        .await;
    assert_eq!(bad.status, 400);
    // Listed without secrets; rotation replaces the secret at once; revocation ends it.
    let listed = tenant.call("GET", "/api-keys", None).await;
    assert!(listed.data().as_array().unwrap().iter().any(|k| k["id"] == id.as_str()));
    assert!(!String::from_utf8_lossy(&listed.bytes).contains(&token));
    let rotated = tenant.call("POST", &format!("/api-keys/{id}/rotate"), None).await;
    let new_token = rotated.text("/data/token").to_owned();
    assert_eq!(as_key(&tenant, &token).status("GET", "/sandboxes", None).await, 401);
    assert_eq!(as_key(&tenant, &new_token).status("GET", "/sandboxes", None).await, 200);
    assert_eq!(tenant.status("DELETE", &format!("/api-keys/{id}"), None).await, 204);
    assert_eq!(as_key(&tenant, &new_token).status("GET", "/sandboxes", None).await, 401);
    let got = tenant.call("GET", &format!("/api-keys/{id}"), None).await;
    assert_eq!(got.data()["status"], "revoked");
    // The last full key cannot go.
    let keys = tenant.call("GET", "/api-keys", None).await;
    let own = keys.data().as_array().unwrap().iter().find(|k| k["scopes"] == json!(["*"])).unwrap()
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(tenant.status("DELETE", &format!("/api-keys/{own}"), None).await, 409);
    // Another tenant cannot see or touch these keys.
    let other = server.tenant(None).await;
    assert_eq!(other.status("GET", &format!("/api-keys/{id}"), None).await, 404);
    assert_eq!(other.status("POST", &format!("/api-keys/{own}/rotate"), None).await, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_bound_to_one_user_reaches_only_that_user() {
    let server = TestServer::start().await;
    let tenant = server.tenant(None).await;
    let bobs = tenant.sandbox(json!({"external_user_id": "bob", "name": "bobs"})).await;
    let made = tenant
        .call("POST", "/api-keys/scoped", Some(json!({"external_user_id": "alice", "scopes": ["sandboxes:write", "previews:write", "usage:read"]})))
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let token = made.text("/data/token");
    assert!(token.starts_with("msk_l2_"));
    let alice = as_key(&tenant, token);
    // Creates are Alice's whether she says so or not; nobody else's.
    let mine = alice.sandbox(json!({})).await;
    let got = alice.call("GET", &format!("/sandboxes/{mine}"), None).await;
    assert_eq!(got.data()["external_user_id"], "alice");
    let for_bob = alice.call("POST", "/sandboxes", Some(json!({"external_user_id": "bob"}))).await;
    assert_eq!(for_bob.status, 403);
    let listed = alice.call("GET", "/sandboxes", None).await;
    let ids: Vec<&str> =
        listed.data().as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![mine.as_str()]);
    assert_eq!(alice.call("GET", "/sandboxes?external_user_id=bob", None).await.data(), &json!([]));
    // Every sandbox route with Bob's sandbox: 404, as if it did not exist.
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/sandboxes/{bobs}"), None),
        ("PATCH", format!("/sandboxes/{bobs}"), Some(json!({"name": "x"}))),
        ("POST", format!("/sandboxes/{bobs}/stop"), Some(json!({}))),
        ("POST", format!("/sandboxes/{bobs}/pause"), Some(json!({}))),
        ("POST", format!("/sandboxes/{bobs}/resume"), Some(json!({}))),
        ("POST", format!("/sandboxes/{bobs}/extend"), Some(json!({"timeout_sec": 60}))),
        ("GET", format!("/sandboxes/{bobs}/usage"), None),
        ("GET", format!("/sandboxes/{bobs}/readiness"), None),
        ("POST", format!("/sandboxes/{bobs}/exec"), Some(json!({"command": "id"}))),
        ("GET", format!("/sandboxes/{bobs}/fs/download?path=/etc/hostname"), None),
        ("GET", format!("/sandboxes/{bobs}/processes"), None),
        ("POST", format!("/sandboxes/{bobs}/expose"), Some(json!({"port": 3000}))),
        ("GET", format!("/sandboxes/{bobs}/previews"), None),
        ("POST", format!("/sandboxes/{bobs}/preview-token"), Some(json!({}))),
        ("POST", format!("/sandboxes/{bobs}/shares"), Some(json!({}))),
        ("GET", "/sandboxes/by-name/bobs".to_owned(), None),
        ("DELETE", format!("/sandboxes/{bobs}"), None),
    ];
    for (method, path, body) in &routes {
        let r = alice.call(method, path, body.clone()).await;
        assert_eq!(r.status, 404, "{method} {path}: {:?}", r.body);
    }
    // Tenant-level routes are not for a user's credential.
    for (method, path) in [
        ("GET", "/webhooks"),
        ("GET", "/api-keys"),
        ("POST", "/api-keys/scoped"),
        ("POST", "/tokens/scoped"),
        ("GET", "/quotas/external/alice"),
        ("PUT", "/tenant/policy"),
        ("GET", "/tenant/branding"),
        ("GET", "/tenant/preview-domain"),
        ("GET", "/events/stream"),
    ] {
        let r = alice.call(method, path, Some(json!({}))).await;
        assert_eq!(r.status, 403, "{method} {path}: {:?}", r.body);
    }
    // Her usage, and nobody else's.
    assert_eq!(alice.status("GET", "/usage", None).await, 200);
    assert_eq!(alice.status("GET", "/usage?external_user_id=bob", None).await, 403);
    // Bob's sandbox is untouched.
    assert_eq!(
        tenant.call("GET", &format!("/sandboxes/{bobs}"), None).await.data()["state"],
        "running"
    );
    for id in [&mine, &bobs] {
        tenant.destroy(id).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_tokens_are_short_lived_scoped_and_revocable() {
    let server = TestServer::start().await;
    let tenant = server.tenant(None).await;
    let sandbox = tenant.sandbox(json!({"external_user_id": "carol"})).await;
    let minted = tenant
        .call("POST", "/tokens/scoped", Some(json!({"user_id": "carol", "workspace_id": "ws_1", "scopes": ["sandboxes:read", "sandboxes:exec", "previews:write"], "external_project_id": "p9"})))
        .await;
    assert_eq!(minted.status, 201, "{:?}", minted.body);
    let token = minted.text("/data/token").to_owned();
    let token_id = minted.id();
    assert!(token.starts_with("mst_"));
    assert_eq!(
        minted.data()["scopes"],
        json!(["sandboxes:read", "sandboxes:exec", "previews:write"])
    );
    let browser = as_key(&tenant, &token);
    let (code, out, _) = browser.exec(&sandbox, "echo from-the-browser").await;
    assert_eq!((code, out.trim()), (0, "from-the-browser"));
    let preview = browser
        .call(
            "POST",
            &format!("/sandboxes/{sandbox}/preview-token"),
            Some(json!({"scope": "read"})),
        )
        .await;
    assert_eq!(preview.status, 200, "{:?}", preview.body);
    // Beyond its scopes: no create, no minting, no renewal.
    assert_eq!(browser.status("POST", "/sandboxes", Some(json!({}))).await, 403);
    assert_eq!(
        browser
            .status(
                "POST",
                "/tokens/scoped",
                Some(json!({"user_id": "carol", "workspace_id": "w"}))
            )
            .await,
        403
    );
    assert_eq!(browser.status("DELETE", &format!("/sandboxes/{sandbox}"), None).await, 403);
    // Minting: TTL at most a day; never more scopes than the minting key holds.
    let long = tenant
        .call(
            "POST",
            "/tokens/scoped",
            Some(json!({"user_id": "carol", "workspace_id": "w", "expires_in_seconds": 86401})),
        )
        .await;
    assert_eq!(long.status, 400);
    let reader = tenant
        .call(
            "POST",
            "/api-keys",
            Some(json!({"name": "r", "scopes": ["sandboxes:read", "tokens:write"]})),
        )
        .await;
    let reader = as_key(&tenant, reader.text("/data/token"));
    let wider = reader
        .call(
            "POST",
            "/tokens/scoped",
            Some(json!({"user_id": "carol", "workspace_id": "w", "scopes": ["sandboxes:exec"]})),
        )
        .await;
    assert_eq!(wider.status, 403);
    let narrow = reader
        .call("POST", "/tokens/scoped", Some(json!({"user_id": "carol", "workspace_id": "w"})))
        .await;
    assert_eq!(
        narrow.data()["scopes"],
        json!(["sandboxes:read"]),
        "defaults are cut to the minter's"
    );
    // A token never holds more than its key holds now, and dies when the key rotates.
    let minter = tenant
        .call(
            "POST",
            "/api-keys",
            Some(json!({"name": "m", "scopes": ["sandboxes:write", "tokens:write"]})),
        )
        .await;
    let minter_id = minter.id();
    let minter = as_key(&tenant, minter.text("/data/token"));
    let t = minter
        .call("POST", "/tokens/scoped", Some(json!({"user_id": "carol", "workspace_id": "w"})))
        .await;
    let t = as_key(&tenant, t.text("/data/token"));
    let (code, _, _) = t.exec(&sandbox, "true").await;
    assert_eq!(code, 0, "the token can exec while its key can");
    tenant
        .call(
            "PATCH",
            &format!("/api-keys/{minter_id}"),
            Some(json!({"scopes": ["sandboxes:read", "tokens:write"]})),
        )
        .await;
    assert_eq!(
        t.status("POST", &format!("/sandboxes/{sandbox}/exec"), Some(json!({"command": "true"})))
            .await,
        403,
        "narrowed with its key"
    );
    assert_eq!(t.status("GET", &format!("/sandboxes/{sandbox}"), None).await, 200);
    tenant.call("POST", &format!("/api-keys/{minter_id}/rotate"), None).await;
    assert_eq!(
        t.status("GET", &format!("/sandboxes/{sandbox}"), None).await,
        401,
        "rotation kills its tokens"
    );
    // A user-bound credential cannot pick the isolation; a token's workspace labels its creates.
    let w = tenant
        .call(
            "POST",
            "/tokens/scoped",
            Some(
                json!({"user_id": "carol", "workspace_id": "ws_9", "scopes": ["sandboxes:write"]}),
            ),
        )
        .await;
    let w = as_key(&tenant, w.text("/data/token"));
    assert_eq!(w.status("POST", "/sandboxes", Some(json!({"isolation": "container"}))).await, 403);
    assert_eq!(
        w.status("POST", "/sandboxes", Some(json!({"external_workspace_id": "ws_other"}))).await,
        403
    );
    let made = w.call("POST", "/sandboxes", Some(json!({}))).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.data()["external_workspace_id"], "ws_9");
    tenant.call("DELETE", &format!("/sandboxes/{}", made.text("/data/id")), None).await;
    // Listed, then revoked: refused at once.
    let listed = tenant.call("GET", "/tokens/scoped?user_id=carol", None).await;
    assert!(listed.data().as_array().unwrap().iter().any(|t| t["id"] == token_id.as_str()));
    assert!(!String::from_utf8_lossy(&listed.bytes).contains(&token));
    assert_eq!(tenant.status("DELETE", &format!("/tokens/scoped/{token_id}"), None).await, 204);
    assert_eq!(browser.status("GET", &format!("/sandboxes/{sandbox}"), None).await, 401);
    // Only live tokens are listed.
    let listed = tenant.call("GET", "/tokens/scoped?user_id=carol", None).await;
    assert!(!listed.data().as_array().unwrap().iter().any(|t| t["id"] == token_id.as_str()));
    // Expiry.
    let short = tenant
        .call(
            "POST",
            "/tokens/scoped",
            Some(json!({"user_id": "carol", "workspace_id": "w", "expires_in_seconds": 1})),
        )
        .await;
    let short = as_key(&tenant, short.text("/data/token"));
    assert_eq!(short.status("GET", &format!("/sandboxes/{sandbox}"), None).await, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(short.status("GET", &format!("/sandboxes/{sandbox}"), None).await, 401);
    tenant.destroy(&sandbox).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_key_gets_429_while_another_key_is_untouched() {
    let server = TestServer::builder()
        .control(islet_control::Config {
            api_rate_limit: 5,
            api_user_rate_limit: 3,
            ..islet_control::Config::default()
        })
        .start()
        .await;
    let tenant = server.tenant(None).await;
    let other = tenant.call("POST", "/api-keys", Some(json!({"name": "quiet"}))).await;
    let quiet = as_key(&tenant, other.text("/data/token"));
    // The noisy key fires 60 requests at once; the quiet one makes 8, spread over 2 s.
    let noisy = futures::future::join_all((0..60).map(|_| tenant.call("GET", "/sandboxes", None)));
    let steady = async {
        let mut codes = Vec::new();
        for _ in 0..8 {
            codes.push(quiet.status("GET", "/sandboxes", None).await);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        codes
    };
    let (noisy, steady) = tokio::join!(noisy, steady);
    let refused: Vec<_> = noisy.iter().filter(|r| r.status == 429).collect();
    let ok = noisy.iter().filter(|r| r.status == 200).count();
    assert!(
        (8..=13).contains(&ok),
        "the burst is twice the rate (one token went on minting the quiet key): {ok} passed"
    );
    assert_eq!(refused.len() + ok, 60);
    let r = refused[0];
    assert_eq!(r.body["error"]["code"], "RATE_LIMITED");
    assert_eq!(r.body["error"]["retryable"], true);
    assert!(r.body["error"]["retry_after_ms"].as_u64().unwrap() <= 1000);
    assert_eq!(steady, vec![200; 8], "the quiet key never noticed");
    // Headers: on refusals and on every answer.
    let raw = reqwest::Client::new()
        .get(format!("{}/sandboxes", tenant.base))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .unwrap();
    let h = raw.headers();
    if raw.status() == 429 {
        assert!(h.contains_key("retry-after"));
    } else {
        assert_eq!(h["x-ratelimit-limit"], "5");
        assert!(h.contains_key("x-ratelimit-remaining") && h.contains_key("x-ratelimit-reset"));
    }
    // An end user's tokens share one budget (3/s, bursts of 6).
    let mint = || {
        tenant.call("POST", "/tokens/scoped", Some(json!({"user_id": "dora", "workspace_id": "w"})))
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a, b) = (mint().await, mint().await);
    let a = as_key(&tenant, a.text("/data/token"));
    let b = as_key(&tenant, b.text("/data/token"));
    let calls = (0..10).map(|i| {
        if i % 2 == 0 {
            a.call("GET", "/sandboxes", None)
        } else {
            b.call("GET", "/sandboxes", None)
        }
    });
    let replies = futures::future::join_all(calls).await;
    let passed = replies.iter().filter(|r| r.status == 200).count();
    assert!((6..=7).contains(&passed), "one budget for both tokens: {passed} passed");
    assert!(replies
        .iter()
        .any(|r| r.status == 429
            && r.body["error"]["message"].as_str().unwrap().contains("end user")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_on_the_tenants_own_origins_get_cors() {
    let server = TestServer::start().await;
    let tenant = server.tenant(None).await;
    let set = tenant
        .call(
            "PUT",
            "/settings",
            Some(json!({"allowed_origins": ["https://App.Acme.test", "http://localhost:5173"]})),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(
        set.data()["allowed_origins"],
        json!(["http://localhost:5173", "https://app.acme.test"])
    );
    for bad in [
        json!(["https://acme.test/path"]),
        json!(["ftp://acme.test"]),
        json!(["acme.test"]),
        json!(["https://u:p@acme.test"]),
    ] {
        let r = tenant.call("PUT", "/settings", Some(json!({"allowed_origins": bad}))).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let token = tenant
        .call("POST", "/tokens/scoped", Some(json!({"user_id": "erin", "workspace_id": "w"})))
        .await;
    let token = token.text("/data/token").to_owned();
    let http = reqwest::Client::new();
    let url = format!("{}/sandboxes", tenant.base);
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let ok = preflight("https://app.acme.test").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.acme.test");
    assert!(ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let evil = preflight("https://evil.test").await.unwrap();
    assert!(!evil.headers().contains_key("access-control-allow-origin"));
    let get = |origin: &'static str, key: String| {
        http.get(&url).header("origin", origin).bearer_auth(key).send()
    };
    let real = get("https://app.acme.test", token.clone()).await.unwrap();
    assert_eq!(real.status(), 200);
    assert_eq!(real.headers()["access-control-allow-origin"], "https://app.acme.test");
    assert!(real.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-ratelimit-remaining"));
    let foreign = get("https://evil.test", token.clone()).await.unwrap();
    assert!(!foreign.headers().contains_key("access-control-allow-origin"));
    // Another tenant's credential gets no CORS for this tenant's origin.
    let other = server.tenant(None).await;
    let theirs = get("https://app.acme.test", other.key.clone()).await.unwrap();
    assert!(!theirs.headers().contains_key("access-control-allow-origin"));
    // Refusals are readable by the allowed page too.
    let refused = http
        .post(&url)
        .header("origin", "https://app.acme.test")
        .bearer_auth(&token)
        .json(&json!({"external_user_id": "someone-else"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["access-control-allow-origin"], "https://app.acme.test");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_tokens_workspace_is_a_boundary() {
    let server = TestServer::start().await;
    let tenant = server.tenant(None).await;
    let mine =
        tenant.sandbox(json!({"external_user_id": "dora", "external_workspace_id": "ws_1"})).await;
    let shared = tenant.sandbox(json!({"external_user_id": "dora"})).await;
    let other = tenant
        .sandbox(json!({"external_user_id": "dora", "external_workspace_id": "ws_2", "name": "elsewhere"}))
        .await;
    let minted = tenant
        .call("POST", "/tokens/scoped", Some(json!({"user_id": "dora", "workspace_id": "ws_1", "scopes": ["sandboxes:read", "sandboxes:exec"]})))
        .await;
    let browser = as_key(&tenant, minted.text("/data/token"));
    // It sees its workspace's sandboxes and the user's sandboxes in no workspace...
    let listed = browser.call("GET", "/sandboxes", None).await;
    let mut seen: Vec<&str> =
        listed.data().as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    seen.sort_unstable();
    let mut want = vec![mine.as_str(), shared.as_str()];
    want.sort_unstable();
    assert_eq!(seen, want, "{:?}", listed.body);
    assert_eq!(browser.exec(&mine, "true").await.0, 0);
    assert_eq!(browser.exec(&shared, "true").await.0, 0);
    // ...and nothing of another workspace, by id, by name, or to run anything in.
    for (method, path, body) in [
        ("GET", format!("/sandboxes/{other}"), None),
        ("POST", format!("/sandboxes/{other}/exec"), Some(json!({"command": "id"}))),
        ("GET", "/sandboxes/by-name/elsewhere".to_owned(), None),
    ] {
        let reply = browser.call(method, &path, body).await;
        assert_eq!(reply.status, 404, "{method} {path}: {:?}", reply.body);
    }
    for id in [&mine, &shared, &other] {
        tenant.destroy(id).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_keys_do_not_buy_a_tenant_more_requests() {
    let server = TestServer::builder()
        .control(islet_control::Config {
            api_rate_limit: 1000,
            api_tenant_rate_limit: 5,
            ..islet_control::Config::default()
        })
        .start()
        .await;
    let tenant = server.tenant(None).await;
    let neighbour = server.tenant(None).await;
    let mut keys = vec![as_key(&tenant, &tenant.key)];
    for n in 0..3 {
        let made = tenant.call("POST", "/api-keys", Some(json!({"name": format!("k{n}")}))).await;
        keys.push(as_key(&tenant, made.text("/data/token")));
    }
    // Forty requests spread over four keys at once: the tenant's bucket (a burst of ten) holds.
    let all = futures::future::join_all(
        (0..40).map(|i| keys[i % keys.len()].call("GET", "/sandboxes", None)),
    )
    .await;
    let ok = all.iter().filter(|r| r.status == 200).count();
    assert!(ok <= 12, "{ok} of 40 passed through four keys");
    let refused = all.iter().find(|r| r.status == 429).expect("some were refused");
    assert!(
        refused.body["error"]["message"].as_str().unwrap().contains("account"),
        "{:?}",
        refused.body
    );
    // Another tenant is untouched.
    assert_eq!(neighbour.status("GET", "/sandboxes", None).await, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_and_connections_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::builder()
        .control(islet_control::Config {
            api_header_timeout: Duration::from_secs(1),
            api_max_connections: 2,
            ..islet_control::Config::default()
        })
        .start()
        .await;
    let tenant = server.tenant(None).await;
    let addr = tenant.base.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    // Half a request, never finished: dropped after the header timeout.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    assert!(read.is_ok(), "a client that never finished its headers was kept past 5 s");
    // Two idle connections fill the cap: a third client waits, and is served once one goes.
    let first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = format!("{}/health", tenant.base);
    let waiting = tokio::time::timeout(Duration::from_millis(500), fresh.get(&url).send()).await;
    assert!(waiting.is_err(), "a third connection was served past the cap");
    drop(first);
    let served = tokio::time::timeout(Duration::from_secs(5), fresh.get(&url).send()).await;
    assert_eq!(served.expect("served once a slot freed").unwrap().status(), 200);
    server.stop().await;
}
