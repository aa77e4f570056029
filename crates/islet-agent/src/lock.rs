//! The one way the agent takes a lock.

use std::sync::{Mutex, MutexGuard};

/// Locks ignoring poison: every critical section leaves the data consistent, and a panic in
/// one request must not wedge the agent for the rest of the sandbox's life.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
