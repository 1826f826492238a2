//! The proposal editor: the agent's table pre-filled (edit) or empty (override), changed in
//! place. It only produces a `Decision`; the machine's own rules judge it before it is sent.

use super::textfield::TextField;
use crate::agent::{parse::shown, LayerTarget, Proposal};
use crate::session::Decision;
use crossterm::event::KeyCode;

/// A value typed with no row to take it; the app adds which keys make one (the keymap's).
pub const NO_ROW: &str = "no row to type into";
/// An override without its reasoning; the app adds the key to the field (the keymap's).
pub const NO_REASON: &str = "override: write why in the reasoning field";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditKind {
    Edit,
    Override,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Table,
    Reasoning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    /// The proposed sparsity as typed.
    pub value: String,
    /// Added by the reviewer (not in the agent's proposal).
    pub added: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Editor {
    pub kind: EditKind,
    pub rows: Vec<Row>,
    pub selected: usize,
    pub reasoning: TextField,
    pub field: Field,
    /// Why the current table cannot be sent; shown under it.
    pub problems: Vec<String>,
    /// The next digit replaces the value instead of extending it (just selected).
    fresh: bool,
    /// The table as the agent proposed it (edit): sent unchanged, it is an approval.
    original: Vec<Row>,
}

/// The most characters a typed value may have ("0.123456", "12.3456%").
pub const MAX_VALUE_LEN: usize = 8;

/// "0.35", ".35" or "35%" as a fraction of weights pruned, in [0, 1).
pub fn parse_value(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (t, 1.0),
    };
    // An emptied value read "`` is not a number".
    if num.is_empty() {
        return Err("no value yet (type 0.35 or 35%)".into());
    }
    let v = num
        .parse::<f64>()
        .map(|v| v * scale)
        .map_err(|_| format!("`{t}` is not a number (type 0.35 or 35%)"))?;
    if !(0.0..1.0).contains(&v) {
        return Err(format!("{t} is not a sparsity in [0, 1)"));
    }
    Ok(v)
}

impl Editor {
    /// Values are pre-filled to 6 decimals, as prompts show them, so an untouched row
    /// sends what was proposed (within the rules' tolerance for shown values).
    pub fn edit(p: &Proposal) -> Editor {
        let rows = p
            .layers
            .iter()
            .map(|l| Row {
                name: l.name.clone(),
                value: shown(l.sparsity),
                added: false,
            })
            .collect::<Vec<_>>();
        Editor {
            kind: EditKind::Edit,
            original: rows.clone(),
            rows,
            selected: 0,
            reasoning: TextField::default(),
            field: Field::Table,
            problems: Vec::new(),
            fresh: true,
        }
    }

    pub fn new_override() -> Editor {
        Editor {
            kind: EditKind::Override,
            rows: Vec::new(),
            selected: 0,
            reasoning: TextField::default(),
            field: Field::Table,
            problems: Vec::new(),
            fresh: true,
            original: Vec::new(),
        }
    }

    /// An edit that changed nothing: sent, it is recorded as an approval (of the exact
    /// values proposed, not the 6 decimals shown), so the log does not claim an edit.
    pub fn unchanged(&self) -> bool {
        self.kind == EditKind::Edit && self.rows == self.original
    }

    /// A printable character, kept as typed: any to the reasoning; an ASCII one to the
    /// selected value (one that does not parse shows as a problem). Err says why the
    /// character was not taken: never silently dropped.
    pub fn type_char(&mut self, c: char) -> Result<(), String> {
        if self.field == Field::Reasoning {
            return match self.reasoning.insert(c) {
                true => Ok(()),
                false => Err(super::textfield::full()),
            };
        }
        let Some(row) = self.rows.get_mut(self.selected) else {
            return Err(NO_ROW.into());
        };
        // A sparsity is written in ASCII; a wide character would also shift the table's
        // columns (other letters are kept, and the row says it is not a number).
        if !c.is_ascii_graphic() {
            return Err(format!(
                "`{c}` cannot be part of a sparsity (type 0.35 or 35%)"
            ));
        }
        if self.fresh {
            row.value.clear();
            self.fresh = false;
        }
        if row.value.chars().count() >= MAX_VALUE_LEN {
            return Err(format!(
                "a value has at most {MAX_VALUE_LEN} characters (backspace to change it)"
            ));
        }
        row.value.push(c);
        Ok(())
    }

    /// Pasted text: into the reasoning whole (as far as it fits); into a value as typed,
    /// unless it is longer than any value.
    pub fn paste(&mut self, text: &str) -> Result<(), String> {
        if self.field == Field::Reasoning {
            return match self.reasoning.insert_str(text) {
                true => Ok(()),
                false => Err(super::textfield::full()),
            };
        }
        if text.chars().count() > MAX_VALUE_LEN {
            return Err(format!(
                "a value has at most {MAX_VALUE_LEN} characters; the paste has {}",
                text.chars().count()
            ));
        }
        text.chars().try_for_each(|c| self.type_char(c))
    }

    pub fn backspace(&mut self) {
        if self.field == Field::Reasoning {
            self.reasoning.on_key(KeyCode::Backspace);
        } else if let Some(row) = self.rows.get_mut(self.selected) {
            row.value.pop();
            self.fresh = false;
        }
    }

    pub fn select(&mut self, by: isize) {
        if self.rows.is_empty() {
            return;
        }
        let n = self.rows.len() as isize;
        self.selected = (self.selected as isize + by).clamp(0, n - 1) as usize;
        self.fresh = true;
    }

    /// Add a layer (or select it when it is already listed) with a starting value.
    pub fn add(&mut self, name: &str, start: f64) {
        if let Some(i) = self.rows.iter().position(|r| r.name == name) {
            self.selected = i;
        } else {
            self.rows.push(Row {
                name: name.to_string(),
                value: shown(start),
                added: true,
            });
            self.selected = self.rows.len() - 1;
        }
        self.field = Field::Table;
        self.fresh = true;
    }

    pub fn remove(&mut self) {
        if self.selected < self.rows.len() {
            self.rows.remove(self.selected);
            self.selected = self.selected.min(self.rows.len().saturating_sub(1));
            self.fresh = true;
        }
    }

    pub fn switch_field(&mut self) {
        if self.kind == EditKind::Override {
            self.field = match self.field {
                Field::Table => Field::Reasoning,
                Field::Reasoning => Field::Table,
            };
        }
    }

    /// The rows that parse, for the heatmap's live preview.
    pub fn preview(&self) -> Vec<LayerTarget> {
        self.rows
            .iter()
            .filter_map(|r| {
                parse_value(&r.value).ok().map(|s| LayerTarget {
                    name: r.name.clone(),
                    sparsity: s,
                })
            })
            .collect()
    }

    /// The decision as far as it parses, and what does not parse (the machine's rules are
    /// checked on the draft by the caller, so every problem shows at once).
    pub fn draft(&self) -> (Decision, Vec<String>) {
        let mut problems = Vec::new();
        let mut layers = Vec::new();
        for r in &self.rows {
            match parse_value(&r.value) {
                Ok(s) => layers.push(LayerTarget {
                    name: r.name.clone(),
                    sparsity: s,
                }),
                Err(e) => problems.push(format!("{}: {e}", r.name)),
            }
        }
        if self.kind == EditKind::Override && self.reasoning.as_str().trim().is_empty() {
            problems.push(NO_REASON.to_string());
        }
        let d = match self.kind {
            EditKind::Edit if self.unchanged() => Decision::Approve,
            EditKind::Edit => Decision::Edit { layers },
            EditKind::Override => Decision::Override {
                layers,
                reasoning: self.reasoning.as_str().trim().to_string(),
            },
        };
        (d, problems)
    }

    /// The decision, or what keeps the table from being one (before the machine's rules).
    pub fn decision(&self) -> Result<Decision, Vec<String>> {
        match self.draft() {
            (d, p) if p.is_empty() => Ok(d),
            (_, p) => Err(p),
        }
    }
}
