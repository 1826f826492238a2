//! Text broken into rows of a given display width, after spaces where it can be: the
//! text fields, the Log's warnings and the confirmations' texts. Widths are measured per
//! grapheme, as ratatui draws them (a wide character takes two columns, "☺️" with its
//! variation selector too), so a row never runs past its edge.

use std::ops::Range;

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// `chars` in rows of at most `width` columns (character ranges), each broken after its
/// last space where it has one, else at the width (a word longer than a row is cut). A
/// space that would start the next row ends this one instead, past the edge, where it
/// shows nothing. A row holds at least one grapheme, so one wider than a row is not lost.
pub fn rows(chars: &[char], width: usize) -> Vec<Range<usize>> {
    let text: String = chars.iter().collect();
    // (first char, chars, columns, a space) of each grapheme.
    let mut units = Vec::new();
    let mut at = 0;
    for g in text.graphemes(true) {
        let n = g.chars().count();
        units.push((at, n, g.width(), g == " "));
        at += n;
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < units.len() {
        let (mut end, mut used) = (start, 0);
        while let Some(&(_, _, w, _)) = units.get(end) {
            if used + w > width && end > start {
                break;
            }
            used += w;
            end += 1;
        }
        if end < units.len() {
            if units[end].3 {
                end += 1;
            } else if let Some(k) = (start + 1..=end).rev().find(|&k| units[k - 1].3) {
                end = k;
            }
        }
        let first = units[start].0;
        let last = units[end - 1].0 + units[end - 1].1;
        out.push(first..last);
        start = end;
    }
    if out.is_empty() {
        out.push(0..0);
    }
    out
}

/// `text` in lines of at most `width` columns, broken after spaces (which are dropped
/// from the ends of the lines).
pub fn lines(text: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    rows(&chars, width)
        .into_iter()
        .map(|r| {
            chars[r]
                .iter()
                .collect::<String>()
                .trim_end_matches(' ')
                .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(text: &str, width: usize) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        rows(&chars, width)
            .into_iter()
            .map(|r| chars[r].iter().collect())
            .collect()
    }

    #[test]
    fn a_field_wraps_after_spaces_and_cuts_only_a_word_longer_than_a_row() {
        assert_eq!(
            wrapped("too deep in block 0", 7),
            ["too ", "deep in ", "block 0"]
        );
        // The space that would start a row ends the one before it.
        assert_eq!(wrapped("prune less", 5), ["prune ", "less"]);
        assert_eq!(wrapped("a abcdefghij b", 4), ["a ", "abcd", "efgh", "ij b"]);
        assert_eq!(wrapped("", 4), [""]);
        // Full-width characters take two columns, and a row never splits one.
        assert_eq!(wrapped("ディスク full", 5), ["ディ", "スク ", "full"]);
        assert_eq!(wrapped("ディ", 1), ["デ", "ィ"]);
        // An emoji with its variation selector is one grapheme of two columns (counted
        // per character it read as one, and 40 of them ran past the edge).
        assert_eq!(
            wrapped(&"☺\u{fe0f}".repeat(3), 4),
            ["☺\u{fe0f}☺\u{fe0f}", "☺\u{fe0f}"]
        );
        // A combining accent stays with its letter.
        assert_eq!(wrapped("cafe\u{301}s", 4), ["cafe\u{301}", "s"]);
        let text = "keep the attention layers of block 0 dense; prune the MLPs of 5–7";
        for w in 1..30 {
            let rows = wrapped(text, w);
            assert_eq!(rows.concat(), text, "{w}");
            for r in &rows {
                assert!(r.trim_end_matches(' ').width() <= w.max(2), "{w}: {r:?}");
                assert!(!r.starts_with(' ') || r.trim().is_empty(), "{w}: {r:?}");
            }
        }
    }

    #[test]
    fn lines_wrap_at_spaces_and_cut_only_a_word_longer_than_a_line() {
        assert_eq!(lines("one two three", 7), ["one two", "three"]);
        assert_eq!(lines("one two three", 13), ["one two three"]);
        // A row that ends in a space as it fills is whole (it went back to the space
        // before: "the", "raw").
        assert_eq!(lines("the raw answer", 8), ["the raw", "answer"]);
        assert_eq!(lines("a abcdefghij b", 4), ["a", "abcd", "efgh", "ij b"]);
        // Display columns, not characters: a warning naming a CJK file was cut at the
        // panel's edge.
        assert_eq!(lines("テーマ 名前 ok", 6), ["テーマ", "名前", "ok"]);
        for w in [1, 3, 5, 8] {
            let text = "needs at least 78 iterations, or a larger step";
            let lines = lines(text, w);
            assert!(lines.iter().all(|l| l.width() <= w), "{w}: {lines:?}");
            assert_eq!(
                lines.join(" ").split_whitespace().collect::<String>(),
                text.split_whitespace().collect::<String>()
            );
        }
    }
}
