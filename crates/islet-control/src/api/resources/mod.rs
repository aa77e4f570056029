//! Handlers, one file per resource (contract §5). Each translates HTTP into store and
//! lifecycle calls and renders the answer.

pub(crate) mod bill_to;
pub(crate) mod bulk;
pub(crate) mod create_body;
pub(crate) mod custom_domains;
pub(crate) mod event_stream;
pub(crate) mod forward;
pub(crate) mod key_presets;
pub(crate) mod keys;
pub(crate) mod metrics;
pub(crate) mod plan;
pub(crate) mod policy;
pub(crate) mod preview_tokens;
pub(crate) mod previews;
pub(crate) mod readiness;
pub(crate) mod sandbox_resources;
pub(crate) mod sandboxes;
pub(crate) mod settings;
pub(crate) mod tenant;
pub(crate) mod terminal;
pub(crate) mod tunnel;
pub(crate) mod usage;
pub mod view;
pub(crate) mod webhooks;
