//! What every request passes through before its handler: a request ID, CORS for the tenant's
//! origins, and the access check.

pub mod access;
pub mod cors;
pub mod request_id;
