//! One attempt: sign the stored body, POST it to the checked address, read at most a fixed
//! number of bytes of the answer, and classify what came back.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use islet_store::ClaimedDelivery;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::schedule::parse_retry_after;
use crate::signing::{miosa_signature, miosa_timestamped_signature, standard_signature, Secret};
use crate::target::{check_url, CheckedResolver, TargetPolicy};

/// How much of a receiver's answer is read; the rest is never downloaded.
pub const RESPONSE_READ_LIMIT: usize = 4096;
/// How much of it is kept with the attempt.
pub const RESPONSE_KEEP: usize = 1024;

/// Headers Islet sets itself, which an endpoint's custom headers may not replace.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "user-agent",
    "x-miosa-signature",
    "x-miosa-signature-previous",
    "x-miosa-event",
    "x-miosa-delivery",
    "miosa-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// What the receiver did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub started_at_ms: i64,
    pub duration: Duration,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub error: Option<String>,
    pub response: Option<String>,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends attempts; one HTTP client (connection pool) for every endpoint.
#[derive(Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    policy: TargetPolicy,
    timeout: Duration,
}

impl Deliverer {
    /// `extra_roots`: PEM certificates trusted besides the system's (tests, private CAs).
    pub fn new(
        policy: TargetPolicy,
        timeout: Duration,
        extra_roots: &[Vec<u8>],
    ) -> reqwest::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(CheckedResolver(policy)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .user_agent("Islet-Webhooks/1")
            .tls_built_in_native_certs(true);
        for pem in extra_roots {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        Ok(Self { client: builder.build()?, policy, timeout })
    }

    /// The headers of one attempt.
    pub fn headers(delivery: &ClaimedDelivery, now_secs: u64, now_ms: i64) -> HeaderMap {
        let body = delivery.body.as_bytes();
        let secrets: Vec<Secret> = delivery
            .webhook
            .signing_secrets(now_ms)
            .iter()
            .filter_map(|s| Secret::parse(s).ok())
            .collect();
        let mut h = HeaderMap::new();
        // Custom headers first, so nothing below can be overridden by them.
        for (name, value) in &delivery.webhook.headers {
            if let (Ok(n), Ok(v)) =
                (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str()))
            {
                if !RESERVED_HEADERS.contains(&n.as_str()) {
                    h.insert(n, v);
                }
            }
        }
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::try_from(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put("content-type", "application/json".into());
        put("x-miosa-event", delivery.event_type.clone());
        put("x-miosa-delivery", delivery.id.to_string());
        if let Some(current) = secrets.first() {
            put("x-miosa-signature", miosa_signature(current, body));
        }
        if let Some(previous) = secrets.get(1) {
            put("x-miosa-signature-previous", miosa_signature(previous, body));
        }
        // The older timestamped form: the previous secret first, so a verifier that keeps the
        // last `v1` checks the current one.
        let timestamped: Vec<String> =
            secrets.iter().rev().map(|s| miosa_timestamped_signature(s, now_secs, body)).collect();
        if !timestamped.is_empty() {
            let v1s: Vec<&str> =
                timestamped.iter().filter_map(|t| t.split_once(",v1=").map(|(_, v)| v)).collect();
            put("miosa-signature", format!("t={now_secs},v1={}", v1s.join(",v1=")));
        }
        put("webhook-id", delivery.id.to_string());
        put("webhook-timestamp", now_secs.to_string());
        put(
            "webhook-signature",
            standard_signature(
                &secrets.iter().collect::<Vec<_>>(),
                delivery.id.as_str(),
                now_secs,
                body,
            ),
        );
        h
    }

    /// Make one attempt. Never fails: every problem is an outcome.
    pub async fn attempt(&self, delivery: &ClaimedDelivery) -> Outcome {
        let now = SystemTime::now();
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let started_at_ms = since_epoch.as_millis() as i64;
        let clock = Instant::now();
        let mut outcome = Outcome {
            started_at_ms,
            duration: Duration::ZERO,
            status: None,
            retry_after: None,
            error: None,
            response: None,
        };
        // Checked again at send time: the operator's policy may have changed since creation.
        let url = match check_url(&delivery.webhook.url, self.policy) {
            Ok(url) => url,
            Err(e) => {
                outcome.error = Some(e.to_string());
                return outcome;
            }
        };
        let headers = Self::headers(delivery, since_epoch.as_secs(), started_at_ms);
        let request = self.client.post(url).headers(headers).body(delivery.body.clone());
        let exchange = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now));
            let mut response = response;
            let mut read = Vec::new();
            while read.len() < RESPONSE_READ_LIMIT {
                match response.chunk().await {
                    Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                    // A receiver that answered but broke off its body still answered.
                    Ok(None) | Err(_) => break,
                }
            }
            Ok::<_, reqwest::Error>((status, retry_after, read))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok((status, retry_after, read))) => {
                outcome.status = Some(status);
                outcome.retry_after = retry_after;
                let keep = &read[..read.len().min(RESPONSE_KEEP)];
                outcome.response = Some(String::from_utf8_lossy(keep).into_owned());
                if (300..400).contains(&status) {
                    outcome.error = Some("redirect not followed".into());
                }
            }
            Ok(Err(e)) => outcome.error = Some(describe(&e)),
            Err(_) => {
                outcome.error = Some(format!("timed out after {} ms", self.timeout.as_millis()))
            }
        }
        outcome.duration = clock.elapsed();
        outcome
    }
}

/// A transport error in one line, with its cause (reqwest's own message is generic).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
