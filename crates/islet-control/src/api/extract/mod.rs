//! What handlers take from a request, each parsed once with its refusal already the API's:
//! the caller ([`Caller`]), lenient JSON bodies ([`body`]), and typed path parameters
//! ([`IdPath`]: a malformed or unknown ID is 404, as a foreign one is).

pub(crate) mod body;
mod caller;
mod paths;

pub use caller::Caller;
pub(crate) use paths::{IdPath, RunningSandbox};
