//! Text that came from an LLM or a server, made fit for one line of a terminal or log:
//! control characters (newlines, ESC sequences) and bidirectional formatting characters
//! escaped, length capped.

/// `s` on one line: control characters written as escapes (`\n`, `\u{1b}`), at most `max`
/// characters of it kept, and the cut said: `…(+1234 chars)`.
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    for (kept, c) in chars.by_ref().enumerate() {
        if kept == max {
            let rest = 1 + chars.count();
            out.push_str(&format!("…(+{rest} chars)"));
            return out;
        }
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that reorder the text around them in a terminal that applies bidi (an
/// override such as U+202E could make an error line read as something else).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Longest reply text quoted in an error line or printed as an event.
pub const MAX_SHOWN: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_and_caps_the_length() {
        assert_eq!(
            one_line("I cannot help.\nThis violates policy.", 100),
            "I cannot help.\\nThis violates policy."
        );
        assert_eq!(one_line("a\u{1b}[31mred\r\t", 100), "a\\u{1b}[31mred\\r\\t");
        assert_eq!(one_line("abcdef", 3), "abc…(+3 chars)");
        assert_eq!(one_line("abc", 3), "abc");
        assert_eq!(one_line("héllo wörld", 100), "héllo wörld");
        assert_eq!(
            one_line("bad \u{202e}key\u{2066}x\u{200f}", 100),
            "bad \\u{202e}key\\u{2066}x\\u{200f}"
        );
        assert_eq!(one_line("مرحبا", 100), "مرحبا");
    }
}
