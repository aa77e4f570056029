//! Shared in-memory state of one agent: background processes and terminal sessions.

use crate::process_table::ProcessTable;
use crate::terminal::TerminalTable;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone, Default)]
pub struct AppState {
    pub(crate) processes: Arc<ProcessTable>,
    pub(crate) terminals: Arc<TerminalTable>,
}

impl AppState {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Locks ignoring poison: every critical section leaves the data consistent, and a panic in
/// one request must not wedge the agent for the rest of the sandbox's life.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
