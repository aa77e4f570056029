//! The `POST /sandboxes` body (contract §5.3) and its validation into a [`CreateSandbox`].
//! Keys the SDK may send that Islet does not use are accepted and ignored (`region`, `persistent`,
//! …); `slug` and `always_on` are kept.

use std::collections::BTreeMap;

use islet_runtime::template;
use islet_types::sandbox::Isolation;
use islet_types::{CreateSandbox, Resources};
use serde::Deserialize;

use crate::error::ApiError;

pub(crate) const DEFAULT_TIMEOUT_SEC: u64 = 1800;
pub const MAX_TIMEOUT_SEC: u64 = 7 * 24 * 3600;
const MAX_TAGS: usize = 50;
const MAX_ENV: usize = 200;
const MAX_METADATA_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct CreateBody {
    template_id: Option<String>,
    image: Option<String>,
    name: Option<String>,
    external_user_id: Option<String>,
    external_workspace_id: Option<String>,
    external_project_id: Option<String>,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    tags: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    size: Option<String>,
    cpu_count: Option<u32>,
    memory_mb: Option<u32>,
    disk_mb: Option<u32>,
    disk_size_mb: Option<u32>,
    timeout_sec: Option<u64>,
    idle_timeout_sec: Option<u64>,
    /// Islet extension: `container` or `gvisor`.
    isolation: Option<String>,
    slug: Option<String>,
    always_on: Option<bool>,
}

/// A lifetime: 1 s to [`MAX_TIMEOUT_SEC`]. (Create and `PATCH` share these checks.)
pub(crate) fn timeout(v: u64) -> Result<u64, ApiError> {
    if (1..=MAX_TIMEOUT_SEC).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::validation(
            format!("timeout_sec must be between 1 and {MAX_TIMEOUT_SEC}"),
            "timeout_sec",
        ))
    }
}

/// An idle timeout: 0 (none) to [`MAX_TIMEOUT_SEC`].
pub(crate) fn idle_timeout(v: u64) -> Result<Option<u64>, ApiError> {
    match v {
        0 => Ok(None),
        v if v <= MAX_TIMEOUT_SEC => Ok(Some(v)),
        _ => Err(ApiError::validation(
            format!("idle_timeout_sec must be at most {MAX_TIMEOUT_SEC}"),
            "idle_timeout_sec",
        )),
    }
}

/// Metadata: a JSON object of at most 16 KiB (it is copied into every event and webhook).
pub(crate) fn metadata(
    m: serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    if serde_json::to_vec(&m).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
        return Err(ApiError::validation("metadata must be at most 16 KiB", "metadata"));
    }
    Ok(m)
}

/// Tags: at most 50, each 1 to 64 bytes.
pub(crate) fn tags(t: Vec<String>) -> Result<Vec<String>, ApiError> {
    if t.len() > MAX_TAGS || t.iter().any(|t| t.is_empty() || t.len() > 64) {
        return Err(ApiError::validation("at most 50 tags of 1..=64 characters", "tags"));
    }
    Ok(t)
}

pub(crate) fn label(
    value: Option<String>,
    field: &'static str,
) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if !islet_types::sandbox::label_ok(&v) => Err(ApiError::validation(
            format!("{field} must be 1..={} printable characters", islet_types::sandbox::MAX_LABEL),
            field,
        )),
        other => Ok(other),
    }
}

fn slug_ok(slug: &str) -> bool {
    (1..=64).contains(&slug.len())
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn env_key_ok(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl CreateBody {
    /// Whether the body leaves `timeout_sec` and `idle_timeout_sec` to the defaults (which an
    /// end user's policy may set).
    pub(crate) fn omits_timeouts(&self) -> (bool, bool) {
        (self.timeout_sec.is_none(), self.idle_timeout_sec.is_none())
    }

    pub(crate) fn validate(self) -> Result<CreateSandbox, ApiError> {
        let requested = self.template_id.or(self.image).unwrap_or_default();
        let template_id = template::resolve(&requested)
            .ok_or_else(|| {
                ApiError::validation(format!("unknown template `{requested}`"), "template_id")
            })?
            .to_owned();
        let resources = Resources::resolve(
            self.size.as_deref(),
            self.cpu_count,
            self.memory_mb,
            self.disk_mb.or(self.disk_size_mb),
        )
        .map_err(|e| ApiError::validation(e.to_string(), "size"))?;
        let timeout_sec = timeout(self.timeout_sec.unwrap_or(DEFAULT_TIMEOUT_SEC))?;
        let idle_timeout_sec = idle_timeout(self.idle_timeout_sec.unwrap_or(0))?;
        let metadata = metadata(self.metadata.unwrap_or_default())?;
        let tags = tags(self.tags.unwrap_or_default())?;
        let env = self.env.unwrap_or_default();
        if env.len() > MAX_ENV
            || env.keys().any(|k| !env_key_ok(k) || k.starts_with("ISLET_"))
            || env.values().any(|v| v.len() > 32 * 1024 || v.contains('\0'))
        {
            return Err(ApiError::validation(
                "env keys must match [A-Za-z_][A-Za-z0-9_]* and not start with ISLET_ (the platform's own), values at most 32 KiB, at most 200 entries",
                "env",
            ));
        }
        let isolation = self
            .isolation
            .map(|s| s.parse::<Isolation>())
            .transpose()
            .map_err(|e| ApiError::validation(e, "isolation"))?;
        let slug = match self.slug {
            Some(s) if !slug_ok(&s) => {
                return Err(ApiError::validation("slug must be 1 to 64 of a-z, 0-9 and -", "slug"))
            }
            other => other,
        };
        let always_on = self.always_on.unwrap_or(false);
        Ok(CreateSandbox {
            template_id,
            name: label(self.name, "name")?,
            external_user_id: label(self.external_user_id, "external_user_id")?,
            external_workspace_id: label(self.external_workspace_id, "external_workspace_id")?,
            external_project_id: label(self.external_project_id, "external_project_id")?,
            metadata,
            tags,
            env,
            resources,
            timeout_sec,
            // An always-on sandbox is never stopped as idle.
            idle_timeout_sec: idle_timeout_sec.filter(|_| !always_on),
            isolation,
            slug,
            always_on,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> Result<CreateSandbox, ApiError> {
        serde_json::from_value::<CreateBody>(json).expect("shape").validate()
    }

    #[test]
    fn sdk_minimal_body_is_valid() {
        let req = body(serde_json::json!({"template_id":"miosa-sandbox","timeout_sec":1800,
            "external_user_id":"user_42","metadata":{"source":"wl"}}))
        .expect("valid");
        assert_eq!(req.template_id, "miosa-sandbox");
        assert_eq!(req.external_user_id.as_deref(), Some("user_42"));
        assert_eq!(req.resources.cpu_count, 1);
    }

    #[test]
    fn rejects_bad_values_with_the_field() {
        for (json, field) in [
            (serde_json::json!({"template_id":"nope"}), "template_id"),
            (serde_json::json!({"size":"huge"}), "size"),
            (serde_json::json!({"timeout_sec":0}), "timeout_sec"),
            (serde_json::json!({"env":{"1BAD":"x"}}), "env"),
            (serde_json::json!({"env":{"ISLET_AGENT_LOG":"trace"}}), "env"),
            (serde_json::json!({"external_user_id":""}), "external_user_id"),
            (serde_json::json!({"isolation":"vm"}), "isolation"),
        ] {
            match body(json) {
                Err(ApiError::Validation { field: Some(f), .. }) => assert_eq!(f, field),
                other => panic!("expected a validation error on {field}, got {other:?}"),
            }
        }
    }
}
