use crate::support::{assert_error, within, Agent};
use bytes::Bytes;
use futures::stream;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn upload_and_download_stream_large_files() {
    const CHUNK: usize = 1024 * 1024;
    const CHUNKS: usize = 100;
    let agent = Agent::start().await;
    within(120, async {
        let path = agent.path("big/upload.bin");
        let hwm_before = vm_hwm_kib();
        let chunks = stream::iter((0..CHUNKS).map(|i| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![i as u8; CHUNK])))
        }));
        let req = Request::builder()
            .method(Method::PUT)
            .uri(format!("/fs/upload?path={}", urlencoding::encode(&path)))
            .header("host", "agent")
            .body(StreamBody::new(chunks))
            .expect("request");
        let resp = agent.send(req).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["data"]["size"], CHUNK * CHUNKS);
        assert_eq!(std::fs::metadata(&path).expect("uploaded").len(), (CHUNK * CHUNKS) as u64);

        let req = Request::builder()
            .uri(format!("/fs/download?path={}", urlencoding::encode(&path)))
            .header("host", "agent")
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request");
        let resp = agent.send(req).await;
        assert_eq!(resp.headers()["content-length"], (CHUNK * CHUNKS).to_string());
        let mut body = resp.into_body();
        let mut offset = 0usize;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                // Every byte of chunk i is i: check the first and last byte of each frame.
                assert_eq!(data[0], (offset / CHUNK) as u8);
                let last = offset + data.len() - 1;
                assert_eq!(data[data.len() - 1], (last / CHUNK) as u8);
                offset += data.len();
            }
        }
        assert_eq!(offset, CHUNK * CHUNKS);
        // Buffering either direction would add >= 100 MiB to the peak; streaming adds little.
        if let (Some(before), Some(after)) = (hwm_before, vm_hwm_kib()) {
            assert!(after - before < 90 * 1024, "peak RSS grew {} KiB", after - before);
        }

        // In the same test, after the RSS check: this one does hold 64 MiB in memory.
        let filler = "a".repeat(islet_agent::BODY_LIMIT + 1024);
        let body = format!("{{\"path\":\"{}\",\"content\":\"{filler}\"}}", agent.path("x"));
        let (status, _, bytes) = agent.raw(Method::POST, "/fs/write", body).await;
        let body: Value = serde_json::from_slice(&bytes).expect("json");
        assert_error(status, &body, 413, "TOO_LARGE");
    })
    .await;
}
