use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("{tool} failed ({status}): {stderr}")]
    Command { tool: String, status: String, stderr: String },
    #[error("template `{0}` is not built (run `islet template build {0}`)")]
    TemplateMissing(String),
    #[error("template path {0} is not a directory")]
    TemplateInvalid(PathBuf),
    #[error("the agent did not become ready within {0:?}: {1}")]
    AgentTimeout(std::time::Duration, String),
    #[error("OCI spec: {0}")]
    Spec(String),
    #[error("create failed: {error}; cleanup also failed: {cleanup}")]
    CreateAndCleanup { error: Box<RuntimeError>, cleanup: Box<RuntimeError> },
}

impl RuntimeError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| RuntimeError::Io { what, source }
    }

    pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Self {
        let what = what.into();
        move |source| RuntimeError::Sys { what, source }
    }
}
