use crate::support::{assert_error, eventually, within, Agent};
use http::{Method, StatusCode};
use serde_json::json;
use std::time::Instant;

#[tokio::test]
async fn exec_reports_exit_code_and_both_streams() {
    let agent = Agent::start().await;
    within(30, async {
        let (status, body) = agent
            .post(
                "/exec",
                json!({"command": "echo out; echo err >&2; exit 3", "cwd": agent.path("")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let d = &body["data"];
        assert_eq!(d["stdout"], "out\n");
        assert_eq!(d["stderr"], "err\n");
        assert_eq!(d["exit_code"], 3);
        assert_eq!(d["timed_out"], false);
        assert_eq!(d["stdout_truncated"], false);
        assert!(d["duration_ms"].as_u64().is_some(), "{body}");

        let (_, body) = agent.post("/exec", json!({"command": "kill -9 $$"})).await;
        assert_eq!(body["data"]["exit_code"], 137, "signal N is 128+N");
    })
    .await;
}

#[tokio::test]
async fn exec_runs_in_cwd_with_env() {
    let agent = Agent::start().await;
    within(30, async {
        let cwd = std::fs::canonicalize(&agent.root).expect("canonical root");
        let (status, body) = agent
            .post(
                "/exec",
                json!({
                    "command": "pwd -P; echo \"$FOO\"; echo $HOME | grep -c .",
                    "cwd": cwd.to_string_lossy(),
                    "env": {"FOO": "bar baz"},
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let want = format!("{}\nbar baz\n1\n", cwd.display());
        assert_eq!(body["data"]["stdout"], want.as_str());
    })
    .await;
}

#[tokio::test]
async fn exec_timeout_kills_the_whole_group() {
    let agent = Agent::start().await;
    within(30, async {
        let pidfile = agent.path("bg.pid");
        let started = Instant::now();
        let (status, body) = agent
            .post(
                "/exec",
                json!({
                    "command": format!("sh -c 'echo $$ > {pidfile}; exec sleep 30' & sleep 30"),
                    "timeout": 1,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["exit_code"], 124);
        assert_eq!(body["data"]["timed_out"], true);
        assert!(started.elapsed().as_secs() < 10);
        let pid = std::fs::read_to_string(&pidfile).expect("pid file");
        let stat = format!("/proc/{}/stat", pid.trim());
        // Gone, or a zombie waiting for whoever inherited it: either way, not sleeping.
        eventually(5, || async {
            match std::fs::read_to_string(&stat) {
                Err(_) => Some(()),
                Ok(s) if s.contains(") Z ") => Some(()),
                Ok(_) => None,
            }
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn exec_validates_its_input() {
    let agent = Agent::start().await;
    within(30, async {
        // No body and no Content-Type: parsed as `{}`, so the missing command is the error.
        let (status, body) = agent.post("/exec", serde_json::Value::Null).await;
        assert_error(status, &body, 400, "VALIDATION_FAILED");

        let (status, body) = agent.post("/exec", json!({"command": "true", "timeout": 4000})).await;
        assert_error(status, &body, 400, "TIMEOUT_TOO_LONG");

        let (status, body) =
            agent.post("/exec", json!({"command": "true", "cwd": agent.path("nope")})).await;
        assert_error(status, &body, 400, "VALIDATION_FAILED");

        let (status, body) = agent.get("/no/such/route").await;
        assert_error(status, &body, 404, "NOT_FOUND");
    })
    .await;
}

#[tokio::test]
async fn exec_stream_sends_lines_then_exit() {
    let agent = Agent::start().await;
    within(30, async {
        let mut sse = agent
            .sse(
                Method::POST,
                "/exec/stream",
                json!({"command": "echo a; echo b >&2; echo c; printf tail; exit 2"}),
            )
            .await;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = loop {
            let ev = sse.next().await.expect("stream ended before exit");
            assert_eq!(ev.data["type"], ev.event.as_str(), "{ev:?}");
            match ev.event.as_str() {
                "stdout" => out.push(ev.data["line"].as_str().map(String::from)),
                "stderr" => err.push(ev.data["line"].as_str().map(String::from)),
                "exit" => break ev.data,
                other => panic!("unexpected event {other}"),
            }
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(out, vec![s("a"), s("c"), s("tail")]);
        assert_eq!(err, vec![s("b")]);
        assert_eq!(exit["exit_code"], 2);
        assert_eq!(exit["timed_out"], false);
        assert!(exit["duration_ms"].as_u64().is_some());
        assert!(sse.next().await.is_none(), "exit is the last event");
    })
    .await;
}

#[tokio::test]
async fn exec_stream_client_disconnect_kills_the_command() {
    let agent = Agent::start().await;
    within(30, async {
        let pidfile = agent.path("stream.pid");
        let mut sse = agent
            .sse(
                Method::POST,
                "/exec/stream",
                json!({"command": format!("echo $$ > {pidfile}; echo ready; exec sleep 30")}),
            )
            .await;
        let first = sse.next().await.expect("first line");
        assert_eq!(first.data["line"], "ready");
        drop(sse);
        let pid = std::fs::read_to_string(&pidfile).expect("pid file");
        let stat = format!("/proc/{}/stat", pid.trim());
        eventually(20, || async {
            match std::fs::read_to_string(&stat) {
                Err(_) => Some(()),
                Ok(s) if s.contains(") Z ") => Some(()),
                Ok(_) => None,
            }
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn exec_does_not_wait_for_background_jobs_holding_its_pipes() {
    let agent = Agent::start().await;
    within(30, async {
        let started = Instant::now();
        let (status, body) = agent.post("/exec", json!({"command": "sleep 5 & echo done"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["stdout"], "done\n");
        assert_eq!(body["data"]["exit_code"], 0);
        assert!(started.elapsed().as_secs() < 3, "{:?}", started.elapsed());
    })
    .await;
}
