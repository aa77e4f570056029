//! What the API answers, pinned: one walk over the routes (answers and refusals alike) whose
//! redacted answers are compared with `tests/snapshots/*.json`. A change of any field's name,
//! type or presence, of a status or of an error code shows up here.

use std::path::PathBuf;

use islet_testkit::snapshot::{assert_snapshot, redact};
use islet_testkit::{Client, TestServer};
use serde_json::{json, Map, Value};

/// Records each call's status and redacted body under `METHOD path` (IDs in the path
/// redacted too), in call order.
struct Walk<'a> {
    client: &'a Client,
    answers: Map<String, Value>,
}

impl<'a> Walk<'a> {
    fn new(client: &'a Client) -> Self {
        Self { client, answers: Map::new() }
    }

    async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = self.client.call(method, path, body).await;
        let mut key = format!("{method} {}", islet_testkit::snapshot::redact_str(path));
        while self.answers.contains_key(&key) {
            key.push('\'');
        }
        let body = if reply.body.is_null() {
            Value::String(islet_testkit::snapshot::redact_str(&String::from_utf8_lossy(
                &reply.bytes,
            )))
        } else {
            redact(&reply.body)
        };
        self.answers.insert(key, json!({ "status": reply.status, "body": body }));
        reply.body
    }

    fn check(self, name: &str) {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/snapshots/{name}.json"));
        assert_snapshot(&path, &Value::Object(self.answers));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_routes_answer_as_pinned() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let mut walk = Walk::new(&client);
    let created = walk
        .call(
            "POST",
            "/sandboxes",
            Some(json!({
                "name": "wire",
                "external_user_id": "user_1",
                "external_workspace_id": "ws_1",
                "metadata": {"plan": "pro"},
                "tags": ["a"],
                "timeout_sec": 600,
            })),
        )
        .await;
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let s = format!("/sandboxes/{id}");
    walk.call("GET", "/sandboxes", None).await;
    walk.call("GET", "/sandboxes?external_user_id=user_1&limit=5", None).await;
    walk.call("GET", &s, None).await;
    walk.call("GET", "/sandboxes/by-name/wire", None).await;
    walk.call("PATCH", &s, Some(json!({"metadata": {"plan": "team"}, "idle_timeout_sec": 300})))
        .await;
    walk.call("PATCH", &format!("{s}/tags"), Some(json!({"tags": ["b", "c"]}))).await;
    walk.call("POST", &format!("{s}/extend"), Some(json!({"timeout_sec": 900}))).await;
    walk.call("GET", &format!("{s}/readiness"), None).await;
    walk.call(
        "POST",
        &format!("{s}/exec"),
        Some(json!({"command": "echo hi; echo err >&2; exit 3"})),
    )
    .await;
    walk.call(
        "POST",
        &format!("{s}/fs/write"),
        Some(json!({"path": "/tmp/w.txt", "content": "hello"})),
    )
    .await;
    walk.call("POST", &format!("{s}/fs/stat"), Some(json!({"path": "/tmp/w.txt"}))).await;
    walk.call("GET", &format!("{s}/fs/download?path=/tmp/w.txt"), None).await;
    walk.call("GET", &format!("{s}/files?path=/tmp"), None).await;
    walk.call("GET", &format!("{s}/files/tmp/w.txt"), None).await;
    walk.call("GET", &format!("{s}/processes"), None).await;
    walk.call("POST", &format!("{s}/expose"), Some(json!({"port": 8000}))).await;
    let preview = walk.call("GET", &format!("{s}/previews"), None).await;
    let pid = preview["data"][0]["id"].as_str().unwrap_or_default().to_owned();
    walk.call("GET", &format!("{s}/previews/{pid}"), None).await;
    walk.call("POST", &format!("{s}/previews/{pid}/share"), Some(json!({}))).await;
    walk.call("DELETE", &format!("{s}/previews/{pid}/share"), None).await;
    let token = walk
        .call("POST", &format!("{s}/preview-token"), Some(json!({"port": 8000, "expires_in": 600})))
        .await;
    let tid = token["data"]["id"].as_str().unwrap_or_default().to_owned();
    walk.call("GET", &format!("{s}/preview-tokens"), None).await;
    walk.call("DELETE", &format!("{s}/preview-tokens/{tid}"), None).await;
    let share = walk.call("POST", &format!("{s}/shares"), Some(json!({"port": 8000}))).await;
    let share_id = share["data"]["share_id"].as_str().unwrap_or_default().to_owned();
    walk.call("GET", &format!("{s}/shares"), None).await;
    walk.call("DELETE", &format!("{s}/shares/{share_id}"), None).await;
    walk.call("DELETE", &format!("{s}/previews/{pid}"), None).await;
    walk.call("POST", &format!("{s}/pause"), Some(json!({}))).await;
    walk.call("POST", &format!("{s}/pause"), Some(json!({}))).await;
    walk.call("POST", &format!("{s}/resume"), Some(json!({}))).await;
    walk.call("POST", &format!("{s}/stop"), Some(json!({}))).await;
    walk.call("GET", &format!("{s}/readiness"), None).await;
    walk.call("POST", &format!("{s}/exec"), Some(json!({"command": "true"}))).await;
    walk.call("POST", &format!("{s}/resume"), Some(json!({}))).await;
    walk.call("DELETE", &s, None).await;
    walk.call("GET", &s, None).await;
    // Refusals: each with the envelope.
    walk.call("GET", "/sandboxes/sbx_aaaaaaaaaaaaaaaaaaaa", None).await;
    walk.call("GET", "/sandboxes/not-an-id", None).await;
    walk.call("POST", "/sandboxes", Some(json!({"cpu_count": 999}))).await;
    walk.call("POST", "/sandboxes", Some(json!({"name": 7}))).await;
    walk.call("GET", "/nowhere", None).await;
    walk.check("sandboxes");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_routes_answer_as_pinned() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let mut walk = Walk::new(&client);
    walk.call("GET", "/health", None).await;
    // Keys and browser tokens.
    walk.call("GET", "/api-keys", None).await;
    let key = walk
        .call("POST", "/api-keys", Some(json!({"name": "ci", "scopes": ["sandboxes:read"]})))
        .await;
    let kid = key["data"]["id"].as_str().unwrap_or_default().to_owned();
    walk.call("GET", &format!("/api-keys/{kid}"), None).await;
    walk.call("PATCH", &format!("/api-keys/{kid}"), Some(json!({"name": "ci-2"}))).await;
    walk.call("POST", &format!("/api-keys/{kid}/rotate"), Some(json!({}))).await;
    walk.call("DELETE", &format!("/api-keys/{kid}"), None).await;
    walk.call(
        "POST",
        "/api-keys/scoped",
        Some(json!({"external_user_id": "alice", "scopes": ["sandboxes:write", "usage:read"]})),
    )
    .await;
    let token = walk
        .call(
            "POST",
            "/tokens/scoped",
            Some(json!({"user_id": "carol", "workspace_id": "ws_1", "scopes": ["sandboxes:read"]})),
        )
        .await;
    let token_id = token["data"]["id"].as_str().unwrap_or_default().to_owned();
    walk.call("GET", "/tokens/scoped", None).await;
    walk.call("DELETE", &format!("/tokens/scoped/{token_id}"), None).await;
    walk.call("POST", "/api-keys", Some(json!({"scopes": ["nope"]}))).await;
    // Quotas and policy.
    walk.call("GET", "/quotas/external/alice", None).await;
    walk.call(
        "PUT",
        "/quotas/external/alice",
        Some(json!({"max_sandboxes": 3, "max_concurrent": 2})),
    )
    .await;
    walk.call("GET", "/quotas/external/alice", None).await;
    walk.call("PUT", "/quotas/external/alice", Some(json!({"max_rockets": 5}))).await;
    walk.call("DELETE", "/quotas/external/alice", None).await;
    walk.call("PUT", "/tenant/policy", Some(json!({"quotas": {"max_cpu": 4}}))).await;
    walk.call("GET", "/tenant/policy", None).await;
    walk.call("DELETE", "/tenant/policy", None).await;
    walk.call(
        "PUT",
        "/external-users/bob/policy",
        Some(json!({"lifecycle": {"default_timeout_sec": 120}, "billing": {"tier": "gold"}})),
    )
    .await;
    walk.call("GET", "/external-users/bob/policy", None).await;
    walk.call("GET", "/external-users/bob/effective-policy", None).await;
    walk.call("DELETE", "/external-users/bob/policy", None).await;
    walk.call("POST", "/external-users/bob/suspend", Some(json!({"reason": "abuse"}))).await;
    walk.call("GET", "/external-users/bob", None).await;
    walk.call("POST", "/external-users/bob/unsuspend", Some(json!({}))).await;
    // Usage.
    walk.call("GET", "/usage?period=30d", None).await;
    walk.call("GET", "/usage/summary", None).await;
    walk.call("GET", "/usage/sessions", None).await;
    walk.call("GET", "/usage/export.csv", None).await;
    walk.call("GET", "/usage?period=nope", None).await;
    // Webhooks.
    let hook = walk
        .call(
            "POST",
            "/webhooks",
            Some(json!({"url": "https://hooks.example.com/islet", "events": ["sandbox.*"], "name": "main"})),
        )
        .await;
    let hid = hook["data"]["id"].as_str().unwrap_or_default().to_owned();
    walk.call("GET", "/webhooks", None).await;
    walk.call("GET", "/webhooks/events", None).await;
    walk.call("GET", &format!("/webhooks/{hid}"), None).await;
    walk.call("PATCH", &format!("/webhooks/{hid}"), Some(json!({"events": ["sandbox.running"]})))
        .await;
    walk.call("POST", &format!("/webhooks/{hid}/rotate-secret"), Some(json!({}))).await;
    walk.call("GET", &format!("/webhooks/{hid}/deliveries"), None).await;
    walk.call("DELETE", &format!("/webhooks/{hid}"), None).await;
    walk.call("POST", "/webhooks", Some(json!({"url": "ftp://x", "events": ["sandbox.*"]}))).await;
    // Branding, settings, preview domain.
    walk.call("GET", "/tenant/branding", None).await;
    walk.call(
        "PUT",
        "/tenant/branding",
        Some(json!({"branding": {"product_name": "Acme", "primary_color": "#112233"}})),
    )
    .await;
    walk.call("PUT", "/tenant/branding", Some(json!({"product_name": "Acme"}))).await;
    walk.call("GET", "/settings/branding", None).await;
    walk.call("DELETE", "/tenant/branding", None).await;
    walk.call("GET", "/settings", None).await;
    walk.call("PUT", "/settings", Some(json!({"allowed_origins": ["https://app.example.com"]})))
        .await;
    walk.call("PUT", "/settings", Some(json!({"allowed_origins": ["not a url"]}))).await;
    walk.call("GET", "/tenant/preview-domain", None).await;
    walk.call("PUT", "/tenant/preview-domain", Some(json!({"domain": "previews.example.net"})))
        .await;
    walk.call("GET", "/tenant/preview-domain", None).await;
    walk.call("DELETE", "/tenant/preview-domain", None).await;
    walk.check("tenant");
    let anonymous = Client::new(&server.base, "msk_live_nope");
    let mut walk = Walk::new(&anonymous);
    walk.call("GET", "/sandboxes", None).await;
    walk.check("anonymous");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_routes_answer_as_pinned() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let mut walk = Walk::new(&client);
    // Custom domains.
    let made =
        walk.call("POST", "/custom-domains", Some(json!({"domain": "app.example.net"}))).await;
    let did = made["data"]["id"].as_str().unwrap_or_default().to_owned();
    walk.call("GET", "/custom-domains", None).await;
    walk.call("GET", &format!("/custom-domains/{did}"), None).await;
    walk.call("POST", "/custom-domains", Some(json!({"domain": "app.example.net"}))).await;
    walk.call("DELETE", &format!("/custom-domains/{did}"), None).await;
    // Workspace policy and the effective policy in a workspace.
    walk.call("PUT", "/workspaces/team-a/policy", Some(json!({"quotas": {"max_concurrent": 2}})))
        .await;
    walk.call("GET", "/workspaces/team-a/policy", None).await;
    walk.call("GET", "/external-users/bob/effective-policy?workspace_id=team-a", None).await;
    walk.call("DELETE", "/workspaces/team-a/policy", None).await;
    // A bulk job over nothing is finished when accepted.
    let job = walk
        .call(
            "POST",
            "/bulk/sandboxes/stop",
            Some(json!({"filter": {"external_user_id": "nobody"}})),
        )
        .await;
    let jid = job["job_id"].as_str().unwrap_or_default().to_owned();
    walk.call("GET", &format!("/bulk/jobs/{jid}"), None).await;
    walk.call("POST", "/bulk/sandboxes/stop", Some(json!({"filter": {}}))).await;
    // Who pays, and member caps.
    walk.call("GET", "/bill-to", None).await;
    walk.call("PUT", "/bill-to", Some(json!({"org": "someone-else"}))).await;
    walk.call("GET", "/limits", None).await;
    let plan = client.call("GET", "/tenant/plan", None).await;
    let caps = format!("/tenants/{}/member-caps", plan.text("/data/tenant_id"));
    walk.call("PUT", &format!("{caps}/alice"), Some(json!({"usage_cap_cents": 500}))).await;
    walk.call("GET", &caps, None).await;
    walk.call("DELETE", &format!("{caps}/alice"), None).await;
    walk.check("governance");
    server.stop().await;
}
