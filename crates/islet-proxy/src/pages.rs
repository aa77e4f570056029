//! Every answer the edge gives itself instead of the sandbox's: one enum of failures, one
//! function choosing status, code and page. Pages carry the tenant's branding and nothing of the
//! platform's: no product name, logo, header or cookie that names it.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use islet_types::branding::Branding;
use islet_types::preview::PreviewLabel;

use crate::Body;

/// Whose fault a failure is (for logs) and what the visitor sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Framing the edge refuses to guess about (CL+TE, duplicate Content-Length).
    BadRequest,
    /// The host names no preview we serve.
    UnknownHost,
    /// No such sandbox (or not this domain's tenant's).
    NotFound,
    /// The sandbox exists but is not running; `starting` when it is on its way up.
    NotRunning {
        starting: bool,
    },
    /// Nothing accepted the connection on the port.
    PortClosed,
    /// The app accepted but did not answer in time.
    Timeout,
    /// The app broke off the exchange (reset, malformed answer).
    UpstreamFailed,
    /// The edge itself cannot decide right now (store unreachable, revocations stale).
    Unavailable,
    /// A private preview and no token or cookie.
    TokenMissing,
    /// A token or cookie that is malformed, forged, expired, revoked or for another target:
    /// all answered the same way.
    TokenRejected,
    /// A read-only token tried a method that changes things.
    ReadOnly,
    TooManyRequests,
}

/// Who caused a failure: the visitor, the tenant's sandbox, or the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Sandbox,
    Platform,
}

struct Meta {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    message: &'static str,
    retryable: bool,
    fault: Fault,
}

impl Failure {
    fn meta(self) -> Meta {
        let m = |status, code, title, message, retryable, fault| Meta {
            status,
            code,
            title,
            message,
            retryable,
            fault,
        };
        match self {
            Failure::BadRequest => m(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "Bad request",
                "The request was malformed.",
                false,
                Fault::Client,
            ),
            Failure::UnknownHost => m(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "Not found",
                "There is no preview at this address.",
                false,
                Fault::Client,
            ),
            Failure::NotFound => m(
                StatusCode::NOT_FOUND,
                "SANDBOX_NOT_FOUND",
                "Preview not found",
                "This preview does not exist or has been shut down.",
                false,
                Fault::Client,
            ),
            Failure::NotRunning { starting: true } => m(
                StatusCode::SERVICE_UNAVAILABLE,
                "SANDBOX_STARTING",
                "Starting…",
                "This preview is starting. The page will refresh by itself.",
                true,
                Fault::Sandbox,
            ),
            Failure::NotRunning { starting: false } => m(
                StatusCode::SERVICE_UNAVAILABLE,
                "SANDBOX_NOT_RUNNING",
                "Preview asleep",
                "This preview is not running right now.",
                true,
                Fault::Sandbox,
            ),
            Failure::PortClosed => m(
                StatusCode::BAD_GATEWAY,
                "PORT_NOT_LISTENING",
                "Nothing is running here yet",
                "No server is listening on this port. Start it, then reload.",
                true,
                Fault::Sandbox,
            ),
            Failure::Timeout => m(
                StatusCode::GATEWAY_TIMEOUT,
                "UPSTREAM_TIMEOUT",
                "Not responding",
                "The app did not answer in time.",
                true,
                Fault::Sandbox,
            ),
            Failure::UpstreamFailed => m(
                StatusCode::BAD_GATEWAY,
                "UPSTREAM_FAILED",
                "Connection lost",
                "The app closed the connection unexpectedly. Reload to try again.",
                true,
                Fault::Sandbox,
            ),
            Failure::Unavailable => m(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "Temporarily unavailable",
                "Previews are briefly unavailable. Reload in a moment.",
                true,
                Fault::Platform,
            ),
            Failure::TokenMissing => m(
                StatusCode::UNAUTHORIZED,
                "TOKEN_REQUIRED",
                "Sign-in required",
                "This preview is private. Open it from the app that shared it.",
                false,
                Fault::Client,
            ),
            Failure::TokenRejected => m(
                StatusCode::UNAUTHORIZED,
                "SESSION_EXPIRED",
                "Session expired",
                "This preview session has expired. Reopen it to continue.",
                false,
                Fault::Client,
            ),
            Failure::ReadOnly => m(
                StatusCode::FORBIDDEN,
                "READ_ONLY",
                "View only",
                "This preview link allows viewing only.",
                false,
                Fault::Client,
            ),
            Failure::TooManyRequests => m(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "Too many requests",
                "Too many requests. Please wait a moment.",
                true,
                Fault::Client,
            ),
        }
    }

    pub fn status(self) -> StatusCode {
        self.meta().status
    }

    pub fn fault(self) -> Fault {
        self.meta().fault
    }
}

/// What a page knows about where it was asked for.
pub struct PageContext<'a> {
    pub branding: Option<&'a Branding>,
    pub label: Option<&'a PreviewLabel>,
    pub wants_html: bool,
    pub request_id: &'a str,
}

/// HTML for browsers (`Accept` naming `text/html`), the API's JSON error envelope otherwise.
pub fn render(failure: Failure, ctx: &PageContext<'_>) -> Response<Body> {
    let meta = failure.meta();
    let (content_type, body) = if ctx.wants_html {
        ("text/html; charset=utf-8", html(failure, &meta, ctx))
    } else {
        let mut error = serde_json::json!({
            "code": meta.code,
            "message": meta.message,
            "retryable": meta.retryable,
        });
        if failure == Failure::TooManyRequests {
            error["retry_after_ms"] = serde_json::json!(1000);
        }
        let body = serde_json::json!({ "error": error, "request_id": ctx.request_id });
        ("application/json", body.to_string())
    };
    let mut response = Response::new(crate::full(Bytes::from(body)));
    *response.status_mut() = meta.status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; \
             script-src 'unsafe-inline'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(id) = HeaderValue::from_str(ctx.request_id) {
        headers.insert("x-request-id", id);
    }
    if meta.retryable {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html(failure: Failure, meta: &Meta, ctx: &PageContext<'_>) -> String {
    let default = Branding::default();
    let b = ctx.branding.unwrap_or(&default);
    let product = escape(b.product_name.as_deref().unwrap_or("Preview"));
    let primary = escape(b.primary_color.as_deref().unwrap_or("#3b82f6"));
    let background = escape(b.background_color.as_deref().unwrap_or("#f8fafc"));
    let logo = b
        .logo_url
        .as_deref()
        .map(|u| format!(r#"<img class="logo" src="{}" alt="{product}">"#, escape(u)))
        .unwrap_or_default();
    let mut support = String::new();
    if let Some(url) = &b.support_url {
        support.push_str(&format!(r#"<a href="{}">Get help</a>"#, escape(url)));
    }
    if let Some(email) = &b.support_email {
        let email = escape(email);
        support.push_str(&format!(r#" <a href="mailto:{email}">{email}</a>"#));
    }
    let refresh = match failure {
        Failure::NotRunning { starting: true } => r#"<meta http-equiv="refresh" content="2">"#,
        _ => "",
    };
    // The tenant's UI embeds previews in frames; tell it the session is over so it can mint a
    // new token. Only non-secret, fixed-alphabet values go into the script.
    let notify = match (failure, ctx.label) {
        (Failure::TokenRejected | Failure::TokenMissing, label) => {
            let (sandbox, port) = label
                .map(|l| (format!("\"{}\"", l.sandbox_id), l.port.to_string()))
                .unwrap_or(("null".into(), "null".into()));
            let kind = if failure == Failure::TokenRejected {
                "preview.session_expired"
            } else {
                "preview.token_required"
            };
            format!(
                "<script>try{{window.parent.postMessage({{type:\"{kind}\",sandbox_id:{sandbox},port:{port}}},\"*\")}}catch(e){{}}</script>"
            )
        }
        _ => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<title>{title} · {product}</title>
<style>
body{{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
background:{background};font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1e293b}}
main{{max-width:28rem;padding:2rem;text-align:center}}
.logo{{max-height:48px;max-width:200px;margin-bottom:1rem}}
h1{{font-size:1.25rem;margin:0 0 .5rem;color:{primary}}}
p{{margin:0 0 1rem}} a{{color:{primary}}} .product{{font-weight:600;margin-bottom:1rem}}
small{{color:#64748b}}
</style></head>
<body><main>{logo}<div class="product">{product}</div>
<h1>{title}</h1><p>{message}</p><p>{support}</p>
<small>{status} · {request_id}</small></main>{notify}</body></html>
"#,
        title = escape(meta.title),
        message = escape(meta.message),
        status = meta.status.as_u16(),
        request_id = escape(ctx.request_id),
    )
}
