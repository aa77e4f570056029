//! Every route of `/api/v1`, declared once: method, path, who may call it, handler and a doc
//! line. The router ([`router`]), the access table ([`need`], read by `access::layer`
//! through `MatchedPath`) and the tests' route lists ([`table`]) all come from [`declare`],
//! so a route cannot be served without a stated scope, nor scoped without being served.

use std::sync::OnceLock;

use axum::handler::Handler;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use http::Method;
use islet_types::scope::Scope;

use super::resources::{
    bill_to, bulk, custom_domains, event_stream, forward, key_presets, keys, metrics, plan, policy,
    preview_tokens, previews, readiness, sandbox_resources, sandboxes, settings, tenant, terminal,
    tunnel, usage, webhooks,
};
use crate::state::AppState;

/// One HTTP method a route answers (`Get` also answers `HEAD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// Which methods a declaration answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    One(Verb),
    /// Every method but the reads (`GET`, `HEAD`): `POST`, `PUT`, `PATCH`, `DELETE`, `OPTIONS`.
    Writes,
    /// Any method (relayed to the sandbox's agent, which decides).
    Any,
}

const WRITES: [Verb; 4] = [Verb::Post, Verb::Put, Verb::Patch, Verb::Delete];

impl Methods {
    fn filter(self) -> MethodFilter {
        match self {
            Methods::One(verb) => verb.filter(),
            Methods::Writes => WRITES.iter().fold(MethodFilter::OPTIONS, |f, v| f.or(v.filter())),
            Methods::Any => WRITES.iter().fold(
                MethodFilter::GET.or(MethodFilter::HEAD).or(MethodFilter::OPTIONS),
                |f, v| f.or(v.filter()),
            ),
        }
    }

    /// Whether a request's method is one of these.
    pub fn matches(self, method: &Method) -> bool {
        let method = if method == Method::HEAD { "GET" } else { method.as_str() };
        match self {
            Methods::One(verb) => verb.as_str() == method,
            Methods::Writes => method == "OPTIONS" || WRITES.iter().any(|v| v.as_str() == method),
            Methods::Any => true,
        }
    }

    /// The methods a test should try (each kind once).
    pub fn examples(self) -> Vec<&'static str> {
        match self {
            Methods::One(verb) => vec![verb.as_str()],
            Methods::Writes => vec!["POST", "PUT", "DELETE"],
            Methods::Any => vec!["GET", "POST", "DELETE"],
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential at all (the health check).
    Public,
    /// Any credential of the tenant, whatever its scopes (reading its own branding).
    AnyCredential,
    /// A credential holding this scope.
    Scope(Scope),
}

/// What a route needs: who may call it, and whether end-user-bound credentials (scoped keys,
/// browser tokens) may call it at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub access: Access,
    pub user_bound_ok: bool,
}

/// A route without its handler: what the access layer and the tests read.
#[derive(Debug, Clone, Copy)]
pub struct RouteInfo {
    pub methods: Methods,
    /// The pattern under `/api/v1`, as axum matches it (`/sandboxes/{id}/stop`).
    pub path: &'static str,
    pub need: Need,
    pub doc: &'static str,
}

struct Route {
    info: RouteInfo,
    handler: MethodRouter<AppState>,
}

/// The declarations, in the order a reader looks for them.
struct Routes(Vec<Route>);

impl Routes {
    fn add<H, T>(
        &mut self,
        methods: Methods,
        path: &'static str,
        need: Need,
        handler: H,
        doc: &'static str,
    ) where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let handler = on(methods.filter(), handler);
        self.0.push(Route { info: RouteInfo { methods, path, need, doc }, handler });
    }
}

const fn scope(scope: Scope, user_bound_ok: bool) -> Need {
    Need { access: Access::Scope(scope), user_bound_ok }
}

/// May an end-user-bound credential call it.
const USER_OK: bool = true;
const TENANT_ONLY: bool = false;

const GET: Methods = Methods::One(Verb::Get);
const POST: Methods = Methods::One(Verb::Post);
const PUT: Methods = Methods::One(Verb::Put);
const PATCH: Methods = Methods::One(Verb::Patch);
const DELETE: Methods = Methods::One(Verb::Delete);

#[rustfmt::skip]
fn declare() -> Routes {
    use Scope::*;
    let mut r = Routes(Vec::new());
    let public = Need { access: Access::Public, user_bound_ok: USER_OK };
    let any_credential = Need { access: Access::AnyCredential, user_bound_ok: TENANT_ONLY };
    r.add(GET, "/health", public, health, "Liveness: answers without a credential.");

    // Sandboxes and their lifecycle.
    let (read, write) = (scope(SandboxesRead, USER_OK), scope(SandboxesWrite, USER_OK));
    let (exec, previews_write) = (scope(SandboxesExec, USER_OK), scope(PreviewsWrite, USER_OK));
    r.add(POST, "/sandboxes", scope(SandboxesCreate, USER_OK), sandboxes::create, "Create a sandbox (idempotent with `Idempotency-Key`).");
    r.add(GET, "/sandboxes", read, sandboxes::list, "List sandboxes, filtered and paged.");
    r.add(GET, "/sandboxes/by-name/{name}", read, sandboxes::get_by_name, "The live sandbox with this name.");
    r.add(GET, "/sandboxes/{id}", read, sandboxes::get, "One sandbox.");
    r.add(PATCH, "/sandboxes/{id}", write, sandboxes::patch, "Change name, metadata, tags or timeouts.");
    r.add(DELETE, "/sandboxes/{id}", write, sandboxes::delete, "Destroy a sandbox.");
    r.add(POST, "/sandboxes/{id}/stop", write, sandboxes::stop, "Stop: processes end, the disk stays.");
    r.add(POST, "/sandboxes/{id}/pause", write, sandboxes::pause, "Pause: processes freeze.");
    r.add(POST, "/sandboxes/{id}/resume", write, sandboxes::resume, "Resume a paused or stopped sandbox.");
    r.add(POST, "/sandboxes/{id}/extend", write, sandboxes::extend, "Push the timeout out.");
    r.add(PATCH, "/sandboxes/{id}/tags", write, sandboxes::set_tags, "Replace the tags.");
    r.add(GET, "/sandboxes/{id}/readiness", read, readiness::readiness, "Whether it is ready.");
    r.add(GET, "/sandboxes/{id}/readiness/stream", read, readiness::stream, "Readiness as SSE.");
    r.add(GET, "/sandboxes/{id}/usage", read, usage::sandbox_usage, "The sandbox's metered usage.");
    r.add(GET, "/sandboxes/{id}/metrics", read, metrics::get, "Recent CPU, memory and network, from the meter's samples.");
    r.add(GET, "/sandboxes/{id}/resources", read, sandbox_resources::get, "CPU and memory, and what can change live.");
    r.add(PATCH, "/sandboxes/{id}/resources", write, sandbox_resources::resize, "Change CPU and memory within quota, live when running.");
    r.add(GET, "/sandboxes/{id}/events", read, event_stream::sandbox_stream, "The sandbox's lifecycle events as SSE.");
    r.add(POST, "/sandboxes/{id}/browser/cdp-url", read, plan::browser_cdp_url, "Refused: no template runs a browser (409 UNSUPPORTED).");

    // Inside the sandbox: relayed to its agent. Reading files is reading; everything else
    // runs something inside.
    r.add(GET, "/sandboxes/{id}/terminal/stream", exec, terminal::stream, "A PTY over WebSocket.");
    r.add(GET, "/sandboxes/{id}/tunnel/{port}", exec, tunnel::tunnel, "A TCP tunnel to a port inside, over WebSocket.");
    r.add(GET, "/sandboxes/{id}/ssh-tunnel", exec, tunnel::ssh_tunnel, "A TCP tunnel to port 22 (an sshd the template runs).");
    for path in ["/sandboxes/{id}/exec", "/sandboxes/{id}/exec/{*rest}"] {
        r.add(Methods::Any, path, exec, forward::forward, "Run a command (sync or streamed).");
    }
    for path in ["/sandboxes/{id}/processes", "/sandboxes/{id}/processes/{*rest}"] {
        r.add(Methods::Any, path, exec, forward::forward, "Background processes.");
    }
    r.add(GET, "/sandboxes/{id}/logs", exec, forward::forward, "The sandbox's output: every background process's lines.");
    r.add(GET, "/sandboxes/{id}/logs/stream", exec, forward::forward, "The sandbox's output, followed as SSE.");
    for path in ["/sandboxes/{id}/terminal", "/sandboxes/{id}/terminal/{*rest}"] {
        r.add(Methods::Any, path, exec, forward::forward, "Terminal sessions.");
    }
    for path in
        ["/sandboxes/{id}/fs/{*rest}", "/sandboxes/{id}/files", "/sandboxes/{id}/files/{*rest}"]
    {
        r.add(GET, path, read, forward::forward, "Read files and directories.");
        r.add(Methods::Writes, path, exec, forward::forward, "Write, move and remove files.");
    }

    // Previews of the sandbox's ports, and who may open them.
    r.add(POST, "/sandboxes/{id}/expose", previews_write, previews::expose, "Expose a port as a preview.");
    r.add(GET, "/sandboxes/{id}/previews", read, previews::list, "The sandbox's previews.");
    r.add(POST, "/sandboxes/{id}/previews", previews_write, previews::create, "Create a preview.");
    r.add(GET, "/sandboxes/{id}/previews/{pid}", read, previews::get, "One preview.");
    r.add(DELETE, "/sandboxes/{id}/previews/{pid}", previews_write, previews::delete, "Remove a preview.");
    r.add(POST, "/sandboxes/{id}/previews/{pid}/share", previews_write, previews::share, "Make a preview public.");
    r.add(DELETE, "/sandboxes/{id}/previews/{pid}/share", previews_write, previews::revoke_share, "Make it private again.");
    r.add(POST, "/sandboxes/{id}/preview-token", previews_write, preview_tokens::create, "Mint an `mp_` preview token.");
    r.add(GET, "/sandboxes/{id}/preview-tokens", read, preview_tokens::list, "The preview tokens minted.");
    r.add(DELETE, "/sandboxes/{id}/preview-tokens/{token_id}", previews_write, preview_tokens::revoke_token, "Revoke a preview token.");
    r.add(GET, "/sandboxes/{id}/shares", read, preview_tokens::list_shares, "Share links.");
    r.add(POST, "/sandboxes/{id}/shares", previews_write, preview_tokens::create_share, "Create a share link.");
    r.add(DELETE, "/sandboxes/{id}/shares/{share_id}", previews_write, preview_tokens::revoke_share, "Revoke a share link.");

    // Usage for billing.
    let usage_read = scope(UsageRead, USER_OK);
    r.add(GET, "/usage", usage_read, usage::usage, "Usage, grouped and bucketed.");
    r.add(GET, "/usage/summary", usage_read, usage::summary, "Usage totals of a period.");
    r.add(GET, "/usage/sessions", usage_read, usage::sessions, "Usage per sandbox session.");
    r.add(GET, "/usage/export.csv", usage_read, usage::export_csv, "Usage as CSV.");

    // Webhooks and the event stream.
    let (hooks_read, hooks_write) =
        (scope(WebhooksRead, TENANT_ONLY), scope(WebhooksWrite, TENANT_ONLY));
    r.add(POST, "/webhooks", hooks_write, webhooks::create, "Create an endpoint (its secret shown once).");
    r.add(GET, "/webhooks", hooks_read, webhooks::list, "The endpoints.");
    r.add(GET, "/webhooks/events", hooks_read, webhooks::catalogue, "The events one can subscribe to.");
    r.add(GET, "/webhooks/{id}", hooks_read, webhooks::get, "One endpoint.");
    r.add(PATCH, "/webhooks/{id}", hooks_write, webhooks::update, "Change an endpoint.");
    r.add(DELETE, "/webhooks/{id}", hooks_write, webhooks::delete, "Remove an endpoint.");
    r.add(POST, "/webhooks/{id}/test", hooks_write, webhooks::test, "Send a test delivery now.");
    r.add(POST, "/webhooks/{id}/rotate-secret", hooks_write, webhooks::rotate_secret, "A new secret, the old one kept for a grace period.");
    r.add(GET, "/webhooks/{id}/deliveries", hooks_read, webhooks::deliveries, "The endpoint's deliveries.");
    r.add(GET, "/webhooks/{id}/deliveries/{delivery}", hooks_read, webhooks::get_delivery, "One delivery and its attempts.");
    r.add(POST, "/webhooks/{id}/deliveries/{delivery}/replay", hooks_write, webhooks::replay, "Deliver it again.");
    r.add(GET, "/events/stream", hooks_read, event_stream::stream, "Lifecycle events as SSE.");
    r.add(GET, "/tenant/events/stream", hooks_read, event_stream::stream, "Lifecycle events as SSE.");

    // Keys and browser tokens.
    let (keys_read, keys_write) = (scope(KeysRead, TENANT_ONLY), scope(KeysWrite, TENANT_ONLY));
    r.add(GET, "/api-keys", keys_read, keys::list, "The tenant's API keys.");
    r.add(POST, "/api-keys", keys_write, keys::create, "Create a key (shown once).");
    r.add(POST, "/api-keys/scoped", keys_write, keys::create_scoped, "Create a key bound to one end user.");
    r.add(GET, "/api-keys/presets", keys_read, key_presets::list, "Named scope sets: built in, and the tenant's own.");
    r.add(POST, "/api-keys/presets", keys_write, key_presets::create, "Save a named scope set.");
    r.add(DELETE, "/api-keys/presets/{name}", keys_write, key_presets::delete, "Remove one of the tenant's presets.");
    r.add(GET, "/api-keys/{id}/events", keys_read, key_presets::events, "Every change made to a key.");
    r.add(GET, "/api-keys/{id}", keys_read, keys::get, "One key.");
    r.add(PATCH, "/api-keys/{id}", keys_write, keys::update, "Rename or narrow a key.");
    r.add(DELETE, "/api-keys/{id}", keys_write, keys::revoke, "Revoke a key.");
    r.add(POST, "/api-keys/{id}/rotate", keys_write, keys::rotate, "Replace a key's secret.");
    let tokens = scope(TokensWrite, TENANT_ONLY);
    r.add(GET, "/tokens/scoped", tokens, keys::list_tokens, "Live browser tokens.");
    r.add(POST, "/tokens/scoped", tokens, keys::create_token, "Mint an `mst_` browser token.");
    r.add(DELETE, "/tokens/scoped/{id}", tokens, keys::revoke_token, "Revoke a browser token.");

    // Quotas, policy and end users.
    let (policy_read, policy_write) =
        (scope(UsageRead, TENANT_ONLY), scope(PolicyWrite, TENANT_ONLY));
    r.add(GET, "/quotas/external/{uid}", policy_read, policy::get_quota, "An end user's quotas.");
    r.add(PUT, "/quotas/external/{uid}", policy_write, policy::put_quota, "Set an end user's quotas.");
    r.add(DELETE, "/quotas/external/{uid}", policy_write, policy::delete_quota, "Remove an end user's quotas.");
    r.add(GET, "/external-users/{uid}/policy", policy_read, policy::get_user_policy, "An end user's policy document.");
    r.add(PUT, "/external-users/{uid}/policy", policy_write, policy::put_user_policy, "Replace it.");
    r.add(DELETE, "/external-users/{uid}/policy", policy_write, policy::delete_user_policy, "Remove it.");
    r.add(GET, "/external-users/{uid}/effective-policy", policy_read, policy::effective_policy, "The limits in force, and where each comes from.");
    r.add(GET, "/external-users/{uid}", policy_read, policy::get_user, "An end user: holdings and suspension.");
    r.add(POST, "/external-users/{uid}/suspend", policy_write, policy::suspend, "Suspend an end user.");
    r.add(POST, "/external-users/{uid}/unsuspend", policy_write, policy::unsuspend, "Lift the tenant's suspension.");
    r.add(GET, "/workspaces/{ws}/policy", policy_read, policy::get_workspace_policy, "A workspace's policy: defaults for its sandboxes.");
    r.add(PUT, "/workspaces/{ws}/policy", policy_write, policy::put_workspace_policy, "Replace it.");
    r.add(DELETE, "/workspaces/{ws}/policy", policy_write, policy::delete_workspace_policy, "Remove it.");
    r.add(GET, "/tenant/policy", policy_read, policy::get_tenant_policy, "The tenant's default policy.");
    r.add(PUT, "/tenant/policy", policy_write, policy::put_tenant_policy, "Replace it.");
    r.add(DELETE, "/tenant/policy", policy_write, policy::delete_tenant_policy, "Remove it.");
    r.add(GET, "/tenants/{tenant_id}/member-caps", policy_read, bill_to::list_caps, "End users with caps, and what they use.");
    r.add(PUT, "/tenants/{tenant_id}/member-caps/{uid}", policy_write, bill_to::update_caps, "Set or clear an end user's credit and concurrency caps.");
    r.add(DELETE, "/tenants/{tenant_id}/member-caps/{uid}", policy_write, bill_to::delete_caps, "Clear both caps.");

    // Bulk operations on sandboxes.
    let (bulk_write, bulk_read) = (scope(SandboxesWrite, TENANT_ONLY), scope(SandboxesRead, TENANT_ONLY));
    r.add(POST, "/bulk/sandboxes/{op}", bulk_write, bulk::submit, "Pause, resume, stop or destroy many sandboxes (a job).");
    r.add(GET, "/bulk/jobs/{id}", bulk_read, bulk::get, "A bulk job and each sandbox's outcome.");

    // Branding, settings and the preview domain.
    let (settings_write, domains_write) =
        (scope(SettingsWrite, TENANT_ONLY), scope(DomainsWrite, TENANT_ONLY));
    r.add(GET, "/tenant/plan", any_credential, plan::get, "The tenant's plan: the platform's limits and what it holds.");
    r.add(GET, "/bill-to", any_credential, bill_to::show, "Who a create bills: the credential's own organization.");
    r.add(PUT, "/bill-to", settings_write, bill_to::update, "Accepted for the own organization only (nothing else to pin).");
    r.add(DELETE, "/bill-to", settings_write, bill_to::clear, "Nothing pinned: no change.");
    r.add(GET, "/limits", any_credential, bill_to::limits, "The platform's limits and what the tenant holds.");
    r.add(GET, "/tenant/branding", any_credential, tenant::get_branding, "The failure pages' branding.");
    r.add(PUT, "/tenant/branding", settings_write, tenant::put_branding, "Set it (`{\"branding\": {…}}`).");
    r.add(DELETE, "/tenant/branding", settings_write, tenant::delete_branding, "Back to the default.");
    r.add(GET, "/settings/branding", any_credential, tenant::get_branding, "The branding (flat).");
    r.add(PUT, "/settings/branding", settings_write, tenant::put_branding_flat, "Set it (flat body).");
    r.add(GET, "/settings", any_credential, settings::get, "Origins, prices, egress rules.");
    r.add(PUT, "/settings", settings_write, settings::put, "Change them.");
    r.add(GET, "/tenant/preview-domain", any_credential, tenant::get_domain, "The tenant's preview domain claim.");
    r.add(PUT, "/tenant/preview-domain", domains_write, tenant::put_domain, "Claim a domain.");
    r.add(DELETE, "/tenant/preview-domain", domains_write, tenant::delete_domain, "Give it up.");
    r.add(POST, "/tenant/preview-domain/verify", domains_write, tenant::verify_domain, "Check its TXT record.");
    r.add(PUT, "/tenant/preview-domain/certificate", domains_write, tenant::put_certificate, "Upload its certificate.");
    r.add(GET, "/custom-domains", any_credential, custom_domains::list, "More domains the previews answer on.");
    r.add(POST, "/custom-domains", domains_write, custom_domains::create, "Register one (unverified, with its DNS records).");
    r.add(GET, "/custom-domains/{id}", any_credential, custom_domains::get, "One custom domain.");
    r.add(DELETE, "/custom-domains/{id}", domains_write, custom_domains::delete, "Remove it; previews stop answering on it.");
    r.add(POST, "/custom-domains/{id}/verify", domains_write, custom_domains::verify, "Check its TXT record.");
    r.add(DELETE, "/tenant/preview-domain/certificate", domains_write, tenant::delete_certificate, "Remove it.");
    r
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "data": { "status": "ok" } }))
}

/// Every route, without handlers.
pub fn table() -> &'static [RouteInfo] {
    static TABLE: OnceLock<Vec<RouteInfo>> = OnceLock::new();
    TABLE.get_or_init(|| declare().0.into_iter().map(|r| r.info).collect())
}

/// What a request of `method` to the matched pattern `path` needs; `None`: no such path.
/// A method the path does not declare (the router answers it 405) needs what the path's
/// changing declaration needs (or its only one), so a caller without that scope is refused
/// first and nothing about the path is learnt without a credential that could use it.
pub fn need(method: &Method, path: &str) -> Option<Need> {
    let at_path = || table().iter().filter(move |r| r.path == path);
    at_path()
        .find(|r| r.methods.matches(method))
        .or_else(|| at_path().find(|r| r.methods != GET))
        .or_else(|| at_path().next())
        .map(|r| r.need)
}

/// The routes as an axum router (paths under `/api/v1`, not yet nested).
pub(crate) fn router() -> Router<AppState> {
    let mut router = Router::new();
    for route in declare().0 {
        router = router.route(route.info.path, route.handler);
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for route in table() {
            for method in route.methods.examples() {
                assert!(
                    seen.insert((method, route.path)),
                    "{method} {} declared twice",
                    route.path
                );
            }
            assert!(!route.doc.is_empty(), "{} has no doc line", route.path);
            assert!(
                route.path.starts_with('/') && !route.path.starts_with("/api/v1"),
                "{}",
                route.path
            );
        }
        // The router accepts every declaration (overlaps would panic here).
        let _ = router();
    }

    #[test]
    fn every_route_but_health_needs_a_credential() {
        for route in table() {
            let public = route.need.access == Access::Public;
            assert_eq!(public, route.path == "/health", "{} {:?}", route.path, route.need);
        }
    }

    #[test]
    fn every_sandbox_route_is_open_to_its_end_user_and_needs_a_sandbox_scope() {
        for route in table().iter().filter(|r| r.path.starts_with("/sandboxes")) {
            assert!(route.need.user_bound_ok, "{}", route.path);
            let Access::Scope(s) = route.need.access else { panic!("{} has no scope", route.path) };
            assert!(
                s.as_str().starts_with("sandboxes:") || s == Scope::PreviewsWrite,
                "{} {s}",
                route.path
            );
        }
    }

    #[test]
    fn routes_map_to_the_scopes_they_need() {
        use Scope::*;
        let cases = [
            ("GET", "/sandboxes", SandboxesRead, true),
            ("POST", "/sandboxes", SandboxesCreate, true),
            ("DELETE", "/sandboxes/{id}", SandboxesWrite, true),
            ("POST", "/sandboxes/{id}/exec", SandboxesExec, true),
            ("GET", "/sandboxes/{id}/fs/{*rest}", SandboxesRead, true),
            ("HEAD", "/sandboxes/{id}/files/{*rest}", SandboxesRead, true),
            ("PUT", "/sandboxes/{id}/files/{*rest}", SandboxesExec, true),
            ("GET", "/sandboxes/{id}/terminal/stream", SandboxesExec, true),
            ("GET", "/sandboxes/{id}/tunnel/{port}", SandboxesExec, true),
            ("GET", "/sandboxes/{id}/ssh-tunnel", SandboxesExec, true),
            ("POST", "/sandboxes/{id}/preview-token", PreviewsWrite, true),
            ("GET", "/sandboxes/{id}/previews", SandboxesRead, true),
            ("GET", "/usage", UsageRead, true),
            ("POST", "/webhooks", WebhooksWrite, false),
            ("PUT", "/quotas/external/{uid}", PolicyWrite, false),
            ("PUT", "/tenant/preview-domain", DomainsWrite, false),
            ("POST", "/api-keys", KeysWrite, false),
            ("POST", "/tokens/scoped", TokensWrite, false),
        ];
        for (method, path, scope, user_ok) in cases {
            let method = Method::from_bytes(method.as_bytes()).expect("a method");
            let need = need(&method, path).unwrap_or_else(|| panic!("{method} {path}"));
            assert_eq!(
                (need.access, need.user_bound_ok),
                (Access::Scope(scope), user_ok),
                "{method} {path}"
            );
        }
        assert_eq!(need(&Method::GET, "/sandboxes/{id}/unknown"), None);
        assert_eq!(need(&Method::GET, "/nowhere"), None);
        // A method the path does not declare needs what its changing declaration needs.
        let undeclared = |m: Method, p: &str| need(&m, p).map(|n| (n.access, n.user_bound_ok));
        assert_eq!(
            undeclared(Method::PUT, "/sandboxes/{id}/stop"),
            Some((Access::Scope(SandboxesWrite), true))
        );
        assert_eq!(
            undeclared(Method::PUT, "/webhooks"),
            Some((Access::Scope(WebhooksWrite), false))
        );
        assert_eq!(undeclared(Method::POST, "/health"), Some((Access::Public, true)));
    }
}
