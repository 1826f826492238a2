//! What each action does to the front end's state, and which actions make sense right now
//! (the status bar lists only those).

use super::app::{App, Confirm, Level, Overlay, Panel, Request, Seek};
use super::editor::{EditKind, Editor};
use super::grid::{Grid, KINDS};
use super::keymap::{Action, Binding, Key, Mode};
use super::textfield::TextField;
use super::view::View;
use crate::session::{Decision, Event};
use crossterm::event::KeyCode;

fn decided(view: &View, decision: Decision) -> Request {
    Request::Feed(Event::Decided {
        iteration: view.machine.iteration,
        by: "human".into(),
        decision,
    })
}

impl App {
    pub fn on_action(&mut self, a: Action, view: &View) -> Vec<Request> {
        use Action::*;
        let steers = matches!(
            a,
            Approve | Edit | Override | Reject | Skip | Rollback | ToggleAuto | TogglePause | Stop
        );
        match a {
            // After a failed write or a stopped worker nothing more is recorded here: the
            // keys that steer the session did nothing, unsaid, and quitting asked about a
            // worker whose work could not be kept.
            _ if steers && view.live() && self.failure.is_some() => {
                let quit = self.key_name(Quit, Mode::Normal, false);
                self.say(
                    Level::Warn,
                    format!("this session cannot go on in this process (see the error): quit with {quit}; --resume continues it from its file"),
                )
            }
            Quit if self.failure.is_some() => return vec![Request::Quit],
            // One answer for every steering key once the session is over (b and the
            // decisions spoke of a proposal or a step).
            _ if steers && view.live() && view.machine.is_done() => self.say(
                Level::Info,
                "the session is finished: nothing more to decide",
            ),
            Quit if view.busy() => {
                self.overlay = Overlay::Confirm {
                    what: Confirm::Quit,
                    ok: false,
                }
            }
            Quit => return vec![Request::Quit],
            Help => self.overlay = Overlay::Help { scroll: 0 },
            Details => self.overlay = Overlay::Details { scroll: 0 },
            // A replayed proposal "waiting for review" was decided long ago.
            Approve | Edit | Override | Reject | Skip | Rollback if !view.live() => {
                self.say(Level::Info, "replay is read-only")
            }
            Approve | Edit | Override | Reject | Skip if !view.can_review() => {
                self.say(Level::Warn, "no proposal is waiting for review")
            }
            // Approved, the empty proposal of an agent failure would be recorded as an
            // approval of nothing (the machine skips it).
            Approve | Edit if view.agent_failed_review() => {
                let key = |a: Action| self.key_name(a, Mode::Normal, false);
                let msg = format!(
                    "nothing to approve or edit: the agent gave no valid proposal ({} override, {} ask again, {} skip)",
                    key(Override),
                    key(Reject),
                    key(Skip)
                );
                self.say(Level::Warn, msg)
            }
            Approve => return vec![decided(view, Decision::Approve)],
            Skip => {
                // Said: the next proposal can be the same, and only the iteration moved.
                let it = view.machine.iteration;
                self.say(Level::Info, format!("iteration {it} skipped"));
                return vec![decided(view, Decision::Skip)];
            }
            Edit => {
                self.editor = view.pending.map(Editor::edit);
                self.open_editor(view);
            }
            Override => {
                self.editor = Some(Editor::new_override());
                self.open_editor(view);
            }
            Reject => {
                let draft = match self.feedback_draft.take() {
                    Some((i, text)) if i == view.machine.iteration => text,
                    _ => TextField::default(),
                };
                self.overlay = Overlay::Feedback(draft);
            }
            ToggleAuto if view.can_stop() => {
                self.auto_approve = !self.auto_approve;
                let on = if self.auto_approve { "on" } else { "off" };
                self.say(Level::Info, format!("auto-approve {on}"));
            }
            TogglePause if view.can_stop() => {
                self.paused = !self.paused;
                // Said when auto-approve then takes the proposal on screen at once (it
                // said only "resumed", and the proposal was approved by auto).
                let msg = match (self.paused, self.auto_approve && view.can_review()) {
                    (true, _) => "paused: the next proposal waits for you",
                    (false, true) => "resumed: auto-approve approves the proposal waiting",
                    (false, false) => "resumed",
                };
                self.say(Level::Info, msg);
            }
            Rollback if view.can_rollback() => {
                let selected = view.machine.checkpoints.len() - 2;
                self.overlay = Overlay::Picker { selected };
            }
            Rollback => self.say(
                Level::Warn,
                "roll back while a proposal waits for review, after at least one accepted step",
            ),
            Stop if view.can_stop() => {
                self.overlay = Overlay::Confirm {
                    what: Confirm::Stop,
                    ok: false,
                }
            }
            Left | Right | Up | Down => self.move_or_scroll(a, view),
            NextMetric => self.metric = self.metric.step(1),
            PrevMetric => self.metric = self.metric.step(-1),
            NextPanel => self.focus_panel(self.panel_step(1, view.can_review())),
            PrevPanel => self.focus_panel(self.panel_step(-1, view.can_review())),
            PageUp | PageDown => {
                // A page is what the panel shows less one line, kept in view (a fixed 10
                // skipped lines in panels that show fewer).
                let p = self.paged_panel();
                let rows = (self.areas.panels.iter())
                    .find(|(q, _)| *q == p)
                    .map_or(12, |(_, r)| r.height.saturating_sub(2));
                let page = i32::from(rows.saturating_sub(1).max(1));
                self.scroll_by(p, if a == PageUp { -page } else { page });
            }
            Theme => {
                self.themes.next();
                let name = self.theme().name.clone();
                self.say(Level::Info, format!("theme {name}"));
            }
            Mouse => {
                self.mouse = !self.mouse;
                let msg = if self.mouse {
                    "mouse capture on: click and scroll the panels".to_string()
                } else {
                    format!(
                        "mouse capture off: the terminal selects text ({} turns it back on)",
                        self.key_name(Mouse, Mode::Normal, !view.live())
                    )
                };
                self.say(Level::Info, msg);
                return vec![Request::SetMouse(self.mouse)];
            }
            StepBack | First | PrevIteration if !self.valid(a, view) => {
                self.say(Level::Info, "at the first event: nothing before it")
            }
            StepForward | Last | NextIteration if !self.valid(a, view) => {
                self.say(Level::Info, "at the last event the file holds")
            }
            StepBack => return vec![Request::Seek(Seek::Back)],
            StepForward => return vec![Request::Seek(Seek::Forward)],
            First => return vec![Request::Seek(Seek::First)],
            Last => return vec![Request::Seek(Seek::Last)],
            PrevIteration => return vec![Request::Seek(Seek::PrevIteration)],
            NextIteration => return vec![Request::Seek(Seek::NextIteration)],
            Goto => self.overlay = Overlay::Goto(TextField::default()),
            Verify => return vec![Request::Verify],
            RowUp | RowDown => {
                let by = if a == RowUp { -1 } else { 1 };
                if let Overlay::Picker { selected } = &mut self.overlay {
                    let last = view.machine.checkpoints.len().saturating_sub(2) as isize;
                    *selected = (*selected as isize + by).clamp(0, last.max(0)) as usize;
                } else if let Some(ed) = self.editor.as_mut() {
                    ed.select(by);
                    self.keep_row_visible();
                }
            }
            AddLayer => {
                self.add_focused_layer(view);
                self.keep_row_visible();
            }
            RemoveLayer => {
                if let Some(ed) = self.editor.as_mut() {
                    ed.remove();
                }
                self.revalidate(view);
            }
            SwitchField => {
                if let Some(ed) = self.editor.as_mut() {
                    ed.switch_field();
                }
            }
            ToggleChoice => {
                if let Overlay::Confirm { ok, .. } = &mut self.overlay {
                    *ok = !*ok;
                }
            }
            Submit => return self.submit(view),
            Cancel if self.overlay == Overlay::None => self.close_editor(),
            Cancel => self.close_overlay(view),
            // Said rather than ignored: a key that does nothing looks like a frozen screen.
            ToggleAuto | TogglePause | Stop if !view.live() => {
                self.say(Level::Info, "replay is read-only")
            }
            ToggleAuto | TogglePause | Stop if view.loading.is_some() => {
                self.say(Level::Info, "the model is still loading")
            }
            ToggleAuto | TogglePause | Stop if view.machine.stop_requested => self.say(
                Level::Info,
                "the session stops at the end of this step, as you asked",
            ),
            ToggleAuto | TogglePause | Stop => self.say(
                Level::Info,
                "the session is finished: nothing more to decide",
            ),
        }
        vec![]
    }

    /// Close the open dialog; rejection feedback typed into it is kept for `r`.
    pub fn close_overlay(&mut self, view: &View) {
        if let Overlay::Feedback(text) = std::mem::replace(&mut self.overlay, Overlay::None) {
            if !text.as_str().trim().is_empty() {
                self.feedback_draft = Some((view.machine.iteration, text));
                let r = self.key_name(Action::Reject, Mode::Normal, false);
                self.say(Level::Info, format!("feedback kept: {r} reopens it"));
            }
        }
    }

    /// An editor opens on its table: the proposal panel scrolls back to the top (it may
    /// have been paged down into the reasoning) and takes the focus.
    fn open_editor(&mut self, view: &View) {
        if self.focus != Panel::Proposal {
            self.focus_before_edit = Some(self.focus);
        }
        self.focus_panel(Panel::Proposal);
        self.tab = Panel::Proposal;
        self.scroll_to(Panel::Proposal, 0);
        self.revalidate(view);
    }

    /// The editor closes (sent or cancelled): the focus goes back where it was before it
    /// opened (it stayed on the proposal, so the arrows scrolled it instead of moving the
    /// heatmap cursor), and the table is shown from its top.
    fn close_editor(&mut self) {
        self.editor = None;
        if let Some(p) = self.focus_before_edit.take() {
            self.focus_panel(p);
        }
        self.scroll_to(Panel::Proposal, 0);
    }

    /// Scroll the proposal panel so the editor's selected row is on screen (the table
    /// starts on the panel's second line, under its header).
    fn keep_row_visible(&mut self) {
        let Some(ed) = &self.editor else { return };
        let line = 1 + ed.selected as u16;
        let height = self
            .areas
            .panels
            .iter()
            .find(|(p, _)| *p == Panel::Proposal)
            .map_or(0, |(_, r)| r.height.saturating_sub(2));
        let top = self.scroll(Panel::Proposal);
        if line <= top {
            self.scroll_to(Panel::Proposal, line.saturating_sub(1));
        } else if height > 0 && line >= top + height {
            self.scroll_to(Panel::Proposal, line + 1 - height);
        }
    }

    fn move_or_scroll(&mut self, a: Action, view: &View) {
        let vertical = matches!(a, Action::Up | Action::Down);
        if vertical && self.focus != Panel::Heatmap && self.editor.is_none() {
            self.scroll_by(self.focus, if a == Action::Up { -1 } else { 1 });
            return;
        }
        let blocks = Grid::build(view.machine, &[]).blocks.max(1);
        let (b, k) = &mut self.cursor;
        match a {
            Action::Left => *b = b.saturating_sub(1),
            Action::Right => *b = (*b + 1).min(blocks - 1),
            Action::Up => *k = k.saturating_sub(1),
            _ => *k = (*k + 1).min(KINDS.len() - 1),
        }
    }

    fn add_focused_layer(&mut self, view: &View) {
        let grid = Grid::build(view.machine, &[]);
        let Some(cell) = grid.cell(self.cursor.0, self.cursor.1) else {
            let moves = self.move_keys(Mode::Edit, !view.live());
            return self.say(
                Level::Warn,
                format!("move the heatmap cursor ({moves}) onto a layer first"),
            );
        };
        let b = &view.machine.opts.bounds;
        let start = (cell.sparsity + b.max_step).min(b.max_layer_sparsity);
        let name = cell.name.to_string();
        if let Some(ed) = self.editor.as_mut() {
            ed.add(&name, start);
        }
        self.revalidate(view);
    }

    fn submit(&mut self, view: &View) -> Vec<Request> {
        match std::mem::replace(&mut self.overlay, Overlay::None) {
            // After an agent failure an empty text asks again without feedback.
            Overlay::Feedback(text)
                if text.as_str().trim().is_empty() && !view.agent_failed_review() =>
            {
                self.overlay = Overlay::Feedback(text);
                let esc = self.key_name(Action::Cancel, Mode::Text, !view.live());
                self.say(
                    Level::Warn,
                    format!("type the feedback for the agent, or {esc} to cancel"),
                );
            }
            Overlay::Feedback(_) if !view.can_review() => {
                self.say(Level::Warn, "the proposal is no longer waiting for review")
            }
            Overlay::Feedback(text) => {
                let feedback = text.as_str().trim().to_string();
                self.feedback_draft = None;
                return vec![decided(view, Decision::Reject { feedback })];
            }
            Overlay::Goto(text) => {
                let typed = text.as_str().trim().to_string();
                if let Ok(n) = typed.parse::<usize>() {
                    return vec![Request::Seek(Seek::Iteration(n))];
                }
                // The field stays open to be corrected, as the message says (it closed).
                self.overlay = Overlay::Goto(text);
                if typed.is_empty() {
                    let esc = self.key_name(Action::Cancel, Mode::Text, true);
                    self.say(
                        Level::Warn,
                        format!("type an iteration number, or {esc} to cancel"),
                    )
                } else if typed.bytes().all(|b| b.is_ascii_digit()) {
                    // All digits: a number, just past any session's iterations.
                    self.say(Level::Warn, format!("no iteration {typed} in this session"))
                } else {
                    self.say(Level::Warn, format!("`{typed}` is not an iteration number"))
                }
            }
            Overlay::Picker { selected } => {
                self.overlay = Overlay::Confirm {
                    what: Confirm::Rollback(selected),
                    ok: false,
                }
            }
            Overlay::Confirm { ok: false, .. } => {}
            Overlay::Confirm { what, ok: true } => {
                return vec![match what {
                    Confirm::Quit => Request::Quit,
                    Confirm::Stop => Request::Feed(Event::StopRequested { by: "human".into() }),
                    Confirm::Rollback(checkpoint) => Request::Feed(Event::RollbackTo {
                        checkpoint,
                        by: "human".into(),
                    }),
                }]
            }
            Overlay::None | Overlay::Help { .. } | Overlay::Details { .. } => {
                return self.submit_editor(view)
            }
        }
        vec![]
    }

    fn submit_editor(&mut self, view: &View) -> Vec<Request> {
        if self.editor.is_none() {
            return vec![];
        }
        if !view.can_review() {
            self.close_editor();
            self.say(Level::Warn, "the proposal is no longer waiting for review");
            return vec![];
        }
        self.revalidate(view);
        let ed = self.editor.as_ref().expect("checked above");
        if !ed.problems.is_empty() {
            // The first problem in the message: under a long table its line can be
            // out of view (at 80x24 it was, and the message only said "see the table").
            let n = ed.problems.len();
            let more = match n {
                1 => String::new(),
                n => format!(" (and {} more under the table)", n - 1),
            };
            let first = self.with_keys(ed.problems[0].clone(), view);
            self.say(Level::Error, format!("not sent: {first}{more}"));
            return vec![];
        }
        let d = ed.decision().expect("validated");
        self.close_editor();
        if d == Decision::Approve {
            self.say(Level::Info, "nothing was changed: recorded as approved");
        }
        vec![decided(view, d)]
    }

    /// Whether an action would do something now (for the status bar).
    pub fn valid(&self, a: Action, view: &View) -> bool {
        use Action::*;
        let ed = self.editor.as_ref();
        let stopped = view.live() && self.failure.is_some();
        match a {
            Approve | Edit | Override | Reject | Skip | Rollback | Stop | ToggleAuto
            | TogglePause
                if stopped =>
            {
                false
            }
            Approve | Edit => view.can_review() && !view.agent_failed_review(),
            Override | Reject | Skip => view.can_review(),
            Rollback => view.can_rollback(),
            Stop => view.can_stop(),
            ToggleAuto | TogglePause => view.can_stop(),
            SwitchField => ed.is_some_and(|e| e.kind == EditKind::Override),
            RemoveLayer => ed.is_some_and(|e| !e.rows.is_empty()),
            RowUp | RowDown => {
                matches!(self.overlay, Overlay::Picker { .. })
                    || ed.is_some_and(|e| e.rows.len() > 1)
            }
            ToggleChoice => matches!(self.overlay, Overlay::Confirm { .. }),
            // Replay's moves where they lead somewhere (they did nothing, unsaid, at the ends).
            StepBack | First | PrevIteration => view.replay.is_some_and(|r| r.index > 0),
            StepForward | Last | NextIteration => view.replay.is_some_and(|r| r.index < r.total),
            _ => true,
        }
    }

    /// The keys of a binding that reach it now (an earlier binding may take a key first,
    /// as ← steps back in replay instead of moving in the heatmap; in the override's
    /// reasoning field a plain character is text, `+` and `hjkl` too, and the keys that
    /// edit a line move its cursor or delete).
    pub fn live_keys(&self, b: &Binding, view: &View) -> Vec<Key> {
        let mode = self.mode();
        let typing = self
            .editor
            .as_ref()
            .is_some_and(|e| e.field == super::editor::Field::Reasoning)
            && mode == super::keymap::Mode::Edit;
        let text_key = |k: &Key| {
            !k.ctrl && !k.alt && (matches!(k.code, KeyCode::Char(_)) || TextField::takes(k.code))
        };
        self.keys_in(b.action, mode, !view.live())
            .into_iter()
            .filter(|k| !typing || !text_key(k))
            .collect()
    }

    /// Bindings usable in the current mode and state, in table order.
    pub fn valid_now<'k>(&'k self, view: &View) -> Vec<&'k Binding> {
        let mode = self.mode();
        self.keymap
            .bindings
            .iter()
            .filter(|b| b.action.allowed(mode, !view.live()) && self.valid(b.action, view))
            .collect()
    }
}
