//! Islet's store: tenants, API keys, sandboxes and their state machine, idempotency keys, the
//! lifecycle event outbox, previews, preview tokens and their revocations, tenant settings
//! (branding, preview domains, certificates), webhook endpoints and their deliveries, in one SQLite file (WAL, `synchronous=FULL`).
//!
//! This is the only crate that contains SQL. Every write that changes a sandbox's state also
//! writes its event row in the same transaction, so an event is never lost nor invented.

mod admission;
mod bulk_jobs;
mod connection;
mod custom_domains;
mod deliveries;
mod egress;
mod error;
mod events;
mod idempotency;
mod key_presets;
mod keys;
mod member_caps;
mod migrate;
mod net_slots;
mod policies;
mod previews;
mod pricing;
mod rows;
mod sandbox_rows;
mod sandboxes;
mod secrets;
mod tenant_settings;
mod tenants;
mod transitions;
mod usage;
mod webhooks;

pub use bulk_jobs::{
    BulkItem, BulkJob, BulkOp, BulkTarget, BulkWork, ItemStatus, MAX_BULK_ITEMS, MAX_OPEN_JOBS,
};
pub use connection::Store;
pub use custom_domains::{CustomDomain, MAX_CUSTOM_DOMAINS};
pub use deliveries::{
    AttemptRecord, AttemptRow, ClaimedDelivery, DeliveryRecord, NewDelivery, OutboxBatch, Verdict,
    DISABLED_FAILING, DISABLED_GONE,
};
pub use error::StoreError;
pub use events::{EventRow, NewEvent};
pub use idempotency::{BeginCreate, Pool, IDEMPOTENCY_TTL_MS};
pub use key_presets::{KeyEvent, PresetRecord};
pub use keys::{
    BrowserTokenRecord, KeyRecord, NewBrowserToken, NewKey, BROWSER_TOKEN_PREFIX, MAX_LIVE_KEYS,
    MAX_LIVE_TOKENS, SCOPED_KEY_PREFIX,
};
pub use member_caps::MemberCaps;
pub use policies::{Subject, SuspendedBy, Suspension};
pub use previews::{EdgeRoute, PreviewRecord, PreviewRequest, Revocation, TokenKind, TokenRecord};
pub use pricing::{Pricing, MAX_PRICE_CENTS};
pub use sandbox_rows::SandboxRecord;
pub use sandboxes::{ListFilter, SandboxPatch};
pub use tenant_settings::{CertificateKind, CertificateRow, EdgeSettings, PreviewDomain};
pub use tenants::{ApiKeyCreated, Principal};
pub use transitions::TransitionFacts;
pub use usage::{GroupBy, SessionRow, UsageQuery, UsageRow, UsageSample, UsageTotals};
pub use webhooks::{NewWebhook, WebhookPatch, WebhookRecord};
