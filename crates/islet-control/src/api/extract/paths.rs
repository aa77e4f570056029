//! Typed path parameters. `IdPath<SandboxId>` reads the route's `{id}` and parses it; a
//! parameter that is missing, not UTF-8 or not a valid ID is `NotFound` of its kind, because a
//! malformed ID cannot name anyone's object. `RunningSandbox` goes one step further: the
//! caller's own sandbox, which must be running for its agent to answer.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use islet_store::SandboxRecord;
use islet_types::{
    BulkJobId, CustomDomainId, DeliveryId, PreviewId, SandboxId, SandboxState, WebhookId,
};

use super::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// A typed ID that a route names in its path.
pub(crate) trait PathId: std::str::FromStr {
    /// The route parameter that holds it (`{id}` in `/sandboxes/{id}`).
    const PARAM: &'static str;
    /// What is not found when it does not parse.
    const KIND: &'static str;
}

impl PathId for SandboxId {
    const PARAM: &'static str = "id";
    const KIND: &'static str = "sandbox";
}

impl PathId for PreviewId {
    const PARAM: &'static str = "pid";
    const KIND: &'static str = "preview";
}

impl PathId for WebhookId {
    const PARAM: &'static str = "id";
    const KIND: &'static str = "webhook";
}

impl PathId for DeliveryId {
    const PARAM: &'static str = "delivery";
    const KIND: &'static str = "delivery";
}

impl PathId for CustomDomainId {
    const PARAM: &'static str = "id";
    const KIND: &'static str = "custom domain";
}

impl PathId for BulkJobId {
    const PARAM: &'static str = "id";
    const KIND: &'static str = "bulk job";
}

/// The route parameter `name`, decoded; `None` when it is missing or not UTF-8.
async fn param<S: Send + Sync>(parts: &mut Parts, state: &S, name: &str) -> Option<String> {
    let params = RawPathParams::from_request_parts(parts, state).await.ok()?;
    params.iter().find(|(n, _)| *n == name).map(|(_, value)| value.to_owned())
}

/// The path's `T`, parsed.
pub(crate) struct IdPath<T>(pub T);

impl<T: PathId, S: Send + Sync> FromRequestParts<S> for IdPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = param(parts, state, T::PARAM).await;
        raw.and_then(|value| value.parse().ok()).map(IdPath).ok_or(ApiError::NotFound(T::KIND))
    }
}

/// A path parameter that is text, not a typed ID (an end user's id, a key's, a name): `P`
/// names it. One that is not UTF-8 is `NotFound` of its kind.
pub(crate) struct TextPath<P>(pub String, pub std::marker::PhantomData<P>);

/// Which parameter a [`TextPath`] reads.
pub(crate) trait PathParam {
    const PARAM: &'static str;
    const KIND: &'static str;
}

/// `{uid}`: an end user's id.
pub(crate) struct Uid;
impl PathParam for Uid {
    const PARAM: &'static str = "uid";
    const KIND: &'static str = "external user";
}

/// `{id}` of an API key.
pub(crate) struct KeyParam;
impl PathParam for KeyParam {
    const PARAM: &'static str = "id";
    const KIND: &'static str = "api key";
}

/// `{id}` of a browser token.
pub(crate) struct TokenParam;
impl PathParam for TokenParam {
    const PARAM: &'static str = "id";
    const KIND: &'static str = "token";
}

/// `{name}` of a sandbox.
pub(crate) struct NameParam;
impl PathParam for NameParam {
    const PARAM: &'static str = "name";
    const KIND: &'static str = "sandbox";
}

/// `{name}` of an API-key preset.
pub(crate) struct PresetParam;
impl PathParam for PresetParam {
    const PARAM: &'static str = "name";
    const KIND: &'static str = "preset";
}

/// `{token_id}` of a preview token, `{share_id}` of a share link.
pub(crate) struct PreviewTokenParam;
impl PathParam for PreviewTokenParam {
    const PARAM: &'static str = "token_id";
    const KIND: &'static str = "preview token";
}
pub(crate) struct ShareParam;
impl PathParam for ShareParam {
    const PARAM: &'static str = "share_id";
    const KIND: &'static str = "share";
}

/// `{ws}`: an `external_workspace_id`.
pub(crate) struct WorkspaceParam;
impl PathParam for WorkspaceParam {
    const PARAM: &'static str = "ws";
    const KIND: &'static str = "workspace";
}

/// `{tenant_id}` of `/tenants/{tenant_id}/…` (compared with the caller's own).
pub(crate) struct TenantParam;
impl PathParam for TenantParam {
    const PARAM: &'static str = "tenant_id";
    const KIND: &'static str = "organization";
}

/// `{op}` of a bulk operation.
pub(crate) struct OpParam;
impl PathParam for OpParam {
    const PARAM: &'static str = "op";
    const KIND: &'static str = "bulk operation";
}

/// `{port}` of a tunnel (parsed by its handler, which says what a port may be).
pub(crate) struct PortParam;
impl PathParam for PortParam {
    const PARAM: &'static str = "port";
    const KIND: &'static str = "port";
}

impl<P: PathParam, S: Send + Sync> FromRequestParts<S> for TextPath<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = param(parts, state, P::PARAM).await;
        raw.map(|value| TextPath(value, std::marker::PhantomData))
            .ok_or(ApiError::NotFound(P::KIND))
    }
}

/// The caller's sandbox named by the path, in `running`: `starting` while it still is, not
/// running otherwise.
pub(crate) struct RunningSandbox(pub SandboxRecord);

impl FromRequestParts<AppState> for RunningSandbox {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(caller) = Caller::from_request_parts(parts, state).await?;
        let IdPath(id) = IdPath::<SandboxId>::from_request_parts(parts, state).await?;
        let record = state.store.get_sandbox(&caller.tenant_id, &id).await?;
        match record.state {
            SandboxState::Running => Ok(RunningSandbox(record)),
            SandboxState::Creating => Err(ApiError::Starting),
            other => Err(ApiError::NotRunning(other.to_string())),
        }
    }
}
