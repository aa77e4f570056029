//! Reading and writing column values: one way to turn stored text into typed values, and one
//! way to turn a uniqueness violation into the error a caller can act on. Every module below
//! reads rows through these; this one depends on no other module of the store.

use crate::StoreError;

/// A text column parsed into a typed value (IDs, states, isolation levels…); a value that
/// does not parse is a corrupt row, not a panic.
pub(crate) fn parse<T: std::str::FromStr>(s: String) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            e.to_string().into(),
        )
    })
}

/// A JSON text column decoded.
pub(crate) fn json<T: serde::de::DeserializeOwned>(s: String) -> rusqlite::Result<T> {
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A write whose only expected failure is a taken unique name: that becomes
/// [`StoreError::NameTaken`], anything else stays what it was.
pub(crate) fn name_unique(
    result: rusqlite::Result<usize>,
    name: Option<&str>,
) -> Result<usize, StoreError> {
    match result {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation && name.is_some() =>
        {
            Err(StoreError::NameTaken(name.unwrap_or_default().to_owned()))
        }
        other => Ok(other?),
    }
}
