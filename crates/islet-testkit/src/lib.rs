//! The vocabulary of Islet's integration tests: "start a control plane", "a client for tenant
//! X", "a sandbox running this". Everything is real: a SQLite file, runc/runsc, namespaces,
//! cgroups and an HTTP server on an ephemeral port. Tests need root and a built template.
#![allow(clippy::unwrap_used)]

pub mod dns;
pub mod receiver;
pub mod snapshot;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use islet_control::domain_verify::VerifyTarget;
use islet_control::{AppState, Config};
use islet_runtime::{firewall, Runtime};
use islet_store::Store;
use islet_types::sandbox::Isolation;
use islet_types::time::now_millis;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

static SERVERS: AtomicU32 = AtomicU32::new(0);

/// Where the built binaries are (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug")
}

/// The template cache tests share (built once by `scripts/test.sh`).
pub fn template_dir() -> PathBuf {
    std::env::var_os("ISLET_TEMPLATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/islet/templates"))
}

/// A unique (prefix, subnet octet) per server in this process, so servers never share links,
/// firewall chains or addresses.
pub fn network_identity() -> (String, u8) {
    let n = SERVERS.fetch_add(1, Ordering::SeqCst);
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    let prefix = format!(
        "t{}{}",
        letters[(n / 26 % 26) as usize] as char,
        letters[(n % 26) as usize] as char
    );
    (prefix, 150 + (n % 50) as u8)
}

/// A fresh data directory under /var/tmp (sandbox roots must be reachable by mapped uids).
pub fn data_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from("/var/tmp").join(format!(
        "islet-test-{tag}-{}-{}",
        std::process::id(),
        SERVERS.load(Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A control plane running in this process. `stop` shuts it down cleanly; if a test panics
/// first, `Drop` still removes every sandbox it left on the host.
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    /// The preview edge's plain-HTTP and TLS listeners (TLS with a self-signed certificate for
    /// `*.preview.localhost`, in [`TestServer::platform_cert_pem`]).
    pub preview_http: SocketAddr,
    pub preview_https: SocketAddr,
    pub platform_cert_pem: String,
    pub edge: Arc<islet_proxy::Edge>,
    /// The DNS server custom-domain verification asks (and that answers 127.0.0.1 for any A).
    pub dns: dns::FakeDns,
    pub data_dir: PathBuf,
    prefix: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// How a [`TestServer`] is set up: the control plane's settings, and adjustments to the node
/// runtime's and the edge's. Preview URLs name the plain-HTTP listener unless the control
/// plane's `preview_scheme` is `https`; domain verification asks [`TestServer::dns`].
#[derive(Default)]
pub struct Builder<'a> {
    control: Config,
    runtime: Option<Adjust<'a, islet_runtime::Config>>,
    edge: Option<Adjust<'a, islet_proxy::Config>>,
}

/// A change to a component's settings before it starts.
type Adjust<'a, T> = Box<dyn FnOnce(&mut T) + 'a>;

impl<'a> Builder<'a> {
    /// The control plane's settings.
    pub fn control(mut self, control: Config) -> Self {
        self.control = control;
        self
    }

    /// Adjust the node runtime's settings.
    pub fn runtime(mut self, adjust: impl FnOnce(&mut islet_runtime::Config) + 'a) -> Self {
        self.runtime = Some(Box::new(adjust));
        self
    }

    /// Adjust the edge's settings.
    pub fn edge(mut self, adjust: impl FnOnce(&mut islet_proxy::Config) + 'a) -> Self {
        self.edge = Some(Box::new(adjust));
        self
    }

    pub async fn start(self) -> TestServer {
        TestServer::start_from(self).await
    }
}

impl TestServer {
    /// A control plane and an edge with the default settings.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Settings other than the defaults: `TestServer::builder().control(…).edge(|e| …).start()`.
    pub fn builder<'a>() -> Builder<'a> {
        Builder::default()
    }

    async fn start_from(builder: Builder<'_>) -> Self {
        let Builder { mut control, runtime, edge } = builder;
        let (prefix, octet) = network_identity();
        let data_dir = data_dir(&prefix);
        let store = Store::open(&data_dir.join("islet.db")).unwrap();
        let mut config = islet_runtime::Config::new(
            data_dir.clone(),
            template_dir(),
            bin_dir().join("islet-agent"),
        );
        let config_prefix = prefix.clone();
        config.net_prefix = prefix;
        config.subnet_octet = octet;
        config.nameservers = firewall::host_nameservers();
        if let Some(adjust) = runtime {
            adjust(&mut config);
        }
        let runtime = Runtime::start(config).await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (preview_http, preview_https) =
            (http.local_addr().unwrap(), https.local_addr().unwrap());
        if control.preview_public_port.is_none() {
            control.preview_public_port = Some(if control.preview_scheme == "https" {
                preview_https.port()
            } else {
                preview_http.port()
            });
        }
        let dns = dns::FakeDns::start().await;
        control.domain_verify = VerifyTarget::Nameserver(dns.address);
        let domain = control.preview_domain.clone();
        let state = AppState::new(store.clone(), runtime, control).await.unwrap();
        let (platform_cert_pem, key_pem) =
            islet_tls::self_signed(&[format!("*.{domain}"), domain.to_string()]).unwrap();
        let platform =
            islet_tls::parse_pair(&platform_cert_pem, &key_pem, &domain, now_millis()).unwrap().key;
        let mut edge_config = islet_proxy::Config::new(domain);
        if let Some(adjust) = edge {
            adjust(&mut edge_config);
        }
        let runtime = state.runtime.clone();
        let edge = islet_proxy::Edge::new(
            store,
            edge_config,
            Arc::new(move |slot| IpAddr::V4(runtime.sandbox_ip(slot))),
            Some(platform),
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(islet_proxy::run(edge.clone(), Some(http), Some(https), shutdown.clone()));
        let task = tokio::spawn(islet_control::run(listener, state.clone(), shutdown.clone()));
        Self {
            base,
            state,
            preview_http,
            preview_https,
            platform_cert_pem,
            edge,
            dns,
            data_dir,
            prefix: config_prefix,
            shutdown,
            task,
        }
    }

    /// The lifecycle events recorded for one sandbox, oldest first.
    pub async fn events(&self, sandbox_id: &str) -> Vec<islet_store::EventRow> {
        let record = self.state.store.get_sandbox_any(&sandbox_id.parse().unwrap()).await.unwrap();
        let events = self.state.store.events_after(&record.tenant_id, 0, 1000).await.unwrap();
        events.into_iter().filter(|e| e.sandbox_id.as_deref() == Some(sandbox_id)).collect()
    }

    /// Just their types.
    pub async fn event_types(&self, sandbox_id: &str) -> Vec<String> {
        self.events(sandbox_id).await.into_iter().map(|e| e.event_type).collect()
    }

    /// A new tenant and a client holding its key.
    pub async fn tenant(&self, isolation: Option<Isolation>) -> Client {
        let key = self.state.store.create_tenant("test".into(), isolation).await.unwrap();
        Client::new(&self.base, &key.plaintext)
    }

    /// Destroy every sandbox this server knows and stop it.
    pub async fn stop(mut self) {
        // Stop the server (and its warm pool) first, so nothing new starts behind the cleanup.
        self.shutdown.cancel();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
        let _ = task.await;
        for record in self.state.store.sandboxes_not_destroyed().await.unwrap() {
            let _ = islet_control::lifecycle::destroy(
                &self.state,
                &record.tenant_id,
                &record.id,
                false,
            )
            .await;
        }
    }
}

impl Drop for TestServer {
    /// Best-effort removal of whatever a failed test left: containers, mounts, the netns
    /// files, veths and the data dir. Plain commands, since no async runtime can be relied on
    /// while a panic unwinds.
    fn drop(&mut self) {
        let run = |program: &str, args: &[&str]| {
            let _ = std::process::Command::new(program)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        let sandboxes = self.data_dir.join("sandboxes");
        for entry in std::fs::read_dir(&sandboxes).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            run("runc", &["--root=/run/islet/runc", "delete", "--force", &id]);
            run("runsc", &["--root=/run/islet/runsc", "delete", "--force", &id]);
            for mount in ["rootfs", "disk"] {
                run("umount", &["-l", &entry.path().join(mount).to_string_lossy()]);
            }
            let netns = format!("/run/islet/netns/{id}");
            run("umount", &["-l", &netns]);
            let _ = std::fs::remove_file(&netns);
        }
        for link in std::fs::read_dir("/sys/class/net").into_iter().flatten().flatten() {
            let name = link.file_name().to_string_lossy().into_owned();
            let ours = name
                .strip_prefix(&self.prefix)
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
            if ours {
                run("ip", &["link", "del", &name]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// An HTTP client for one tenant.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
}

/// A response: status and parsed JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Reply {
    /// The envelope's `data`.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// The string at `pointer` (`/data/id`), or a panic that shows the whole answer.
    pub fn text(&self, pointer: &str) -> &str {
        self.body.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| {
            panic!("no string at {pointer} in the answer ({}): {}", self.status, self.body)
        })
    }

    /// `data.id`, owned (what a create answers).
    pub fn id(&self) -> String {
        self.text("/data/id").to_owned()
    }

    /// The error envelope's `code` (empty when the answer is not an error).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Insist on `status`, showing the answer otherwise; the reply, for chaining.
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        self
    }
}

/// Poll `probe` every 50 ms until it gives `Some`, for at most `within`; a panic naming `what`
/// when it never does. For the things a test waits on (a state, an event, a delivery) instead
/// of sleeping a guessed time.
pub async fn eventually<T, F, Fut>(what: &str, within: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl Client {
    pub fn new(base: &str, key: &str) -> Self {
        Self { base: base.to_owned(), key: key.to_owned(), http: reqwest::Client::new() }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap().to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, body, bytes }
    }

    /// `DELETE /sandboxes/{id}`, insisting it is gone.
    pub async fn destroy(&self, id: &str) {
        let reply = self.call("DELETE", &format!("/sandboxes/{id}"), None).await;
        assert!(matches!(reply.status, 200 | 204), "destroy {id} failed: {:?}", reply.body);
    }

    /// Only the status of a call (for assertions that need nothing else).
    pub async fn status(&self, method: &str, path: &str, body: Option<Value>) -> u16 {
        self.call(method, path, body).await.status
    }

    /// `POST /sandboxes` with an `Idempotency-Key`: (status, body), status 0 if the request
    /// itself failed (e.g. the server died).
    pub async fn create_with_key(&self, key: &str, body: &Value) -> (u16, Value) {
        let result = self
            .http
            .post(format!("{}/sandboxes", self.base))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", key)
            .json(body)
            .timeout(std::time::Duration::from_secs(120))
            .send()
            .await;
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// The sandbox's current state as the API reports it.
    pub async fn state(&self, id: &str) -> String {
        let reply = self.call("GET", &format!("/sandboxes/{id}"), None).await;
        reply.body["data"]["state"].as_str().unwrap_or_default().to_owned()
    }

    /// Poll (every 100 ms, for at most `seconds`) until the sandbox is in `want`; returns the
    /// last state seen, so the caller's assertion shows what it was instead.
    pub async fn wait_for_state(&self, id: &str, want: &str, seconds: u64) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let state = self.state(id).await;
            if state == want || tokio::time::Instant::now() >= deadline {
                return state;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Create a sandbox and insist it is running.
    pub async fn sandbox(&self, body: Value) -> String {
        let reply = self.call("POST", "/sandboxes", Some(body)).await;
        assert_eq!(reply.status, 201, "create failed: {:?}", reply.body);
        assert_eq!(reply.body["data"]["state"], "running");
        reply.body["data"]["id"].as_str().unwrap().to_owned()
    }

    /// Run a command and return (exit code, stdout, stderr).
    pub async fn exec(&self, id: &str, command: &str) -> (i64, String, String) {
        let reply = self
            .call(
                "POST",
                &format!("/sandboxes/{id}/exec"),
                Some(serde_json::json!({ "command": command, "timeout": 120 })),
            )
            .await;
        assert_eq!(reply.status, 200, "exec failed: {:?}", reply.body);
        let data = &reply.body["data"];
        (
            data["exit_code"].as_i64().unwrap(),
            data["stdout"].as_str().unwrap_or_default().to_owned(),
            data["stderr"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Upload a local file into the sandbox (streamed) and make it executable.
    pub async fn upload(&self, id: &str, local: &std::path::Path, remote: &str) {
        let bytes = tokio::fs::read(local).await.unwrap();
        let response = self
            .http
            .put(format!("{}/sandboxes/{id}/fs/upload", self.base))
            .query(&[("path", remote)])
            .bearer_auth(&self.key)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "upload failed: {}", response.status());
        let (code, _, err) = self.exec(id, &format!("chmod 755 {remote}")).await;
        assert_eq!(code, 0, "{err}");
    }

    /// Start the test app (`fixtures/preview_app.py`) on `port` inside the sandbox and wait
    /// until it answers.
    pub async fn start_preview_app(&self, id: &str, port: u16) {
        let app = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/preview_app.py");
        self.upload(id, &app, "/opt/preview_app.py").await;
        let reply = self
            .call(
                "POST",
                &format!("/sandboxes/{id}/processes"),
                Some(
                    serde_json::json!({ "command": format!("python3 /opt/preview_app.py {port}") }),
                ),
            )
            .await;
        assert!(reply.status < 300, "starting the app failed: {:?}", reply.body);
        let probe = format!(
            "for i in $(seq 100); do curl -sf http://127.0.0.1:{port}/echo >/dev/null && exit 0; sleep 0.05; done; exit 1"
        );
        let (code, _, err) = self.exec(id, &probe).await;
        assert_eq!(code, 0, "the app did not start: {err}");
    }

    /// Mint a preview token for the sandbox; returns (token, url).
    pub async fn preview_token(&self, id: &str, body: Value) -> (String, String) {
        let reply = self.call("POST", &format!("/sandboxes/{id}/preview-token"), Some(body)).await;
        assert_eq!(reply.status, 200, "preview-token failed: {:?}", reply.body);
        let data = &reply.body["data"];
        (data["token"].as_str().unwrap().to_owned(), data["url"].as_str().unwrap().to_owned())
    }
}

/// An HTTP client that sends every request for `host` to `address` (as DNS for the preview
/// domain would), trusting `roots` (PEM) only, never following redirects.
pub fn edge_client(host: &str, address: SocketAddr, roots: &[&str]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .resolve(host, address)
        .redirect(reqwest::redirect::Policy::none())
        .tls_built_in_root_certs(false);
    for pem in roots {
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}
