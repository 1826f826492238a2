//! One vocabulary of actions, bound to keys by a YAML table with a description per binding.
//! The same table answers key presses, feeds the help overlay and the status bar's key list.

use anyhow::{anyhow, Context, Result};
use crossterm::event::KeyEvent;

pub use super::key::Key;
use serde::Deserialize;
use std::path::PathBuf;

const DEFAULT: &str = include_str!("keymap.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    ToggleChoice,
    Submit,
    Cancel,
    RowUp,
    RowDown,
    AddLayer,
    RemoveLayer,
    SwitchField,
    StepBack,
    StepForward,
    First,
    Last,
    PrevIteration,
    NextIteration,
    Goto,
    Verify,
    Approve,
    Edit,
    Override,
    Reject,
    Skip,
    ToggleAuto,
    TogglePause,
    Rollback,
    Stop,
    Left,
    Right,
    Up,
    Down,
    NextMetric,
    PrevMetric,
    NextPanel,
    PrevPanel,
    PageUp,
    PageDown,
    Details,
    Theme,
    Mouse,
    Help,
    Quit,
}

/// What the keyboard is talking to right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// The proposal editor (edit or override).
    Edit,
    /// A one-line text field (feedback, iteration number).
    Text,
    /// A confirmation or the checkpoint picker.
    Dialog,
}

impl Action {
    /// The help overlay's section for this action.
    pub fn section(self) -> &'static str {
        use Action::*;
        match self {
            ToggleChoice | Submit | Cancel => "Dialogs and text fields",
            RowUp | RowDown | AddLayer | RemoveLayer | SwitchField => "Editing a proposal",
            StepBack | StepForward | First | Last | PrevIteration | NextIteration | Goto
            | Verify => "Replay",
            _ => "Main screen",
        }
    }

    pub fn allowed(self, mode: Mode, replay: bool) -> bool {
        use Action::*;
        match self {
            ToggleChoice => mode == Mode::Dialog,
            Submit | Cancel => mode != Mode::Normal,
            RowUp | RowDown => matches!(mode, Mode::Edit | Mode::Dialog),
            AddLayer | RemoveLayer | SwitchField => mode == Mode::Edit,
            StepBack | StepForward | First | Last | PrevIteration | NextIteration | Goto
            | Verify => mode == Mode::Normal && replay,
            // The heatmap cursor also moves while editing, to pick layers to add.
            Left | Right | Up | Down => matches!(mode, Mode::Normal | Mode::Edit),
            // Paging scrolls the table being edited too.
            PageUp | PageDown => matches!(mode, Mode::Normal | Mode::Edit),
            _ => mode == Mode::Normal,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    action: Action,
    keys: Vec<String>,
    #[serde(default)]
    short: Option<String>,
    #[serde(default)]
    help: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub action: Action,
    pub keys: Vec<Key>,
    /// One word for the status bar.
    pub short: String,
    /// One line for the help overlay.
    pub help: String,
}

impl Binding {
    pub fn key_labels(&self) -> String {
        let labels: Vec<String> = self.keys.iter().map(Key::label).collect();
        labels.join(" ")
    }
}

#[derive(Debug, Clone)]
pub struct Keymap {
    pub bindings: Vec<Binding>,
}

fn entries(text: &str, origin: &str) -> Result<Vec<(Entry, Vec<Key>)>> {
    let list: Vec<Entry> =
        serde_yaml::from_str(text).map_err(|e| anyhow!("keymap {origin}: {e}"))?;
    list.into_iter()
        .map(|e| {
            let keys = e
                .keys
                .iter()
                .map(|k| Key::parse(k).with_context(|| format!("keymap {origin}: {:?}", e.action)))
                .collect::<Result<Vec<_>>>()?;
            Ok((e, keys))
        })
        .collect()
}

impl Keymap {
    /// The embedded defaults.
    pub fn builtin() -> Keymap {
        Keymap::from_yaml(DEFAULT).expect("the embedded keymap is valid")
    }

    pub fn from_yaml(text: &str) -> Result<Keymap> {
        let bindings = entries(text, "(embedded)")?
            .into_iter()
            .map(|(e, keys)| Binding {
                action: e.action,
                keys,
                short: e.short.unwrap_or_default(),
                help: e.help.unwrap_or_default(),
            })
            .collect();
        Ok(Keymap { bindings })
    }

    /// Replace the keys (and texts, when given) of the actions a user file names.
    pub fn overlay(&mut self, text: &str, origin: &str) -> Result<()> {
        for (e, keys) in entries(text, origin)? {
            let b = self
                .bindings
                .iter_mut()
                .find(|b| b.action == e.action)
                .ok_or_else(|| anyhow!("keymap {origin}: {:?} is not bindable", e.action))?;
            b.keys = keys;
            if let Some(s) = e.short {
                b.short = s;
            }
            if let Some(h) = e.help {
                b.help = h;
            }
        }
        Ok(())
    }

    /// The defaults plus the user's file, if there is one. A broken user file is reported
    /// (as the second value) and ignored, so a typo never locks the user out.
    pub fn load() -> (Keymap, Option<String>) {
        let explicit = std::env::var_os("ARBORIST_KEYMAP").is_some();
        Keymap::load_from(user_file(), explicit)
    }

    /// `path` is the user's file; `explicit` when named by ARBORIST_KEYMAP, so that even a
    /// missing one is reported (the default location may simply have none).
    pub fn load_from(path: Option<PathBuf>, explicit: bool) -> (Keymap, Option<String>) {
        let (map, warning) = Keymap::read(path, explicit);
        // A key with a line break (`keys: ["a\nb"]`) made a warning of two lines, and the
        // status line shows warnings whole on one.
        let warning = warning.map(|w| crate::agent::text::one_line(&w, usize::MAX));
        (map, warning)
    }

    fn read(path: Option<PathBuf>, explicit: bool) -> (Keymap, Option<String>) {
        let mut map = Keymap::builtin();
        let Some(path) = path else {
            return (map, None);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return (map, None),
            Err(e) => {
                let why = format!(
                    "keymap {}: cannot read it ({e}); the built-in keys apply",
                    path.display()
                );
                return (map, Some(why));
            }
        };
        let backup = map.clone();
        match map.overlay(&text, &path.display().to_string()) {
            Ok(()) => (map, None),
            Err(e) => (backup, Some(format!("{e:#}"))),
        }
    }

    /// The action of the first binding allowed in `mode` that matches the key.
    pub fn lookup(&self, key: &KeyEvent, mode: Mode, replay: bool) -> Option<Action> {
        self.bindings
            .iter()
            .find(|b| b.action.allowed(mode, replay) && b.keys.iter().any(|k| k.matches(key)))
            .map(|b| b.action)
    }

    pub fn binding(&self, action: Action) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.action == action)
    }
}

fn user_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ARBORIST_KEYMAP") {
        return Some(PathBuf::from(p));
    }
    config_dir().map(|d| d.join("keymap.yaml"))
}

/// $XDG_CONFIG_HOME/arborist or ~/.config/arborist.
pub fn config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("arborist"))
}
