//! Prefixed, random, validated identifiers (`sbx_…`, `ten_…`, `key_…`, `pv_…`, `pvt_…`).
//!
//! The body after the prefix is 20 characters of lowercase base32 (RFC 4648 alphabet, lowercase),
//! which keeps IDs safe inside DNS labels, paths and file names.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const BODY_LEN: usize = 20;

/// Why a string is not a valid ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id: expected `{prefix}` followed by {BODY_LEN} characters of [a-z2-7]")]
pub struct IdError {
    pub kind: &'static str,
    pub prefix: &'static str,
}

fn random_body() -> String {
    let mut rng = rand::thread_rng();
    (0..BODY_LEN).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

fn valid_body(body: &str) -> bool {
    body.len() == BODY_LEN && body.bytes().all(|b| ALPHABET.contains(&b))
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random ID.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_body()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The random part, without the prefix.
            pub fn body(&self) -> &str {
                &self.0[$prefix.len()..]
            }

            /// The ID whose random part is `body` (the inverse of [`Self::body`]).
            pub fn from_body(body: &str) -> Result<Self, IdError> {
                if valid_body(body) {
                    Ok(Self(format!("{}{}", $prefix, body)))
                } else {
                    Err(IdError { kind: $kind, prefix: $prefix })
                }
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                match s.strip_prefix($prefix) {
                    Some(body) if valid_body(body) => Ok(Self(s.to_owned())),
                    _ => Err(IdError { kind: $kind, prefix: $prefix }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// A sandbox: `sbx_…`.
    SandboxId, "sbx_", "sandbox"
);
typed_id!(
    /// A tenant (one SaaS builder using Islet): `ten_…`.
    TenantId, "ten_", "tenant"
);
typed_id!(
    /// An API key's public identifier (never the secret): `key_…`.
    ApiKeyId, "key_", "api key"
);
typed_id!(
    /// A preview: one exposed port of a sandbox, `pv_…`.
    PreviewId, "pv_", "preview"
);
typed_id!(
    /// A minted preview token or share link (the token's `jti`), `pvt_…`.
    PreviewTokenId, "pvt_", "preview token"
);

typed_id!(
    /// A webhook endpoint: `wh_…`.
    WebhookId, "wh_", "webhook"
);
typed_id!(
    /// One delivery of one event to one webhook endpoint, the same on every attempt: `dlv_…`.
    DeliveryId, "dlv_", "delivery"
);
typed_id!(
    /// A lifecycle event in the outbox: `evt_…`.
    EventId, "evt_", "event"
);
typed_id!(
    /// One of a tenant's custom domains: `cd_…`.
    CustomDomainId, "cd_", "custom domain"
);
typed_id!(
    /// A bulk operation on sandboxes: `job_…`.
    BulkJobId, "job_", "bulk job"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip() {
        let id = SandboxId::generate();
        let parsed: SandboxId = id.to_string().parse().expect("own id parses");
        assert_eq!(parsed, id);
        assert_eq!(id.body().len(), BODY_LEN);
    }

    #[test]
    fn rejects_wrong_prefix_length_and_alphabet() {
        let body = "a".repeat(BODY_LEN);
        assert!(format!("sbx_{body}").parse::<SandboxId>().is_ok());
        assert!(format!("ten_{body}").parse::<SandboxId>().is_err());
        assert!(format!("sbx_{}", &body[1..]).parse::<SandboxId>().is_err());
        assert!(format!("sbx_{}1", &body[1..]).parse::<SandboxId>().is_err());
        assert!(format!("sbx_{}A", &body[1..]).parse::<SandboxId>().is_err());
        assert!("sbx_../../etc".parse::<SandboxId>().is_err());
    }
}
