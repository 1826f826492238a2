//! The front end's own state (focus, cursor, dialogs, editor, toggles) and the pure step
//! from a key or mouse event to requests. The loop executes requests; every human decision
//! leaves here as an `Event` to feed the driver.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::Rect;

use super::editor::{Editor, Field};
use super::grid::Metric;
use super::keymap::{Action, Keymap, Mode};
use super::textfield::{self, TextField};
use super::theme::{Theme, Themes};
use super::view::View;
use crate::session::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Heatmap,
    Proposal,
    Reflection,
    Trends,
    Log,
}

impl Panel {
    pub const ALL: [Panel; 5] = [
        Panel::Heatmap,
        Panel::Proposal,
        Panel::Reflection,
        Panel::Trends,
        Panel::Log,
    ];

    pub fn step(self, by: isize) -> Panel {
        let i = Panel::ALL.iter().position(|p| *p == self).unwrap_or(0) as isize;
        Panel::ALL[(i + by).rem_euclid(Panel::ALL.len() as isize) as usize]
    }

    fn index(self) -> usize {
        Panel::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Quit,
    Stop,
    Rollback(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    None,
    Help {
        scroll: u16,
    },
    /// The session's options and the agent's prompt and raw reply (`i`).
    Details {
        scroll: u16,
    },
    /// Feedback text for a rejection.
    Feedback(TextField),
    /// Replay: the iteration to jump to.
    Goto(TextField),
    /// Choosing the checkpoint to roll back to.
    Picker {
        selected: usize,
    },
    /// A destructive action; `ok` false means the focus is on Cancel.
    Confirm {
        what: Confirm,
        ok: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    Back,
    Forward,
    First,
    Last,
    PrevIteration,
    NextIteration,
    Iteration(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Feed(Event),
    Quit,
    Seek(Seek),
    SetMouse(bool),
    Verify,
}

impl Areas {
    pub(crate) fn overlay(&mut self, scroll: Option<(u16, u16)>) {
        self.help_max = scroll.map(|s| s.0);
        self.help_page = scroll.map_or(0, |s| s.1);
    }
}

/// Where the last frame put things, for mouse clicks and keys that depend on the layout.
#[derive(Debug, Clone, Default)]
pub struct Areas {
    pub panels: Vec<(Panel, Rect)>,
    /// Heatmap grid: left, top, cell width, first block shown, blocks shown.
    pub heat: Option<(u16, u16, u16, usize, usize)>,
    /// Proposal table: the first row's screen line and the row index shown there.
    pub rows: Option<(u16, usize, usize)>,
    /// How far each text panel drawn could scroll (its wrapped lines past its height).
    pub scroll_max: Vec<(Panel, u16)>,
    /// How far the help or the details can scroll, while open, and the lines they show.
    pub help_max: Option<u16>,
    pub help_page: u16,
    /// The terminal is too small to draw the screen: only quitting (and a dialog it opens)
    /// takes keys, since nothing else that a key would change can be seen.
    pub too_small: bool,
    /// Too short for the heatmap and a panel: one of them fills the body, the proposal
    /// while one waits for review (`ui::render`).
    pub one_panel: bool,
}

pub struct App {
    pub keymap: Keymap,
    pub themes: Themes,
    pub focus: Panel,
    /// In compact layouts: the one panel shown under the heatmap.
    pub tab: Panel,
    /// Heatmap cursor: (block, kind index).
    pub cursor: (usize, usize),
    pub metric: Metric,
    scroll: [u16; 5],
    pub editor: Option<Editor>,
    /// The panel that had the focus when the editor took it.
    pub focus_before_edit: Option<Panel>,
    /// What the proposal panel showed at the last frame (iteration, steps, pending review).
    proposal_shown: Option<(usize, usize, bool)>,
    /// How many reflections the panel held at the last frame.
    reflections_shown: usize,
    pub overlay: Overlay,
    pub auto_approve: bool,
    pub paused: bool,
    pub notice: Option<Notice>,
    /// The phase the notice speaks of (an agent's retry): it goes when the phase ends, not
    /// only at the next key (a retry's warning stayed over the proposal it preceded).
    notice_while: Option<crate::session::Phase>,
    /// A failure that stays on screen (a compute job failed, the workers stopped).
    pub failure: Option<String>,
    /// Replay: the running or finished `--verify`, which stays until the next one.
    pub verdict: Option<Notice>,
    pub mouse: bool,
    pub areas: Areas,
    /// Rejection feedback closed with esc, and its iteration: `r` there reopens it, so a
    /// long text is not lost to a stray key.
    pub feedback_draft: Option<(usize, TextField)>,
    /// The session's warnings (the startup's, it cannot reach its target, a server that
    /// read part of a prompt), each after the events recorded when it was said, in that
    /// order: the Log panel keeps them, since the status line drops a notice at the next
    /// key.
    pub warnings: Vec<(usize, String)>,
    /// The events the Log showed at the last frame, to keep a scrolled-back view in place.
    pub log_events: usize,
    /// The details overlay's wrapped lines, kept between frames (`ui::details`).
    pub(crate) details_cache: std::cell::RefCell<Option<super::ui::DetailsCache>>,
}

impl App {
    pub fn new(keymap: Keymap, themes: Themes) -> App {
        App {
            keymap,
            themes,
            focus: Panel::Heatmap,
            tab: Panel::Proposal,
            cursor: (0, 0),
            metric: Metric::Combined,
            scroll: [0; 5],
            editor: None,
            focus_before_edit: None,
            proposal_shown: None,
            reflections_shown: 0,
            overlay: Overlay::None,
            auto_approve: false,
            paused: false,
            notice: None,
            notice_while: None,
            failure: None,
            verdict: None,
            mouse: true,
            areas: Areas::default(),
            feedback_draft: None,
            warnings: Vec::new(),
            log_events: 0,
            details_cache: Default::default(),
        }
    }

    /// A session warning: said on the status line and kept in the Log panel after the
    /// first `events` events.
    pub fn warn_kept(&mut self, events: usize, text: String) {
        self.say(Level::Warn, text.clone());
        self.warnings.push((events, text));
    }

    /// Warnings the status line has said (or summed up) already, kept in the Log panel
    /// after the first `events` events: the startup's (the log, keymap, themes, the file
    /// read) and, in replay, those of the file's events.
    pub fn keep_warnings(&mut self, events: usize, warnings: Vec<String>) {
        self.warnings
            .extend(warnings.into_iter().map(|w| (events, w)));
    }

    /// The warnings of a file's events, each after its event: a prompt the server did not
    /// read whole (as `replay --headless` prints them; a live run says only the first).
    pub fn keep_event_warnings(&mut self, events: &[crate::session::Event]) {
        for (k, e) in events.iter().enumerate() {
            if let Some(w) = e.unread_prompt() {
                self.keep_warnings(k + 1, vec![w]);
            }
        }
    }

    pub fn theme(&self) -> &Theme {
        self.themes.theme()
    }

    /// The panel pgup/pgdn scroll: the focused one; the proposal while editing (the table
    /// being edited); while the heatmap, which does not scroll, has the focus, the
    /// proposal, or the one panel drawn under it in a compact layout (pgdn did nothing
    /// there, under a proposal whose border said `↓ 5 more lines (pgdn)`).
    pub fn paged_panel(&self) -> Panel {
        if self.editor.is_some() {
            return Panel::Proposal;
        }
        if self.focus != Panel::Heatmap {
            return self.focus;
        }
        let drawn: Vec<Panel> = self.areas.panels.iter().map(|(p, _)| *p).collect();
        if drawn.contains(&Panel::Proposal) {
            return Panel::Proposal;
        }
        drawn
            .into_iter()
            .find(|&p| p != Panel::Heatmap)
            .unwrap_or(Panel::Proposal)
    }

    pub fn scroll(&self, p: Panel) -> u16 {
        self.scroll[p.index()]
    }

    pub fn scroll_to(&mut self, p: Panel, to: u16) {
        self.scroll[p.index()] = to;
    }

    /// Positive scrolls towards later text; the log counts back from its newest line.
    /// Bounded by the text the last frame drew, so scrolling back after the end takes no
    /// extra presses.
    pub fn scroll_by(&mut self, p: Panel, by: i32) {
        let by = if p == Panel::Log { -by } else { by };
        let max = (self.areas.scroll_max.iter())
            .find(|(q, _)| *q == p)
            .map_or(u16::MAX, |(_, m)| *m);
        let s = &mut self.scroll[p.index()];
        // From what is shown (the text may have shrunk under a larger offset).
        *s = ((*s).min(max) as i32 + by).clamp(0, max as i32) as u16;
    }

    pub fn mode(&self) -> Mode {
        match &self.overlay {
            Overlay::Picker { .. } | Overlay::Confirm { .. } => Mode::Dialog,
            Overlay::Feedback(_) | Overlay::Goto(_) => Mode::Text,
            _ if self.editor.is_some() => Mode::Edit,
            _ => Mode::Normal,
        }
    }

    pub fn say(&mut self, level: Level, text: impl Into<String>) {
        self.notice = Some(Notice {
            level,
            text: text.into(),
        });
        self.notice_while = None;
    }

    /// A notice that lasts while the session stays in `phase`.
    pub fn say_while(&mut self, phase: crate::session::Phase, level: Level, text: String) {
        self.say(level, text);
        self.notice_while = Some(phase);
    }

    /// One key press to requests. Text goes to the open field first, then the keymap.
    pub fn on_key(&mut self, key: KeyEvent, view: &View) -> Vec<Request> {
        if key.kind == KeyEventKind::Release {
            return vec![];
        }
        self.notice = None;
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        // ctrl-c always reaches quit, whatever the keymap or the open field says; a second
        // one at "quit while a step runs?" quits (it reopened the dialog on Cancel, so
        // pressing it again never got out). The file is whole after every event.
        if ctrl && key.code == KeyCode::Char('c') {
            if matches!(
                self.overlay,
                Overlay::Confirm {
                    what: Confirm::Quit,
                    ..
                }
            ) {
                self.overlay = Overlay::None;
                return vec![Request::Quit];
            }
            self.close_overlay(view);
            return self.on_action(Action::Quit, view);
        }
        // Too small to draw: only quit reaches anything, as the screen says, whatever was
        // open (a text field, the help or the picker kept its keys unseen, and took `q` as
        // text); a confirmation quit opens stays usable.
        if self.areas.too_small && !matches!(self.overlay, Overlay::Confirm { .. }) {
            if self.keymap.lookup(&key, Mode::Normal, !view.live()) != Some(Action::Quit) {
                return vec![];
            }
            self.close_overlay(view);
            return self.on_action(Action::Quit, view);
        }
        if let Overlay::Help { scroll } | Overlay::Details { scroll } = &mut self.overlay {
            let max = self.areas.help_max.unwrap_or(u16::MAX);
            // A page keeps one line of the last in view.
            let page = self.areas.help_page.saturating_sub(1).max(1);
            match key.code {
                KeyCode::Up | KeyCode::Char('k') => *scroll = scroll.saturating_sub(1),
                KeyCode::Down | KeyCode::Char('j') => *scroll = scroll.saturating_add(1).min(max),
                KeyCode::PageUp => *scroll = scroll.saturating_sub(page),
                KeyCode::PageDown => *scroll = scroll.saturating_add(page).min(max),
                KeyCode::Home | KeyCode::Char('g') => *scroll = 0,
                KeyCode::End | KeyCode::Char('G') => *scroll = max,
                _ => self.overlay = Overlay::None,
            }
            return vec![];
        }
        let plain = !ctrl && !key.modifiers.contains(KeyModifiers::ALT);
        if let Overlay::Feedback(t) | Overlay::Goto(t) = &mut self.overlay {
            match key.code {
                KeyCode::Char(c) if plain => {
                    if !t.insert(c) {
                        self.say(Level::Warn, textfield::full());
                    }
                    return vec![];
                }
                code if t.on_key(code) => return vec![],
                _ => {}
            }
        }
        if self.mode() == Mode::Edit {
            // In the table a character is text unless the keymap gives it a job while
            // editing (hjkl move the heatmap cursor, + adds its layer); in the reasoning
            // field every character is text.
            let command = self.keymap.lookup(&key, Mode::Edit, !view.live()).is_some();
            let ed = self.editor.as_mut().expect("edit mode has an editor");
            let typed = match key.code {
                KeyCode::Char(c) if plain && (ed.field == Field::Reasoning || !command) => {
                    Some(ed.type_char(c))
                }
                // In the reasoning field ← → home end move its cursor, not the heatmap's.
                code if ed.field == Field::Reasoning && ed.reasoning.on_key(code) => Some(Ok(())),
                KeyCode::Backspace => {
                    ed.backspace();
                    Some(Ok(()))
                }
                _ => None,
            };
            if let Some(result) = typed {
                if let Err(why) = result {
                    let why = self.with_keys(why, view);
                    self.say(Level::Warn, why);
                }
                self.revalidate(view);
                return vec![];
            }
        }
        match self.keymap.lookup(&key, self.mode(), !view.live()) {
            Some(a) => self.on_action(a, view),
            None => vec![],
        }
    }

    /// Pasted text (bracketed paste) goes into the open text field, line breaks as spaces,
    /// and never to the keymap: typed out, its line break would submit the field and the
    /// rest would run as commands.
    pub fn on_paste(&mut self, text: &str, view: &View) {
        self.notice = None;
        if self.areas.too_small {
            return;
        }
        let flat: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if let Overlay::Feedback(t) | Overlay::Goto(t) = &mut self.overlay {
            if !t.insert_str(&flat) {
                self.say(Level::Warn, textfield::full());
            }
            return;
        }
        if self.mode() != Mode::Edit || !matches!(self.overlay, Overlay::None) {
            self.say(
                Level::Info,
                "a paste goes into an open text field; none is open",
            );
            return;
        }
        let ed = self.editor.as_mut().expect("edit mode has an editor");
        let refused = ed.paste(flat.trim()).err();
        if let Some(why) = refused {
            let why = self.with_keys(why, view);
            self.say(Level::Warn, why);
        }
        self.revalidate(view);
    }

    /// Before a frame: a new proposal or a step's outcome in the proposal panel is shown
    /// from its top (the scroll kept from the one before hid the table's header), and a new
    /// reflection at the top of its panel.
    pub fn follow(&mut self, view: &View) {
        let m = view.machine;
        if self.notice_while.as_ref().is_some_and(|p| *p != m.phase) {
            self.notice = None;
            self.notice_while = None;
        }
        let shown = Some((m.iteration, m.history.len(), view.pending.is_some()));
        if self.proposal_shown != shown {
            self.proposal_shown = shown;
            if self.editor.is_none() {
                self.scroll_to(Panel::Proposal, 0);
            }
        }
        // The Reflection panel is newest first: a new one is shown at its top (a scroll
        // kept from before hid it above the view, with no mark).
        if self.reflections_shown != m.reflections.len() {
            self.reflections_shown = m.reflections.len();
            self.scroll_to(Panel::Reflection, 0);
        }
        // A Log scrolled back keeps its lines in view as events come and go (its scroll
        // counts back from the newest line, so new events moved what was being read).
        let events = view.events.len();
        let back = self.scroll(Panel::Log);
        if back > 0 && events != self.log_events {
            let moved = events as i64 - self.log_events as i64;
            self.scroll_to(
                Panel::Log,
                (back as i64 + moved).clamp(0, u16::MAX as i64) as u16,
            );
        }
        self.log_events = events;
    }

    /// The focused panel, or where the last frame drew a panel in its place: on a short
    /// screen the heatmap, focused at start, is not drawn, and tab moved the focus onto
    /// the panel already shown, so the first press changed nothing visible.
    pub fn shown_focus(&self) -> Panel {
        let drawn = |p: Panel| self.areas.panels.iter().any(|(q, _)| *q == p);
        if self.areas.panels.is_empty() || drawn(self.focus) {
            return self.focus;
        }
        (self.areas.panels.iter())
            .map(|(p, _)| *p)
            .find(|p| *p != Panel::Heatmap)
            .unwrap_or(self.focus)
    }

    /// The panel `by` steps from the one shown. On a screen with room for one panel the
    /// heatmap gives way to a proposal waiting for review or the editor, so the step
    /// passes over it: shift-tab from the proposal focused the heatmap and drew the
    /// proposal again.
    pub fn panel_step(&self, by: isize, reviewing: bool) -> Panel {
        let next = self.shown_focus().step(by);
        let hidden = self.areas.one_panel && (reviewing || self.editor.is_some());
        if next == Panel::Heatmap && hidden {
            return next.step(by);
        }
        next
    }

    pub fn focus_panel(&mut self, p: Panel) {
        self.focus = p;
        if p != Panel::Heatmap {
            self.tab = p;
        }
    }

    /// Re-check the editor's table against the machine's rules (shown inline, live).
    pub fn revalidate(&mut self, view: &View) {
        if let Some(ed) = self.editor.as_mut() {
            let (draft, mut problems) = ed.draft();
            problems.extend(
                view.machine
                    .check_decision(&draft)
                    .err()
                    .unwrap_or_default(),
            );
            ed.problems = problems;
        }
    }

    /// With auto-approve on and not paused: the approval to feed for a waiting proposal,
    /// or a skip after an agent failure (as headless records it).
    pub fn auto_decision(&self, view: &View) -> Option<Event> {
        let idle = self.editor.is_none() && self.overlay == Overlay::None;
        let p = view.pending.filter(|_| view.can_review())?;
        (self.auto_approve && !self.paused && idle)
            .then(|| Event::auto_decided(view.machine.iteration, p))
    }
}
