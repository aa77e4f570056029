//! A tenant's custom domains: several, each proven by its own TXT record, each serving the
//! tenant's previews once verified and nothing once deleted; another tenant can neither verify
//! one nor be served on it.

use islet_testkit::TestServer;
use serde_json::json;

use crate::{http, preview, url, APP_PORT};

/// The status of `GET /echo` on `host` with the preview token.
async fn echo(server: &TestServer, host: &str, token: &str) -> u16 {
    let response = http(server, host)
        .get(url(server, host, "/echo"))
        .header("x-preview-token", token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_custom_domains_serve_previews_until_deleted() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let rival = server.tenant(None).await;
    let p = preview(&client).await;
    let (token, _) = client.preview_token(&p.id, json!({ "scope": "interact" })).await;
    let label = format!("{APP_PORT}-sbx-{}", &p.id[4..]);

    // Bad input is refused with the field named; the platform's own domain is not claimable.
    for (body, field) in [
        (json!({}), Some("domain")),
        (json!({ "domain": "a..b" }), Some("domain")),
        (json!({ "domain": "x.preview.localhost" }), Some("domain")),
        (json!({ "domain": "app.acme.test", "deployment_id": "dep_1" }), None),
    ] {
        let reply = client.call("POST", "/custom-domains", Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["details"]["field"].as_str(), field, "{body}");
    }

    // Two domains, each with its own challenge and records.
    let mut ids = Vec::new();
    for domain in ["App.Acme.Test", "docs.acme.test"] {
        let made = client.call("POST", "/custom-domains", Some(json!({ "domain": domain }))).await;
        assert_eq!(made.status, 201, "{:?}", made.body);
        let d = made.data();
        assert_eq!(d["status"], "pending");
        assert_eq!(d["domain"], domain.to_ascii_lowercase());
        assert_eq!(d["records"][0]["name"], format!("*.{}", domain.to_ascii_lowercase()));
        ids.push((d["id"].as_str().unwrap().to_owned(), d["domain"].as_str().unwrap().to_owned()));
    }
    let again =
        client.call("POST", "/custom-domains", Some(json!({ "fqdn": "app.acme.test" }))).await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    let listed = client.call("GET", "/custom-domains", None).await;
    assert_eq!(listed.body["total"], 2, "{:?}", listed.body);

    // Unverified, it serves nothing.
    let (app_id, app) = ids[0].clone();
    let host = format!("{label}.{app}");
    assert_eq!(echo(&server, &host, &token).await, 404);

    // Verification needs the domain's own TXT record: the other domain's does not do.
    let (docs_id, docs) = ids[1].clone();
    let docs_challenge = client.call("GET", &format!("/custom-domains/{docs_id}"), None).await;
    let docs_challenge = docs_challenge.text("/data/verification/value").to_owned();
    server.dns.set_txt(&format!("_preview-verify.{app}"), &docs_challenge);
    let wrong = client.call("POST", &format!("/custom-domains/{app_id}/verify"), None).await;
    assert_eq!(wrong.data()["verified"], false, "{:?}", wrong.body);
    assert!(wrong.text("/data/error").contains("does not hold"), "{:?}", wrong.body);
    let app_challenge = client.call("GET", &format!("/custom-domains/{app_id}"), None).await;
    let app_challenge = app_challenge.text("/data/verification/value").to_owned();
    server.dns.set_txt(&format!("_preview-verify.{app}"), &app_challenge);
    // A rival registering the same domain has another challenge, so cannot verify it.
    let theirs = rival.call("POST", "/custom-domains", Some(json!({ "domain": app }))).await;
    assert_eq!(theirs.status, 201, "{:?}", theirs.body);
    let their_id = theirs.text("/data/id").to_owned();
    let early = rival.call("POST", &format!("/custom-domains/{their_id}/verify"), None).await;
    assert_eq!(early.data()["verified"], false, "{:?}", early.body);
    let verified = client.call("POST", &format!("/custom-domains/{app_id}/verify"), None).await;
    assert_eq!(verified.data()["status"], "verified", "{:?}", verified.body);
    assert_eq!(verified.body["data"]["error"], serde_json::Value::Null);
    // Nor can the rival take it as its preview domain now, even with its own challenge
    // published: a verified domain serves one tenant.
    let third = server.tenant(None).await;
    let claim =
        third.call("PUT", "/tenant/preview-domain", Some(json!({ "preview_domain": app }))).await;
    server.dns.set_txt(&format!("_preview-verify.{app}"), claim.text("/data/verification/value"));
    let takeover = third.call("POST", "/tenant/preview-domain/verify", None).await;
    assert_eq!(takeover.status, 409, "{:?}", takeover.body);
    // Nor a domain above or below it, whose previews could set cookies for it.
    for nested in [format!("sub.{app}"), "acme.test".to_owned()] {
        let made = third.call("POST", "/custom-domains", Some(json!({ "domain": nested }))).await;
        assert_eq!(made.status, 201, "{nested}: {:?}", made.body);
        server
            .dns
            .set_txt(&format!("_preview-verify.{nested}"), made.text("/data/verification/value"));
        let verify = format!("/custom-domains/{}/verify", made.text("/data/id"));
        let reply = third.call("POST", &verify, None).await;
        assert_eq!(reply.status, 409, "{nested}: {:?}", reply.body);
    }
    // The rival's own claim of it, with its own challenge published now: refused as taken.
    let their_challenge = theirs.text("/data/verification/value").to_owned();
    server.dns.set_txt(&format!("_preview-verify.{app}"), &their_challenge);
    let twice = rival.call("POST", &format!("/custom-domains/{their_id}/verify"), None).await;
    assert_eq!(twice.status, 409, "{:?}", twice.body);

    // The preview answers on the custom domain at once, with the same token.
    assert_eq!(echo(&server, &host, &token).await, 200);
    // The rival's sandbox is not found under this tenant's domain.
    let rival_box = rival.sandbox(json!({})).await;
    let (rival_token, _) = rival.preview_token(&rival_box, json!({})).await;
    let rival_host = format!("{APP_PORT}-sbx-{}.{app}", &rival_box[4..]);
    assert_eq!(echo(&server, &rival_host, &rival_token).await, 404);
    // Nor can the rival see, verify or delete the tenant's domain.
    for (method, path) in [
        ("GET", format!("/custom-domains/{app_id}")),
        ("POST", format!("/custom-domains/{app_id}/verify")),
        ("DELETE", format!("/custom-domains/{app_id}")),
    ] {
        let reply = rival.call(method, &path, None).await;
        assert_eq!(reply.status, 404, "{method} {path}: {:?}", reply.body);
    }
    // A custom domain cannot also become the preview domain.
    let clash =
        client.call("PUT", "/tenant/preview-domain", Some(json!({ "preview_domain": docs }))).await;
    assert_eq!(clash.status, 409, "{:?}", clash.body);

    // Deleted, it serves nothing again, at once.
    let gone = client.call("DELETE", &format!("/custom-domains/{app_id}"), None).await;
    assert_eq!(gone.status, 204);
    assert_eq!(echo(&server, &host, &token).await, 404);
    let missing = client.call("GET", &format!("/custom-domains/{app_id}"), None).await;
    assert_eq!(missing.status, 404);
    client.destroy(&p.id).await;
    rival.destroy(&rival_box).await;
    server.stop().await;
}
