//! Lifecycle webhooks. So far: endpoint secrets and the signatures every delivery carries
//! ([`signing`]); the dispatcher that reads the event outbox arrives with the webhooks issue.

pub mod signing;
