//! The preview edge: serves `<port>-sbx-<id>.<domain>` from that port inside that sandbox.
//!
//! One request, in order (see `handler.rs`): framing check → host → site (platform domain or
//! a tenant's verified one) → sandbox route → token, cookie or public preview → scope →
//! sandbox running → rate limit → forward. Every refusal is a [`pages::Failure`], rendered with the
//! tenant's branding. Tokens are verified by signature; the revocation list, tenants' domains,
//! branding and certificates are kept in memory and refreshed every second, so a request costs
//! no store round trip unless its sandbox's route is not cached.

mod acme;
mod activity;
pub mod credentials;
mod directory;
mod edge;
mod forward;
mod framing;
mod handler;
mod host;
mod limit;
mod listen;
pub mod pages;
mod upstream;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

pub use acme::{AcmeConfig, Challenge};
pub use edge::{Config, Edge, Upstream};
pub use listen::run;

/// Response bodies: the app's, streamed, or the edge's own.
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}
