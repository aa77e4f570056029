//! Per-user policy (contract §11): free-form documents of sections (`quotas`, `lifecycle`, …)
//! set for the tenant (defaults) and for each external user, merged field by field into the
//! effective policy: user over tenant over platform.
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
    User,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Platform => "platform",
            Source::Tenant => "tenant",
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

/// The merged policy: every section and field of either document, user over tenant.
pub fn effective(
    tenant: &Map<String, Value>,
    user: &Map<String, Value>,
) -> Vec<(String, Vec<(String, Effective)>)> {
    let mut out: Vec<(String, Vec<(String, Effective)>)> = Vec::new();
    let mut names: Vec<&String> = tenant.keys().chain(user.keys()).collect();
    // The enforced sections are always reported, unset fields as the platform's (null).
    let quotas = "quotas".to_string();
    let lifecycle = "lifecycle".to_string();
    names.push(&quotas);
    names.push(&lifecycle);
    names.sort();
    names.dedup();
    for section in names {
        let t = tenant.get(section).and_then(Value::as_object);
        let u = user.get(section).and_then(Value::as_object);
        let mut fields: Vec<&String> = t.into_iter().chain(u).flat_map(|m| m.keys()).collect();
        let known: &[&str] = match section.as_str() {
            "quotas" => QUOTA_FIELDS,
            "lifecycle" => LIFECYCLE_FIELDS,
            _ => &[],
        };
        let known: Vec<String> = known.iter().map(|s| s.to_string()).collect();
        fields.extend(known.iter());
        fields.sort();
        fields.dedup();
        let merged = fields
            .into_iter()
            .map(|f| {
                let from_user = u.and_then(|m| m.get(f)).filter(|v| !v.is_null());
                let from_tenant = t.and_then(|m| m.get(f)).filter(|v| !v.is_null());
                let e = match (from_user, from_tenant) {
                    (Some(v), _) => Effective { value: v.clone(), source: Source::User },
                    (None, Some(v)) => Effective { value: v.clone(), source: Source::Tenant },
                    (None, None) => Effective { value: Value::Null, source: Source::Platform },
                };
                (f.clone(), e)
            })
            .collect();
        out.push((section.clone(), merged));
    }
    out
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
    pub fn of(tenant: &Map<String, Value>, user: &Map<String, Value>) -> Self {
        let get = |section: &str, field: &str| {
            let pick = |doc: &Map<String, Value>| {
                doc.get(section).and_then(|s| s.get(field)).and_then(Value::as_u64)
            };
            pick(user).or_else(|| pick(tenant))
        };
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
        let limits = Limits::of(&tenant, &user);
        assert_eq!(limits.max_sandboxes, Some(3));
        assert_eq!(limits.max_cpu, Some(8), "null in the user's document falls back");
        assert_eq!(limits.default_timeout_sec, Some(600));
        assert_eq!(limits.max_concurrent, None);
        let eff = effective(&tenant, &user);
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
