//! `GET/PUT /settings` (flat, contract §9): the tenant's API settings: the web origins its
//! browser code calls the API from (CORS), its price list (what `credit_cents` means), its
//! egress rules (destinations its sandboxes may not reach, a per-sandbox connection cap), and
//! the branding for convenience. A field left out of a PUT is left as it is; `null` clears it.

use axum::extract::State;
use axum::Json;
use islet_store::Pricing;
use islet_types::branding::Branding;
use islet_types::egress::EgressPolicy;
use serde::{Deserialize, Serialize};

use crate::api::extract::body;
use crate::api::extract::Caller;
use crate::api::extract::RawBody;
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;

const MAX_ORIGINS: usize = 20;

/// `scheme://host[:port]`, http(s), lower-case, nothing else.
fn origin(raw: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::validation(
            format!("`{raw}` is not an origin (https://host[:port], no path)"),
            "allowed_origins",
        )
    };
    let url = url::Url::parse(raw).map_err(|_| bad())?;
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || !(url.path() == "/" || url.path().is_empty())
        || raw.trim_end_matches('/').len() != raw.trim_end_matches('/').trim().len()
    {
        return Err(bad());
    }
    Ok(url.origin().ascii_serialization())
}

/// A field that may be absent (unchanged), `null` (cleared) or a value.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsBody {
    allowed_origins: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pricing: Option<Option<Pricing>>,
    #[serde(default, deserialize_with = "present")]
    egress: Option<Option<EgressPolicy>>,
}

/// A tenant's settings as the API shows them.
#[derive(Debug, Serialize)]
pub(crate) struct SettingsView {
    /// Web origins whose pages may call the API with a browser token (CORS).
    pub allowed_origins: Vec<String>,
    pub pricing: Pricing,
    pub egress: EgressPolicy,
    pub branding: Option<Branding>,
}

async fn view(state: &AppState, tenant: &islet_types::TenantId) -> Result<SettingsView, ApiError> {
    Ok(SettingsView {
        allowed_origins: state.store.allowed_origins(tenant).await?,
        pricing: state.store.pricing(tenant).await?,
        egress: state.store.egress(tenant).await?,
        branding: state.store.branding(tenant).await?,
    })
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Data<SettingsView>>, ApiError> {
    Ok(wire::data(view(&state, &caller.tenant_id).await?))
}

pub(crate) async fn put(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<SettingsView>>, ApiError> {
    let b: SettingsBody = body::parse(&bytes)?;
    // Everything is checked before anything changes.
    let origins = match b.allowed_origins {
        Some(list) => {
            if list.len() > MAX_ORIGINS {
                return Err(ApiError::validation("at most 20 origins", "allowed_origins"));
            }
            let mut origins = list.iter().map(|o| origin(o)).collect::<Result<Vec<_>, _>>()?;
            origins.sort();
            origins.dedup();
            Some(origins)
        }
        None => None,
    };
    if let Some(Some(p)) = &b.pricing {
        p.validate().map_err(|(_, message)| ApiError::validation(message, "pricing"))?;
    }
    let egress = match b.egress {
        Some(policy) => {
            Some(policy.unwrap_or_default().normalised().map_err(|(field, message)| {
                ApiError::validation(
                    message,
                    if field == "deny" {
                        "egress.deny"
                    } else {
                        "egress.max_connections_per_sandbox"
                    },
                )
            })?)
        }
        None => None,
    };
    if egress.as_ref().is_some_and(|p| p.max_connections_per_sandbox.is_some())
        && !state.runtime.connection_caps_supported()
    {
        return Err(ApiError::validation(
            "this host cannot cap connections (its kernel lacks the connlimit match)",
            "egress.max_connections_per_sandbox",
        ));
    }
    // One change of settings at a time, so the store and the host firewall end up holding the
    // same egress rules whatever the order of concurrent changes.
    let one_at_a_time = state.settings_lock.clone().lock_owned().await;
    if let Some(origins) = origins {
        state.store.set_allowed_origins(&caller.tenant_id, origins).await?;
        state.origins.forget(&caller.tenant_id);
    }
    if let Some(pricing) = b.pricing {
        state.store.set_pricing(&caller.tenant_id, pricing).await?;
    }
    if let Some(policy) = egress {
        // Stored, then applied; if the host refuses the rules, the stored ones go back to what
        // they were (the runtime undoes its side itself). Its own task: a client that goes
        // away cannot leave the store and the host disagreeing.
        let (task_state, tenant) = (state.clone(), caller.tenant_id.clone());
        tokio::spawn(async move {
            let _one_at_a_time = one_at_a_time;
            let store = &task_state.store;
            let previous = store.egress(&tenant).await?;
            store.set_egress(&tenant, &policy).await?;
            if let Err(e) = task_state.runtime.set_egress(tenant.as_str(), policy).await {
                store.set_egress(&tenant, &previous).await?;
                return Err(ApiError::from(e));
            }
            Ok::<(), ApiError>(())
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    }
    Ok(wire::data(view(&state, &caller.tenant_id).await?))
}
