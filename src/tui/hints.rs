//! Keys named in texts (dialog hints, the proposal panel, messages), taken from the keymap
//! in force, so a user's keymap is never contradicted by a text that names a built-in key
//! (`⏎ send` in a dialog whose submit the user had moved to ctrl-s).

use super::app::App;
use super::editor::{NO_REASON, NO_ROW};
use super::key::Key;
use super::keymap::{Action, Mode};
use super::view::View;

/// What a text shows of the keys that reach an action: every key of a dialog's switch (any
/// of them switches, and `←` alone read as doing nothing with the focus on the left
/// button), the first of any other action's; None when no key reaches it.
pub fn shown(action: Action, live: &[Key]) -> Option<String> {
    let first = live.first()?;
    Some(match action {
        Action::ToggleChoice => live.iter().map(Key::label).collect::<Vec<_>>().join("/"),
        _ => first.label(),
    })
}

/// The first plain letter or digit among `keys` ("h" of ←/h), to name a move by.
pub fn letter(keys: &[Key]) -> Option<String> {
    keys.iter()
        .find(|k| {
            !k.ctrl
                && !k.alt
                && matches!(k.code, crossterm::event::KeyCode::Char(c) if c.is_alphanumeric())
        })
        .map(Key::label)
}

impl App {
    /// The keys of `action` that reach it in `mode` (an earlier binding may take a key
    /// first, as ↑ picks a row while editing instead of moving in the heatmap).
    pub fn keys_in(&self, action: Action, mode: Mode, replay: bool) -> Vec<Key> {
        let Some(b) = self.keymap.binding(action) else {
            return vec![];
        };
        b.keys
            .iter()
            .filter(|k| self.keymap.lookup(&k.event(), mode, replay) == Some(action))
            .copied()
            .collect()
    }

    /// The key a text names for `action` in `mode`, as `shown` gives it; None when unbound.
    pub fn key(&self, action: Action, mode: Mode, replay: bool) -> Option<String> {
        shown(action, &self.keys_in(action, mode, replay))
    }

    /// The key to name in a message about `action` in `mode`; an unbound action reads as
    /// its word and says so.
    pub fn key_name(&self, action: Action, mode: Mode, replay: bool) -> String {
        self.key(action, mode, replay).unwrap_or_else(|| {
            let word = self.keymap.binding(action).map_or("", |b| b.short.as_str());
            format!("{word} (no key is bound to it)")
        })
    }

    /// A dialog's hint, "⏎ send · esc cancel": each part's keys (several actions' joined by
    /// "/") and its word; a part no key reaches is left out.
    pub fn hint(&self, parts: &[(&[Action], &str)], mode: Mode, replay: bool) -> String {
        let mut out = Vec::new();
        for (actions, word) in parts {
            let keys: Vec<String> = actions
                .iter()
                .filter_map(|&a| self.key(a, mode, replay))
                .collect();
            if !keys.is_empty() {
                out.push(format!("{} {word}", keys.join("/")));
            }
        }
        out.join(" · ")
    }

    /// An editor's problem with the keys that mend it: a value with no row to take it
    /// (the keys that add one), an override without its reasoning (the key to that field).
    pub fn with_keys(&self, why: String, view: &View) -> String {
        if why == NO_REASON {
            return match self.key(Action::SwitchField, Mode::Edit, false) {
                Some(k) => format!("{NO_REASON} ({k})"),
                None => format!("{NO_REASON} (no key is bound to switch_field, which goes there)"),
            };
        }
        if why != NO_ROW {
            return why;
        }
        let replay = !view.live();
        let moves = self.move_keys(Mode::Edit, replay);
        let add = self.key_name(Action::AddLayer, Mode::Edit, replay);
        format!("{NO_ROW}: move in the heatmap ({moves}) and press {add} to add one")
    }

    /// The heatmap's four moves, "hjkl" when each has a letter, else their first keys
    /// ("←/↓/↑/→").
    pub fn move_keys(&self, mode: Mode, replay: bool) -> String {
        let moves = [Action::Left, Action::Down, Action::Up, Action::Right];
        let keys: Vec<Vec<Key>> = moves
            .iter()
            .map(|&a| self.keys_in(a, mode, replay))
            .collect();
        if let Some(letters) = keys.iter().map(|k| letter(k)).collect::<Option<Vec<_>>>() {
            return letters.concat();
        }
        let firsts: Vec<String> = keys
            .iter()
            .filter_map(|ks| ks.first().map(Key::label))
            .collect();
        match firsts.is_empty() {
            true => "no key is bound to them".to_string(),
            false => firsts.join("/"),
        }
    }
}
