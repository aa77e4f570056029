use islet_types::sandbox::TransitionError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// No such object (of the kind named) for this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("a live sandbox named `{0}` already exists")]
    NameTaken(String),
    /// A uniqueness rule refused the write (the message says which).
    #[error("{0}")]
    Conflict(String),
    /// Admitting would take an end user past a limit of their policy.
    #[error("{} of {external_user_id} would exceed {} ({})", refusal.limit, refusal.max, refusal.limit)]
    QuotaExceeded { refusal: islet_types::policy::Refusal, external_user_id: String },
    /// The end user is suspended.
    #[error("external user {0} is suspended")]
    Suspended(String),
    #[error("no free network slot on this node")]
    NoNetworkSlot,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("store task failed: {0}")]
    Join(String),
    /// The database file could not be created or made private.
    #[error("database file: {0}")]
    File(String),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        StoreError::Corrupt(what.to_string())
    }
}
