//! What a receiver gets: the event body of contract §10.2, built from an outbox row.
//!
//! ```json
//! {"id": "dlv_…", "delivery_id": "dlv_…", "event_id": "evt_…",
//!  "type": "sandbox.running", "event": "sandbox.running",
//!  "occurred_at": "…", "created_at": "…", "timestamp": "…", "tenant_id": "ten_…",
//!  "data": {"id": "sbx_…", "state": "running", "external_user_id": "user_42", …,
//!           "preview_url": "https://3000-sbx-….preview.example/", "preview_urls": {"3000": "…"}}}
//! ```
//! `id` and `delivery_id` are the same value, the receiver's deduplication key, stable across
//! every attempt; `event_id` names the underlying event (the same for every endpoint). The event
//! streams send the same shape with `id` = `event_id` and no `delivery_id`.

use std::future::Future;
use std::pin::Pin;

use islet_store::EventRow;
use islet_types::{DeliveryId, EventId, SandboxId, TenantId, WebhookId};
use serde_json::{json, Map, Value};

/// Turns a sandbox's port into its preview URL, for one tenant.
pub type UrlFn = Box<dyn Fn(&SandboxId, u16) -> String + Send + Sync>;

/// Where the preview URLs in event bodies come from (the control plane knows each tenant's
/// domain).
pub trait PreviewLinks: Send + Sync + 'static {
    fn for_tenant<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> Pin<Box<dyn Future<Output = Option<UrlFn>> + Send + 'a>>;
}

/// No preview URLs (bodies carry `preview_url: null`).
pub struct NoLinks;

impl PreviewLinks for NoLinks {
    fn for_tenant<'a>(
        &'a self,
        _tenant: &'a TenantId,
    ) -> Pin<Box<dyn Future<Output = Option<UrlFn>> + Send + 'a>> {
        Box::pin(async { None })
    }
}

/// The event's body as delivered under `name` (its type, or `sandbox.ready` for the alias).
pub fn event_body(
    event: &EventRow,
    name: &str,
    delivery: Option<&DeliveryId>,
    urls: Option<&UrlFn>,
) -> Value {
    let payload = &event.payload;
    let occurred = payload.get("occurred_at").cloned().unwrap_or(Value::Null);
    let mut data = payload.get("data").cloned().unwrap_or_else(|| json!({}));
    if let Some(obj) = data.as_object_mut() {
        if let Some(ports) = obj.remove("preview_ports") {
            let sandbox: Option<SandboxId> =
                event.sandbox_id.as_deref().and_then(|s| s.parse().ok());
            let mut by_port = Map::new();
            let mut first = Value::Null;
            if let (Some(sandbox), Some(urls)) = (sandbox, urls) {
                for port in ports.as_array().into_iter().flatten().filter_map(Value::as_u64) {
                    let Ok(port) = u16::try_from(port) else {
                        continue;
                    };
                    let url = urls(&sandbox, port);
                    if first.is_null() {
                        first = Value::String(url.clone());
                    }
                    by_port.insert(port.to_string(), Value::String(url));
                }
            }
            obj.insert("preview_url".into(), first);
            obj.insert("preview_urls".into(), Value::Object(by_port));
        }
    }
    let id = match delivery {
        Some(d) => d.to_string(),
        None => event.id.clone(),
    };
    let mut body = json!({
        "id": id,
        "event_id": event.id,
        "type": name,
        "event": name,
        "occurred_at": occurred,
        "created_at": occurred,
        "timestamp": occurred,
        "tenant_id": event.tenant_id,
        "data": data,
    });
    if let Some(d) = delivery {
        body["delivery_id"] = json!(d);
    }
    body
}

/// The body of a `webhook.test` delivery to one endpoint.
pub fn test_body(
    tenant: &TenantId,
    webhook: &WebhookId,
    delivery: &DeliveryId,
    now_ms: i64,
) -> Value {
    let at = islet_types::time::rfc3339(now_ms);
    json!({
        "id": delivery,
        "delivery_id": delivery,
        "event_id": EventId::generate(),
        "type": "webhook.test",
        "event": "webhook.test",
        "occurred_at": at,
        "created_at": at,
        "timestamp": at,
        "tenant_id": tenant,
        "data": {"webhook_id": webhook, "message": "This is a test delivery."},
    })
}

/// A replay's body: the original's, under the new delivery id, naming what it replays.
pub fn replay_body(original: &str, replay: &DeliveryId, of: &DeliveryId) -> Option<String> {
    let mut body: Value = serde_json::from_str(original).ok()?;
    let obj = body.as_object_mut()?;
    obj.insert("id".into(), json!(replay));
    obj.insert("delivery_id".into(), json!(replay));
    obj.insert("replay_of".into(), json!(of));
    Some(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> EventRow {
        let sandbox = SandboxId::generate();
        EventRow {
            seq: 7,
            id: EventId::generate().to_string(),
            tenant_id: TenantId::generate(),
            sandbox_id: Some(sandbox.to_string()),
            event_type: "sandbox.running".into(),
            payload: json!({
                "id": "evt_x", "type": "sandbox.running", "occurred_at": "2026-11-28T10:00:00.000000Z",
                "data": {"id": sandbox, "state": "running", "external_user_id": "user_42",
                         "metadata": {"plan": "pro"}, "preview_ports": [5173, 3000]}
            }),
            created_at: 0,
        }
    }

    #[test]
    fn body_carries_ids_aliases_and_preview_urls() {
        let e = event();
        let d = DeliveryId::generate();
        let urls: UrlFn = Box::new(|s, p| format!("https://{p}-{s}.example/"));
        let body = event_body(&e, "sandbox.ready", Some(&d), Some(&urls));
        assert_eq!(body["id"], json!(d));
        assert_eq!(body["delivery_id"], json!(d));
        assert_eq!(body["event_id"], json!(e.id));
        assert_eq!(body["type"], "sandbox.ready");
        assert_eq!(body["event"], "sandbox.ready");
        assert_eq!(body["occurred_at"], body["timestamp"]);
        assert_eq!(body["data"]["external_user_id"], "user_42");
        let sandbox = e.sandbox_id.clone().unwrap_or_default();
        assert_eq!(body["data"]["preview_url"], format!("https://5173-{sandbox}.example/"));
        assert_eq!(
            body["data"]["preview_urls"]["3000"],
            format!("https://3000-{sandbox}.example/")
        );
        assert!(body["data"].get("preview_ports").is_none());
    }

    #[test]
    fn stream_body_uses_the_event_id_and_replay_keeps_the_rest() {
        let e = event();
        let body = event_body(&e, "sandbox.running", None, None);
        assert_eq!(body["id"], json!(e.id));
        assert!(body.get("delivery_id").is_none());
        assert!(body["data"]["preview_url"].is_null());
        let (d, r) = (DeliveryId::generate(), DeliveryId::generate());
        let original = event_body(&e, "sandbox.running", Some(&d), None).to_string();
        let replayed: Value =
            serde_json::from_str(&replay_body(&original, &r, &d).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(replayed["id"], json!(r));
        assert_eq!(replayed["replay_of"], json!(d));
        assert_eq!(replayed["event_id"], json!(e.id));
        assert_eq!(
            replayed["data"],
            serde_json::from_str::<Value>(&original).unwrap_or_default()["data"]
        );
    }
}
