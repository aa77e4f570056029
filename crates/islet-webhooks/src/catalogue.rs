//! The events a tenant can subscribe to, and how subscriptions match them.
//!
//! A subscription is a list of names and patterns: an exact name (`sandbox.running`), a
//! category wildcard (`sandbox.*`, matching `sandbox.running` and `sandbox.snapshot.ready`) or
//! `*` (everything). `sandbox.ready` is the older name of `sandbox.running`: an endpoint that
//! names it explicitly gets running events under that name too. Wildcards do not expand to the
//! alias, so `sandbox.*` gets each running event once.

/// Every event Islet emits, by category.
pub const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "sandbox",
        &[
            "sandbox.created",
            "sandbox.running",
            "sandbox.ready",
            "sandbox.paused",
            "sandbox.resumed",
            "sandbox.stopped",
            "sandbox.destroyed",
            "sandbox.error",
            "sandbox.timeout",
        ],
    ),
    ("quota", &["quota.exceeded"]),
    ("usage", &["usage.reported"]),
    ("user", &["user.suspended", "user.unsuspended"]),
    ("webhook", &["webhook.disabled", "webhook.test"]),
];

/// The alias: `(older name, the event it stands for)`.
pub const READY_ALIAS: (&str, &str) = ("sandbox.ready", "sandbox.running");

/// Events that only go to the endpoint they concern, never fanned out by subscription.
const DIRECT_ONLY: &[&str] = &["webhook.test"];

pub fn all_events() -> impl Iterator<Item = &'static str> {
    CATEGORIES.iter().flat_map(|(_, events)| events.iter().copied())
}

/// Why a subscription entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event `{0}`: expected an event name, `<category>.*` or `*` (see GET /webhooks/events)"
)]
pub struct UnknownEvent(pub String);

/// Check every entry of a subscription against the catalogue; entries are returned trimmed and
/// deduplicated, in their order.
pub fn validate(entries: &[String]) -> Result<Vec<String>, UnknownEvent> {
    let mut out: Vec<String> = Vec::with_capacity(entries.len());
    for raw in entries {
        let entry = raw.trim();
        let known = entry == "*"
            || all_events().any(|e| e == entry)
            || entry
                .strip_suffix(".*")
                .is_some_and(|prefix| CATEGORIES.iter().any(|(c, _)| *c == prefix));
        if !known {
            return Err(UnknownEvent(raw.clone()));
        }
        if !out.iter().any(|e| e == entry) {
            out.push(entry.to_owned());
        }
    }
    Ok(out)
}

/// Whether one pattern covers an event name.
pub fn pattern_matches(pattern: &str, event: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => event.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')),
        None => pattern == event,
    }
}

/// The names under which an endpoint subscribed to `patterns` receives `event` (none, one, or
/// two for a running event when the endpoint also named `sandbox.ready`).
pub fn delivered_as(patterns: &[String], event: &str) -> Vec<&'static str> {
    let Some(name) = all_events().find(|e| *e == event) else {
        return Vec::new();
    };
    if DIRECT_ONLY.contains(&name) {
        return Vec::new();
    }
    let mut names = Vec::new();
    if patterns.iter().any(|p| pattern_matches(p, name)) {
        names.push(name);
    }
    if name == READY_ALIAS.1 && patterns.iter().any(|p| p == READY_ALIAS.0) {
        names.push(READY_ALIAS.0);
    }
    names
}

/// Whether `pattern` is well formed (`a.b`, `a.*`, `*`; lower-case letters, digits and `_`),
/// whether or not it names a known event. Event streams accept any such filter (a client may
/// ask for names this server never emits, like `webhook.delivered`); subscriptions must name
/// known events ([`validate`]).
pub fn well_formed(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let name = pattern.strip_suffix(".*").unwrap_or(pattern);
    !name.is_empty()
        && name.len() <= 100
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Whether a stream filter (the same patterns, or none for everything) lets `event` through.
pub fn filter_allows(patterns: &[String], event: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| pattern_matches(p, event))
        || (event == READY_ALIAS.1 && patterns.iter().any(|p| p == READY_ALIAS.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcards_match_by_category_only() {
        assert!(pattern_matches("sandbox.*", "sandbox.running"));
        assert!(pattern_matches("*", "quota.exceeded"));
        assert!(!pattern_matches("sandbox.*", "sandboxes.running"));
        assert!(!pattern_matches("sandbox.*", "quota.exceeded"));
        assert!(!pattern_matches("sandbox.running", "sandbox.runnin"));
    }

    #[test]
    fn ready_alias_only_when_named() {
        assert_eq!(delivered_as(&v(&["sandbox.*"]), "sandbox.running"), vec!["sandbox.running"]);
        assert_eq!(delivered_as(&v(&["sandbox.ready"]), "sandbox.running"), vec!["sandbox.ready"]);
        assert_eq!(
            delivered_as(&v(&["sandbox.running", "sandbox.ready"]), "sandbox.running"),
            vec!["sandbox.running", "sandbox.ready"]
        );
        assert!(delivered_as(&v(&["sandbox.created"]), "sandbox.running").is_empty());
        assert!(delivered_as(&v(&["*"]), "webhook.test").is_empty());
    }

    #[test]
    fn validation_refuses_unknown_names_and_patterns() {
        assert_eq!(
            validate(&v(&[" sandbox.* ", "sandbox.*", "webhook.disabled"])).ok(),
            Some(v(&["sandbox.*", "webhook.disabled"]))
        );
        for bad in ["sandbox", "sandbox.", "sbx.*", "*.running", "sandbox.**", "", "deployment.*"] {
            assert!(validate(&v(&[bad])).is_err(), "{bad:?} accepted");
        }
    }
}
