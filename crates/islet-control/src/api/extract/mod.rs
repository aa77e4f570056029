//! What handlers take from a request, each parsed once with its refusal already the API's:
//! the caller ([`Caller`]), query strings ([`Query`]), bodies ([`RawBody`], parsed leniently by
//! [`body`]), and path parameters ([`IdPath`] for typed IDs, [`TextPath`] for text: a malformed
//! or unknown ID is 404, as a foreign one is).

pub(crate) mod body;
mod caller;
mod paths;
mod query;
mod upgrade;

pub use caller::Caller;
pub(crate) use paths::{
    IdPath, KeyParam, NameParam, OpParam, PortParam, PresetParam, PreviewTokenParam,
    RunningSandbox, ShareParam, TenantParam, TextPath, TokenParam, Uid, WorkspaceParam,
};
pub(crate) use query::{Query, RawBody, BODY_LIMIT};
pub(crate) use upgrade::Upgrade;
