//! A line of text with a cursor: the rejection's feedback, the iteration to go to, and the
//! override's reasoning. Typing inserts at the cursor; ← → home end move it, backspace
//! and delete remove around it. The cursor counts characters, not bytes.

use crossterm::event::KeyCode;

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

    fn byte(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }

    pub fn insert(&mut self, c: char) {
        let at = self.byte(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    pub fn insert_str(&mut self, s: &str) {
        let at = self.byte(self.cursor);
        self.text.insert_str(at, s);
        self.cursor += s.chars().count();
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
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.len(),
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.text.remove(self.byte(self.cursor));
            }
            KeyCode::Delete if self.cursor < self.len() => {
                self.text.remove(self.byte(self.cursor));
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
        s.chars().for_each(|c| t.insert(c));
        t
    }

    #[test]
    fn typing_goes_in_at_the_cursor() {
        let mut t = typed("too deep");
        for _ in 0..4 {
            t.on_key(KeyCode::Left);
        }
        t.insert_str("far ");
        assert_eq!(t.split(), ("too far ", "deep"));
        t.on_key(KeyCode::Delete);
        assert_eq!(t.as_str(), "too far eep");
        t.insert('d');
        t.on_key(KeyCode::Home);
        t.insert('T');
        t.on_key(KeyCode::Delete);
        assert_eq!(t.as_str(), "Too far deep");
        t.on_key(KeyCode::End);
        t.on_key(KeyCode::Backspace);
        assert_eq!(t.split(), ("Too far dee", ""));
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
