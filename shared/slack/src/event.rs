//! Parsing a verified Slack request and normalising the messages that start a turn.

use crate::text::{readable, take_harness_flag, take_repo_flag};
use centaur_core::Harness;
use serde_json::Value;

/// What a verified request asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackRequest {
    /// Slack checking the request URL: answer with the challenge.
    UrlVerification { challenge: String },
    /// A message that starts a turn.
    Message(Box<IncomingMessage>),
    /// Acknowledged and otherwise ignored (the reason is logged).
    Ignored { reason: &'static str },
}

/// A Slack message normalised for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// Slack's `event_id`, for logs.
    pub event_id: Option<String>,
    /// The Enterprise Grid organisation the event came through (`enterprise_id`), if any.
    pub enterprise_id: Option<String>,
    /// The author's own workspace (`event.user_team`, else `event.team`, else `team_id`):
    /// another organisation's id for a Slack Connect guest.
    pub author_team: String,
    /// The event happened in a channel shared with another organisation
    /// (`is_ext_shared_channel`).
    pub external_channel: bool,
    /// The bot's own user id (from `authorizations`, else `SLACK_BOT_USER_ID`).
    pub bot_user_id: Option<String>,
    /// Keys recorded in `slack_events`; the request is a duplicate if any is already there.
    /// `message:<team>:<channel>:<ts>` makes an `app_mention` and the `message` event for
    /// the same Slack message one turn.
    pub dedupe_keys: Vec<String>,
    pub team_id: String,
    pub channel: String,
    pub ts: String,
    /// The thread's root `ts` (the message's own `ts` when it starts a thread).
    pub thread_ts: String,
    pub user_id: Option<String>,
    /// `slack:<team>:<channel>:<thread_ts>`.
    pub thread_key: String,
    /// `slack:<team>:<channel>:<ts>`: the API message id and execute id, so retries of the
    /// same Slack message are idempotent end to end.
    pub message_id: String,
    /// Readable text, without the bot mention, the harness flag and the repository flag.
    pub text: String,
    /// The harness the message selects with a flag, if any.
    pub harness: Option<Harness>,
    /// The repository the message names with `--repo`, if any (unvalidated).
    pub repo: Option<String>,
}

/// The body was neither Slack JSON nor a Slack form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid_slack_payload: {0}")]
pub struct PayloadError(pub String);

/// Who the bot is and which other bots may start turns.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity<'a> {
    /// The bot's user id, when the payload carries no `authorizations`.
    pub bot_user_id: Option<&'a str>,
    /// Bot user ids or bot ids (`SLACK_ALLOWED_BOTS`) whose messages count.
    pub allowed_bots: &'a [String],
}

/// Parses a request body whose signature was verified.
pub fn parse(
    content_type: Option<&str>,
    body: &[u8],
    identity: Identity<'_>,
) -> Result<SlackRequest, PayloadError> {
    let starts_like_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let is_form = content_type
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
        || !starts_like_json;
    if is_form {
        return parse_form(body);
    }
    let payload: Value = serde_json::from_slice(body)
        .map_err(|err| PayloadError(format!("body is not JSON: {err}")))?;
    match payload["type"].as_str() {
        Some("url_verification") => payload["challenge"]
            .as_str()
            .map(|challenge| SlackRequest::UrlVerification {
                challenge: challenge.to_owned(),
            })
            .ok_or_else(|| PayloadError("url_verification without a challenge".into())),
        Some("event_callback") => Ok(normalise(&payload, identity)),
        Some(_) => Ok(SlackRequest::Ignored {
            reason: "unhandled_payload_type",
        }),
        None => Err(PayloadError("JSON body without a type".into())),
    }
}

/// Interactivity (`payload=` JSON) and slash commands: acknowledged, not turned into turns.
fn parse_form(body: &[u8]) -> Result<SlackRequest, PayloadError> {
    let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    if let Some((_, payload)) = fields.iter().find(|(key, _)| key == "payload") {
        serde_json::from_str::<Value>(payload)
            .map_err(|err| PayloadError(format!("payload field is not JSON: {err}")))?;
        return Ok(SlackRequest::Ignored {
            reason: "interaction",
        });
    }
    if fields.iter().any(|(key, _)| key == "command") {
        return Ok(SlackRequest::Ignored {
            reason: "slash_command",
        });
    }
    Err(PayloadError("form body without payload or command".into()))
}

fn normalise(payload: &Value, identity: Identity<'_>) -> SlackRequest {
    let ignored = |reason| SlackRequest::Ignored { reason };
    let event = &payload["event"];
    if !event.is_object() {
        return ignored("no_event");
    }
    let kind = event["type"].as_str().unwrap_or_default();
    if kind != "app_mention" && kind != "message" {
        return ignored("event_type");
    }
    let bot_user = payload["authorizations"]
        .as_array()
        .and_then(|all| all.iter().find_map(|a| a["user_id"].as_str()))
        .or(identity.bot_user_id);
    let bot_id = event["bot_id"]
        .as_str()
        .or_else(|| event["bot_profile"]["id"].as_str());
    let from_bot = bot_id.is_some() || event["bot_profile"].is_object();
    if let Some(subtype) = event["subtype"].as_str() {
        let bot_post = subtype == "bot_message" && from_bot;
        if subtype != "file_share" && !bot_post {
            return ignored("subtype");
        }
    }
    let user = event["user"].as_str();
    if user.is_some() && user == bot_user {
        return ignored("own_message");
    }
    if from_bot {
        let allowed = identity
            .allowed_bots
            .iter()
            .any(|allowed| Some(allowed.as_str()) == bot_id || Some(allowed.as_str()) == user);
        if !allowed {
            return ignored("bot_not_allowed");
        }
    }
    let Some(user) = user.or(if from_bot { bot_id } else { None }) else {
        return ignored("no_user");
    };
    let (Some(channel), Some(ts)) = (event["channel"].as_str(), event["ts"].as_str()) else {
        return ignored("no_channel_or_ts");
    };
    let raw_text = event["text"].as_str().unwrap_or_default();
    if kind == "message" && event["channel_type"].as_str() != Some("im") {
        let mentioned = bot_user.is_some_and(|bot| raw_text.contains(&format!("<@{bot}")));
        if !mentioned {
            return ignored("channel_message_without_mention");
        }
    }
    let team_id = payload["team_id"]
        .as_str()
        .or_else(|| event["team"].as_str())
        .unwrap_or("T0");
    let enterprise_id = payload["enterprise_id"]
        .as_str()
        .or_else(|| {
            payload["authorizations"]
                .as_array()
                .and_then(|all| all.iter().find_map(|a| a["enterprise_id"].as_str()))
        })
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let author_team = event["user_team"]
        .as_str()
        .or_else(|| event["team"].as_str())
        .unwrap_or(team_id);
    let thread_ts = event["thread_ts"].as_str().unwrap_or(ts);
    let (raw_text, repo) = take_repo_flag(raw_text);
    let (text, harness) = take_harness_flag(&readable(&raw_text, bot_user));
    if text.is_empty() {
        return ignored("empty_text");
    }
    let message_key = format!("{team_id}:{channel}:{ts}");
    let event_id = payload["event_id"].as_str().map(str::to_owned);
    let mut dedupe_keys = vec![format!("message:{message_key}")];
    if let Some(id) = &event_id {
        dedupe_keys.insert(0, format!("event:{id}"));
    }
    SlackRequest::Message(Box::new(IncomingMessage {
        event_id,
        enterprise_id,
        author_team: author_team.to_owned(),
        external_channel: payload["is_ext_shared_channel"] == true,
        bot_user_id: bot_user.map(str::to_owned),
        dedupe_keys,
        team_id: team_id.to_owned(),
        channel: channel.to_owned(),
        ts: ts.to_owned(),
        thread_ts: thread_ts.to_owned(),
        user_id: Some(user.to_owned()),
        thread_key: format!("slack:{team_id}:{channel}:{thread_ts}"),
        message_id: format!("slack:{message_key}"),
        text,
        harness,
        repo,
    }))
}

impl IncomingMessage {
    /// True for a reply inside a thread that someone else started (`thread_ts` ≠ `ts`).
    pub fn in_existing_thread(&self) -> bool {
        self.thread_ts != self.ts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn callback(event: Value) -> Vec<u8> {
        json!({
            "type": "event_callback", "team_id": "T1", "event_id": "Ev1",
            "authorizations": [{"user_id": "UBOT", "is_bot": true}],
            "event": event,
        })
        .to_string()
        .into_bytes()
    }

    fn message(event: Value) -> IncomingMessage {
        match parse(
            Some("application/json"),
            &callback(event),
            Identity::default(),
        )
        .expect("parses")
        {
            SlackRequest::Message(message) => *message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn ignored(event: Value) -> &'static str {
        match parse(
            Some("application/json"),
            &callback(event),
            Identity::default(),
        )
        .expect("parses")
        {
            SlackRequest::Ignored { reason } => reason,
            other => panic!("expected ignored, got {other:?}"),
        }
    }

    #[test]
    fn url_verification_returns_the_challenge() {
        let body = br#"{"type":"url_verification","challenge":"abc123","token":"x"}"#;
        assert_eq!(
            parse(Some("application/json"), body, Identity::default()),
            Ok(SlackRequest::UrlVerification {
                challenge: "abc123".into()
            })
        );
    }

    #[test]
    fn an_app_mention_becomes_a_message_with_thread_and_message_ids() {
        let m = message(json!({"type": "app_mention", "user": "U1", "channel": "C1",
            "ts": "1700000000.000100", "text": "<@UBOT> --claude reply with PONG"}));
        assert_eq!(m.thread_key, "slack:T1:C1:1700000000.000100");
        assert_eq!(m.message_id, "slack:T1:C1:1700000000.000100");
        assert_eq!(m.text, "reply with PONG");
        assert_eq!(m.harness, Some(Harness::ClaudeCode));
        assert_eq!(
            m.dedupe_keys,
            vec!["event:Ev1", "message:T1:C1:1700000000.000100"]
        );
    }

    #[test]
    fn a_repo_flag_is_taken_from_the_raw_text() {
        let m = message(json!({"type": "app_mention", "user": "U1", "channel": "C1",
            "ts": "1.0", "text": "<@UBOT> \u{2014}repo <https://github.com/acme/api> --amp fix &lt;it&gt;"}));
        assert_eq!(m.repo.as_deref(), Some("https://github.com/acme/api"));
        assert_eq!(m.harness, Some(Harness::Amp));
        assert_eq!(m.text, "fix <it>");
        let m = message(json!({"type": "app_mention", "user": "U1", "channel": "C1",
            "ts": "1.0", "text": "<@UBOT> no flags"}));
        assert_eq!(m.repo, None);
    }

    #[test]
    fn a_reply_in_a_thread_uses_the_root_ts_for_the_thread_key() {
        let m = message(json!({"type": "app_mention", "user": "U1", "channel": "C1",
            "ts": "2.0", "thread_ts": "1.0", "text": "<@UBOT> again"}));
        assert_eq!(m.thread_key, "slack:T1:C1:1.0");
        assert_eq!(m.message_id, "slack:T1:C1:2.0");
    }

    #[test]
    fn direct_messages_count_without_a_mention() {
        let m = message(
            json!({"type": "message", "channel_type": "im", "user": "U1",
            "channel": "D1", "ts": "1.0", "text": "hello"}),
        );
        assert_eq!(m.text, "hello");
    }

    #[test]
    fn channel_and_group_messages_count_only_with_a_mention() {
        for channel_type in ["channel", "group"] {
            assert_eq!(
                ignored(
                    json!({"type": "message", "channel_type": channel_type, "user": "U1",
                    "channel": "C1", "ts": "1.0", "text": "chatter"})
                ),
                "channel_message_without_mention"
            );
            let m = message(json!({"type": "message", "channel_type": channel_type,
                "user": "U1", "channel": "C1", "ts": "1.0", "text": "<@UBOT> help"}));
            assert_eq!(m.text, "help");
        }
    }

    #[test]
    fn bots_own_messages_edits_and_joins_are_ignored() {
        assert_eq!(
            ignored(
                json!({"type": "message", "channel_type": "im", "user": "UBOT",
                "channel": "D1", "ts": "1.0", "text": "my answer"})
            ),
            "own_message"
        );
        assert_eq!(
            ignored(
                json!({"type": "message", "channel_type": "im", "bot_id": "B9",
                "channel": "D1", "ts": "1.0", "text": "other bot"})
            ),
            "bot_not_allowed"
        );
        for subtype in ["message_changed", "message_deleted", "channel_join"] {
            assert_eq!(
                ignored(json!({"type": "message", "subtype": subtype, "user": "U1",
                    "channel": "C1", "ts": "1.0", "text": "<@UBOT> x"})),
                "subtype"
            );
        }
    }

    #[test]
    fn a_file_share_counts_as_a_message() {
        let m = message(json!({"type": "message", "subtype": "file_share",
            "channel_type": "im", "user": "U1", "channel": "D1", "ts": "1.0", "text": "see file"}));
        assert_eq!(m.text, "see file");
    }

    #[test]
    fn events_without_channel_or_ts_are_ignored() {
        assert_eq!(
            ignored(json!({"type": "app_mention", "user": "U1", "text": "<@UBOT> hi"})),
            "no_channel_or_ts"
        );
    }

    #[test]
    fn unparseable_bodies_are_payload_errors() {
        assert!(parse(Some("application/json"), b"{not json", Identity::default()).is_err());
        assert!(parse(
            Some("application/json"),
            b"{\"no\":\"type\"}",
            Identity::default()
        )
        .is_err());
        assert!(parse(None, b"garbage=1", Identity::default()).is_err());
    }

    #[test]
    fn interactions_and_slash_commands_are_acknowledged() {
        let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
        assert_eq!(
            parse(
                Some("application/x-www-form-urlencoded"),
                body,
                Identity::default()
            ),
            Ok(SlackRequest::Ignored {
                reason: "interaction"
            })
        );
        let body = b"command=%2Fcentaur&text=hi&team_id=T1";
        assert_eq!(
            parse(
                Some("application/x-www-form-urlencoded"),
                body,
                Identity::default()
            ),
            Ok(SlackRequest::Ignored {
                reason: "slash_command"
            })
        );
    }

    #[test]
    fn other_bots_count_only_when_allowed() {
        let body = callback(json!({"type": "app_mention", "bot_id": "B9", "user": "U9",
            "channel": "C1", "ts": "1.0", "text": "<@UBOT> deploy"}));
        let refused = parse(Some("application/json"), &body, Identity::default());
        assert_eq!(
            refused,
            Ok(SlackRequest::Ignored {
                reason: "bot_not_allowed"
            })
        );
        for allowed in ["B9", "U9"] {
            let list = [allowed.to_owned()];
            let identity = Identity {
                bot_user_id: None,
                allowed_bots: &list,
            };
            match parse(Some("application/json"), &body, identity) {
                Ok(SlackRequest::Message(m)) => {
                    assert_eq!(m.user_id.as_deref(), Some("U9"));
                    assert_eq!(m.text, "deploy");
                }
                other => panic!("{allowed}: {other:?}"),
            }
        }
        let legacy = callback(json!({"type": "message", "subtype": "bot_message",
            "bot_id": "B9", "channel": "D1", "channel_type": "im", "ts": "2.0", "text": "run"}));
        let list = ["B9".to_owned()];
        let identity = Identity {
            bot_user_id: None,
            allowed_bots: &list,
        };
        match parse(Some("application/json"), &legacy, identity) {
            Ok(SlackRequest::Message(m)) => assert_eq!(m.user_id.as_deref(), Some("B9")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_authors_team_and_the_shared_channel_flag_are_read() {
        let m = message(json!({"type": "app_mention", "user": "U1", "channel": "C1",
            "ts": "1.0", "text": "<@UBOT> hi"}));
        assert_eq!((m.author_team.as_str(), m.external_channel), ("T1", false));
        let body = json!({
            "type": "event_callback", "team_id": "T1", "enterprise_id": "E1",
            "event_id": "Ev2", "is_ext_shared_channel": true,
            "authorizations": [{"user_id": "UBOT"}],
            "event": {"type": "app_mention", "user": "UGUEST", "user_team": "TOTHER",
                      "channel": "C1", "ts": "1.0", "thread_ts": "0.5", "text": "<@UBOT> hi"},
        });
        match parse(
            Some("application/json"),
            body.to_string().as_bytes(),
            Identity::default(),
        ) {
            Ok(SlackRequest::Message(m)) => {
                assert_eq!(m.author_team, "TOTHER");
                assert!(m.external_channel);
                assert_eq!(m.enterprise_id.as_deref(), Some("E1"));
                assert_eq!(m.bot_user_id.as_deref(), Some("UBOT"));
                assert!(m.in_existing_thread());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_callback_without_an_event_object_is_ignored_not_an_error() {
        for event in [json!(null), json!("text"), json!([1])] {
            let body = json!({"type": "event_callback", "team_id": "T1", "event": event});
            assert_eq!(
                parse(
                    Some("application/json"),
                    body.to_string().as_bytes(),
                    Identity::default()
                ),
                Ok(SlackRequest::Ignored { reason: "no_event" })
            );
        }
    }
}
