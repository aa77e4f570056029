//! Delivery signatures, in both schemes a receiver may verify:
//!
//! - MIOSA's: `X-Miosa-Signature: sha256=<lowercase hex HMAC-SHA256(secret, raw body)>`, keyed
//!   with the secret string's UTF-8 bytes verbatim (a `whsec_` prefix is part of the key), as
//!   the `miosa` SDK's verifier computes it; plus the older `Miosa-Signature: t=<unix>,v1=<hex
//!   HMAC(secret, "<t>.<body>")>`.
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64
//!   HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, keyed with the base64-decoded part of the
//!   secret after `whsec_`. During a secret rotation every current secret signs, separated by
//!   spaces, so receivers on either secret verify.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SECRET_PREFIX: &str = "whsec_";

/// An endpoint's signing secret: `whsec_` + base64 of 24 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}…)", self.0.get(..SECRET_PREFIX.len() + 4).unwrap_or(""))
    }
}

/// Why a string is not a signing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotASecret;

impl Secret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// A stored secret; it must be `whsec_` followed by base64 of at least 16 bytes.
    pub fn parse(text: &str) -> Result<Self, NotASecret> {
        let key = text
            .strip_prefix(SECRET_PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or(NotASecret)?;
        if key.len() < 16 {
            return Err(NotASecret);
        }
        Ok(Self(text.to_owned()))
    }

    /// The secret as the tenant sees it (shown once).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn standard_key(&self) -> Vec<u8> {
        STANDARD.decode(&self.0[SECRET_PREFIX.len()..]).unwrap_or_default()
    }
}

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `X-Miosa-Signature`.
pub fn miosa_signature(secret: &Secret, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(secret.0.as_bytes(), &[body])))
}

/// `Miosa-Signature` (the older, timestamped form).
pub fn miosa_timestamped_signature(secret: &Secret, timestamp: u64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let v1 = hex::encode(hmac(secret.0.as_bytes(), &[t.as_bytes(), b".", body]));
    format!("t={t},v1={v1}")
}

/// `webhook-signature` for the current secrets (several during a rotation).
pub fn standard_signature(
    secrets: &[&Secret],
    message_id: &str,
    timestamp: u64,
    body: &[u8],
) -> String {
    let t = timestamp.to_string();
    secrets
        .iter()
        .map(|secret| {
            let mac = hmac(
                &secret.standard_key(),
                &[message_id.as_bytes(), b".", t.as_bytes(), b".", body],
            );
            format!("v1,{}", STANDARD.encode(mac))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_known_answer() {
        // The Standard Webhooks specification's published example.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(&[&secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn miosa_known_answers() {
        // Computed independently (Python's hmac) with the secret used verbatim as the key.
        let secret = Secret(String::from("whsec_abc"));
        let body = br#"{"type":"sandbox.running"}"#;
        assert_eq!(
            miosa_signature(&secret, body),
            "sha256=0b9648cb8aadd0b0fc4ba1d6ef9bbdf1cf98d11162b461c15b0570fef78cb793"
        );
        assert_eq!(
            miosa_timestamped_signature(&secret, 1_700_000_000, body),
            "t=1700000000,v1=a35dde86f7144676a1323c9d92b0d91f4bb680593295160124bd6da4447baa5c"
        );
    }

    #[test]
    fn rotation_signs_with_every_secret_and_secrets_parse() {
        let (old, new) = (Secret::generate(), Secret::generate());
        assert_eq!(Secret::parse(old.expose()), Ok(old.clone()));
        let both = standard_signature(&[&old, &new], "msg_1", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], standard_signature(&[&old], "msg_1", 1, b"{}"));
        assert_eq!(parts[1], standard_signature(&[&new], "msg_1", 1, b"{}"));
        for bad in ["", "whsec_", "sk_live_abc", "whsec_!!!", "whsec_YWJj"] {
            assert_eq!(Secret::parse(bad), Err(NotASecret), "{bad}");
        }
        assert!(!format!("{old:?}").contains(&old.expose()[10..]));
    }
}
