//! Credentials as the store keeps them: random secrets, and the SHA-256 that is all a key or
//! token leaves in the database.

use rand::Rng;
use sha2::{Digest, Sha256};

/// The stored form of a key or token: its SHA-256, hex.
pub(crate) fn hash_key(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// `prefix` + 40 random alphanumerics (238 bits).
pub(crate) fn new_secret(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    let body: String =
        (0..40).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    format!("{prefix}{body}")
}

/// A fresh DNS challenge for a domain claim: 20 random bytes, hex.
pub(crate) fn challenge() -> String {
    let mut bytes = [0u8; 20];
    rand::thread_rng().fill(&mut bytes);
    hex::encode(bytes)
}
