//! Tenant settings the preview edge serves (contract §9): branding, the custom preview domain,
//! its verification and its certificate.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use islet_store::{CertificateKind, CertificateRow, PreviewDomain};
use islet_types::branding::Branding;
use islet_types::domain::DomainName;
use islet_types::time::{now_millis, rfc3339};
use serde::{Deserialize, Serialize};

use crate::api::extract::body;
use crate::api::extract::Caller;
use crate::api::extract::RawBody;
use crate::api::wire::{self, Data};
use crate::domain_verify;
use crate::error::ApiError;
use crate::state::AppState;

fn parse_branding(value: serde_json::Value) -> Result<Branding, ApiError> {
    let branding: Branding = serde_json::from_value(value).map_err(|e| ApiError::Validation {
        message: format!("invalid branding: {e}"),
        field: Some("branding"),
    })?;
    branding
        .validate()
        .map_err(|e| ApiError::Validation { message: e.to_string(), field: Some(e.field) })?;
    Ok(branding)
}

/// The branding, or the default (no brand) when the tenant set none.
type BrandingAnswer = Json<Data<Branding>>;

pub(crate) async fn get_branding(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<BrandingAnswer, ApiError> {
    let b = state.store.branding(&caller.tenant_id).await?;
    Ok(wire::data(b.unwrap_or_default()))
}

#[derive(Deserialize)]
struct BrandingBody {
    branding: Option<serde_json::Value>,
}

async fn save_branding(
    state: &AppState,
    tenant: &islet_types::TenantId,
    value: serde_json::Value,
) -> Result<BrandingAnswer, ApiError> {
    let branding = parse_branding(value)?;
    state.store.set_branding(tenant, Some(branding.clone())).await?;
    Ok(wire::data(branding))
}

/// `PUT /tenant/branding` with `{"branding": {...}}`.
pub(crate) async fn put_branding(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<BrandingAnswer, ApiError> {
    let value = body::parse::<BrandingBody>(&bytes)?
        .branding
        .ok_or_else(|| ApiError::validation("branding is required", "branding"))?;
    save_branding(&state, &caller.tenant_id, value).await
}

/// `PUT /settings/branding` with the fields at the top level.
pub(crate) async fn put_branding_flat(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<BrandingAnswer, ApiError> {
    save_branding(&state, &caller.tenant_id, body::parse(&bytes)?).await
}

pub(crate) async fn delete_branding(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<StatusCode, ApiError> {
    state.store.set_branding(&caller.tenant_id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's preview domain: the CNAME target alone while none is claimed; once claimed,
/// the records to publish, whether it is verified and its certificate.
#[derive(Debug, Serialize)]
pub(crate) struct DomainView {
    pub domain: Option<DomainName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_domain: Option<DomainName>,
    pub verified: bool,
    pub verified_at: Option<String>,
    pub cname_target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<[DnsRecord; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Claimed: the certificate, or `null` while it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Option<CertificateState>>,
    /// After a verification attempt: why it failed, or `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Option<String>>,
}

/// A DNS record the tenant publishes.
#[derive(Debug, Serialize)]
pub(crate) struct DnsRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub value: String,
    /// `routing` or `verification`.
    pub purpose: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct Verification {
    /// Always `dns-txt`.
    pub method: &'static str,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct CertificateState {
    pub not_after: String,
    /// `upload` or `acme`.
    pub source: Option<String>,
}

/// `PUT /tenant/preview-domain/certificate`: what the uploaded certificate covers.
#[derive(Debug, Serialize)]
pub(crate) struct CertificateUploaded {
    pub domain: DomainName,
    pub dns_names: Vec<String>,
    pub not_after: String,
    pub source: &'static str,
}

/// The records a tenant publishes for `domain`: `*.<domain>` pointing at the platform's
/// preview domain, and the TXT record holding the challenge.
pub(crate) fn dns_records(
    domain: &DomainName,
    challenge: &str,
    target: &str,
) -> ([DnsRecord; 2], Verification) {
    let txt = domain_verify::record_name(domain);
    let records = [
        DnsRecord {
            kind: "CNAME",
            name: format!("*.{domain}"),
            value: target.to_owned(),
            purpose: "routing",
        },
        DnsRecord {
            kind: "TXT",
            name: txt.clone(),
            value: challenge.to_owned(),
            purpose: "verification",
        },
    ];
    (records, Verification { method: "dns-txt", name: txt, value: challenge.to_owned() })
}

fn domain_view(state: &AppState, d: Option<&PreviewDomain>) -> DomainView {
    let target = state.config.preview_domain.to_string();
    let Some(d) = d else {
        return DomainView {
            domain: None,
            preview_domain: None,
            verified: false,
            verified_at: None,
            cname_target: target,
            target: None,
            records: None,
            verification: None,
            certificate: None,
            error: None,
        };
    };
    let (records, verification) = dns_records(&d.domain, &d.challenge, &target);
    DomainView {
        domain: Some(d.domain.clone()),
        preview_domain: Some(d.domain.clone()),
        verified: d.verified_at.is_some(),
        verified_at: d.verified_at.map(rfc3339),
        cname_target: target.clone(),
        target: Some(target.clone()),
        records: Some(records),
        verification: Some(verification),
        certificate: Some(d.certificate_expires_at.map(|at| CertificateState {
            not_after: rfc3339(at),
            source: d.certificate_source.clone(),
        })),
        error: None,
    }
}

pub(crate) async fn get_domain(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Data<DomainView>>, ApiError> {
    let d = state.store.preview_domain(&caller.tenant_id).await?;
    Ok(wire::data(domain_view(&state, d.as_ref())))
}

#[derive(Deserialize)]
struct DomainBody {
    preview_domain: Option<String>,
    domain: Option<String>,
}

/// A domain a tenant may claim: valid, and neither the platform's domain, nor below it, nor
/// above it (a parent of the platform's domain would put tenant content where the platform's
/// own cookies live).
pub(crate) fn own_domain(
    state: &AppState,
    raw: &str,
    field: &'static str,
) -> Result<DomainName, ApiError> {
    let domain: DomainName = raw.parse().map_err(|e: islet_types::domain::DomainError| {
        ApiError::validation(e.to_string(), field)
    })?;
    let platform = &state.config.preview_domain;
    if domain == *platform
        || platform.strip_from(domain.as_str()).is_some()
        || domain.strip_from(platform.as_str()).is_some()
    {
        return Err(ApiError::validation(
            format!("{field} must be a domain of your own, not the platform's nor one above or below it"),
            field,
        ));
    }
    Ok(domain)
}

/// Look for `domain`'s TXT record; when it holds `challenge`, `mark` records the domain
/// verified. Answers the record after, and why verification failed (`None` once verified):
/// DNS takes time, so a missing record is not an error. A domain another account verified
/// first (or one above or below it) is 409.
pub(crate) async fn check_and_mark<T>(
    state: &AppState,
    domain: &DomainName,
    challenge: &str,
    current: T,
    mark: impl std::future::Future<Output = Result<T, islet_store::StoreError>>,
) -> Result<(T, Option<String>), ApiError> {
    match domain_verify::verify(&state.config.domain_verify, domain, challenge).await {
        Ok(()) => match mark.await {
            Ok(record) => Ok((record, None)),
            Err(islet_store::StoreError::NameTaken(_)) => {
                Err(ApiError::Conflict("this domain is verified by another account".into()))
            }
            Err(other) => Err(other.into()),
        },
        Err(reason) => Ok((current, Some(reason.to_string()))),
    }
}

pub(crate) async fn put_domain(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<DomainView>>, ApiError> {
    let b = body::parse::<DomainBody>(&bytes)?;
    let raw = b
        .preview_domain
        .or(b.domain)
        .ok_or_else(|| ApiError::validation("preview_domain is required", "preview_domain"))?;
    let domain = own_domain(&state, &raw, "preview_domain")?;
    let d = state.store.set_preview_domain(&caller.tenant_id, Some(domain)).await?;
    Ok(wire::data(domain_view(&state, d.as_ref())))
}

pub(crate) async fn delete_domain(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<StatusCode, ApiError> {
    state.store.set_preview_domain(&caller.tenant_id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /tenant/preview-domain/verify`: look for the TXT record; `verified: false` with the
/// reason while it is not there yet (not an error: DNS takes time).
pub(crate) async fn verify_domain(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Data<DomainView>>, ApiError> {
    let d = state
        .store
        .preview_domain(&caller.tenant_id)
        .await?
        .ok_or(ApiError::NotFound("preview domain"))?;
    let (domain, challenge) = (d.domain.clone(), d.challenge.clone());
    let mark = state.store.mark_preview_domain_verified(&caller.tenant_id, &domain);
    let (record, error) = check_and_mark(&state, &domain, &challenge, d, mark).await?;
    Ok(wire::data(DomainView { error: Some(error), ..domain_view(&state, Some(&record)) }))
}

#[derive(Deserialize)]
struct CertificateBody {
    certificate_pem: Option<String>,
    private_key_pem: Option<String>,
}

/// `PUT /tenant/preview-domain/certificate` (Islet extension): a certificate covering
/// `*.<domain>`, served by SNI once the domain is verified.
pub(crate) async fn put_certificate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<CertificateUploaded>>, ApiError> {
    let b = body::parse::<CertificateBody>(&bytes)?;
    let cert = b
        .certificate_pem
        .ok_or_else(|| ApiError::validation("certificate_pem is required", "certificate_pem"))?;
    let key = b
        .private_key_pem
        .ok_or_else(|| ApiError::validation("private_key_pem is required", "private_key_pem"))?;
    if cert.len() > 64 * 1024 || key.len() > 16 * 1024 {
        return Err(ApiError::validation("certificate or key too large", "certificate_pem"));
    }
    let d = state
        .store
        .preview_domain(&caller.tenant_id)
        .await?
        .ok_or(ApiError::NotFound("preview domain"))?;
    if d.verified_at.is_none() {
        return Err(ApiError::Conflict(
            "verify the preview domain before uploading its certificate".into(),
        ));
    }
    let parsed = islet_tls::parse_pair(&cert, &key, &d.domain, now_millis())
        .map_err(|e| ApiError::validation(e.to_string(), "certificate_pem"))?;
    state
        .store
        .put_certificate(CertificateRow {
            name: d.domain.to_string(),
            domain: d.domain.clone(),
            kind: CertificateKind::Wildcard,
            tenant_id: caller.tenant_id.clone(),
            cert_pem: cert,
            key_pem: key,
            not_after: parsed.not_after,
            source: "upload".into(),
        })
        .await
        .map_err(|e| match e {
            islet_store::StoreError::NameTaken(_) => {
                ApiError::Conflict("this domain is verified by another account".into())
            }
            islet_store::StoreError::NotFound(_) => ApiError::Conflict(
                "verify the preview domain before uploading its certificate".into(),
            ),
            other => other.into(),
        })?;
    Ok(wire::data(CertificateUploaded {
        domain: d.domain,
        dns_names: parsed.dns_names,
        not_after: rfc3339(parsed.not_after),
        source: "upload",
    }))
}

pub(crate) async fn delete_certificate(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<StatusCode, ApiError> {
    state.store.delete_certificate(&caller.tenant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
