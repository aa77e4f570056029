//! Shared in-memory state of one agent: background processes and terminal sessions.

use crate::process_table::ProcessTable;
use crate::terminal_sessions::TerminalTable;
use std::sync::Arc;

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
