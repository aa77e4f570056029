use crate::support::{assert_error, within, Agent};
use futures::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<UnixStream>;

async fn connect(agent: &Agent, query: &str) -> Result<Ws, tungstenite::Error> {
    let stream = UnixStream::connect(&agent.socket).await.expect("connect");
    let url = format!("ws://agent/terminal/stream{query}");
    tokio_tungstenite::client_async(url, stream).await.map(|(ws, _)| ws)
}

/// Reads binary output until it contains `needle`; text frames are returned alongside.
async fn read_until(ws: &mut Ws, needle: &str) -> (String, Vec<Value>) {
    let (mut out, mut texts) = (String::new(), Vec::new());
    while !out.contains(needle) {
        match ws.next().await.expect("socket open").expect("frame") {
            Message::Binary(b) => out.push_str(&String::from_utf8_lossy(&b)),
            Message::Text(t) => texts.push(serde_json::from_str(t.as_str()).expect("json")),
            _ => {}
        }
    }
    (out, texts)
}

async fn send_text(ws: &mut Ws, text: String) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

#[tokio::test]
async fn terminal_session_survives_reattach() {
    let agent = Agent::start().await;
    within(60, async {
        let (status, body) =
            agent.post("/terminal", json!({"cols": 100, "rows": 30, "cwd": agent.path("")})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let d = &body["data"];
        let id = d["session_id"].as_str().expect("id").to_string();
        assert_eq!(d["id"], id.as_str());
        assert!(id.starts_with("term_") && id.len() == 21, "{id}");
        assert!(id[5..].chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!((d["cols"].clone(), d["rows"].clone()), (json!(100), json!(30)));
        assert_eq!(d["state"], "running");

        let (_, list) = agent.get("/terminal").await;
        assert!(list["data"]
            .as_array()
            .expect("list")
            .iter()
            .any(|s| s["session_id"] == id.as_str()));

        let mut ws = connect(&agent, &format!("?session_id={id}")).await.expect("attach");
        // Raw keystrokes as a binary frame; `$((6*7))` proves the shell ran it (the echo of
        // the typed line itself does not contain "42").
        ws.send(Message::Binary("echo hi; echo mark$((6*7))\n".into())).await.expect("send");
        let (out, _) = read_until(&mut ws, "mark42").await;
        assert!(out.contains("hi\r\n"), "{out:?}");

        send_text(&mut ws, json!({"type": "resize", "cols": 120, "rows": 40}).to_string()).await;
        send_text(&mut ws, "stty size\n".to_string()).await;
        read_until(&mut ws, "40 120").await;
        ws.close(None).await.expect("detach");
        drop(ws);

        let mut ws = connect(&agent, &format!("?session_id={id}")).await.expect("reattach");
        let first = ws.next().await.expect("frame").expect("frame");
        let Message::Binary(scrollback) = first else { panic!("scrollback first, got {first:?}") };
        assert!(String::from_utf8_lossy(&scrollback).contains("mark42"));
        let input = json!({"type": "input", "data": "echo again$((1+1))\n"}).to_string();
        send_text(&mut ws, input).await;
        read_until(&mut ws, "again2").await;

        let (status, _, _) = agent.raw(Method::DELETE, &format!("/terminal/{id}"), "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let exit = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    break serde_json::from_str::<Value>(t.as_str()).expect("json")
                }
                Some(Ok(_)) => continue,
                other => panic!("expected the exit frame, got {other:?}"),
            }
        };
        assert_eq!(exit["type"], "exit");
        assert!(exit["exit_code"].as_i64().is_some());

        let (status, _, _) = agent.raw(Method::DELETE, &format!("/terminal/{id}"), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let err = connect(&agent, &format!("?session_id={id}")).await.expect_err("gone");
        match err {
            tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 404),
            other => panic!("expected HTTP 404, got {other}"),
        }
    })
    .await;
}

#[tokio::test]
async fn websocket_without_session_creates_one_and_reports_exit() {
    let agent = Agent::start().await;
    within(60, async {
        let mut ws = connect(&agent, "?cols=90&rows=20").await.expect("connect");
        let hello = match ws.next().await.expect("frame").expect("frame") {
            Message::Text(t) => serde_json::from_str::<Value>(t.as_str()).expect("json"),
            other => panic!("expected session frame, got {other:?}"),
        };
        assert_eq!(hello["type"], "session");
        let id = hello["session_id"].as_str().expect("id").to_string();
        let (_, list) = agent.get("/terminal").await;
        let listed =
            list["data"].as_array().expect("list").iter().find(|s| s["id"] == id.as_str()).cloned();
        assert_eq!(
            listed.map(|s| (s["cols"].clone(), s["rows"].clone())),
            Some((json!(90), json!(20)))
        );

        ws.send(Message::Binary("exit 7\n".into())).await.expect("send");
        let (_, texts) = read_until_exit(&mut ws).await;
        assert_eq!(texts.last(), Some(&json!({"type": "exit", "exit_code": 7})));
        let (status, body) = agent.get(&format!("/no-such/{id}")).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    })
    .await;
}

async fn read_until_exit(ws: &mut Ws) -> (String, Vec<Value>) {
    let (mut out, mut texts) = (String::new(), Vec::new());
    while let Some(frame) = ws.next().await {
        match frame {
            Ok(Message::Binary(b)) => out.push_str(&String::from_utf8_lossy(&b)),
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                let done = v["type"] == "exit";
                texts.push(v);
                if done {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (out, texts)
}
