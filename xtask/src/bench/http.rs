//! A small blocking client for the parts of Islet's API the benchmark drives. It remembers
//! every sandbox it created and has not deleted yet, so cleanup can delete what is left.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use serde_json::{json, Value};

/// One tenant's view of the API.
pub(super) struct Client {
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT/api/v1`
    base: String,
    auth: String,
    live: Mutex<BTreeSet<String>>,
}

/// What `POST /sandboxes` answered.
pub(super) struct Created {
    pub id: String,
    /// The server's own figure for the boot, when it gives one.
    pub boot_ms: Option<f64>,
}

/// What `POST /sandboxes/{id}/exec` answered.
pub(super) struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// A request body.
enum Payload<'a> {
    Json(Value),
    Bytes(&'a [u8]),
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

impl Client {
    pub(super) fn new(base: &str, api_key: &str) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .max_idle_connections(256)
            .max_idle_connections_per_host(256)
            .build();
        Self {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {api_key}"),
            live: Mutex::new(BTreeSet::new()),
        }
    }

    /// Send a request; any HTTP status is `Ok`, transport failures are errors.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        self.send(method, path, body.map(Payload::Json))
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Payload<'_>>,
    ) -> anyhow::Result<(u16, Value)> {
        let request = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &self.auth);
        let result = match body {
            Some(Payload::Json(body)) => request.send_json(body),
            Some(Payload::Bytes(bytes)) => {
                request.set("Content-Type", "application/octet-stream").send_bytes(bytes)
            }
            None => request.call(),
        };
        let response = match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(e) => return Err(anyhow!(e).context(format!("{method} {path}"))),
        };
        let status = response.status();
        let text =
            response.into_string().with_context(|| format!("{method} {path}: reading the body"))?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// `POST /sandboxes` with `{}`; returns once the server answers (the agent is up).
    pub(super) fn create(&self) -> anyhow::Result<Created> {
        self.create_with(json!({}))
    }

    /// `POST /sandboxes` with `request` (size, CPU count, …).
    pub(super) fn create_with(&self, request: Value) -> anyhow::Result<Created> {
        let (status, body) = self.call("POST", "/sandboxes", Some(request))?;
        let data = &body["data"];
        // Remember it before any check, so that a half-made sandbox is deleted too.
        if let Some(id) = data["id"].as_str() {
            self.lock().insert(id.to_owned());
        }
        ensure!(status == 201, "POST /sandboxes: HTTP {status}: {}", shorten(&body.to_string()));
        let id =
            data["id"].as_str().context("POST /sandboxes: no data.id in the answer")?.to_owned();
        let state = data["state"].as_str().unwrap_or("?");
        ensure!(state == "running", "POST /sandboxes: sandbox {id} is {state}, not running");
        Ok(Created { id, boot_ms: data["boot_ms"].as_f64() })
    }

    /// `POST /sandboxes/{id}/exec` of `command`; fails unless it exits 0.
    pub(super) fn exec_ok(&self, id: &str, command: &str) -> anyhow::Result<()> {
        let path = format!("/sandboxes/{id}/exec");
        let (status, body) = self.call("POST", &path, Some(json!({ "command": command })))?;
        ensure!(status == 200, "POST {path}: HTTP {status}: {}", shorten(&body.to_string()));
        match body["data"]["exit_code"].as_i64() {
            Some(0) => Ok(()),
            Some(code) => bail!(
                "exec {command:?} in {id} exited {code}: {}",
                shorten(body["data"]["stderr"].as_str().unwrap_or(""))
            ),
            None => bail!("POST {path}: no data.exit_code in {}", shorten(&body.to_string())),
        }
    }

    /// `POST /sandboxes/{id}/exec` of `command`: its exit code and output, whatever the code.
    pub(super) fn exec(&self, id: &str, command: &str) -> anyhow::Result<ExecOutput> {
        let data = self
            .post(&format!("/sandboxes/{id}/exec"), json!({ "command": command, "timeout": 60 }))?;
        Ok(ExecOutput {
            exit_code: data["exit_code"].as_i64().with_context(|| {
                format!("exec in {id}: no exit_code in {}", shorten(&data.to_string()))
            })?,
            stdout: data["stdout"].as_str().unwrap_or_default().to_owned(),
            stderr: data["stderr"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// `POST path` with a JSON body; fails unless the answer is 2xx. Returns its `data`.
    pub(super) fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, mut answer) = self.call("POST", path, Some(body))?;
        ensure!(
            (200..300).contains(&status),
            "POST {path}: HTTP {status}: {}",
            shorten(&answer.to_string())
        );
        Ok(answer["data"].take())
    }

    /// `PUT /sandboxes/{id}/fs/upload?path=…` of `bytes`.
    pub(super) fn upload(&self, id: &str, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let url = format!("/sandboxes/{id}/fs/upload?path={path}");
        let (status, answer) = self.send("PUT", &url, Some(Payload::Bytes(bytes)))?;
        ensure!(
            (200..300).contains(&status),
            "PUT {url}: HTTP {status}: {}",
            shorten(&answer.to_string())
        );
        Ok(())
    }

    /// `DELETE /sandboxes/{id}`; a sandbox that is already gone counts as deleted.
    pub(super) fn delete(&self, id: &str) -> anyhow::Result<()> {
        let path = format!("/sandboxes/{id}");
        let (status, body) = self.call("DELETE", &path, None)?;
        ensure!(
            matches!(status, 200 | 202 | 204 | 404),
            "DELETE {path}: HTTP {status}: {}",
            shorten(&body.to_string())
        );
        self.lock().remove(id);
        Ok(())
    }

    /// Delete every sandbox this client created and has not deleted, a few at a time.
    /// Returns the failures.
    pub(super) fn delete_all(&self) -> Vec<(String, anyhow::Error)> {
        let ids: Vec<String> = self.lock().iter().cloned().collect();
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for chunk in ids.chunks(ids.len().div_ceil(4).max(1)) {
                let failures = &failures;
                scope.spawn(move || {
                    for id in chunk {
                        if let Err(e) = self.delete(id) {
                            failures
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push((id.clone(), e));
                        }
                    }
                });
            }
        });
        failures.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
