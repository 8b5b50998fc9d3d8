//! Splitting long answers into Slack-sized messages.

/// Characters per posted message: well under Slack's limits, readable in a thread.
pub const MAX_CHUNK_CHARS: usize = 3_900;

/// Splits `text` into pieces of at most `max_chars` characters, preferring paragraph, then
/// line, then space boundaries. Empty text gives one empty piece.
pub fn split(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut chunks = Vec::new();
    let mut rest = text.trim_end();
    while rest.chars().count() > max_chars {
        let limit = rest
            .char_indices()
            .nth(max_chars)
            .map_or(rest.len(), |(index, _)| index);
        let window = &rest[..limit];
        let cut = ["\n\n", "\n", " "]
            .iter()
            .filter_map(|separator| window.rfind(separator).filter(|&at| at > 0))
            .next()
            .unwrap_or(limit);
        chunks.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    chunks.push(rest.to_owned());
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(split("PONG", 10), vec!["PONG"]);
    }

    #[test]
    fn paragraphs_are_preferred_to_lines_and_spaces() {
        let text = "first paragraph\n\nsecond one here";
        assert_eq!(split(text, 20), vec!["first paragraph", "second one here"]);
    }

    #[test]
    fn words_are_not_broken_when_a_space_is_available() {
        assert_eq!(split("aaa bbb ccc", 8), vec!["aaa bbb", "ccc"]);
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut_without_losing_characters() {
        let chunks = split(&"x".repeat(25), 10);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), "x".repeat(25));
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let text = "é".repeat(30);
        let chunks = split(&text, 7);
        assert!(chunks.iter().all(|c| c.chars().count() <= 7));
        assert_eq!(chunks.concat(), text);
    }
}
