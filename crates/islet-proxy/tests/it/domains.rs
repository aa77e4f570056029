//! A tenant's own preview domain: claimed, verified through the edge, served with its own
//! certificate by SNI, and used in the URLs the API returns.

use islet_testkit::{edge_client, TestServer};

use crate::{preview, APP_PORT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_domain_serves_previews_with_its_own_certificate() {
    let server = TestServer::builder()
        .control(islet_control::Config {
            preview_scheme: "https".into(),
            ..islet_control::Config::default()
        })
        .start()
        .await;
    let client = server.tenant(None).await;
    let rival = server.tenant(None).await;
    let p = preview(&client).await;

    // Bad domains are refused; the platform's own is not claimable.
    for bad in [
        "localhost",
        "a..b",
        "x.preview.localhost",
        "preview.localhost",
        "pReview.localhost.",
        "localhost.preview.localhost",
    ] {
        let reply = client
            .call(
                "PUT",
                "/tenant/preview-domain",
                Some(serde_json::json!({ "preview_domain": bad })),
            )
            .await;
        assert_eq!(reply.status, 400, "{bad}: {:?}", reply.body);
    }
    for fine in ["localhost.test", "preview.localhost.evil"] {
        let reply = rival
            .call(
                "PUT",
                "/tenant/preview-domain",
                Some(serde_json::json!({ "preview_domain": fine })),
            )
            .await;
        assert_eq!(reply.status, 200, "{fine}: {:?}", reply.body);
    }
    let reply = client
        .call(
            "PUT",
            "/tenant/preview-domain",
            Some(serde_json::json!({ "preview_domain": "Preview.Acme.Test" })),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let data = reply.data();
    assert_eq!(data["domain"], "preview.acme.test");
    assert_eq!(data["verified"], false);
    assert_eq!(data["records"][0]["name"], "*.preview.acme.test");
    assert_eq!(data["verification"]["name"], "_preview-verify.preview.acme.test");
    let challenge = data["verification"]["value"].as_str().unwrap().to_owned();

    // A rival claims the same domain and tries to verify it before the owner: the domain's DNS
    // holds only the owner's challenge, so it cannot, before or after.
    let claim = rival
        .call(
            "PUT",
            "/tenant/preview-domain",
            Some(serde_json::json!({ "preview_domain": "preview.acme.test" })),
        )
        .await;
    assert_ne!(claim.data()["verification"]["value"], challenge.as_str());
    let early = rival.call("POST", "/tenant/preview-domain/verify", None).await;
    assert_eq!(early.data()["verified"], false, "{:?}", early.body);
    server.dns.set_txt("_preview-verify.preview.acme.test", &challenge);
    let takeover = rival.call("POST", "/tenant/preview-domain/verify", None).await;
    assert_eq!(takeover.data()["verified"], false, "{:?}", takeover.body);
    assert!(takeover.text("/data/error").contains("does not hold"));

    // No certificate before verification.
    let names = ["*.preview.acme.test".to_owned(), "preview.acme.test".to_owned()];
    let (cert, key) = islet_tls::self_signed(&names).unwrap();
    let early_cert = client
        .call(
            "PUT",
            "/tenant/preview-domain/certificate",
            Some(serde_json::json!({ "certificate_pem": cert, "private_key_pem": key })),
        )
        .await;
    assert_eq!(early_cert.status, 409, "{:?}", early_cert.body);

    let verified = client.call("POST", "/tenant/preview-domain/verify", None).await;
    assert_eq!(verified.status, 200, "{:?}", verified.body);
    assert_eq!(verified.data()["verified"], true, "{:?}", verified.body);
    // Now the rival can neither verify it nor put a certificate on it.
    let second = rival.call("POST", "/tenant/preview-domain/verify", None).await;
    assert_eq!(second.data()["verified"], false, "{:?}", second.body);
    let (rival_cert, rival_key) = islet_tls::self_signed(&names).unwrap();
    let overwrite = rival
        .call(
            "PUT",
            "/tenant/preview-domain/certificate",
            Some(
                serde_json::json!({ "certificate_pem": rival_cert, "private_key_pem": rival_key }),
            ),
        )
        .await;
    assert_eq!(overwrite.status, 409, "{:?}", overwrite.body);

    // A certificate for *.preview.acme.test: checked, then served by SNI.
    let (_, other_key) = islet_tls::self_signed(&names).unwrap();
    let mismatch = client
        .call(
            "PUT",
            "/tenant/preview-domain/certificate",
            Some(serde_json::json!({ "certificate_pem": cert, "private_key_pem": other_key })),
        )
        .await;
    assert_eq!(mismatch.status, 400, "{:?}", mismatch.body);
    let uploaded = client
        .call(
            "PUT",
            "/tenant/preview-domain/certificate",
            Some(serde_json::json!({ "certificate_pem": cert, "private_key_pem": key })),
        )
        .await;
    assert_eq!(uploaded.status, 200, "{:?}", uploaded.body);

    // The API now hands out URLs on the tenant's domain.
    let (token, token_url) =
        client.preview_token(&p.id, serde_json::json!({ "scope": "interact" })).await;
    let host = crate::host_of(&token_url);
    assert!(host.ends_with(".preview.acme.test"), "{token_url}");
    assert!(token_url.starts_with("https://"), "{token_url}");
    server.edge.refresh().await; // the domain and its certificate reach the edge

    // Trusting only the tenant's certificate, the tenant's host works over TLS...
    let tenant_only = edge_client(&host, server.preview_https, &[&cert]);
    let target = format!("https://{host}:{}/echo", server.preview_https.port());
    let response = tenant_only.get(&target).header("x-preview-token", &token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen: serde_json::Value = response.json().await.unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");

    // ...and the token exchange sets a cookie fit for a cross-site iframe.
    let exchanged = tenant_only.get(&token_url).send().await.unwrap();
    assert_eq!(exchanged.status(), 303);
    let cookie = exchanged.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-pv_session="), "{cookie}");
    for attribute in ["Secure", "HttpOnly", "SameSite=None", "Partitioned"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }

    // The platform domain is served with the platform's certificate, not the tenant's.
    let platform_host = format!("{APP_PORT}-sbx-{}.preview.localhost", &p.id[4..]);
    let wrong_trust = edge_client(&platform_host, server.preview_https, &[&cert]);
    assert!(wrong_trust
        .get(format!("https://{platform_host}:{}/echo", server.preview_https.port()))
        .send()
        .await
        .is_err());
    let platform = edge_client(&platform_host, server.preview_https, &[&server.platform_cert_pem]);
    let response = platform
        .get(format!("https://{platform_host}:{}/echo", server.preview_https.port()))
        .header("x-preview-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Another tenant's sandbox is not found on this tenant's domain.
    let theirs = rival.sandbox(serde_json::json!({})).await;
    let (their_token, _) = rival.preview_token(&theirs, serde_json::json!({})).await;
    let their_host = format!("{APP_PORT}-sbx-{}.preview.acme.test", &theirs[4..]);
    let cross = edge_client(&their_host, server.preview_https, &[&cert]);
    let response = cross
        .get(format!("https://{their_host}:{}/echo", server.preview_https.port()))
        .header("x-preview-token", &their_token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    server.stop().await;
}
