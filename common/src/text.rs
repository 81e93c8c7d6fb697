//! Others' bytes made safe to show, one rule for the three programs: an action's output
//! relayed to the container log and returned by `log ID` ([`escape_output`]), an excerpt of
//! a bad request ([`excerpt`]), a service's reply or a schedule line quoted in the
//! scheduler's log and errors ([`shown`]). All come from outside (a callback prints what its
//! tools print; anyone who reaches a socket chooses the request), so none may steer a
//! terminal or forge log lines (review L5, M9).

use std::borrow::Cow;
use std::fmt::Write as _;

/// At most this many bytes of a bad request go to the log (DESIGN.md section 2 allows 200;
/// 150 keeps the whole line near 300 bytes).
pub const EXCERPT: usize = 150;

/// An output line as the log and `log ID` show it: valid UTF-8 text as it is, but every
/// control byte (C0 but TAB, DEL, C1) and every byte of invalid UTF-8 as `\xHH`, so ESC, CR
/// and the rest cannot move a terminal's cursor or fake the start of another line. A
/// backslash stays itself: the log is for people, and `\x1b` a callback printed as text is
/// harmless text.
pub fn escape_output(line: &[u8]) -> Cow<'_, [u8]> {
    if let Ok(s) = std::str::from_utf8(line) {
        if !s.chars().any(is_escaped) {
            return Cow::Borrowed(line);
        }
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_escaped(c) {
                let mut b = [0u8; 4];
                for &byte in c.encode_utf8(&mut b).as_bytes() {
                    hex(byte, &mut out);
                }
            } else {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
        for &b in chunk.invalid() {
            hex(b, &mut out);
        }
    }
    Cow::Owned(out)
}

fn is_escaped(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// Appends `b` as `\xHH` (lowercase): how the log, `log ID` and the journal file write a
/// byte they do not show as itself.
pub fn hex(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 15)],
    ]);
}

/// At most [`EXCERPT`] bytes of what a client sent, for one log field: escaped like Rust's
/// `escape_debug` (controls, bidi overrides such as U+202E, quotes), cut at a character,
/// and how much more there was.
pub fn excerpt(sent: &[u8]) -> String {
    let cut = sent.len().min(EXCERPT);
    let text = String::from_utf8_lossy(&sent[..cut]);
    // a character cut in two at the end is not the client's
    let text = text.trim_end_matches('\u{fffd}');
    let mut out: String = text.escape_debug().collect();
    if sent.len() > cut {
        out.push_str(&format!("... (+{} bytes)", sent.len() - cut));
    }
    out
}

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

/// Appends `s` to `out` as a JSON string, quotes included: `"` and `\` escaped, control
/// characters as `\n`, `\r`, `\t` or `\u00XX`, everything else as it is (JSON is UTF-8).
/// The one JSON escaper: the JSON log lines and `scheduler status --json`.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a JSON string ([`json_str`]).
pub fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    json_str(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings() {
        assert_eq!(json("plain"), "\"plain\"");
        assert_eq!(
            json("a \"b\" \\ \n\r\t\u{1}\u{1f} é \u{7f}"),
            "\"a \\\"b\\\" \\\\ \\n\\r\\t\\u0001\\u001f é \u{7f}\""
        );
        let mut out = String::from("x=");
        json_str(&mut out, "");
        assert_eq!(out, "x=\"\"");
    }

    #[test]
    fn output_controls_are_escaped() {
        assert!(matches!(
            escape_output(b"plain\ttext \\x1b"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            escape_output("caf\u{e9} \u{202e}".as_bytes()),
            Cow::Borrowed(_)
        ));
        let cases: [(&[u8], &[u8]); 6] = [
            (b"\x1b[31mred\x1b[0m", b"\\x1b[31mred\\x1b[0m"),
            (b"over\rwrite", b"over\\x0dwrite"),
            (b"nul\0del\x7f", b"nul\\x00del\\x7f"),
            (b"bad \xff\xfe utf8", b"bad \\xff\\xfe utf8"),
            ("csi \u{9b}2J".as_bytes(), b"csi \\xc2\\x9b2J"),
            (b"cut \xc3", b"cut \\xc3"),
        ];
        for (raw, want) in cases {
            assert_eq!(
                escape_output(raw).as_ref(),
                want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn excerpts_are_short_and_escaped() {
        let long = vec![b'x'; 4096];
        let e = excerpt(&long);
        assert_eq!(e, format!("{}... (+3946 bytes)", "x".repeat(150)));
        assert_eq!(excerpt(b"a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(excerpt("\u{202e}evil".as_bytes()), "\\u{202e}evil");
        // a character cut at the limit is left out, not shown as garbage
        let mut s = vec![b'y'; 149];
        s.extend_from_slice("é".as_bytes());
        assert_eq!(excerpt(&s), format!("{}... (+1 bytes)", "y".repeat(149)));
    }

    #[test]
    fn controls_and_format_characters_are_escaped_the_rest_kept() {
        assert_eq!(
            shown("a\u{1b}[31mb\rc\td\u{202e}e\u{9b}f \"é ✓\" \\ '"),
            "a\\u{1b}[31mb\\rc\\td\\u{202e}e\\u{9b}f \"é ✓\" \\ '"
        );
        assert_eq!(shown("plain text"), "plain text");
    }
}
