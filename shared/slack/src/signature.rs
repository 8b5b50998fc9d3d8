//! Slack's v0 request signatures: `v0=` + hex HMAC-SHA256(signing secret,
//! `v0:<timestamp>:<raw body>`), with a 300 s replay window.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Requests older or newer than this (seconds) are refused as replays.
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a request's signature was refused; the `error` Slack gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing_signature")]
    Missing,
    #[error("stale_timestamp")]
    Stale,
    #[error("invalid_signature")]
    Invalid,
}

impl SignatureError {
    /// The `error` code of the 401 body.
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing_signature",
            SignatureError::Stale => "stale_timestamp",
            SignatureError::Invalid => "invalid_signature",
        }
    }
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// The `X-Slack-Signature` value for `body` sent at `timestamp` (what Slack computes).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Verifies the `X-Slack-Request-Timestamp` and `X-Slack-Signature` headers over the raw
/// body, `now` being Unix seconds.
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Invalid)?;
    if (now - sent).abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let expected = sign(secret, timestamp, body);
    if expected
        .as_bytes()
        .ct_eq(signature.trim().as_bytes())
        .into()
    {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const NOW: i64 = 1_531_420_618;

    #[test]
    fn slacks_documented_example_verifies() {
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(
            verify(SECRET, Some("1531420618"), Some(signature), body, NOW),
            Ok(())
        );
    }

    #[test]
    fn a_forged_signature_is_invalid() {
        let signature = sign("another secret", "1531420618", b"{}");
        assert_eq!(
            verify(SECRET, Some("1531420618"), Some(&signature), b"{}", NOW),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn a_tampered_body_is_invalid() {
        let signature = sign(SECRET, "1531420618", b"{\"a\":1}");
        assert_eq!(
            verify(
                SECRET,
                Some("1531420618"),
                Some(&signature),
                b"{\"a\":2}",
                NOW
            ),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn a_timestamp_outside_five_minutes_is_stale() {
        let old = (NOW - 301).to_string();
        let signature = sign(SECRET, &old, b"{}");
        assert_eq!(
            verify(SECRET, Some(&old), Some(&signature), b"{}", NOW),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn missing_headers_are_reported_as_missing() {
        assert_eq!(
            verify(SECRET, None, Some("v0=00"), b"{}", NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some("1531420618"), None, b"{}", NOW),
            Err(SignatureError::Missing)
        );
    }
}
