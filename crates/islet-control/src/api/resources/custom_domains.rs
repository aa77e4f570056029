//! `/custom-domains` (contract §9): more domains the tenant's previews answer on, beyond its one
//! preview domain — a tenant with several products gives each its own. Each is proven like the
//! preview domain, by a TXT record at `_preview-verify.<domain>` holding its challenge
//! (`POST /custom-domains/{id}/verify`, an Islet addition: the SDK's flat resource has no
//! verify); once verified, `<label>.<domain>` serves the same previews as the preview domain,
//! with ACME certificates issued per host as there.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use islet_store::CustomDomain;
use islet_types::domain::DomainName;
use islet_types::time::rfc3339;
use islet_types::CustomDomainId;
use serde::{Deserialize, Serialize};

use super::tenant::{check_and_mark, dns_records, own_domain, DnsRecord, Verification};
use crate::api::extract::{body, Caller, IdPath, RawBody};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;

/// One custom domain.
#[derive(Debug, Serialize)]
pub(crate) struct CustomDomainView {
    pub id: CustomDomainId,
    pub domain: DomainName,
    /// `domain` again, as the SDK's domain records name it.
    pub fqdn: DomainName,
    /// `pending` until its TXT record is found, then `verified`.
    pub status: &'static str,
    pub verified: bool,
    pub verified_at: Option<String>,
    /// Where `*.<domain>` points (a CNAME).
    pub verification_target: String,
    pub records: [DnsRecord; 2],
    pub verification: Verification,
    pub instructions: String,
    /// When the latest certificate issued under it expires, if any.
    pub certificate_expires_at: Option<String>,
    pub created_at: String,
    /// After a verification attempt: why it failed, or `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Option<String>>,
}

/// `GET /custom-domains`: `{"data": [...], "total"}`.
#[derive(Debug, Serialize)]
pub(crate) struct CustomDomainList {
    pub data: Vec<CustomDomainView>,
    pub total: usize,
}

fn view(state: &AppState, d: &CustomDomain) -> CustomDomainView {
    let target = state.config.preview_domain.to_string();
    let (records, verification) = dns_records(&d.domain, &d.challenge, &target);
    CustomDomainView {
        id: d.id.clone(),
        domain: d.domain.clone(),
        fqdn: d.domain.clone(),
        status: if d.verified_at.is_some() { "verified" } else { "pending" },
        verified: d.verified_at.is_some(),
        verified_at: d.verified_at.map(rfc3339),
        verification_target: target.clone(),
        instructions: format!(
            "Add a CNAME record `*.{}` pointing at `{target}`, and a TXT record `{}` with the \
             value `{}`; then POST /custom-domains/{}/verify.",
            d.domain, verification.name, d.challenge, d.id
        ),
        records,
        verification,
        certificate_expires_at: d.certificate_expires_at.map(rfc3339),
        created_at: rfc3339(d.created_at),
        error: None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    domain: Option<String>,
    /// The SDK's domain records call it `fqdn`.
    fqdn: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<CustomDomainList>, ApiError> {
    let all = state.store.custom_domains(&caller.tenant_id).await?;
    let data: Vec<CustomDomainView> = all.iter().map(|d| view(&state, d)).collect();
    Ok(Json(CustomDomainList { total: data.len(), data }))
}

/// `POST /custom-domains {"domain"}`: registered unverified, with the records to publish.
pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<(StatusCode, Json<Data<CustomDomainView>>), ApiError> {
    let b: CreateBody = body::parse(&bytes).map_err(|e| match e {
        ApiError::Validation { message, .. } if message.contains("unknown field") => {
            ApiError::Validation {
                message: format!(
                    "{message}; a custom domain serves previews of all the account's sandboxes, so it takes only `domain`"
                ),
                field: None,
            }
        }
        other => other,
    })?;
    let raw =
        b.domain.or(b.fqdn).ok_or_else(|| ApiError::validation("domain is required", "domain"))?;
    let domain = own_domain(&state, &raw, "domain")?;
    let d = state.store.create_custom_domain(&caller.tenant_id, domain).await?;
    Ok((StatusCode::CREATED, wire::data(view(&state, &d))))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<CustomDomainId>,
) -> Result<Json<Data<CustomDomainView>>, ApiError> {
    let d = state.store.custom_domain(&caller.tenant_id, &id).await?;
    Ok(wire::data(view(&state, &d)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<CustomDomainId>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_custom_domain(&caller.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /custom-domains/{id}/verify`: look for the TXT record; `verified: false` with the
/// reason while it is not there yet (DNS takes time), 409 when another account verified the
/// domain first.
pub(crate) async fn verify(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<CustomDomainId>,
) -> Result<Json<Data<CustomDomainView>>, ApiError> {
    let d = state.store.custom_domain(&caller.tenant_id, &id).await?;
    if d.verified_at.is_some() {
        return Ok(wire::data(CustomDomainView { error: Some(None), ..view(&state, &d) }));
    }
    let (domain, challenge) = (d.domain.clone(), d.challenge.clone());
    let mark = state.store.mark_custom_domain_verified(&caller.tenant_id, &id);
    let (record, error) = check_and_mark(&state, &domain, &challenge, d, mark).await?;
    Ok(wire::data(CustomDomainView { error: Some(error), ..view(&state, &record) }))
}
