//! The preview edge against real sandboxes: a control plane and an edge in this process, the
//! test app (`islet-testkit/fixtures/preview_app.py`) inside a sandbox, real HTTP clients.
#![allow(clippy::unwrap_used)]

mod acme;
mod browser;
mod custom_domains;
mod domains;
mod forwarding;
mod pages;
mod tokens;

use islet_testkit::{Client, TestServer};

/// The app's port inside every test sandbox.
pub const APP_PORT: u16 = 8000;

/// A sandbox running the test app, exposed privately on [`APP_PORT`].
pub struct Preview {
    pub id: String,
    /// `8000-sbx-….preview.localhost`
    pub host: String,
}

pub async fn preview(client: &Client) -> Preview {
    let id = client.sandbox(serde_json::json!({ "external_user_id": "user-1" })).await;
    client.start_preview_app(&id, APP_PORT).await;
    let reply = client
        .call(
            "POST",
            &format!("/sandboxes/{id}/expose"),
            Some(serde_json::json!({ "port": APP_PORT })),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    Preview { host: host_of(reply.text("/data/url")), id }
}

/// The host part of a URL.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    authority.split(':').next().unwrap().to_owned()
}

/// A plain-HTTP client for the edge: every host resolves to it, redirects are not followed.
pub fn http(server: &TestServer, host: &str) -> reqwest::Client {
    islet_testkit::edge_client(host, server.preview_http, &[])
}

/// `http://<host>:<edge port><path>`.
pub fn url(server: &TestServer, host: &str, path: &str) -> String {
    format!("http://{host}:{}{path}", server.preview_http.port())
}

/// Claim `domain` for the client's tenant, publish its challenge on the test DNS, verify it.
pub async fn verified_domain(server: &TestServer, client: &Client, domain: &str) {
    let claimed = client
        .call(
            "PUT",
            "/tenant/preview-domain",
            Some(serde_json::json!({ "preview_domain": domain })),
        )
        .await;
    let challenge = claimed.data()["verification"]["value"].as_str().unwrap().to_owned();
    server.dns.set_txt(&format!("_preview-verify.{domain}"), &challenge);
    let verified = client.call("POST", "/tenant/preview-domain/verify", None).await;
    assert_eq!(verified.data()["verified"], true, "{:?}", verified.body);
}
