//! Text from outside (Knox's answers, published files read back) made safe to show: in a log
//! line, on a terminal, or inside the JSON that `status --json` and `tokens list --json` print.
//!
//! A newline in a value forges a log line; an ESC, a C1 control or a bidi override repaints,
//! retitles or reorders what a terminal shows. [`escape`] writes every such character as a
//! visible escape (`\n`, `\u{1b}`), so the value shows as one inert run of text. It is for
//! display only: it is not reversible (a backslash is left as it is), and nothing parses its
//! output.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a log line or a terminal raw: a C0 control (tab, CR, LF and ESC
/// included), DEL, a C1 control, a bidirectional override or isolate (the "Trojan Source"
/// characters), or a Unicode line or paragraph separator.
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}'
        )
}

/// Whether `s` shows as it is, with nothing to escape.
pub(crate) fn is_plain(s: &str) -> bool {
    !s.chars().any(needs_escape)
}

/// `s` with every character of [`needs_escape`] written as `\n`, `\r`, `\t` or `\u{hex}`;
/// borrowed when there is nothing to escape.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if is_plain(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// At most `max` characters of `s`, with `...` appended when it was cut.
pub(crate) fn shorten(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((i, _)) => Cow::Owned(format!("{}...", &s[..i])),
        None => Cow::Borrowed(s),
    }
}

/// [`escape`] of the first `max` characters of `s`: a Knox value quoted in a message.
pub(crate) fn quote(s: &str, max: usize) -> String {
    escape(&shorten(s, max)).into_owned()
}

/// JSON text as `serde_json` writes it, with the characters of [`needs_escape`] that it leaves
/// raw (DEL, C1 controls, bidi controls, line separators) written as `\uXXXX` escapes. The
/// JSON means the same: `serde_json` already escapes C0 controls, and outside strings it
/// writes none of these characters.
pub(crate) fn escape_json(json: &str) -> Cow<'_, str> {
    if is_plain(json) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if needs_escape(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_forge_a_line_or_drive_a_terminal() {
        let check = |s: &str, want: &str| assert_eq!(escape(s), want, "{s:?}");
        check("d161cac1-f93e-4229", "d161cac1-f93e-4229");
        check("caf\u{e9} \"q\" \\ ok", "caf\u{e9} \"q\" \\ ok");
        check("a\nb\r\nc\td", "a\\nb\\r\\nc\\td");
        check("\u{1b}[31mred\u{1b}[0m", "\\u{1b}[31mred\\u{1b}[0m");
        check("\0\u{7}\u{7f}\u{85}\u{9b}", "\\u{0}\\u{7}\\u{7f}\\u{85}\\u{9b}");
        check("abc\u{202e}fed\u{2066}x\u{2069}", "abc\\u{202e}fed\\u{2066}x\\u{2069}");
        check("a\u{2028}b\u{200f}", "a\\u{2028}b\\u{200f}");
        for s in ["\u{1b}]0;t\u{7}", "x\u{202a}\u{202b}\u{202c}\u{202d}", "\u{61c}\u{200e}\u{2029}"] {
            assert!(is_plain(&escape(s)), "{s:?}");
        }
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn shortens_by_characters() {
        assert_eq!(shorten("abcdef", 3), "abc...");
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("\u{e9}\u{e9}\u{e9}\u{e9}", 2), "\u{e9}\u{e9}...");
        assert_eq!(quote("a\nbcdef", 3), "a\\nb...");
    }

    #[test]
    fn json_stays_the_same_json_without_raw_controls() {
        let value = serde_json::json!({"id": "a\u{1b}b\u{9b}c\u{202e}d\u{7f}\u{2028}\n", "n": 1});
        let text = value.to_string();
        let safe = escape_json(&text);
        assert!(is_plain(&safe), "{safe:?}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), value);
        assert!(matches!(escape_json("{\"a\":1}"), Cow::Borrowed(_)));
    }
}
