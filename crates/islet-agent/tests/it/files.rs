use crate::support::{assert_error, within, Agent};
use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

async fn download(agent: &Agent, path: &str) -> (StatusCode, http::HeaderMap, Bytes) {
    let uri = format!("/fs/download?path={}", urlencoding::encode(path));
    agent.raw(Method::GET, &uri, "").await
}

#[tokio::test]
async fn write_and_download_round_trip() {
    let agent = Agent::start().await;
    within(30, async {
        let binary: Vec<u8> = (0..=255u8).collect();
        let path = agent.path("deep/new/bin.dat");
        let (status, body) = agent
            .post("/fs/write", json!({"path": path, "content_base64": b64(&binary), "mode": 0o600}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"], json!({"path": path, "size": 256}));
        let (status, headers, bytes) = download(&agent, &path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/octet-stream");
        assert_eq!(headers["content-length"], "256");
        assert_eq!(&bytes[..], &binary[..]);

        let (_, stat) = agent.post("/fs/stat", json!({"path": path})).await;
        assert_eq!(stat["data"]["mode"].as_u64().map(|m| m & 0o777), Some(0o600));

        let text = agent.path("text.txt");
        let (_, body) = agent.post("/fs/write", json!({"path": text, "content": "héllo"})).await;
        assert_eq!(body["data"]["size"], 6);
        assert_eq!(std::fs::read_to_string(&text).expect("read"), "héllo");

        // Legacy route: `content` is base64 there.
        let (status, _) =
            agent.post("/files", json!({"path": text, "content": b64(b"legacy")})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(std::fs::read(&text).expect("read"), b"legacy");

        let (status, body) =
            agent.post("/fs/write", json!({"path": "relative.txt", "content": "x"})).await;
        assert_error(status, &body, 400, "INVALID_PATH");

        let (status, _, bytes) = download(&agent, &agent.path("missing")).await;
        let body: Value = serde_json::from_slice(&bytes).expect("json error");
        assert_error(status, &body, 404, "NOT_FOUND");
        let (status, _, bytes) = download(&agent, &agent.path("deep")).await;
        let body: Value = serde_json::from_slice(&bytes).expect("json error");
        assert_error(status, &body, 400, "VALIDATION_FAILED");
    })
    .await;
}

#[tokio::test]
async fn legacy_download_decodes_percent_encoded_segments() {
    let agent = Agent::start().await;
    within(30, async {
        let path = agent.path("dir with space/a#b.txt");
        std::fs::create_dir_all(agent.root.join("dir with space")).expect("mkdir");
        std::fs::write(&path, b"odd name").expect("write");
        let encoded: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(|s| urlencoding::encode(s).into_owned())
            .collect();
        let (status, _, bytes) =
            agent.raw(Method::GET, &format!("/files/{}", encoded.join("/")), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&bytes[..], b"odd name");
    })
    .await;
}

#[tokio::test]
async fn write_many_reports_each_file() {
    let agent = Agent::start().await;
    within(30, async {
        let (a, b) = (agent.path("m/a.txt"), agent.path("m/b.bin"));
        let (status, body) = agent
            .post(
                "/fs/write-many",
                json!({"files": [
                    {"path": a, "content": "A"},
                    {"path": b, "content_base64": b64(&[0, 1, 2])},
                    {"path": "nope.txt", "data": "x"},
                ]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["written"], json!([a, b]));
        assert_eq!(body["data"]["failed"][0]["path"], "nope.txt");
        assert!(body["data"]["failed"][0]["error"].as_str().is_some());
        assert_eq!(std::fs::read(&b).expect("read"), [0, 1, 2]);

        let (status, _) =
            agent.post("/files/write-many", json!({"files": [{"path": a, "data": "AA"}]})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(std::fs::read_to_string(&a).expect("read"), "AA");
    })
    .await;
}

fn names(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn list_stat_and_tree() {
    let agent = Agent::start().await;
    within(30, async {
        let root = &agent.root;
        std::fs::create_dir_all(root.join("t/a/b")).expect("mkdir");
        std::fs::write(root.join("t/a/b/c.txt"), "c").expect("write");
        std::fs::write(root.join("t/a/x.txt"), "xx").expect("write");
        std::os::unix::fs::symlink("a/x.txt", root.join("t/link")).expect("symlink");
        let t = agent.path("t");
        let q = urlencoding::encode(&t).into_owned();

        let (status, body) = agent.get(&format!("/files?path={q}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(names(&body["data"]["entries"]), [agent.path("t/a"), agent.path("t/link")]);
        let link = &body["data"]["entries"][1];
        assert_eq!(link["is_symlink"], true);
        assert_eq!(link["name"], "link");

        let (_, body) = agent.get(&format!("/files?path={q}&depth=3")).await;
        let want = ["t/a", "t/a/b", "t/a/b/c.txt", "t/a/x.txt", "t/link"].map(|p| agent.path(p));
        assert_eq!(names(&body["data"]["entries"]), want);
        let file = &body["data"]["entries"][3];
        assert_eq!((file["is_dir"].clone(), file["size"].clone()), (json!(false), json!(2)));
        assert!(file["modified_at"].as_str().is_some_and(|t| t.ends_with('Z')));

        let (status, body) = agent.get(&format!("/files?path={q}%2Fnope")).await;
        assert_error(status, &body, 404, "NOT_FOUND");
        let (status, body) = agent.get(&format!("/files?path={q}%2Flink")).await;
        assert_error(status, &body, 400, "VALIDATION_FAILED");

        let (_, body) = agent.post("/fs/stat", json!({"path": agent.path("t/link")})).await;
        let d = &body["data"];
        assert_eq!(d["is_symlink"], true);
        assert_eq!(d["symlink_target"], "a/x.txt");
        assert_eq!(d["mode"].as_u64().map(|m| m & 0o170000), Some(0o120000));
        let (_, body) = agent.post("/files/stat", json!({"path": t})).await;
        assert_eq!(body["data"]["is_dir"], true);
        assert_eq!(body["data"]["symlink_target"], Value::Null);

        // Static `/files/tree` must win over the `/files/{*rest}` download wildcard.
        let (status, body) = agent.get(&format!("/files/tree?path={q}&depth=1")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let tree = &body["data"];
        assert_eq!(tree["name"], "t");
        assert_eq!(tree["is_dir"], true);
        let kids = tree["children"].as_array().expect("children");
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0]["name"], "a");
        assert!(kids[0].get("children").is_none(), "depth limit: {tree}");
        let (_, body) = agent.get(&format!("/files/tree?path={q}")).await;
        let c = &body["data"]["children"][0]["children"][0]["children"][0];
        assert_eq!(c["name"], "c.txt");
        assert_eq!(c["size"], 1);
    })
    .await;
}

#[tokio::test]
async fn mkdir_move_remove() {
    let agent = Agent::start().await;
    within(30, async {
        let dir = agent.path("made/deep");
        let (status, body) = agent.post("/fs/mkdir", json!({"path": dir})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["data"]["path"], dir.as_str());
        assert!(agent.root.join("made/deep").is_dir());
        let (status, _) = agent.post("/fs/mkdir", json!({"path": dir})).await;
        assert_eq!(status, StatusCode::CREATED, "parents: existing dir is fine");
        let (status, body) = agent.post("/fs/mkdir", json!({"path": dir, "parents": false})).await;
        assert_error(status, &body, 409, "ALREADY_EXISTS");

        let (src, dst) = (agent.path("made/src.txt"), agent.path("moved/dst.txt"));
        std::fs::write(&src, "s").expect("write");
        std::fs::write(agent.root.join("made/other.txt"), "o").expect("write");
        let (status, body) = agent.post("/fs/move", json!({"from": src, "to": dst})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"], json!({"from": src, "to": dst}));
        assert_eq!(std::fs::read_to_string(&dst).expect("moved"), "s");

        let other = agent.path("made/other.txt");
        let (status, body) =
            agent.post("/fs/move", json!({"source": other, "destination": dst})).await;
        assert_error(status, &body, 409, "ALREADY_EXISTS");
        let (status, _) = agent
            .post("/fs/move", json!({"old_path": other, "new_path": dst, "overwrite": true}))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(std::fs::read_to_string(&dst).expect("moved"), "o");

        let made = agent.path("made");
        let (status, body) = agent.post("/fs/remove", json!({"path": made})).await;
        assert_error(status, &body, 409, "DIRECTORY_NOT_EMPTY");
        let (status, _) = agent.post("/fs/remove", json!({"path": made, "recursive": true})).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(!agent.root.join("made").exists());
        let (status, body) = agent.post("/fs/remove", json!({"path": made})).await;
        assert_error(status, &body, 404, "NOT_FOUND");

        let q = urlencoding::encode(&agent.path("moved")).into_owned();
        let (status, _, _) =
            agent.raw(Method::DELETE, &format!("/files?path={q}&recursive=true"), "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(!agent.root.join("moved").exists());
    })
    .await;
}
