//! `sbx1.<base64url(payload)>.<base64url(HMAC-SHA256(key, payload_b64))>` tokens that let a
//! sandbox call the API for its own thread only.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The token prefix.
pub const PREFIX: &str = "sbx1";
/// Default lifetime of a sandbox token, in seconds.
pub const DEFAULT_TTL_SECS: i64 = 7200;

/// What a sandbox token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxClaims {
    pub thread_key: String,
    pub sandbox_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Why a sandbox token was refused. Every variant is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxTokenError {
    #[error("sandbox token is malformed")]
    Malformed,
    #[error("sandbox token signature is invalid")]
    BadSignature,
    #[error("sandbox token has expired")]
    Expired,
}

fn signature(key: &[u8], payload_b64: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 takes keys of any length"));
    mac.update(payload_b64.as_bytes());
    mac
}

/// Mints a token for `thread_key` / `sandbox_id`, valid from `now` for `ttl_secs`.
pub fn mint(key: &str, thread_key: &str, sandbox_id: &str, now: i64, ttl_secs: i64) -> String {
    let claims = SandboxClaims {
        thread_key: thread_key.to_owned(),
        sandbox_id: sandbox_id.to_owned(),
        created_at: now,
        expires_at: now + ttl_secs,
    };
    let payload = serde_json::to_vec(&claims).unwrap_or_default();
    let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
    let sig = signature(key.as_bytes(), &payload_b64)
        .finalize()
        .into_bytes();
    format!("{PREFIX}.{payload_b64}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// True when `token` claims to be a sandbox token (and so must verify as one).
pub fn looks_like_sandbox_token(token: &str) -> bool {
    token.starts_with("sbx1.")
}

/// Verifies prefix, signature (constant time) and expiry at `now`.
pub fn verify(key: &str, token: &str, now: i64) -> Result<SandboxClaims, SandboxTokenError> {
    let mut parts = token.split('.');
    let (Some(prefix), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SandboxTokenError::Malformed);
    };
    if prefix != PREFIX {
        return Err(SandboxTokenError::Malformed);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| SandboxTokenError::Malformed)?;
    signature(key.as_bytes(), payload_b64)
        .verify_slice(&sig)
        .map_err(|_| SandboxTokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| SandboxTokenError::Malformed)?;
    let claims: SandboxClaims =
        serde_json::from_slice(&payload).map_err(|_| SandboxTokenError::Malformed)?;
    if claims.expires_at <= now {
        return Err(SandboxTokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_minted_token_verifies_and_carries_its_claims() {
        let token = mint(KEY, "thread-1", "sbx-1", NOW, DEFAULT_TTL_SECS);
        assert!(looks_like_sandbox_token(&token));
        let claims = verify(KEY, &token, NOW + 10).expect("valid");
        assert_eq!(claims.thread_key, "thread-1");
        assert_eq!(claims.sandbox_id, "sbx-1");
        assert_eq!(claims.expires_at, NOW + DEFAULT_TTL_SECS);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let token = mint(KEY, "t", "s", NOW, 60);
        assert_eq!(
            verify(KEY, &token, NOW + 60),
            Err(SandboxTokenError::Expired)
        );
    }

    #[test]
    fn tokens_signed_with_another_key_are_refused() {
        let token = mint("another-key-another-key-another-key", "t", "s", NOW, 60);
        assert_eq!(
            verify(KEY, &token, NOW),
            Err(SandboxTokenError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_payload_breaks_the_signature() {
        let token = mint(KEY, "thread-1", "s", NOW, 60);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = SandboxClaims {
            thread_key: "thread-2".into(),
            sandbox_id: "s".into(),
            created_at: NOW,
            expires_at: NOW + 60,
        };
        let forged_payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).expect("json"));
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verify(KEY, &forged, NOW),
            Err(SandboxTokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "sbx1", "sbx1.a", "sbx2.a.b", "sbx1.a.b.c", "sbx1.!!.??"] {
            assert!(verify(KEY, bad, NOW).is_err(), "{bad}");
        }
    }
}
