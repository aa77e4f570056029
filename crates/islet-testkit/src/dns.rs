//! A tiny authoritative DNS server for tests: every A query answers 127.0.0.1 (so a CA's
//! validation or any client finds this machine), TXT queries answer what the test set, and
//! everything else has no records.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

#[derive(Clone)]
pub struct FakeDns {
    pub address: SocketAddr,
    txt: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl FakeDns {
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let txt: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let records = txt.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                if let Some(answer) = answer(&buf[..n], &records) {
                    let _ = socket.send_to(&answer, peer).await;
                }
            }
        });
        Self { address, txt }
    }

    /// Publish `value` as a TXT record of `name` (no trailing dot), replacing earlier ones.
    pub fn set_txt(&self, name: &str, value: &str) {
        self.txt.lock().unwrap().insert(name.to_ascii_lowercase(), vec![value.to_owned()]);
    }
}

fn answer(query: &[u8], txt: &Mutex<HashMap<String, Vec<String>>>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to a zero byte, then type and class.
    let mut labels = Vec::new();
    let mut at = 12;
    while at < query.len() && query[at] != 0 {
        let len = usize::from(query[at]);
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).to_ascii_lowercase());
        at += 1 + len;
    }
    let question_end = at + 5;
    let kind = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let name = labels.join(".");
    let mut records: Vec<Vec<u8>> = Vec::new();
    match kind {
        1 => records.push(vec![127, 0, 0, 1]),
        16 => {
            for value in txt.lock().ok()?.get(&name).into_iter().flatten() {
                let mut data = Vec::new();
                for chunk in value.as_bytes().chunks(255) {
                    data.push(chunk.len() as u8);
                    data.extend_from_slice(chunk);
                }
                records.push(data);
            }
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(question_end + 64);
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&[0x84 | (query[2] & 1), 0]);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    for data in records {
        out.extend_from_slice(&[0xC0, 0x0C]);
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}
