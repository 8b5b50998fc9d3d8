//! The agent harnesses a sandbox can run.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

/// An agent harness. `Echo` needs no model and exists for plumbing checks. Serialises as
/// its canonical name; deserialises from any name [`FromStr`] accepts (aliases included),
/// refusing others with [`UnknownHarness`]'s message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Harness {
    Codex,
    Amp,
    ClaudeCode,
    PiMono,
    Echo,
}

impl TryFrom<String> for Harness {
    type Error = UnknownHarness;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        raw.parse()
    }
}

impl<'de> Deserialize<'de> for Harness {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// The start of [`UnknownHarness`]'s message, for telling its error apart once a
/// deserialiser has turned it into text.
pub const UNKNOWN_HARNESS_MESSAGE: &str = "unknown harness '";

/// The harness name was not one of the allowed names or aliases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown harness '{0}'; allowed: codex, amp, claude-code, pi-mono, echo")]
pub struct UnknownHarness(pub String);

/// Where a harness's model credential is bound in iron-proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialBinding {
    /// Secret name, which is also the placeholder value the sandbox sees.
    pub secret: &'static str,
    /// The only upstream host the secret is injected for.
    pub host: &'static str,
    /// The header the proxy rewrites.
    pub header: &'static str,
}

impl Harness {
    /// Every harness, in display order.
    pub const ALL: [Harness; 5] = [
        Harness::Codex,
        Harness::Amp,
        Harness::ClaudeCode,
        Harness::PiMono,
        Harness::Echo,
    ];

    /// The canonical name used in the API, the database and pod labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Harness::Codex => "codex",
            Harness::Amp => "amp",
            Harness::ClaudeCode => "claude-code",
            Harness::PiMono => "pi-mono",
            Harness::Echo => "echo",
        }
    }

    /// The iron-proxy credential binding this harness needs (none for `echo`).
    pub fn credential_binding(self) -> Option<CredentialBinding> {
        match self {
            Harness::Codex => Some(CredentialBinding {
                secret: "OPENAI_API_KEY",
                host: "api.openai.com",
                header: "Authorization",
            }),
            Harness::Amp => Some(CredentialBinding {
                secret: "AMP_API_KEY",
                host: "ampcode.com",
                header: "Authorization",
            }),
            Harness::ClaudeCode | Harness::PiMono => Some(CredentialBinding {
                secret: "ANTHROPIC_API_KEY",
                host: "api.anthropic.com",
                header: "X-Api-Key",
            }),
            Harness::Echo => None,
        }
    }
}

impl FromStr for Harness {
    type Err = UnknownHarness;

    /// Accepts canonical names and the aliases `claude` and `pi`, case-insensitively.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "codex" => Ok(Harness::Codex),
            "amp" => Ok(Harness::Amp),
            "claude-code" | "claude" => Ok(Harness::ClaudeCode),
            "pi-mono" | "pi" => Ok(Harness::PiMono),
            "echo" => Ok(Harness::Echo),
            _ => Err(UnknownHarness(raw.to_owned())),
        }
    }
}

impl Harness {
    /// Every name a request may use: the canonical names, then the aliases.
    pub const ACCEPTED_NAMES: [&'static str; 7] = [
        "codex",
        "amp",
        "claude-code",
        "pi-mono",
        "echo",
        "claude",
        "pi",
    ];
}

impl utoipa::PartialSchema for Harness {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "An agent harness: `codex`, `amp`, `claude-code`, `pi-mono` or `echo` \
                 (requests may say `claude` for `claude-code` and `pi` for `pi-mono`; \
                 anything else is 422 `UNKNOWN_HARNESS`). Answers use the canonical names.",
            ))
            .enum_values(Some(Harness::ACCEPTED_NAMES))
            .into()
    }
}

impl utoipa::ToSchema for Harness {}

impl fmt::Display for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_canonical_harnesses() {
        assert_eq!("claude".parse::<Harness>(), Ok(Harness::ClaudeCode));
        assert_eq!("pi".parse::<Harness>(), Ok(Harness::PiMono));
        assert_eq!("CODEX".parse::<Harness>(), Ok(Harness::Codex));
    }

    #[test]
    fn unknown_harness_names_are_refused() {
        assert!("gpt".parse::<Harness>().is_err());
    }

    #[test]
    fn json_names_and_aliases_deserialise_and_others_say_unknown_harness() {
        let parse = |raw: &str| serde_json::from_str::<Harness>(raw);
        assert_eq!(parse("\"claude\"").ok(), Some(Harness::ClaudeCode));
        assert_eq!(parse("\"pi-mono\"").ok(), Some(Harness::PiMono));
        let err = parse("\"gpt\"").map(|_| ()).expect_err("refused");
        assert!(
            err.to_string().starts_with(UNKNOWN_HARNESS_MESSAGE),
            "{err}"
        );
        assert_eq!(
            serde_json::to_string(&Harness::ClaudeCode).ok().as_deref(),
            Some("\"claude-code\"")
        );
    }

    #[test]
    fn canonical_names_round_trip() {
        for harness in Harness::ALL {
            assert_eq!(harness.as_str().parse::<Harness>(), Ok(harness));
        }
    }

    #[test]
    fn claude_code_and_pi_mono_share_the_anthropic_binding() {
        let claude = Harness::ClaudeCode.credential_binding();
        assert_eq!(claude, Harness::PiMono.credential_binding());
        assert_eq!(claude.map(|b| b.header), Some("X-Api-Key"));
        assert_eq!(Harness::Echo.credential_binding(), None);
    }
}
