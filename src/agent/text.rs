//! Text that came from an LLM or a server, made fit for one line of a terminal or log:
//! control characters (newlines, ESC sequences) escaped, length capped.

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
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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
    }
}
