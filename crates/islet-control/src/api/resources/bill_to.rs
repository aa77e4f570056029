//! Who pays, and per-member caps (contract §11). On Islet every credential belongs to one
//! tenant (one organization), so what a create bills is always the credential's tenant:
//! `GET /bill-to` says so, an `X-Miosa-Bill-To` override or `PUT /bill-to {"org"}` naming the
//! tenant itself (id or name, any case) is accepted and changes nothing, and naming any other
//! is `404 ORG_NOT_FOUND` — on `POST /sandboxes` too, so a create meant for another
//! organization is refused rather than billed here. `GET /limits` is the tenant's plan limits
//! and holdings.
//!
//! The members who spend an organization's credit here are its end users, so
//! `/tenants/{tenant_id}/member-caps[/{uid}]` are two of an end user's quotas:
//! `usage_cap_cents` is `quotas.max_credit_cents` (this calendar month) and
//! `max_concurrent_sandboxes` is `quotas.max_concurrent`, the same values
//! `/quotas/external/{uid}` shows.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use islet_store::MemberCaps;
use islet_types::policy::MAX_VALUE;
use islet_types::TenantId;
use serde::Serialize;
use serde_json::{Map, Value};

use super::plan::{holdings, platform_limits, Holdings, PlatformLimits};
use super::policy::user_id;
use crate::api::extract::{body, Caller, RawBody, TenantParam, TextPath, Uid};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;

/// The header that overrides the organization billed for one request.
const OVERRIDE: &str = "x-miosa-bill-to";

#[derive(Debug, Serialize)]
pub(crate) struct Org {
    pub id: TenantId,
    pub name: String,
}

/// `GET /bill-to`.
#[derive(Debug, Serialize)]
pub(crate) struct BillToView {
    /// What a create bills now.
    pub org: Org,
    /// `credential` (the credential's own organization) or `override` (the header named it).
    pub source: &'static str,
    /// No account-wide setting exists here: there is nothing else to pin.
    pub pinned: Option<Org>,
    /// The organizations this credential may bill: its own.
    pub choices: Vec<Org>,
}

/// `GET /limits`.
#[derive(Debug, Serialize)]
pub(crate) struct LimitsView {
    pub org: Org,
    pub limits: PlatformLimits,
    pub usage: Holdings,
}

pub(crate) async fn own_org(state: &AppState, tenant: &TenantId) -> Result<Org, ApiError> {
    let (name, _, _) = state.store.tenant(tenant).await?;
    Ok(Org { id: tenant.clone(), name })
}

/// The organization `named` (an id or a name, any case): the caller's own, or not found.
pub(crate) fn resolve(org: &Org, named: &str) -> Result<(), ApiError> {
    let named = named.trim();
    if named.eq_ignore_ascii_case(org.id.as_str()) || named.eq_ignore_ascii_case(&org.name) {
        Ok(())
    } else {
        Err(ApiError::OrgNotFound(format!(
            "this credential bills its own organization only ({}); `{named}` is not it",
            org.name
        )))
    }
}

/// The override header, if sent (not UTF-8 is a bad request).
pub(crate) fn override_of(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers
        .get(OVERRIDE)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::validation("X-Miosa-Bill-To must be text", "X-Miosa-Bill-To")
            })
        })
        .transpose()
}

fn show_answer(org: Org, headers: &HeaderMap) -> Result<BillToView, ApiError> {
    let source = match override_of(headers)? {
        Some(named) => {
            resolve(&org, named)?;
            "override"
        }
        None => "credential",
    };
    let choices = vec![Org { id: org.id.clone(), name: org.name.clone() }];
    Ok(BillToView { org, source, pinned: None, choices })
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
) -> Result<Json<Data<BillToView>>, ApiError> {
    let org = own_org(&state, &caller.tenant_id).await?;
    Ok(wire::data(show_answer(org, &headers)?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    org: Option<String>,
}

/// `PUT /bill-to {"org"}`: the credential's own organization is the only choice.
pub(crate) async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<BillToView>>, ApiError> {
    let b: PinBody = body::parse(&bytes)?;
    let named = b.org.ok_or_else(|| ApiError::validation("org is required", "org"))?;
    let org = own_org(&state, &caller.tenant_id).await?;
    resolve(&org, &named)?;
    Ok(wire::data(show_answer(org, &headers)?))
}

/// `DELETE /bill-to`: nothing is pinned, so nothing changes.
pub(crate) async fn clear(Caller(_caller): Caller) -> StatusCode {
    StatusCode::NO_CONTENT
}

pub(crate) async fn limits(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
) -> Result<Json<Data<LimitsView>>, ApiError> {
    let org = own_org(&state, &caller.tenant_id).await?;
    if let Some(named) = override_of(&headers)? {
        resolve(&org, named)?;
    }
    let usage = holdings(&state, &caller.tenant_id).await?;
    Ok(wire::data(LimitsView { org, limits: platform_limits(&state), usage }))
}

/// One member's caps and what they use.
#[derive(Debug, Serialize)]
pub(crate) struct MemberView {
    /// The end user (`external_user_id`).
    pub user_id: String,
    pub external_user_id: String,
    pub usage_cap_cents: Option<u64>,
    pub max_concurrent_sandboxes: Option<u64>,
    pub usage: MemberUsage,
}

#[derive(Debug, Serialize)]
pub(crate) struct MemberUsage {
    /// Credit spent this calendar month (UTC), in cents at the tenant's prices.
    pub spent_cents: f64,
    pub concurrent_sandboxes: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct MemberList {
    pub tenant_id: TenantId,
    pub members: Vec<MemberView>,
}

fn member_view(m: MemberCaps) -> MemberView {
    MemberView {
        user_id: m.external_user_id.clone(),
        external_user_id: m.external_user_id,
        usage_cap_cents: m.usage_cap_cents,
        max_concurrent_sandboxes: m.max_concurrent_sandboxes,
        usage: MemberUsage {
            spent_cents: (m.spent_cents * 100.0).round() / 100.0,
            concurrent_sandboxes: m.concurrent_sandboxes,
        },
    }
}

/// The path's organization must be the caller's, by id in any case, as `X-Miosa-Bill-To`
/// reads it (any other is not found, whoever it is).
fn same_org(caller: &TenantId, named: &str) -> Result<(), ApiError> {
    if named.trim().eq_ignore_ascii_case(caller.as_str()) {
        Ok(())
    } else {
        Err(ApiError::OrgNotFound("no such organization for this credential".into()))
    }
}

pub(crate) async fn list_caps(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(tenant, _): TextPath<TenantParam>,
) -> Result<Json<Data<MemberList>>, ApiError> {
    same_org(&caller.tenant_id, &tenant)?;
    let members = state.store.member_caps(&caller.tenant_id).await?;
    let members = members.into_iter().map(member_view).collect();
    Ok(wire::data(MemberList { tenant_id: caller.tenant_id, members }))
}

/// A cap in the body: absent leaves it, `null` clears it, an integer sets it.
fn cap(body: &Map<String, Value>, field: &'static str) -> Result<Option<Option<u64>>, ApiError> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => v.as_u64().filter(|n| *n <= MAX_VALUE).map(|n| Some(Some(n))).ok_or_else(|| {
            ApiError::validation(
                format!("{field} must be an integer from 0 to {MAX_VALUE}, or null"),
                field,
            )
        }),
    }
}

pub(crate) async fn update_caps(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(tenant, _): TextPath<TenantParam>,
    TextPath(uid, _): TextPath<Uid>,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<MemberView>>, ApiError> {
    same_org(&caller.tenant_id, &tenant)?;
    let uid = user_id(&uid)?;
    let b: Map<String, Value> = body::parse(&bytes)?;
    if let Some(other) =
        b.keys().find(|k| *k != "usage_cap_cents" && *k != "max_concurrent_sandboxes")
    {
        return Err(ApiError::Validation {
            message: format!(
                "unknown field `{other}`; known: usage_cap_cents, max_concurrent_sandboxes"
            ),
            field: None,
        });
    }
    let credit = cap(&b, "usage_cap_cents")?;
    let concurrent = cap(&b, "max_concurrent_sandboxes")?;
    let caps = state.store.set_member_caps(&caller.tenant_id, &uid, credit, concurrent).await?;
    Ok(wire::data(member_view(caps)))
}

pub(crate) async fn delete_caps(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(tenant, _): TextPath<TenantParam>,
    TextPath(uid, _): TextPath<Uid>,
) -> Result<StatusCode, ApiError> {
    same_org(&caller.tenant_id, &tenant)?;
    let uid = user_id(&uid)?;
    state.store.set_member_caps(&caller.tenant_id, &uid, Some(None), Some(None)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_own_organization_resolves() {
        let org = Org { id: TenantId::generate(), name: "Acme".into() };
        assert!(resolve(&org, "acme").is_ok());
        assert!(resolve(&org, &org.id.as_str().to_uppercase()).is_ok());
        assert!(matches!(resolve(&org, "globex"), Err(ApiError::OrgNotFound(_))));
    }

    #[test]
    fn caps_absent_null_or_set() {
        let b: Map<String, Value> = serde_json::from_value(
            serde_json::json!({"usage_cap_cents": null, "max_concurrent_sandboxes": 3}),
        )
        .expect("valid");
        assert_eq!(cap(&b, "usage_cap_cents").expect("valid"), Some(None));
        assert_eq!(cap(&b, "max_concurrent_sandboxes").expect("valid"), Some(Some(3)));
        let empty = Map::new();
        assert_eq!(cap(&empty, "usage_cap_cents").expect("valid"), None);
        for bad in [serde_json::json!(-1), serde_json::json!("5"), serde_json::json!(1.5)] {
            let b: Map<String, Value> = [("usage_cap_cents".to_owned(), bad)].into_iter().collect();
            assert!(cap(&b, "usage_cap_cents").is_err());
        }
    }
}
