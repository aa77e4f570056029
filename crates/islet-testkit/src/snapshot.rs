//! Wire snapshots: a JSON answer with everything that differs from run to run (IDs, secrets,
//! times, ports, measured figures) replaced by a placeholder, compared with a file kept in the
//! repository. `ISLET_UPDATE_SNAPSHOTS=1` writes the files instead of comparing.

use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

/// Object keys whose values are measured or clock-derived: their value becomes its kind.
const VOLATILE_KEYS: &[&str] = &[
    "boot_ms",
    "timeout_remaining_ms",
    "total_runtime_sec",
    "latency_ms",
    "duration_ms",
    "elapsed_ms",
    "pid",
    "expires_in",
    "retry_after",
    "uptime_sec",
    "key_prefix",
    "secret_preview",
];

/// Key suffixes with the same meaning (`created_at`, `cpu_seconds`, `network_egress_bytes`…).
const VOLATILE_SUFFIXES: &[&str] =
    &["_at", "_seconds", "_bytes", "_cents", "_cents_exact", "_hours", "_ms"];

fn patterns() -> &'static [(Regex, &'static str)] {
    static PATTERNS: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            // Secrets and tokens first: their bodies may contain what later patterns match.
            (r"\b(msk_(?:live_|l2_)?)[A-Za-z0-9_\-]{16,}", "${1}[secret]"),
            (r"\b(mst_)[A-Za-z0-9_\-]{16,}", "${1}[secret]"),
            (r"\b(whsec_)[A-Za-z0-9+/=_\-]{16,}", "${1}[secret]"),
            (r"\b(mp_)[A-Za-z0-9_\-]{16,}", "${1}[secret]"),
            (r"\b(v1,)[A-Za-z0-9+/=]{20,}", "${1}[signature]"),
            // Typed IDs: a short prefix, `_` or `-`, 20 base32 characters.
            (r"\b([a-z]{2,5})([_-])[a-z0-9]{20}\b", "${1}${2}[id]"),
            (r"\breq_[A-Za-z0-9]{8,}\b", "req_[id]"),
            (r"\b[0-9a-f]{32,64}\b", "[hex]"),
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})", "[time]"),
            (r"(127\.0\.0\.1|localhost):\d{2,5}\b", "${1}:[port]"),
            (r"\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", "[sandbox-ip]"),
        ]
        .into_iter()
        .map(|(re, with)| (Regex::new(re).unwrap(), with))
        .collect()
    })
}

/// Redact one string.
pub fn redact_str(s: &str) -> String {
    let mut out = s.to_owned();
    for (re, with) in patterns() {
        out = re.replace_all(&out, *with).into_owned();
    }
    out
}

fn volatile(key: &str) -> bool {
    VOLATILE_KEYS.contains(&key) || VOLATILE_SUFFIXES.iter().any(|s| key.ends_with(s))
}

fn kind(value: &Value) -> Value {
    Value::String(
        match value {
            Value::Null => return Value::Null,
            Value::Bool(_) => "[bool]",
            Value::Number(_) => "[number]",
            Value::String(_) => "[string]",
            Value::Array(_) => "[array]",
            Value::Object(_) => "[object]",
        }
        .into(),
    )
}

/// A copy of `value` with run-specific parts replaced. Keys that are themselves IDs (maps
/// keyed by sandbox) are redacted too.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact_str(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                let redacted = if volatile(key) && !v.is_object() && !v.is_array() {
                    match v {
                        Value::String(s) if s.is_empty() => v.clone(),
                        _ => kind(v),
                    }
                } else {
                    redact(v)
                };
                out.insert(redact_str(key), redacted);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Compare `actual` (already redacted) with the snapshot at `path`, or write it when
/// `ISLET_UPDATE_SNAPSHOTS` is set. Panics with both texts on a difference.
pub fn assert_snapshot(path: &Path, actual: &Value) {
    let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("ISLET_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("no snapshot at {} ({e}); run with ISLET_UPDATE_SNAPSHOTS=1", path.display())
    });
    if expected != text {
        let changed: Vec<String> = diff_lines(&expected, &text);
        panic!(
            "{} differs from the answer (run with ISLET_UPDATE_SNAPSHOTS=1 to accept):\n{}",
            path.display(),
            changed.join("\n")
        );
    }
}

/// The lines of a naive line diff (enough to see what moved).
fn diff_lines(expected: &str, actual: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = Vec::new();
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    out.push(format!("{:>5} - {x}", i + 1));
                }
                if let Some(y) = y {
                    out.push(format!("{:>5} + {y}", i + 1));
                }
            }
        }
        if out.len() > 60 {
            out.push("…".into());
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_secrets_times_and_ports_are_redacted() {
        let v = json!({
            "id": "sbx_abcdefghijklmnopqrst",
            "url": "http://8000-sbx-abcdefghijklmnopqrst.preview.localhost:41234/",
            "key": "msk_live_AbCdEfGhIjKlMnOpQrStUv",
            "created_at": "2026-12-07T22:48:06.123Z",
            "boot_ms": 412,
            "cpu_seconds": 0.25,
            "name": "mine",
            "cpu_count": 1,
        });
        assert_eq!(
            redact(&v),
            json!({
                "id": "sbx_[id]",
                "url": "http://8000-sbx-[id].preview.localhost:[port]/",
                "key": "msk_live_[secret]",
                "created_at": "[string]",
                "boot_ms": "[number]",
                "cpu_seconds": "[number]",
                "name": "mine",
                "cpu_count": 1,
            })
        );
    }
}
