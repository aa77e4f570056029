//! Bulk operations (contract §11): `POST /bulk/sandboxes/{pause|resume|stop|destroy}` with
//! `{"ids": [...]}` or `{"filter": {...}}` accepts a job (202) whose sandboxes are fixed at
//! once; `bulk_worker` does them one by one, and `GET /bulk/jobs/{id}` shows each outcome.
//! An id that is not one of the tenant's sandboxes is `skipped` as not found, like a sandbox
//! the operation does not apply to (pausing a stopped one).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use islet_store::{BulkItem, BulkJob, BulkOp, BulkTarget, ItemStatus, ListFilter, MAX_BULK_ITEMS};
use islet_types::time::rfc3339;
use islet_types::{BulkJobId, SandboxState};
use serde::{Deserialize, Serialize};

use crate::api::extract::{body, Caller, IdPath, OpParam, RawBody, TextPath};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;

/// A job and how far it got.
#[derive(Debug, Serialize)]
pub(crate) struct JobView {
    pub id: BulkJobId,
    pub op: &'static str,
    /// `queued` (nothing done yet), `running` or `finished`.
    pub status: &'static str,
    pub total: usize,
    pub pending: usize,
    pub succeeded: usize,
    pub skipped: usize,
    pub failed: usize,
    /// The filter it was asked with (`null` for a list of ids).
    pub filter: Option<serde_json::Value>,
    pub items: Vec<ItemView>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ItemView {
    pub sandbox_id: String,
    pub status: &'static str,
    /// Why it was skipped or failed.
    pub error: Option<ItemError>,
    pub done_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ItemError {
    pub code: String,
    pub message: String,
}

/// `POST /bulk/sandboxes/{op}`: the job, with `job_id` and `queued` at the top as the SDK
/// documents them.
#[derive(Debug, Serialize)]
pub(crate) struct Accepted {
    pub data: JobView,
    pub job_id: BulkJobId,
    pub queued: usize,
}

fn item_view(item: &BulkItem) -> ItemView {
    ItemView {
        sandbox_id: item.sandbox_id.clone(),
        status: item.status.as_str(),
        error: item
            .code
            .clone()
            .map(|code| ItemError { code, message: item.message.clone().unwrap_or_default() }),
        done_at: item.done_at.map(rfc3339),
    }
}

fn job_view(job: &BulkJob) -> JobView {
    let count = |s: ItemStatus| job.items.iter().filter(|i| i.status == s).count();
    let pending = count(ItemStatus::Pending);
    JobView {
        id: job.id.clone(),
        op: job.op.as_str(),
        status: match (job.finished_at, pending == job.items.len()) {
            (Some(_), _) => "finished",
            (None, true) => "queued",
            (None, false) => "running",
        },
        total: job.items.len(),
        pending,
        succeeded: count(ItemStatus::Succeeded),
        skipped: count(ItemStatus::Skipped),
        failed: count(ItemStatus::Failed),
        filter: job.filter.clone(),
        items: job.items.iter().map(item_view).collect(),
        created_at: rfc3339(job.created_at),
        finished_at: job.finished_at.map(rfc3339),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobBody {
    ids: Option<Vec<String>>,
    filter: Option<FilterBody>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_workspace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_project_id: Option<String>,
    /// Every tag listed must be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

fn target(b: JobBody) -> Result<BulkTarget, ApiError> {
    match (b.ids, b.filter) {
        (Some(ids), None) => {
            if ids.is_empty() || ids.len() > MAX_BULK_ITEMS {
                return Err(ApiError::validation(
                    format!("ids must list 1 to {MAX_BULK_ITEMS} sandbox ids"),
                    "ids",
                ));
            }
            if ids.iter().any(|i| i.is_empty() || i.len() > 64) {
                return Err(ApiError::validation("each id must be a sandbox id", "ids"));
            }
            Ok(BulkTarget::Ids(ids))
        }
        (None, Some(f)) => {
            let state = f
                .state
                .as_deref()
                .map(str::parse::<SandboxState>)
                .transpose()
                .map_err(|e| ApiError::validation(e, "filter"))?;
            let empty = f.state.is_none()
                && f.external_user_id.is_none()
                && f.external_workspace_id.is_none()
                && f.external_project_id.is_none()
                && f.tags.is_empty();
            if empty {
                return Err(ApiError::validation(
                    "filter must name at least one of state, external_user_id, external_workspace_id, external_project_id, tags",
                    "filter",
                ));
            }
            let label = |v: Option<String>, field: &'static str| {
                super::create_body::label(v, field).map_err(|e| match e {
                    ApiError::Validation { message, .. } => {
                        ApiError::validation(format!("filter: {message}"), "filter")
                    }
                    other => other,
                })
            };
            let f = FilterBody {
                external_user_id: label(f.external_user_id, "external_user_id")?,
                external_workspace_id: label(f.external_workspace_id, "external_workspace_id")?,
                external_project_id: label(f.external_project_id, "external_project_id")?,
                ..f
            };
            if f.tags.len() > 50 || f.tags.iter().any(|t| t.is_empty() || t.len() > 64) {
                return Err(ApiError::validation(
                    "filter: at most 50 tags of 1 to 64 bytes",
                    "filter",
                ));
            }
            let as_json = serde_json::to_value(&f).unwrap_or_default();
            Ok(BulkTarget::Filter {
                filter: ListFilter {
                    state,
                    external_user_id: f.external_user_id,
                    external_workspace_id: f.external_workspace_id,
                    external_project_id: f.external_project_id,
                    tags: f.tags,
                    workspace_or_none: None,
                    include_destroyed: false,
                    limit: 0,
                    offset: 0,
                },
                as_json,
            })
        }
        _ => Err(ApiError::Validation {
            message: "give either ids or filter, not both".into(),
            field: Some("ids"),
        }),
    }
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(op, _): TextPath<OpParam>,
    RawBody(bytes): RawBody,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let op = BulkOp::parse(&op).ok_or(ApiError::NotFound("bulk operation"))?;
    let target = target(body::parse(&bytes)?)?;
    let job = state.store.create_bulk_job(&caller.tenant_id, op, target).await?;
    state.bulk_wake.notify_one();
    let view = job_view(&job);
    Ok((StatusCode::ACCEPTED, Json(Accepted { job_id: job.id, queued: view.pending, data: view })))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<BulkJobId>,
) -> Result<Json<Data<JobView>>, ApiError> {
    let job = state.store.bulk_job(&caller.tenant_id, &id).await?;
    Ok(wire::data(job_view(&job)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<BulkTarget, ApiError> {
        target(serde_json::from_value(v).map_err(|e| ApiError::validation(e.to_string(), "body"))?)
    }

    #[test]
    fn ids_or_a_filter_that_narrows() {
        assert!(matches!(parse(serde_json::json!({"ids": ["sbx_a"]})), Ok(BulkTarget::Ids(_))));
        assert!(matches!(
            parse(serde_json::json!({"filter": {"external_user_id": "u1"}})),
            Ok(BulkTarget::Filter { .. })
        ));
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"ids": []}),
            serde_json::json!({"filter": {}}),
            serde_json::json!({"filter": {"state": "asleep"}}),
            serde_json::json!({"ids": ["sbx_a"], "filter": {"state": "running"}}),
            serde_json::json!({"filter": {"owner": "u1"}}),
            serde_json::json!({"filter": {"external_user_id": "x".repeat(300)}}),
            serde_json::json!({"filter": {"tags": [""]}}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }
}
