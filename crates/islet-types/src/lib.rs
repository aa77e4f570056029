//! Typed IDs, validated values and the wire types of Islet's MIOSA-compatible API.
//!
//! Everything here is plain data: no I/O, no SQL, no HTTP. A value of one of these types has
//! already been validated, so code past the edge never re-checks it.

pub mod branding;
pub mod domain;
pub mod egress;
pub mod ids;
pub mod policy;
pub mod preview;
pub mod rate;
pub mod sandbox;
pub mod scope;
pub mod size;
pub mod time;

pub use ids::{
    ApiKeyId, BulkJobId, CustomDomainId, DeliveryId, EventId, IdError, PreviewId, PreviewTokenId,
    SandboxId, TenantId, WebhookId,
};
pub use sandbox::{CreateSandbox, SandboxState, TransitionError};
pub use size::{Resources, SizeError};
