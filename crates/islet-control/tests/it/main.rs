//! Integration tests of the control plane against the real runtime (root, runc, runsc, a built
//! template). One binary; each module is one concern.
#![allow(clippy::unwrap_used)]

mod access;
mod crash;
mod disk;
mod egress;
mod envelopes;
mod escapes;
mod governance;
mod host_files;
mod idempotency;
mod isolation;
mod lifecycle;
mod limits;
mod metering;
mod pool;
mod quotas;
mod resize;
mod tenancy;
mod terminal_and_files;
mod tunnels;
mod webhook_crash;
mod webhooks;
mod wire;
