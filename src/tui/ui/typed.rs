//! A text field's text in rows that fit a width, with its cursor drawn over the grapheme
//! it stands on (on a space of its own at the end): the text dialogs and an override's
//! reasoning. An inserted `▏` took a column, so words moved between rows as it moved.

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use crate::tui::textfield::TextField;
use crate::tui::theme::Theme;
use crate::tui::wrap;

pub struct Typed {
    pub rows: Vec<Line<'static>>,
    /// The row the cursor is on.
    pub cursor_row: usize,
}

/// `label` (its text and style) then the field's text, broken after spaces one column
/// short of `width`: a space that ends a row hangs in that column, where the cursor on it
/// shows.
pub fn typed(t: &Theme, label: (&str, Style), field: &TextField, width: usize) -> Typed {
    let (before, under, after) = field.at_cursor();
    let under = if under.is_empty() { " " } else { under };
    let label_end = label.0.chars().count();
    let start = label_end + before.chars().count();
    let cursor = start..start + under.chars().count();
    let chars: Vec<char> = label
        .0
        .chars()
        .chain(before.chars())
        .chain(under.chars())
        .chain(after.chars())
        .collect();
    let style_of = |i: usize| {
        if i < label_end {
            label.1
        } else if cursor.contains(&i) {
            t.cursor()
        } else {
            t.text()
        }
    };
    let ranges = wrap::rows(&chars, width.saturating_sub(1).max(1));
    let cursor_row = ranges
        .iter()
        .position(|r| r.contains(&cursor.start))
        .unwrap_or(0);
    let rows = ranges
        .into_iter()
        .map(|r| {
            let mut spans = Vec::new();
            let mut i = r.start;
            while i < r.end {
                let style = style_of(i);
                let j = (i..r.end).find(|&j| style_of(j) != style).unwrap_or(r.end);
                spans.push(Span::styled(chars[i..j].iter().collect::<String>(), style));
                i = j;
            }
            Line::from(spans)
        })
        .collect();
    Typed { rows, cursor_row }
}
