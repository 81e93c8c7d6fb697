//! Text from outside (a service's reply, a schedule line quoted in an error) made safe to
//! show: one place for the rule, used by the daemon's log and by `scheduler check`.

/// `text` made safe for one log line or a terminal: control characters (C0, DEL, C1),
/// format characters (U+202E and the like) and other characters that do not print are
/// written as Rust escapes (`\u{1b}`), so a reply cannot move the cursor, rewrite the line
/// or fake another log line on an operator's terminal.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let escaped = c.escape_debug();
        if escaped.len() > 1 && !matches!(c, '"' | '\'' | '\\') {
            out.extend(escaped);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_format_characters_are_escaped_the_rest_kept() {
        assert_eq!(
            shown("a\u{1b}[31mb\rc\td\u{202e}e\u{9b}f \"é ✓\" \\ '"),
            "a\\u{1b}[31mb\\rc\\td\\u{202e}e\\u{9b}f \"é ✓\" \\ '"
        );
        assert_eq!(shown("plain text"), "plain text");
    }
}
