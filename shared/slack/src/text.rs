//! Slack message text made readable for an agent, and the harness and repository flags.

use centaur_core::Harness;

/// Removes mentions of the bot, turns Slack markup into plain text (`<url|label>` →
/// `label (url)`, `<@U123>` → `@U123`, `<#C1|general>` → `#general`, `<!here>` → `@here`)
/// and decodes the three entities Slack escapes.
pub fn readable(text: &str, bot_user_id: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        out.push_str(&render_token(&after[..end], bot_user_id));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    collapse_spaces(&decoded)
}

fn render_token(token: &str, bot_user_id: Option<&str>) -> String {
    let (target, label) = match token.split_once('|') {
        Some((target, label)) => (target, Some(label)),
        None => (token, None),
    };
    if let Some(user) = target.strip_prefix('@') {
        if Some(user) == bot_user_id {
            return String::new();
        }
        return format!("@{}", label.unwrap_or(user));
    }
    if let Some(channel) = target.strip_prefix('#') {
        return format!("#{}", label.unwrap_or(channel));
    }
    if let Some(special) = target.strip_prefix('!') {
        let name = special.split('^').next().unwrap_or(special);
        return format!("@{}", label.unwrap_or(name));
    }
    match label {
        Some(label) if label != target => format!("{label} ({target})"),
        _ => target.to_owned(),
    }
}

/// Trims each line and collapses runs of spaces, keeping line breaks.
fn collapse_spaces(text: &str) -> String {
    text.lines()
        .map(|line| {
            line.split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// The flags that pick a harness, without their dashes.
const FLAGS: [(&str, Harness); 6] = [
    ("codex", Harness::Codex),
    ("amp", Harness::Amp),
    ("claude-code", Harness::ClaudeCode),
    ("claude", Harness::ClaudeCode),
    ("pi-mono", Harness::PiMono),
    ("pi", Harness::PiMono),
];

/// Finds a harness selector (`--codex`, `--amp`, `--claude`/`--claude-code`,
/// `--pi`/`--pi-mono`, also written with an en or em dash as Slack's autocorrect does)
/// anywhere in the text; returns the text without it and the harness, if any. The first
/// selector wins; every selector is removed.
pub fn take_harness_flag(text: &str) -> (String, Option<Harness>) {
    let mut selected = None;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            line.split(' ')
                .filter(|word| match flag_harness(word) {
                    Some(harness) => {
                        selected.get_or_insert(harness);
                        false
                    }
                    None => true,
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (collapse_spaces(&lines.join("\n")), selected)
}

fn flag_harness(word: &str) -> Option<Harness> {
    let name = word
        .strip_prefix("--")
        .or_else(|| word.strip_prefix('\u{2013}'))
        .or_else(|| word.strip_prefix('\u{2014}'))?;
    FLAGS
        .iter()
        .find(|(flag, _)| flag.eq_ignore_ascii_case(name))
        .map(|(_, harness)| *harness)
}

/// The repository flag's name, without its dashes.
const REPO_FLAG: &str = "repo";

/// Finds a repository flag in **raw** Slack text (call before [`readable`]): `--repo
/// owner/name`, `--repo=owner/name`, also with an en or em dash as Slack's autocorrect
/// writes it. Returns the text without the flag and its value, and the value, unvalidated
/// (the API checks it). A value Slack turned into a link is read back as what was typed:
/// `<https://github.com/acme/api>` → `https://github.com/acme/api`, and an auto-linked
/// `<http://github.com/acme/api|github.com/acme/api>` → `https://github.com/acme/api`.
/// A flag without a value yields `Some("")`, which the API refuses. The first flag wins;
/// every one is removed.
pub fn take_repo_flag(raw: &str) -> (String, Option<String>) {
    let mut selected: Option<String> = None;
    let lines: Vec<String> = raw
        .lines()
        .map(|line| {
            let mut kept = Vec::new();
            let mut words = line.split(' ').filter(|word| !word.is_empty());
            while let Some(word) = words.next() {
                let Some(rest) = strip_dashes(word) else {
                    kept.push(word);
                    continue;
                };
                let value = if rest.eq_ignore_ascii_case(REPO_FLAG) {
                    words.next().unwrap_or_default()
                } else if let Some(value) = rest
                    .get(..REPO_FLAG.len() + 1)
                    .filter(|head| head.eq_ignore_ascii_case("repo="))
                    .map(|head| &rest[head.len()..])
                {
                    value
                } else {
                    kept.push(word);
                    continue;
                };
                let mut value = value.to_owned();
                // A link whose label has spaces spans several words: `<url|the repo>`.
                while value.starts_with('<') && !value.contains('>') {
                    let Some(next) = words.next() else { break };
                    value.push(' ');
                    value.push_str(next);
                }
                selected.get_or_insert_with(|| unlink(&value));
            }
            kept.join(" ")
        })
        .collect();
    (lines.join("\n"), selected)
}

fn strip_dashes(word: &str) -> Option<&str> {
    word.strip_prefix("--")
        .or_else(|| word.strip_prefix('\u{2013}'))
        .or_else(|| word.strip_prefix('\u{2014}'))
}

/// A flag value as the user typed it, if Slack wrapped it in `<target|label>`.
fn unlink(value: &str) -> String {
    let Some(inner) = value.strip_prefix('<').and_then(|v| v.strip_suffix('>')) else {
        return value.to_owned();
    };
    match inner.split_once('|') {
        Some((target, label)) if target == format!("http://{label}") => {
            format!("https://{label}")
        }
        Some((target, _)) => target.to_owned(),
        None => inner.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bot_mention_is_removed_and_other_mentions_kept() {
        assert_eq!(
            readable("<@UBOT> ask <@U123> about it", Some("UBOT")),
            "ask @U123 about it"
        );
    }

    #[test]
    fn links_channels_and_specials_become_readable() {
        assert_eq!(
            readable(
                "see <https://example.com|the docs>, <https://x.test> in <#C1|general> <!here>",
                None
            ),
            "see the docs (https://example.com), https://x.test in #general @here"
        );
    }

    #[test]
    fn entities_are_decoded_after_markup() {
        assert_eq!(readable("a &lt;b&gt; &amp; c", None), "a <b> & c");
    }

    #[test]
    fn every_selector_spelling_is_recognised_and_removed() {
        for (text, harness) in [
            ("--codex fix it", Harness::Codex),
            ("fix it --amp", Harness::Amp),
            ("fix --claude it", Harness::ClaudeCode),
            ("fix it --claude-code", Harness::ClaudeCode),
            ("\u{2014}pi fix it", Harness::PiMono),
            ("fix it \u{2013}pi-mono", Harness::PiMono),
        ] {
            assert_eq!(
                take_harness_flag(text),
                ("fix it".to_owned(), Some(harness)),
                "{text}"
            );
        }
    }

    #[test]
    fn text_without_a_selector_is_unchanged() {
        assert_eq!(
            take_harness_flag("use --verbose mode"),
            ("use --verbose mode".to_owned(), None)
        );
    }

    #[test]
    fn a_repo_flag_is_taken_with_its_value() {
        for (raw, repo) in [
            ("--repo acme/api fix it", "acme/api"),
            ("fix it --repo acme/api", "acme/api"),
            ("fix --repo=acme/api it", "acme/api"),
            ("fix it \u{2014}repo acme/api", "acme/api"),
            ("\u{2013}repo acme/api fix it", "acme/api"),
            ("fix it --REPO acme/api", "acme/api"),
            (
                "fix it --repo <https://github.com/acme/api>",
                "https://github.com/acme/api",
            ),
            (
                "fix it --repo <http://github.com/acme/api|github.com/acme/api>",
                "https://github.com/acme/api",
            ),
            (
                "fix it --repo <https://git.example.com/t/a.git|the repo>",
                "https://git.example.com/t/a.git",
            ),
            (
                "fix it --repo http://github.com/acme/api",
                "http://github.com/acme/api",
            ),
        ] {
            let (text, found) = take_repo_flag(raw);
            assert_eq!(found.as_deref(), Some(repo), "{raw}");
            assert_eq!(readable(&text, None), "fix it", "{raw}");
        }
    }

    #[test]
    fn the_first_repo_flag_wins_and_a_missing_value_is_empty() {
        assert_eq!(
            take_repo_flag("--repo a/b --repo c/d go"),
            ("go".to_owned(), Some("a/b".to_owned()))
        );
        assert_eq!(
            take_repo_flag("go --repo"),
            ("go".to_owned(), Some(String::new()))
        );
    }

    #[test]
    fn text_without_a_repo_flag_is_unchanged() {
        let raw = "<@UBOT> use --repository-mode and --repos\nsecond line";
        assert_eq!(take_repo_flag(raw), (raw.to_owned(), None));
    }

    #[test]
    fn repo_and_harness_flags_combine() {
        let (text, repo) = take_repo_flag("<@UBOT> --claude --repo acme/api fix it");
        let (text, harness) = take_harness_flag(&readable(&text, Some("UBOT")));
        assert_eq!(text, "fix it");
        assert_eq!(repo.as_deref(), Some("acme/api"));
        assert_eq!(harness, Some(Harness::ClaudeCode));
    }
}
