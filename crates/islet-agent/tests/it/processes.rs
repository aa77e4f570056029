use crate::support::{assert_error, eventually, within, Agent};
use http::{Method, StatusCode};
use serde_json::{json, Value};

async fn state_of(agent: &Agent, pid: i64) -> Value {
    let (status, body) = agent.get(&format!("/processes/{pid}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn background_process_lifecycle() {
    let agent = Agent::start().await;
    within(30, async {
        let (status, body) = agent
            .post(
                "/processes",
                json!({"command": "echo one; echo two >&2; sleep 30", "name": "svc"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let created = &body["data"];
        let pid = created["pid"].as_i64().expect("pid");
        assert_eq!(created["state"], "running");
        assert_eq!(created["name"], "svc");
        assert!(created["started_at"].as_str().is_some_and(|t| t.ends_with('Z')));

        let (_, list) = agent.get("/processes").await;
        let listed = list["data"].as_array().expect("list");
        assert!(listed.iter().any(|p| p["pid"] == pid && p["exit_code"].is_null()));

        let logs = eventually(5, || async {
            let (_, body) = agent.get(&format!("/processes/{pid}/logs")).await;
            let text = body["data"].as_str().unwrap_or_default().to_string();
            (text.contains("one\n") && text.contains("two\n")).then_some(text)
        })
        .await;
        assert_eq!(logs.len(), "one\ntwo\n".len());
        let (_, tail) = agent.get(&format!("/processes/{pid}/logs?tail=1")).await;
        assert_eq!(tail["data"].as_str().map(|t| t.lines().count()), Some(1));

        let mut sse =
            agent.sse(Method::GET, &format!("/processes/{pid}/stream"), Value::Null).await;
        let mut replayed = Vec::new();
        for _ in 0..2 {
            let ev = sse.next().await.expect("replayed line");
            assert_eq!(ev.data["type"], ev.event.as_str());
            replayed.push((ev.event, ev.data["line"].clone()));
        }
        replayed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            replayed,
            vec![("stderr".into(), json!("two")), ("stdout".into(), json!("one"))]
        );

        let (status, _, _) = agent.raw(Method::DELETE, &format!("/processes/{pid}"), "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let exit = sse.next().await.expect("exit event");
        assert_eq!(exit.event, "exit");
        assert_eq!(exit.data["exit_code"], 128 + 15);

        let after = state_of(&agent, pid).await;
        assert_eq!(after["state"], "exited");
        assert!(after["ended_at"].as_str().is_some());

        // Deleting an exited process forgets it.
        let (status, _, _) = agent.raw(Method::DELETE, &format!("/processes/{pid}"), "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = agent.get(&format!("/processes/{pid}")).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    })
    .await;
}

#[tokio::test]
async fn finished_process_replays_output_and_exit() {
    let agent = Agent::start().await;
    within(30, async {
        let (_, body) = agent
            .post("/processes", json!({"command": "for i in 1 2 3 4 5; do echo $i; done; exit 5"}))
            .await;
        let pid = body["data"]["pid"].as_i64().expect("pid");
        let done = eventually(5, || async {
            let s = state_of(&agent, pid).await;
            (s["state"] == "exited").then_some(s)
        })
        .await;
        assert_eq!(done["exit_code"], 5);

        let (_, tail) = agent.get(&format!("/processes/{pid}/logs?tail=2")).await;
        assert_eq!(tail["data"], "4\n5\n");

        let mut sse =
            agent.sse(Method::GET, &format!("/processes/{pid}/stream"), Value::Null).await;
        let mut lines = Vec::new();
        loop {
            let ev = sse.next().await.expect("event");
            if ev.event == "exit" {
                assert_eq!(ev.data, json!({"type": "exit", "exit_code": 5}));
                break;
            }
            lines.push(ev.data["line"].as_str().unwrap_or_default().to_string());
        }
        assert_eq!(lines, ["1", "2", "3", "4", "5"]);
        assert!(sse.next().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn process_timeout_and_unknown_ids() {
    let agent = Agent::start().await;
    within(30, async {
        let (_, body) =
            agent.post("/processes", json!({"command": "sleep 30", "timeout": 0.3})).await;
        let pid = body["data"]["pid"].as_i64().expect("pid");
        let done = eventually(10, || async {
            let s = state_of(&agent, pid).await;
            (s["state"] == "exited").then_some(s)
        })
        .await;
        assert_eq!(done["exit_code"], 124);

        for uri in ["/processes/999999999", "/processes/abc/logs"] {
            let (status, body) = agent.get(uri).await;
            assert_error(status, &body, 404, "NOT_FOUND");
        }
        let (status, _, body) = agent.raw(Method::DELETE, "/processes/999999999", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body:?}");
    })
    .await;
}

#[tokio::test]
async fn kill_escalates_to_sigkill_when_term_is_ignored() {
    let agent = Agent::start().await;
    within(30, async {
        let (_, body) = agent
            .post(
                "/processes",
                json!({"command": "trap '' TERM; echo ready; sleep 30; echo survived"}),
            )
            .await;
        let pid = body["data"]["pid"].as_i64().expect("pid");
        eventually(5, || async {
            let (_, body) = agent.get(&format!("/processes/{pid}/logs")).await;
            (body["data"] == "ready\n").then_some(())
        })
        .await;
        let started = std::time::Instant::now();
        let (status, _, _) = agent.raw(Method::DELETE, &format!("/processes/{pid}"), "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(started.elapsed() >= std::time::Duration::from_secs(2));
        let after = state_of(&agent, pid).await;
        assert_eq!(after["state"], "exited");
        assert_eq!(after["exit_code"], 128 + 9);
    })
    .await;
}

#[tokio::test]
async fn the_sandbox_log_interleaves_every_process_in_order() {
    let agent = Agent::start().await;
    within(30, async {
        for (i, cmd) in ["echo first", "echo second >&2"].iter().enumerate() {
            let (status, body) = agent.post("/processes", json!({ "command": cmd })).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let pid = body["data"]["pid"].as_i64().expect("pid");
            eventually(5, || async {
                let (_, body) = agent.get(&format!("/processes/{pid}")).await;
                (body["data"]["state"] == "exited").then_some(())
            })
            .await;
            let (_, logs) = agent.get("/logs").await;
            let lines = logs["data"]["lines"].as_array().expect("lines").clone();
            assert_eq!(lines.len(), i + 1, "{logs}");
            assert_eq!(lines[i]["pid"], pid);
        }
        let (_, logs) = agent.get("/logs?lines=1").await;
        let lines = logs["data"]["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0]["line"].as_str(), lines[0]["stream"].as_str()),
            (Some("second"), Some("stderr"))
        );
        let (_, all) = agent.get("/logs").await;
        assert_eq!(all["data"]["logs"], "first\nsecond\n");
        let (status, body) = agent.get("/logs?lines=0").await;
        assert_error(status, &body, 400, "VALIDATION_FAILED");
    })
    .await;
}
