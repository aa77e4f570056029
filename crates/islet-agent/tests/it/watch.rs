use crate::support::{assert_error, within, Agent, Sse};
use http::Method;
use serde_json::{json, Value};

/// Reads events until one matches; returns it and everything seen on the way.
async fn wait_for(sse: &mut Sse, event: &str, path: &str) -> (Value, Vec<Value>) {
    let mut seen = Vec::new();
    loop {
        let ev = sse.next().await.expect("watch stream ended");
        let data = ev.data;
        seen.push(data.clone());
        if data["event"] == event && data["path"] == path {
            return (data, seen);
        }
    }
}

#[tokio::test]
async fn watch_reports_changes() {
    let agent = Agent::start().await;
    within(30, async {
        let dir = agent.path("w");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let q = urlencoding::encode(&dir).into_owned();
        let mut sse = agent
            .sse(Method::GET, &format!("/files/watch?path={q}&recursive=true"), Value::Null)
            .await;

        let plain = agent.path("w/plain.txt");
        std::fs::write(&plain, "x").expect("write");
        let (ev, _) = wait_for(&mut sse, "created", &plain).await;
        assert_eq!(ev, json!({"type": "file", "event": "created", "path": plain, "is_dir": false}));
        let (ev, _) = wait_for(&mut sse, "modified", &plain).await;
        assert_eq!(ev["is_dir"], false);

        let renamed = agent.path("w/renamed.txt");
        std::fs::rename(&plain, &renamed).expect("rename");
        let (ev, _) = wait_for(&mut sse, "renamed", &renamed).await;
        assert_eq!(ev["old_path"], plain.as_str());

        // The agent's atomic write shows up under the real name only.
        let api = agent.path("w/api.txt");
        agent.post("/fs/write", json!({"path": api, "content": "hi"})).await;
        let (_, seen) = wait_for(&mut sse, "created", &api).await;
        assert!(
            seen.iter().all(|e| !e["path"].as_str().unwrap_or_default().contains("islet-tmp")),
            "{seen:?}"
        );

        let sub = agent.path("w/sub");
        std::fs::create_dir(&sub).expect("mkdir sub");
        let (ev, _) = wait_for(&mut sse, "created", &sub).await;
        assert_eq!(ev["is_dir"], true);

        std::fs::remove_file(&renamed).expect("remove");
        wait_for(&mut sse, "deleted", &renamed).await;
    })
    .await;
}

#[tokio::test]
async fn watch_of_a_missing_path_is_404() {
    let agent = Agent::start().await;
    within(30, async {
        let q = urlencoding::encode(&agent.path("absent")).into_owned();
        let (status, body) = agent.get(&format!("/files/watch?path={q}")).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    })
    .await;
}
