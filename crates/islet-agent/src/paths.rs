//! Path validation shared by the file routes.
//!
//! The whole rootfs belongs to the sandbox, so `..` is allowed: the only rules are that a
//! path is absolute (the agent's own cwd is meaningless to a client) and free of NUL bytes.

use crate::error::AgentError;
use std::path::PathBuf;

pub(crate) fn absolute(raw: Option<&str>, field: &str) -> Result<PathBuf, AgentError> {
    let raw = raw.ok_or_else(|| AgentError::validation(format!("{field} is required")))?;
    if raw.is_empty() {
        return Err(AgentError::validation(format!("{field} must not be empty")));
    }
    if raw.contains('\0') {
        return Err(AgentError::InvalidPath(format!("{field} must not contain NUL bytes")));
    }
    if !raw.starts_with('/') {
        return Err(AgentError::InvalidPath(format!(
            "{field} must be an absolute path, got {raw:?}"
        )));
    }
    Ok(PathBuf::from(raw))
}

/// A sibling temp name for atomic writes; dot-prefixed so directory listings in editors
/// mostly hide it while it exists.
pub(crate) fn temp_sibling(target: &std::path::Path) -> PathBuf {
    use rand::Rng;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let suffix: u64 = rand::thread_rng().gen();
    let tmp = format!(".{name}.islet-tmp-{suffix:016x}");
    target.with_file_name(tmp)
}

pub(crate) fn display(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}
