//! Preview tokens: `mp_` + base64url(claims ‖ HMAC-SHA256(claims)).
//!
//! The claims are a fixed-size binary record, so a token is short enough for a URL and parsing
//! cannot be steered by the input. Verification checks the MAC (in constant time) before it
//! reads a single claim, then the expiry. What the token is *for* (which sandbox, port and
//! tenant) and whether it was revoked are the caller's checks: the edge knows the request's
//! target and keeps the revocation list.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use islet_types::preview::Scope;
use islet_types::{PreviewTokenId, SandboxId, TenantId};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Every preview token starts with this.
pub const PREFIX: &str = "mp_";
/// Name of the store secret tokens are signed with.
pub const SECRET_NAME: &str = "preview-token-signing";
/// Longest lifetime a token may be minted with.
pub const MAX_TTL_SECS: u64 = 86_400;

const VERSION: u8 = 1;
const BODY: usize = 20;
const CLAIMS_LEN: usize = 1 + 1 + 2 + 8 + 3 * BODY;
const TAG_LEN: usize = 32;

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub id: PreviewTokenId,
    pub tenant_id: TenantId,
    pub sandbox_id: SandboxId,
    /// `None`: every port of the sandbox.
    pub port: Option<u16>,
    pub scope: Scope,
    /// Unix seconds after which the token is dead.
    pub expires_at: u64,
}

/// Why a token was refused. Callers answer every variant the same way; the variants exist for
/// logs and tests only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    Signature,
    #[error("expired token")]
    Expired,
}

/// Mints and verifies tokens with one key. The key is derived from the server's secret, so a
/// token signed for another purpose can never verify here.
#[derive(Clone)]
pub struct Signer {
    /// HMAC state already keyed (the key's pads hashed once, not per token).
    keyed: HmacSha256,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer keyed from `secret` (at least 32 random bytes, kept by the store).
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"islet preview token v1");
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        Self { keyed: HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length") }
    }

    fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut bytes = Vec::with_capacity(CLAIMS_LEN + TAG_LEN);
        bytes.push(VERSION);
        bytes.push(match claims.scope {
            Scope::Read => 1,
            Scope::Interact => 2,
        });
        bytes.extend_from_slice(&claims.port.unwrap_or(0).to_be_bytes());
        bytes.extend_from_slice(&claims.expires_at.to_be_bytes());
        bytes.extend_from_slice(claims.id.body().as_bytes());
        bytes.extend_from_slice(claims.sandbox_id.body().as_bytes());
        bytes.extend_from_slice(claims.tenant_id.body().as_bytes());
        let mut mac = self.mac();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Check the token's form, signature and expiry (`now` in Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, Rejected> {
        let encoded = token.strip_prefix(PREFIX).ok_or(Rejected::Malformed)?;
        if encoded.len() > 2 * (CLAIMS_LEN + TAG_LEN) {
            return Err(Rejected::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| Rejected::Malformed)?;
        if bytes.len() != CLAIMS_LEN + TAG_LEN {
            return Err(Rejected::Malformed);
        }
        let (claims, tag) = bytes.split_at(CLAIMS_LEN);
        let mut mac = self.mac();
        mac.update(claims);
        mac.verify_slice(tag).map_err(|_| Rejected::Signature)?;
        // Signed by us: the fields below were written by `sign`.
        if claims[0] != VERSION {
            return Err(Rejected::Malformed);
        }
        let scope = match claims[1] {
            1 => Scope::Read,
            2 => Scope::Interact,
            _ => return Err(Rejected::Malformed),
        };
        let port = u16::from_be_bytes([claims[2], claims[3]]);
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&claims[4..12]);
        let expires_at = u64::from_be_bytes(exp);
        if now >= expires_at {
            return Err(Rejected::Expired);
        }
        let text = |i: usize| {
            std::str::from_utf8(&claims[12 + i * BODY..12 + (i + 1) * BODY])
                .map_err(|_| Rejected::Malformed)
        };
        Ok(Claims {
            id: PreviewTokenId::from_body(text(0)?).map_err(|_| Rejected::Malformed)?,
            sandbox_id: SandboxId::from_body(text(1)?).map_err(|_| Rejected::Malformed)?,
            tenant_id: TenantId::from_body(text(2)?).map_err(|_| Rejected::Malformed)?,
            port: (port != 0).then_some(port),
            scope,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            id: PreviewTokenId::generate(),
            tenant_id: TenantId::generate(),
            sandbox_id: SandboxId::generate(),
            port: Some(8080),
            scope: Scope::Read,
            expires_at: 2_000_000_000,
        }
    }

    #[test]
    fn round_trips() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let c = claims();
        let token = signer.sign(&c);
        assert!(token.starts_with("mp_"));
        assert_eq!(signer.verify(&token, 1_000), Ok(c.clone()));
        let any_port = Claims { port: None, scope: Scope::Interact, ..c };
        assert_eq!(signer.verify(&signer.sign(&any_port), 1_000), Ok(any_port));
    }

    #[test]
    fn refuses_expired_foreign_and_mangled() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let other = Signer::new(b"fedcba9876543210fedcba9876543210");
        let token = signer.sign(&claims());
        assert_eq!(signer.verify(&token, 2_000_000_000), Err(Rejected::Expired));
        assert_eq!(other.verify(&token, 0), Err(Rejected::Signature));
        assert!(signer.verify(&token[..token.len() - 1], 0).is_err());
        assert_eq!(signer.verify("mp_", 0), Err(Rejected::Malformed));
        assert_eq!(signer.verify(&token.replace("mp_", "mx_"), 0), Err(Rejected::Malformed));
        let mut rng = rand::thread_rng();
        let raw = URL_SAFE_NO_PAD.decode(&token[3..]).expect("own token decodes");
        for _ in 0..2_000 {
            let mut bytes = raw.clone();
            let bit = rand::Rng::gen_range(&mut rng, 0..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let mutated = format!("mp_{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert!(signer.verify(&mutated, 0).is_err());
        }
    }
}
