//! Certificates issued by a real ACME CA (Debian's `pebble`, validating for real) for previews
//! on a tenant's domain: on the first handshake, with TLS-ALPN-01 or HTTP-01, then renewed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use islet_proxy::{AcmeConfig, Challenge};
use islet_testkit::{edge_client, TestServer};

use crate::{preview, APP_PORT};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A pebble CA whose own HTTPS listener presents a certificate from a CA written to `dir`.
struct Pebble {
    _process: tokio::process::Child,
    management: SocketAddr,
    ca_file: std::path::PathBuf,
}

fn write_listener_ca(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "test ACME listener CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
}

impl Pebble {
    /// Validate on the edge's ports (`http_port` for HTTP-01, `tls_port` for TLS-ALPN-01).
    async fn start(
        dir: &Path,
        listen: SocketAddr,
        dns: SocketAddr,
        http_port: u16,
        tls_port: u16,
    ) -> Self {
        write_listener_ca(dir);
        let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = serde_json::json!({ "pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let process = tokio::process::Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .arg("-dnsserver")
            .arg(dns.to_string())
            // Validate at once, and never reject nonces at random (the client retries only so
            // often); validation itself stays real.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("pebble (scripts/install-deps.sh installs it)");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Pebble { _process: process, management, ca_file: dir.join("ca.pem") }
    }

    /// The root the CA issues under (made anew at each start).
    async fn issuing_root(&self) -> String {
        let ca = std::fs::read_to_string(&self.ca_file).unwrap();
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .build()
            .unwrap();
        client
            .get(format!("https://localhost:{}/roots/0", self.management.port()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

async fn issues_on_first_handshake_and_renews(challenge: Challenge) {
    let pebble_listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = std::env::temp_dir().join(format!("acme-{challenge:?}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = TestServer::builder()
        .control(islet_control::Config {
            preview_scheme: "https".into(),
            preview_acme: true,
            ..islet_control::Config::default()
        })
        .edge(|edge| {
            edge.acme = Some(AcmeConfig {
                directory_url: format!("https://{pebble_listen}/dir"),
                root_ca: Some(dir.join("ca.pem")),
                challenge,
                // Longer than pebble's 5-year certificates: every one is due for renewal.
                renew_before: Duration::from_secs(10 * 365 * 86_400),
                issue_timeout: Duration::from_secs(60),
            });
        })
        .start()
        .await;
    // The test DNS answers 127.0.0.1 for every name, so validation reaches this edge.
    let pebble = Pebble::start(
        &dir,
        pebble_listen,
        server.dns.address,
        server.preview_http.port(),
        server.preview_https.port(),
    )
    .await;
    let client = server.tenant(None).await;
    let p = preview(&client).await;
    crate::verified_domain(&server, &client, "preview.acme.test").await;
    let (token, url) = client.preview_token(&p.id, serde_json::json!({ "port": APP_PORT })).await;
    let host = crate::host_of(&url);
    assert!(host.ends_with(".preview.acme.test"), "{url}");
    server.edge.refresh().await; // the verified domain reaches the edge

    // The first handshake waits for the certificate; it verifies against the CA's root.
    let root = pebble.issuing_root().await;
    let edge = edge_client(&host, server.preview_https, &[&root]);
    let target = format!("https://{host}:{}/echo", server.preview_https.port());
    let started = Instant::now();
    let response = edge.get(&target).header("x-preview-token", &token).send().await;
    let first = started.elapsed();
    let response =
        response.unwrap_or_else(|e| panic!("handshake with an issued certificate failed: {e:?}"));
    assert_eq!(response.status(), 200);
    eprintln!("{challenge:?}: first request with issuance took {first:?}");

    // Stored, and renewed (everything is due with this renewal window).
    let stored = |settings: islet_store::EdgeSettings| {
        settings.certificates.into_iter().find(|c| c.name == host).map(|c| c.cert_pem)
    };
    let issued =
        stored(server.state.store.edge_settings().await.unwrap()).expect("certificate stored");
    let mut renewed = None;
    for _ in 0..100 {
        let now = stored(server.state.store.edge_settings().await.unwrap());
        if now.as_ref().is_some_and(|pem| *pem != issued) {
            renewed = now;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(renewed.is_some(), "the certificate was not renewed");
    server.edge.refresh().await; // the renewed certificate reaches the edge
    let again = edge_client(&host, server.preview_https, &[&root]);
    let response = again.get(&target).header("x-preview-token", &token).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // A host naming no sandbox of the tenant gets no certificate (nobody can make the edge
    // order certificates for names of their choosing).
    let stranger = "8000-sbx-aaaaaaaaaaaaaaaaaaaa.preview.acme.test";
    let edge = edge_client(stranger, server.preview_https, &[&root]);
    let result =
        edge.get(format!("https://{stranger}:{}/", server.preview_https.port())).send().await;
    assert!(result.is_err(), "a certificate for a host with no sandbox: {result:?}");
    let settings = server.state.store.edge_settings().await.unwrap();
    assert!(!settings.certificates.iter().any(|c| c.name == stranger));
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_issues_on_first_handshake_and_renews() {
    issues_on_first_handshake_and_renews(Challenge::TlsAlpn01).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_issues_on_first_handshake_and_renews() {
    issues_on_first_handshake_and_renews(Challenge::Http01).await;
}
