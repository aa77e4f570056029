//! Lifecycle webhooks: the dispatcher that turns outbox events into signed deliveries to each
//! tenant's endpoints, retried on a schedule until they land, and the rules for where a
//! delivery may go.
//!
//! - [`catalogue`]: the events and how subscriptions (`sandbox.*`) match them.
//! - [`payload`]: the body a receiver gets.
//! - [`signing`]: endpoint secrets and both signature schemes.
//! - [`target`]: endpoint URL and address checks (no private targets), and the resolver the
//!   HTTP client connects through.
//! - [`schedule`]: when a failed delivery is tried again.
//! - [`deliver`]: one attempt.
//! - [`dispatcher`]: fan-out from the outbox, claims, attempts, recording.
//! - [`verify`]: reference verifiers of both schemes, as a receiver runs them.

pub mod catalogue;
pub mod deliver;
pub mod dispatcher;
pub mod payload;
pub mod schedule;
pub mod signing;
pub mod target;
pub mod verify;

pub use dispatcher::{DispatchHandle, Dispatcher, DispatcherConfig};
pub use target::TargetPolicy;
