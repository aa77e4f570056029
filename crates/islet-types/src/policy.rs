//! Per-user policy (contract §11): free-form documents of sections (`quotas`, `lifecycle`, …)
//! set for the tenant (defaults), for each workspace (`external_workspace_id`: defaults for the
//! sandboxes created in it) and for each external user, merged field by field into the
//! effective policy: user over workspace over tenant over platform.
//!
//! The fields Islet enforces, all non-negative integers (`null` or absent = not set here):
//! - `quotas.max_sandboxes`: the user's sandboxes that exist (not destroyed; a failed one
//!   still holds its disk until it is);
//! - `quotas.max_concurrent`: of those, the ones holding compute (creating, running, paused);
//! - `quotas.max_cpu`: vCPUs summed over the ones holding compute;
//! - `quotas.max_memory_mb`: memory summed over the ones holding compute;
//! - `quotas.max_storage_gb`: disk summed over the ones that exist;
//! - `quotas.max_runtime_sec`: how long one sandbox may live (its timeout is capped to it);
//! - `quotas.max_sandbox_seconds_per_day` and `quotas.max_credit_cents`: stored and served,
//!   enforced once metering is in place.
//! - `lifecycle.default_timeout_sec`, `lifecycle.default_idle_timeout_sec`: what a create that
//!   does not say gets.
//!
//! Other sections and fields are kept as given (a tenant may store its own), and must be JSON
//! objects of scalar values.

use serde_json::{Map, Value};

/// The quota fields, in the order they are reported.
pub const QUOTA_FIELDS: &[&str] = &[
    "max_sandboxes",
    "max_concurrent",
    "max_cpu",
    "max_memory_mb",
    "max_storage_gb",
    "max_runtime_sec",
    "max_sandbox_seconds_per_day",
    "max_credit_cents",
];

/// The lifecycle fields Islet reads.
pub const LIFECYCLE_FIELDS: &[&str] = &["default_timeout_sec", "default_idle_timeout_sec"];

/// The largest value any enforced field takes (about 31 years in seconds).
pub const MAX_VALUE: u64 = 1_000_000_000;

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Platform,
    Tenant,
    Workspace,
    User,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Platform => "platform",
            Source::Tenant => "tenant",
            Source::Workspace => "workspace",
            Source::User => "user",
        }
    }
}

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Check a policy document: an object of sections, each an object of scalars; the enforced
/// fields must be integers in `0..=MAX_VALUE` (or null). At most 16 KiB.
pub fn validate(document: &Value) -> Result<Map<String, Value>, PolicyError> {
    let Some(sections) = document.as_object() else {
        return Err(PolicyError("a policy is a JSON object of sections".into()));
    };
    if document.to_string().len() > 16 * 1024 {
        return Err(PolicyError("a policy must be under 16 KiB".into()));
    }
    for (name, section) in sections {
        let Some(fields) = section.as_object() else {
            return Err(PolicyError(format!("section `{name}` must be an object")));
        };
        for (field, value) in fields {
            if value.is_object() || value.is_array() {
                return Err(PolicyError(format!("`{name}.{field}` must be a scalar")));
            }
            if name == "quotas" && !QUOTA_FIELDS.contains(&field.as_str()) {
                return Err(PolicyError(format!(
                    "unknown quota `{field}`; known: {}",
                    QUOTA_FIELDS.join(", ")
                )));
            }
            let enforced = (name == "quotas" && QUOTA_FIELDS.contains(&field.as_str()))
                || (name == "lifecycle" && LIFECYCLE_FIELDS.contains(&field.as_str()));
            if enforced && !value.is_null() && value.as_u64().filter(|v| *v <= MAX_VALUE).is_none()
            {
                return Err(PolicyError(format!(
                    "`{name}.{field}` must be an integer from 0 to {MAX_VALUE}, or null"
                )));
            }
        }
    }
    Ok(sections.clone())
}

/// One field's effective value and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub value: Value,
    pub source: Source,
}

/// The documents that apply to one end user's sandbox, each empty when not set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Documents {
    pub tenant: Map<String, Value>,
    /// The document of the sandbox's workspace (none outside a workspace).
    pub workspace: Map<String, Value>,
    pub user: Map<String, Value>,
}

impl Documents {
    /// The documents from the one that wins down.
    fn layers(&self) -> [(Source, &Map<String, Value>); 3] {
        [
            (Source::User, &self.user),
            (Source::Workspace, &self.workspace),
            (Source::Tenant, &self.tenant),
        ]
    }

    /// The first value set (not null) for `section.field`, and whose it is.
    fn pick(&self, section: &str, field: &str) -> Option<(Source, &Value)> {
        self.layers().into_iter().find_map(|(source, doc)| {
            let value = doc.get(section).and_then(|s| s.get(field)).filter(|v| !v.is_null())?;
            Some((source, value))
        })
    }
}

/// The merged policy: every section and field of any document, the highest layer winning.
pub fn effective(docs: &Documents) -> Vec<(String, Vec<(String, Effective)>)> {
    let layers = docs.layers();
    let mut names: Vec<&str> =
        layers.iter().flat_map(|(_, d)| d.keys()).map(String::as_str).collect();
    // The enforced sections are always reported, unset fields as the platform's (null).
    names.extend(["quotas", "lifecycle"]);
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|section| {
            let known: &[&str] = match section {
                "quotas" => QUOTA_FIELDS,
                "lifecycle" => LIFECYCLE_FIELDS,
                _ => &[],
            };
            let mut fields: Vec<&str> = layers
                .iter()
                .filter_map(|(_, d)| d.get(section).and_then(Value::as_object))
                .flat_map(|m| m.keys())
                .map(String::as_str)
                .chain(known.iter().copied())
                .collect();
            fields.sort_unstable();
            fields.dedup();
            let merged = fields
                .into_iter()
                .map(|f| {
                    let e = match docs.pick(section, f) {
                        Some((source, value)) => Effective { value: value.clone(), source },
                        None => Effective { value: Value::Null, source: Source::Platform },
                    };
                    (f.to_owned(), e)
                })
                .collect();
            (section.to_owned(), merged)
        })
        .collect()
}

/// The enforced limits of an effective policy (`None` = no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_sandboxes: Option<u64>,
    pub max_concurrent: Option<u64>,
    pub max_cpu: Option<u64>,
    pub max_memory_mb: Option<u64>,
    pub max_storage_gb: Option<u64>,
    pub max_runtime_sec: Option<u64>,
    pub max_sandbox_seconds_per_day: Option<u64>,
    pub max_credit_cents: Option<u64>,
    pub default_timeout_sec: Option<u64>,
    pub default_idle_timeout_sec: Option<u64>,
}

impl Limits {
    pub fn of(docs: &Documents) -> Self {
        let get =
            |section: &str, field: &str| docs.pick(section, field).and_then(|(_, v)| v.as_u64());
        Self {
            max_sandboxes: get("quotas", "max_sandboxes"),
            max_concurrent: get("quotas", "max_concurrent"),
            max_cpu: get("quotas", "max_cpu"),
            max_memory_mb: get("quotas", "max_memory_mb"),
            max_storage_gb: get("quotas", "max_storage_gb"),
            max_runtime_sec: get("quotas", "max_runtime_sec"),
            max_sandbox_seconds_per_day: get("quotas", "max_sandbox_seconds_per_day"),
            max_credit_cents: get("quotas", "max_credit_cents"),
            default_timeout_sec: get("lifecycle", "default_timeout_sec"),
            default_idle_timeout_sec: get("lifecycle", "default_idle_timeout_sec"),
        }
    }
}

/// What one external user holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
    /// Sandboxes that exist (not destroyed).
    pub sandboxes: u64,
    /// Of those, the ones holding compute (creating, running, paused).
    pub concurrent: u64,
    pub cpu: u64,
    pub memory_mb: u64,
    /// Disk of the ones that exist, MiB.
    pub storage_mb: u64,
}

/// Which limit a request would break, with the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub limit: &'static str,
    pub max: u64,
    pub current: u64,
    pub requested: u64,
}

/// Whether admitting `add` (a new or resumed sandbox) keeps `held` within `limits`.
/// `add.sandboxes` is 0 for a resume (the sandbox already exists).
pub fn admit(limits: &Limits, held: &Holding, add: &Holding) -> Result<(), Refusal> {
    let checks = [
        ("max_sandboxes", limits.max_sandboxes, held.sandboxes, add.sandboxes),
        ("max_concurrent", limits.max_concurrent, held.concurrent, add.concurrent),
        ("max_cpu", limits.max_cpu, held.cpu, add.cpu),
        ("max_memory_mb", limits.max_memory_mb, held.memory_mb, add.memory_mb),
        (
            "max_storage_gb",
            limits.max_storage_gb.map(|g| g * 1024),
            held.storage_mb,
            add.storage_mb,
        ),
    ];
    for (limit, max, current, requested) in checks {
        if requested == 0 {
            continue;
        }
        if let Some(max) = max {
            if current + requested > max {
                let (max, current, requested) = if limit == "max_storage_gb" {
                    (max / 1024, current.div_ceil(1024), requested.div_ceil(1024))
                } else {
                    (max, current, requested)
                };
                return Err(Refusal { limit, max, current, requested });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        validate(&v).expect("valid")
    }

    #[test]
    fn user_overrides_tenant_field_by_field() {
        let tenant = doc(
            json!({"quotas": {"max_sandboxes": 10, "max_cpu": 8}, "lifecycle": {"default_timeout_sec": 600}}),
        );
        let user = doc(json!({"quotas": {"max_sandboxes": 3, "max_cpu": null}}));
        let docs = Documents { tenant, user, ..Default::default() };
        let limits = Limits::of(&docs);
        assert_eq!(limits.max_sandboxes, Some(3));
        assert_eq!(limits.max_cpu, Some(8), "null in the user's document falls back");
        assert_eq!(limits.default_timeout_sec, Some(600));
        assert_eq!(limits.max_concurrent, None);
        let eff = effective(&docs);
        let quotas = &eff.iter().find(|(s, _)| s == "quotas").expect("quotas").1;
        let get = |f: &str| quotas.iter().find(|(n, _)| n == f).map(|(_, e)| e.clone());
        assert_eq!(get("max_sandboxes").map(|e| e.source), Some(Source::User));
        assert_eq!(get("max_cpu").map(|e| e.source), Some(Source::Tenant));
        assert_eq!(
            get("max_concurrent").map(|e| (e.source, e.value)),
            Some((Source::Platform, Value::Null))
        );
    }

    #[test]
    fn workspace_sits_between_tenant_and_user() {
        let docs = Documents {
            tenant: doc(
                json!({"quotas": {"max_sandboxes": 10, "max_cpu": 8, "max_concurrent": 4}}),
            ),
            workspace: doc(
                json!({"quotas": {"max_sandboxes": 5, "max_cpu": 4}, "team": {"tier": "gold"}}),
            ),
            user: doc(json!({"quotas": {"max_sandboxes": 2}})),
        };
        let limits = Limits::of(&docs);
        assert_eq!(
            (limits.max_sandboxes, limits.max_cpu, limits.max_concurrent),
            (Some(2), Some(4), Some(4))
        );
        let eff = effective(&docs);
        let source = |section: &str, field: &str| {
            let fields = &eff.iter().find(|(s, _)| s == section).expect("section").1;
            fields.iter().find(|(n, _)| n == field).map(|(_, e)| e.source)
        };
        assert_eq!(source("quotas", "max_sandboxes"), Some(Source::User));
        assert_eq!(source("quotas", "max_cpu"), Some(Source::Workspace));
        assert_eq!(source("quotas", "max_concurrent"), Some(Source::Tenant));
        assert_eq!(source("team", "tier"), Some(Source::Workspace));
        assert_eq!(source("lifecycle", "default_timeout_sec"), Some(Source::Platform));
    }

    #[test]
    fn validation_refuses_bad_shapes_and_values() {
        for bad in [
            json!([]),
            json!({"quotas": 3}),
            json!({"quotas": {"max_sandboxes": -1}}),
            json!({"quotas": {"max_sandboxes": 1.5}}),
            json!({"quotas": {"max_sandboxes": "5"}}),
            json!({"quotas": {"max_cpu": 2_000_000_000u64}}),
            json!({"lifecycle": {"default_timeout_sec": {"a": 1}}}),
            json!({"custom": {"nested": [1]}}),
        ] {
            assert!(validate(&bad).is_err(), "{bad} accepted");
        }
        assert!(validate(&json!({"custom": {"tier": "gold"}, "quotas": {"max_sandboxes": null}}))
            .is_ok());
    }

    #[test]
    fn admission_names_the_limit() {
        let limits =
            Limits { max_concurrent: Some(2), max_storage_gb: Some(1), ..Default::default() };
        let held =
            Holding { sandboxes: 4, concurrent: 2, cpu: 2, memory_mb: 1024, storage_mb: 512 };
        let new = Holding { sandboxes: 1, concurrent: 1, cpu: 1, memory_mb: 512, storage_mb: 256 };
        let refusal = admit(&limits, &held, &new).expect_err("over");
        assert_eq!((refusal.limit, refusal.max, refusal.current), ("max_concurrent", 2, 2));
        let stopped = Holding { concurrent: 0, cpu: 0, memory_mb: 0, ..new };
        assert!(admit(&limits, &held, &stopped).is_ok());
        let big = Holding { storage_mb: 600, concurrent: 0, ..new };
        assert_eq!(admit(&limits, &held, &big).map_err(|r| r.limit), Err("max_storage_gb"));
    }
}
