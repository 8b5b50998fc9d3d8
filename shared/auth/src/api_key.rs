//! Database API keys: `cnt_` + 43 characters of URL-safe base64 (32 random bytes), stored
//! only as a hex SHA-256 hash with the first 8 characters as a display prefix.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every generated key.
pub const KEY_PREFIX: &str = "cnt_";
/// How many leading characters of a key are stored as `key_prefix`.
pub const DISPLAY_PREFIX_LEN: usize = 8;

/// A freshly generated key: the plaintext (shown once) and what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    pub plaintext: String,
    pub hash: String,
    pub display_prefix: String,
}

/// Generates a new random key.
pub fn generate() -> GeneratedKey {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let plaintext = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    GeneratedKey {
        hash: hash(&plaintext),
        display_prefix: display_prefix(&plaintext),
        plaintext,
    }
}

/// Hex SHA-256 of a key: what the database stores and looks up.
pub fn hash(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// The first 8 characters, safe to show in listings.
pub fn display_prefix(plaintext: &str) -> String {
    plaintext.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// Constant-time comparison of two hashes.
pub fn hashes_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = generate();
        assert!(key.plaintext.starts_with("cnt_"));
        assert_eq!(key.plaintext.len(), 4 + 43);
        assert_eq!(key.display_prefix, &key.plaintext[..8]);
        assert_eq!(key.hash, hash(&key.plaintext));
        assert_eq!(key.hash.len(), 64);
    }

    #[test]
    fn two_generated_keys_differ() {
        assert_ne!(generate().plaintext, generate().plaintext);
    }

    #[test]
    fn hashes_compare_in_constant_time_and_by_value() {
        assert!(hashes_match(&hash("a"), &hash("a")));
        assert!(!hashes_match(&hash("a"), &hash("b")));
        assert!(!hashes_match("short", &hash("a")));
    }
}
