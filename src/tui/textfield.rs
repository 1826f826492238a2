//! A line of text with a cursor: the rejection's feedback, the iteration to go to, and the
//! override's reasoning. Typing inserts at the cursor; ← → home end move it, backspace
//! and delete remove around it. The cursor counts characters, not bytes, and moves and
//! deletes by grapheme: an accent typed as its own character, or an emoji with its
//! variation selector, goes as one.

use crossterm::event::KeyCode;
use unicode_segmentation::UnicodeSegmentation;

/// Most characters a field holds: feedback and an override's reasoning go into every
/// later prompt, and a pasted 100 KB took seconds to insert a character at a time.
pub const MAX_CHARS: usize = 2000;

/// What is said when a field is full.
pub fn full() -> String {
    format!("a text field holds at most {MAX_CHARS} characters; the rest was not taken")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextField {
    text: String,
    /// Characters before the cursor.
    cursor: usize,
}

impl TextField {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text before and after the cursor.
    pub fn split(&self) -> (&str, &str) {
        self.text.split_at(self.byte(self.cursor))
    }

    /// The text before the cursor, the grapheme under it ("" at the end) and the rest:
    /// the cursor is drawn by styling that grapheme, so no word moves as it moves.
    pub fn at_cursor(&self) -> (&str, &str, &str) {
        let (head, tail) = self.split();
        let under = tail.graphemes(true).next().unwrap_or("");
        (head, under, &tail[under.len()..])
    }

    fn byte(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }

    /// The character index of the grapheme boundary before the cursor (0 at the start).
    fn before(&self) -> usize {
        let (head, _) = self.split();
        let last = head
            .graphemes(true)
            .next_back()
            .map_or(0, |g| g.chars().count());
        self.cursor - last
    }

    /// The character index of the grapheme boundary after the cursor (the end at the end).
    fn after(&self) -> usize {
        let (_, tail) = self.split();
        let next = tail.graphemes(true).next().map_or(0, |g| g.chars().count());
        self.cursor + next
    }

    /// Inserts `c` at the cursor; false when the field is full.
    pub fn insert(&mut self, c: char) -> bool {
        if self.len() >= MAX_CHARS {
            return false;
        }
        let at = self.byte(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
        true
    }

    /// Inserts what fits of `s` at the cursor; false when some of it did not fit.
    pub fn insert_str(&mut self, s: &str) -> bool {
        let room = MAX_CHARS.saturating_sub(self.len());
        let cut = s.char_indices().nth(room).map_or(s.len(), |(i, _)| i);
        let at = self.byte(self.cursor);
        self.text.insert_str(at, &s[..cut]);
        self.cursor += s[..cut].chars().count();
        cut == s.len()
    }

    /// Whether `on_key` takes the key: it moves within the line or deletes.
    pub fn takes(code: KeyCode) -> bool {
        use KeyCode::*;
        matches!(code, Left | Right | Home | End | Backspace | Delete)
    }

    /// A key that edits or moves within the line; false for any other key (left to the
    /// keymap). Characters are typed with `insert`, since which ones are text depends on
    /// the field.
    pub fn on_key(&mut self, code: KeyCode) -> bool {
        if !Self::takes(code) {
            return false;
        }
        match code {
            KeyCode::Left => self.cursor = self.before(),
            KeyCode::Right => self.cursor = self.after(),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.len(),
            KeyCode::Backspace => {
                let from = self.before();
                self.text
                    .replace_range(self.byte(from)..self.byte(self.cursor), "");
                self.cursor = from;
            }
            KeyCode::Delete => {
                let to = self.after();
                self.text
                    .replace_range(self.byte(self.cursor)..self.byte(to), "");
            }
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> TextField {
        let mut t = TextField::default();
        s.chars().for_each(|c| assert!(t.insert(c)));
        t
    }

    #[test]
    fn a_field_holds_at_most_max_chars() {
        let mut t = typed("ab");
        t.on_key(KeyCode::Left);
        assert!(!t.insert_str(&"é".repeat(MAX_CHARS)));
        assert_eq!(t.as_str().chars().count(), MAX_CHARS);
        // The cut part went in at the cursor, which follows it.
        let (before, after) = t.split();
        assert_eq!((before.chars().count(), after), (MAX_CHARS - 1, "b"));
        assert!(!t.insert('x'));
        t.on_key(KeyCode::Backspace);
        assert!(t.insert('x') && !t.insert('y'));
        assert!(t.as_str().ends_with("éxb"));
    }

    #[test]
    fn typing_goes_in_at_the_cursor() {
        let mut t = typed("too deep");
        for _ in 0..4 {
            t.on_key(KeyCode::Left);
        }
        assert!(t.insert_str("far "));
        assert_eq!(t.split(), ("too far ", "deep"));
        t.on_key(KeyCode::Delete);
        assert_eq!(t.as_str(), "too far eep");
        assert!(t.insert('d'));
        t.on_key(KeyCode::Home);
        assert!(t.insert('T'));
        t.on_key(KeyCode::Delete);
        assert_eq!(t.as_str(), "Too far deep");
        t.on_key(KeyCode::End);
        t.on_key(KeyCode::Backspace);
        assert_eq!(t.split(), ("Too far dee", ""));
    }

    #[test]
    fn the_cursor_moves_and_deletes_whole_graphemes() {
        // An accent typed as its own character, and an emoji with its variation selector.
        let mut t = typed("cafe\u{301} \u{263a}\u{fe0f}!");
        t.on_key(KeyCode::Left);
        t.on_key(KeyCode::Left);
        assert_eq!(t.split(), ("cafe\u{301} ", "\u{263a}\u{fe0f}!"));
        t.on_key(KeyCode::Delete);
        assert_eq!(t.split(), ("cafe\u{301} ", "!"));
        t.on_key(KeyCode::Left);
        t.on_key(KeyCode::Backspace);
        assert_eq!(t.split(), ("caf", " !"));
        t.on_key(KeyCode::Right);
        t.on_key(KeyCode::Right);
        t.on_key(KeyCode::Right);
        assert_eq!(t.split(), ("caf !", ""));
        assert_eq!(t.at_cursor(), ("caf !", "", ""));
        // The cursor is drawn over the whole grapheme it stands on.
        let mut t = typed("e\u{301}\u{263a}\u{fe0f}");
        t.on_key(KeyCode::Home);
        assert_eq!(t.at_cursor(), ("", "e\u{301}", "\u{263a}\u{fe0f}"));
        t.on_key(KeyCode::Right);
        assert_eq!(t.at_cursor(), ("e\u{301}", "\u{263a}\u{fe0f}", ""));
    }

    #[test]
    fn the_cursor_counts_characters_and_stays_in_the_text() {
        let mut t = typed("é→x");
        t.on_key(KeyCode::Right);
        assert_eq!(t.split(), ("é→x", ""));
        t.on_key(KeyCode::Left);
        t.on_key(KeyCode::Backspace);
        assert_eq!(t.split(), ("é", "x"));
        t.on_key(KeyCode::Home);
        t.on_key(KeyCode::Backspace);
        t.on_key(KeyCode::Left);
        assert_eq!(t.split(), ("", "éx"));
        t.on_key(KeyCode::End);
        t.on_key(KeyCode::Delete);
        assert_eq!(t.as_str(), "éx");
        assert!(!t.on_key(KeyCode::Enter));
    }
}
