//! A real browser (Debian's Chromium driven by the scripts in `tests/browser`): a page on one
//! origin embeds a private preview from another through a minted token (`iframe.mjs`), and a
//! page on the tenant's own origin calls the API with a browser token (`cors.mjs`).

use std::process::Stdio;

use islet_testkit::TestServer;
use islet_tokens::Claims;
use islet_types::preview::Scope;
use islet_types::{PreviewTokenId, SandboxId};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::{preview, APP_PORT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_preview_works_in_a_cross_site_iframe() {
    let server = TestServer::builder()
        .control(islet_control::Config {
            preview_scheme: "https".into(),
            ..islet_control::Config::default()
        })
        .start()
        .await;
    let client = server.tenant(None).await;
    client
        .call(
            "PUT",
            "/tenant/branding",
            Some(serde_json::json!({ "branding": { "product_name": "Acme Code" } })),
        )
        .await;
    let p = preview(&client).await;
    let (token, preview_url) = client
        .preview_token(&p.id, serde_json::json!({ "scope": "interact", "port": APP_PORT }))
        .await;
    assert!(preview_url.starts_with("https://"), "{preview_url}");
    let id: SandboxId = p.id.parse().unwrap();
    let record = server.state.store.get_sandbox_any(&id).await.unwrap();
    let expired = server.state.signer.sign(&Claims {
        id: PreviewTokenId::generate(),
        tenant_id: record.tenant_id,
        sandbox_id: id,
        port: Some(APP_PORT),
        scope: Scope::Interact,
        expires_at: 1,
    });
    let expired_url = preview_url.replace(&token, &expired);
    server.edge.refresh().await; // branding reaches the edge

    let config = serde_json::json!({
        "preview_url": preview_url,
        "expired_url": expired_url,
        "ws_path": "/ws",
        "expect_text": "hello from sandbox",
    });
    let report = run_harness("iframe.mjs", &config).await;
    let show = serde_json::to_string_pretty(&report).unwrap();

    assert_eq!(report["rendered"], true, "{show}");
    let frame_url = report["frame_url"].as_str().unwrap();
    assert!(!frame_url.contains("mt="), "the frame still carries the token: {show}");
    assert!(!report["ws_sent"].is_null() && report["ws_echo"] == report["ws_sent"], "{show}");
    let cookie = report["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-pv_session")
        .unwrap_or_else(|| panic!("no preview cookie: {show}"));
    assert_eq!(cookie["secure"], true, "{show}");
    assert_eq!(cookie["httpOnly"], true, "{show}");
    assert_eq!(cookie["sameSite"], "None", "{show}");
    assert_eq!(cookie["partitioned"], true, "{show}");
    // The token travelled in exactly one URL: the exchange.
    let with_token = report["requested_urls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u.as_str().unwrap().contains(&token))
        .count();
    assert_eq!(with_token, 1, "{show}");
    // The expired token: the tenant's page, and a message to the parent.
    assert!(report["expired_frame_text"].as_str().unwrap().contains("Acme Code"), "{show}");
    let messages = report["expired_messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["type"] == "preview.session_expired" && m["sandbox_id"] == p.id.as_str()),
        "{show}"
    );
    server.stop().await;
}

/// A browser token in a real browser: a page on the tenant's own origin calls the API with it
/// directly (files, exec, and the refusals beyond its scopes, which it can read), a page on any
/// other origin cannot call at all, and the tenant's key is nowhere near the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_token_calls_the_api_from_the_tenants_own_origin_only() {
    const FILE: &str = "/tmp/from-the-page.txt";
    const TEXT: &str = "hello from the tenant's page";
    let server = TestServer::start().await;
    let tenant = server.tenant(None).await;
    // An origin includes its port, and it must be allowed before the browser exists: a port
    // free now, for the harness to serve the page on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let origin = format!("http://127.0.0.1:{port}");
    let set = tenant.call("PUT", "/settings", Some(json!({ "allowed_origins": [origin] }))).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    let sandbox = tenant.sandbox(json!({ "external_user_id": "erin" })).await;
    let theirs = tenant.sandbox(json!({ "external_user_id": "frank" })).await;
    // Reading and running things inside, nothing more: no creates, no destroying.
    let minted = tenant
        .call(
            "POST",
            "/tokens/scoped",
            Some(json!({
                "user_id": "erin",
                "workspace_id": "w",
                "scopes": ["sandboxes:read", "sandboxes:exec"]
            })),
        )
        .await;
    assert_eq!(minted.status, 201, "{:?}", minted.body);
    let token = minted.text("/data/token").to_owned();
    assert!(token.starts_with("mst_"), "{token}");

    let sbx = format!("/sandboxes/{sandbox}");
    let config = json!({
        "api_base": server.base,
        "token": token,
        "allowed_port": port,
        "allowed_calls": [
            { "name": "sandbox", "method": "GET", "path": sbx },
            {
                "name": "write",
                "method": "POST",
                "path": format!("{sbx}/fs/write"),
                "body": { "path": FILE, "content": TEXT }
            },
            { "name": "read", "method": "GET", "path": format!("{sbx}/fs/download?path={FILE}") },
            {
                "name": "exec",
                "method": "POST",
                "path": format!("{sbx}/exec"),
                "body": { "command": format!("tr a-z A-Z < {FILE}") }
            },
            // Beyond the token: a create (for anyone), the tenant's keys, destroying its own
            // sandbox, and another user's sandbox.
            {
                "name": "create",
                "method": "POST",
                "path": "/sandboxes",
                "body": { "external_user_id": "mallory" }
            },
            { "name": "keys", "method": "GET", "path": "/api-keys" },
            { "name": "destroy", "method": "DELETE", "path": sbx },
            { "name": "theirs", "method": "GET", "path": format!("/sandboxes/{theirs}") }
        ],
        // Each would leave a trace in the sandbox had it reached the API.
        "other_calls": [
            { "name": "sandbox", "method": "GET", "path": sbx },
            {
                "name": "write",
                "method": "POST",
                "path": format!("{sbx}/fs/write"),
                "body": { "path": "/tmp/from-elsewhere.txt", "content": "x" }
            },
            {
                "name": "exec",
                "method": "POST",
                "path": format!("{sbx}/exec"),
                "body": { "command": "touch /tmp/exec-from-elsewhere" }
            }
        ]
    });
    let report = run_harness("cors.mjs", &config).await;
    let show = serde_json::to_string_pretty(&report).unwrap();
    assert_eq!(report["allowed_origin"], origin.as_str(), "{show}");

    // The tenant's own origin: every answer reaches the page, request id included (readable
    // only because the API exposes it to that origin).
    let allowed = &report["allowed"];
    for name in ["sandbox", "write", "read", "exec", "create", "keys", "destroy", "theirs"] {
        assert_eq!(allowed[name]["threw"], false, "{name}: {show}");
        assert!(
            allowed[name]["request_id"].as_str().is_some_and(|id| id.starts_with("req_")),
            "{name}: {show}"
        );
    }
    assert_eq!(allowed["sandbox"]["status"], 200, "{show}");
    assert_eq!(allowed["sandbox"]["body"]["data"]["id"], sandbox.as_str(), "{show}");
    assert_eq!(allowed["sandbox"]["body"]["data"]["state"], "running", "{show}");
    assert_eq!(allowed["write"]["status"], 200, "{show}");
    assert_eq!(allowed["write"]["body"]["data"]["size"], TEXT.len(), "{show}");
    assert_eq!(allowed["read"]["status"], 200, "{show}");
    assert_eq!(allowed["read"]["body"], TEXT, "{show}");
    assert_eq!(allowed["exec"]["status"], 200, "{show}");
    assert_eq!(allowed["exec"]["body"]["data"]["exit_code"], 0, "{show}");
    let shouted = TEXT.to_uppercase();
    assert_eq!(
        allowed["exec"]["body"]["data"]["stdout"].as_str().map(str::trim),
        Some(shouted.as_str()),
        "{show}"
    );
    for (name, status, code) in [
        ("create", 403, "INSUFFICIENT_SCOPE"),
        ("keys", 403, "INSUFFICIENT_SCOPE"),
        ("destroy", 403, "INSUFFICIENT_SCOPE"),
        ("theirs", 404, "NOT_FOUND"),
    ] {
        assert_eq!(allowed[name]["status"], status, "{name}: {show}");
        assert_eq!(allowed[name]["body"]["error"]["code"], code, "{name}: {show}");
    }
    assert_eq!(tenant.state(&sandbox).await, "running");

    // Another origin, same token, same browser: every call throws in the page, refused by
    // CORS (the preflight got no Allow-Origin), and none of them reached the sandbox.
    for name in ["sandbox", "write", "exec"] {
        let call = &report["other"][name];
        assert_eq!(call["threw"], true, "{name} went through: {show}");
        assert!(call["status"].is_null(), "{name}: {show}");
        let url = format!("{}{}", server.base, call["path"].as_str().unwrap());
        let refused_by_cors = report["load_failures"].as_array().unwrap().iter().any(|f| {
            f["page"] == "other"
                && f["url"] == url.as_str()
                && f["cors_error"] == "PreflightMissingAllowOriginHeader"
        });
        assert!(refused_by_cors, "{name}: {show}");
    }
    let (code, out, err) = tenant
        .exec(
            &sandbox,
            &format!(
                "cat {FILE} && test ! -e /tmp/from-elsewhere.txt && test ! -e /tmp/exec-from-elsewhere"
            ),
        )
        .await;
    assert_eq!((code, out.as_str()), (0, TEXT), "{err}");

    // The page only ever had the browser token: every call it made carried it, and the
    // tenant's key is nowhere in what the browser sent or saw.
    let requests = report["requests"].as_array().unwrap();
    let to_api: Vec<_> =
        requests.iter().filter(|r| r["url"].as_str().unwrap().starts_with(&server.base)).collect();
    assert!(to_api.len() >= 8, "{show}");
    for r in to_api {
        assert_eq!(r["headers"]["authorization"], format!("Bearer {token}"), "{show}");
    }
    assert!(!show.contains(&tenant.key), "{show}");
    assert!(!serde_json::to_string(requests).unwrap().contains("msk_"), "{show}");
    server.stop().await;
}

/// Runs `script` (in `tests/browser`) with `config` on its stdin and returns its JSON report,
/// insisting it could run. Chromium aborts a load with ERR_NETWORK_CHANGED when any interface
/// on the host changes, and other tests create and remove sandbox links all the time: such a
/// run says nothing about what is tested, so it is repeated (at most five runs, a second apart).
/// Any load can be hit (a page, a frame inside it, a fetch); the harness then reports the
/// failed load (and may still exit 0 having seen nothing).
async fn run_harness(script: &str, config: &serde_json::Value) -> serde_json::Value {
    let harness =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser").join(script);
    let mut runs = 1;
    let output = loop {
        let mut child = tokio::process::Command::new("node")
            .arg(&harness)
            // Third-party cookies blocked, as browsers are heading: only a Partitioned cookie
            // works in the iframe, and the API calls need no cookie at all.
            .env("EXTRA_CHROMIUM_ARGS", "--test-third-party-cookie-phaseout")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node (install it with tests/browser/install.sh)");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(config.to_string().as_bytes()).await.unwrap();
        drop(stdin);
        let output =
            tokio::time::timeout(std::time::Duration::from_secs(90), child.wait_with_output())
                .await
                .expect("the browser harness hung")
                .unwrap();
        if runs == 5 || !String::from_utf8_lossy(&output.stdout).contains("ERR_NETWORK_CHANGED") {
            break output;
        }
        eprintln!(
            "browser run disturbed by a host network change; running it again: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        runs += 1;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
