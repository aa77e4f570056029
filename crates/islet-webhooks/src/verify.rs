//! Reference verifiers for both signature schemes, as a receiver runs them. Islet never
//! verifies its own deliveries; these exist so the rules are written down in code, for Rust
//! receivers, and for the negative tests that prove malformed signatures fail.
//!
//! - [`verify_miosa`] follows the `miosa` SDK's verifier (contract §10.3): `sha256=<lower hex>`
//!   with no timestamp, or `t=<unix>,v1=<hex>` checked against a tolerance. No trimming.
//! - [`verify_standard`] follows the Standard Webhooks specification: any `v1,<base64>` entry of
//!   the space-separated header must match, and the timestamp must be within the tolerance.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::signing::{hmac, Secret};

/// Signatures older or newer than this many seconds are refused.
pub const TOLERANCE_SECS: u64 = 300;

/// The MIOSA schemes; `secret` is used verbatim as the key. `now` is unix seconds.
pub fn verify_miosa(body: &[u8], header: &str, secret: &str, now: u64) -> bool {
    if secret.is_empty() {
        return false;
    }
    if let Some(received) = header.strip_prefix("sha256=") {
        let expected = hex::encode(hmac(secret.as_bytes(), &[body]));
        return !received.is_empty() && constant_eq(received.as_bytes(), expected.as_bytes());
    }
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        if key.is_empty() || value.is_empty() {
            continue;
        }
        match key {
            "t" => t = Some(value),
            "v1" => v1 = Some(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(at) = t.parse::<i64>() else {
        return false;
    };
    if (now as i64 - at).unsigned_abs() > TOLERANCE_SECS {
        return false;
    }
    let expected = hex::encode(hmac(secret.as_bytes(), &[t.as_bytes(), b".", body]));
    constant_eq(v1.as_bytes(), expected.as_bytes())
}

/// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
pub fn verify_standard(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
) -> bool {
    let Ok(secret) = Secret::parse(secret) else {
        return false;
    };
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Ok(at) = timestamp.parse::<u64>() else {
        return false;
    };
    if now.abs_diff(at) > TOLERANCE_SECS || id.is_empty() {
        return false;
    }
    let expected = STANDARD.encode(hmac(
        &secret.standard_key(),
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    ));
    signature.split(' ').any(|entry| {
        entry
            .strip_prefix("v1,")
            .is_some_and(|sig| constant_eq(sig.as_bytes(), expected.as_bytes()))
    })
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{miosa_signature, miosa_timestamped_signature, standard_signature};

    const NOW: u64 = 1_764_000_000;
    const BODY: &[u8] = br#"{"id":"dlv_x","type":"sandbox.running","data":{"id":"sbx_y"}}"#;

    fn secret() -> Secret {
        Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret")
    }

    #[test]
    fn own_signatures_verify() {
        let s = secret();
        assert!(verify_miosa(BODY, &miosa_signature(&s, BODY), s.expose(), NOW));
        assert!(verify_miosa(BODY, &miosa_timestamped_signature(&s, NOW, BODY), s.expose(), NOW));
        let sig = standard_signature(&[&s], "dlv_x", NOW, BODY);
        assert!(verify_standard(s.expose(), "dlv_x", &NOW.to_string(), &sig, BODY, NOW));
        // Rotation: a receiver on either secret verifies.
        let other = Secret::generate();
        let both = standard_signature(&[&other, &s], "dlv_x", NOW, BODY);
        assert!(verify_standard(s.expose(), "dlv_x", &NOW.to_string(), &both, BODY, NOW));
        assert!(verify_standard(other.expose(), "dlv_x", &NOW.to_string(), &both, BODY, NOW));
    }

    /// Battery W1: every one of these must be refused.
    #[test]
    fn negative_cases_are_all_refused() {
        let s = secret();
        let key = s.expose();
        let good = miosa_signature(&s, BODY);
        let hex_part = good.trim_start_matches("sha256=").to_owned();
        let ts = miosa_timestamped_signature(&s, NOW, BODY);
        let ts_v1 = ts.split_once(",v1=").map(|(_, v)| v.to_owned()).unwrap_or_default();
        let mut changed = BODY.to_vec();
        changed[10] ^= 1;
        // (case, header, body, secret, now)
        type MiosaCase<'a> = (&'a str, String, Vec<u8>, String, u64);
        let miosa: Vec<MiosaCase> = vec![
            ("empty header", String::new(), BODY.to_vec(), key.into(), NOW),
            ("empty sha256", "sha256=".into(), BODY.to_vec(), key.into(), NOW),
            (
                "upper-case hex",
                format!("sha256={}", hex_part.to_uppercase()),
                BODY.to_vec(),
                key.into(),
                NOW,
            ),
            ("leading space", format!(" {good}"), BODY.to_vec(), key.into(), NOW),
            ("trailing space", format!("{good} "), BODY.to_vec(), key.into(), NOW),
            ("truncated", good[..good.len() - 1].into(), BODY.to_vec(), key.into(), NOW),
            ("extended", format!("{good}0"), BODY.to_vec(), key.into(), NOW),
            ("half length", good[..7 + 32].into(), BODY.to_vec(), key.into(), NOW),
            ("wrong prefix", format!("sha1={hex_part}"), BODY.to_vec(), key.into(), NOW),
            ("upper prefix", format!("SHA256={hex_part}"), BODY.to_vec(), key.into(), NOW),
            (
                "base64 value",
                format!("sha256={}", STANDARD.encode(hex::decode(&hex_part).unwrap_or_default())),
                BODY.to_vec(),
                key.into(),
                NOW,
            ),
            ("wrong secret", good.clone(), BODY.to_vec(), "whsec_other".into(), NOW),
            ("empty secret", good.clone(), BODY.to_vec(), String::new(), NOW),
            (
                "secret decoded instead of verbatim",
                good.clone(),
                BODY.to_vec(),
                key.trim_start_matches("whsec_").into(),
                NOW,
            ),
            ("body changed by one bit", good.clone(), changed.clone(), key.into(), NOW),
            ("body with trailing newline", good.clone(), [BODY, b"\n"].concat(), key.into(), NOW),
            ("empty body", good.clone(), Vec::new(), key.into(), NOW),
            (
                "body re-serialised",
                good.clone(),
                br#"{"id": "dlv_x", "type": "sandbox.running", "data": {"id": "sbx_y"}}"#.to_vec(),
                key.into(),
                NOW,
            ),
            (
                "one flipped hex digit",
                format!(
                    "sha256={}{}",
                    if hex_part.starts_with('0') { "1" } else { "0" },
                    &hex_part[1..]
                ),
                BODY.to_vec(),
                key.into(),
                NOW,
            ),
            ("timestamped, 301 s old", ts.clone(), BODY.to_vec(), key.into(), NOW + 301),
            ("timestamped, 301 s ahead", ts.clone(), BODY.to_vec(), key.into(), NOW - 301),
            (
                "timestamped, space after comma",
                format!("t={NOW}, v1={ts_v1}"),
                BODY.to_vec(),
                key.into(),
                NOW,
            ),
            (
                "timestamped, milliseconds",
                format!("t={}000,v1={ts_v1}", NOW),
                BODY.to_vec(),
                key.into(),
                NOW,
            ),
            (
                "timestamped, non-integer t",
                format!("t={NOW}.5,v1={ts_v1}"),
                BODY.to_vec(),
                key.into(),
                NOW,
            ),
            ("timestamped, no t", format!("v1={ts_v1}"), BODY.to_vec(), key.into(), NOW),
            ("timestamped, no v1", format!("t={NOW}"), BODY.to_vec(), key.into(), NOW),
            ("timestamped, empty v1", format!("t={NOW},v1="), BODY.to_vec(), key.into(), NOW),
            (
                "timestamped, t changed",
                format!("t={},v1={ts_v1}", NOW + 1),
                BODY.to_vec(),
                key.into(),
                NOW,
            ),
            ("timestamped, wrong secret", ts.clone(), BODY.to_vec(), "whsec_other".into(), NOW),
            ("timestamped, body changed", ts.clone(), changed.clone(), key.into(), NOW),
            (
                "timestamped, upper-case v1",
                format!("t={NOW},v1={}", ts_v1.to_uppercase()),
                BODY.to_vec(),
                key.into(),
                NOW,
            ),
            ("garbage", "hello".into(), BODY.to_vec(), key.into(), NOW),
        ];
        let mut refused = 0;
        for (name, header, body, secret, now) in &miosa {
            assert!(!verify_miosa(body, header, secret, *now), "MIOSA accepted: {name}");
            refused += 1;
        }

        let t = NOW.to_string();
        let sig = standard_signature(&[&s], "dlv_x", NOW, BODY);
        let raw = sig.trim_start_matches("v1,").to_owned();
        let other = Secret::generate();
        // (case, webhook-id, webhook-timestamp, webhook-signature, body, now)
        type Case<'a> = (&'a str, String, String, String, Vec<u8>, u64);
        let standard: Vec<Case> = vec![
            ("empty v1,", "dlv_x".into(), t.clone(), "v1,".into(), BODY.to_vec(), NOW),
            ("missing header", "dlv_x".into(), t.clone(), String::new(), BODY.to_vec(), NOW),
            (
                "truncated",
                "dlv_x".into(),
                t.clone(),
                sig[..sig.len() - 2].into(),
                BODY.to_vec(),
                NOW,
            ),
            ("wrong version", "dlv_x".into(), t.clone(), format!("v2,{raw}"), BODY.to_vec(), NOW),
            ("no version", "dlv_x".into(), t.clone(), raw.clone(), BODY.to_vec(), NOW),
            (
                "hex instead of base64",
                "dlv_x".into(),
                t.clone(),
                format!("v1,{}", hex::encode(STANDARD.decode(&raw).unwrap_or_default())),
                BODY.to_vec(),
                NOW,
            ),
            (
                "base64url alphabet",
                "dlv_x".into(),
                t.clone(),
                format!("v1,{}", raw.replace('+', "-").replace('/', "_").trim_end_matches('=')),
                BODY.to_vec(),
                NOW,
            ),
            ("other message id", "dlv_y".into(), t.clone(), sig.clone(), BODY.to_vec(), NOW),
            ("empty message id", String::new(), t.clone(), sig.clone(), BODY.to_vec(), NOW),
            (
                "timestamp 301 s old",
                "dlv_x".into(),
                t.clone(),
                sig.clone(),
                BODY.to_vec(),
                NOW + 301,
            ),
            (
                "timestamp 301 s ahead",
                "dlv_x".into(),
                t.clone(),
                sig.clone(),
                BODY.to_vec(),
                NOW - 301,
            ),
            (
                "timestamp not an integer",
                "dlv_x".into(),
                format!("{t}.0"),
                sig.clone(),
                BODY.to_vec(),
                NOW,
            ),
            (
                "timestamp with spaces",
                "dlv_x".into(),
                format!(" {t}"),
                sig.clone(),
                BODY.to_vec(),
                NOW,
            ),
            (
                "timestamp changed",
                "dlv_x".into(),
                (NOW + 1).to_string(),
                sig.clone(),
                BODY.to_vec(),
                NOW,
            ),
            ("missing timestamp", "dlv_x".into(), String::new(), sig.clone(), BODY.to_vec(), NOW),
            ("body changed", "dlv_x".into(), t.clone(), sig.clone(), changed.clone(), NOW),
            (
                "signed by another secret",
                "dlv_x".into(),
                t.clone(),
                standard_signature(&[&other], "dlv_x", NOW, BODY),
                BODY.to_vec(),
                NOW,
            ),
            (
                "comma instead of space",
                "dlv_x".into(),
                t.clone(),
                format!("{},{sig}", standard_signature(&[&other], "dlv_x", NOW, BODY)),
                BODY.to_vec(),
                NOW,
            ),
            (
                "signature with spaces inside",
                "dlv_x".into(),
                t.clone(),
                format!("v1, {raw}"),
                BODY.to_vec(),
                NOW,
            ),
        ];
        for (name, id, ts, header, body, now) in &standard {
            assert!(
                !verify_standard(s.expose(), id, ts, header, body, *now),
                "Standard Webhooks accepted: {name}"
            );
            refused += 1;
        }
        // Secrets that are not secrets.
        for bad in ["", "whsec_", "whsec_!!!", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] {
            assert!(!verify_standard(bad, "dlv_x", &t, &sig, BODY, NOW), "secret {bad:?}");
            refused += 1;
        }
        assert!(refused >= 40, "only {refused} negative cases");
        println!("W1: {refused}/{refused} negative cases refused");
    }
}
