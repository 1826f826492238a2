//! One session driven as the run loop drives the app (key → requests → the driver or the
//! timeline, auto-approve, then a frame), with the checks after every input. A failed
//! check panics; `main` catches it and reports the session.

use arborist::session::{Event, Machine};
use arborist::tui::app::{App, Confirm, Overlay, Request, Seek};
use arborist::tui::editor::MAX_VALUE_LEN;
use arborist::tui::fixtures::{self, draw};
use arborist::tui::grid::KINDS;
use arborist::tui::keymap::Mode;
use arborist::tui::replay::Timeline;
use arborist::tui::textfield::{TextField, MAX_CHARS};
use arborist::tui::view::View;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;

use crate::common;
use crate::gen::{Input, Kind, Session};
use crate::Counts;

const OPTIONS: &str = "model: legacy\nagent: builtin\n";

enum State<'t> {
    Live { m: Box<Machine>, events: Vec<Event> },
    Replay(&'t mut Timeline),
}

impl State<'_> {
    fn view(&self) -> View<'_> {
        match self {
            State::Live { m, events } => fixtures::view(m, events),
            State::Replay(t) => common::replay_view(t, OPTIONS),
        }
    }
}

fn live(kind: Kind) -> (Machine, Vec<Event>) {
    match kind {
        Kind::Reviewing { blocks } => fixtures::reviewing(blocks),
        Kind::ReviewingLater { steps } => {
            let (mut m, mut events) = fixtures::reviewing(8);
            for i in 0..steps {
                fixtures::step(&mut m, &mut events, 10.0 + 0.01 * i as f64);
                fixtures::next_proposal(&mut m, &mut events);
            }
            (m, events)
        }
        Kind::AgentFailed => common::agent_failed(),
        Kind::Approved => common::approved(),
        Kind::Proposing => fixtures::profiled(8),
        Kind::Finished => {
            let (mut m, mut events) = fixtures::reviewing(8);
            let stop = Event::StopRequested { by: "human".into() };
            fixtures::feed(&mut m, &mut events, stop);
            assert!(m.is_done());
            (m, events)
        }
        Kind::Replay { .. } => unreachable!("replay is not live"),
    }
}

/// Every text a field holds: the open one, a kept draft, the editor's reasoning and values.
fn texts(a: &App) -> Vec<&str> {
    let mut out = Vec::new();
    if let Overlay::Feedback(t) | Overlay::Goto(t) = &a.overlay {
        out.push(t.as_str());
    }
    if let Some((_, t)) = &a.feedback_draft {
        out.push(t.as_str());
    }
    if let Some(ed) = &a.editor {
        out.push(ed.reasoning.as_str());
        out.extend(ed.rows.iter().map(|r| r.value.as_str()));
    }
    out
}

fn typed_chars(a: &App) -> usize {
    texts(a).iter().map(|t| t.chars().count()).sum()
}

/// What the app shows is one of its modes, each with what it needs, and nothing a replay
/// (read-only) or a live session (no `g` jump) cannot have.
fn check_state(a: &App, st: &State) {
    let replay = matches!(st, State::Replay(_));
    match a.mode() {
        Mode::Normal => assert!(a.editor.is_none(), "normal mode with an editor"),
        Mode::Edit => assert!(a.editor.is_some(), "edit mode without an editor"),
        Mode::Text => assert!(
            matches!(a.overlay, Overlay::Feedback(_) | Overlay::Goto(_)),
            "text mode on {:?}",
            a.overlay
        ),
        Mode::Dialog => assert!(
            matches!(a.overlay, Overlay::Picker { .. } | Overlay::Confirm { .. }),
            "dialog mode on {:?}",
            a.overlay
        ),
    }
    if replay {
        assert!(a.editor.is_none(), "an editor opened in read-only replay");
        assert!(
            !matches!(
                a.overlay,
                Overlay::Feedback(_)
                    | Overlay::Picker { .. }
                    | Overlay::Confirm {
                        what: Confirm::Stop | Confirm::Rollback(_),
                        ..
                    }
            ),
            "replay is read-only, yet {:?} opened",
            a.overlay
        );
    } else {
        assert!(
            !matches!(a.overlay, Overlay::Goto(_)),
            "replay's go-to opened in a live session"
        );
    }
    if let (Overlay::Picker { selected }, State::Live { m, .. }) = (&a.overlay, st) {
        assert!(
            selected + 1 < m.checkpoints.len(),
            "the picker selects checkpoint {selected} of {}",
            m.checkpoints.len()
        );
    }
    if let Some(ed) = &a.editor {
        assert!(
            ed.rows.is_empty() || ed.selected < ed.rows.len(),
            "editor row {} of {}",
            ed.selected,
            ed.rows.len()
        );
        for r in &ed.rows {
            assert!(
                r.value.chars().count() <= MAX_VALUE_LEN,
                "a value of more than {MAX_VALUE_LEN} characters: {:?}",
                r.value
            );
        }
    }
    assert!(a.cursor.1 < KINDS.len(), "heatmap cursor {:?}", a.cursor);
    for t in texts(a) {
        assert!(
            !t.chars().any(char::is_control),
            "a text field holds a control character: {t:?}"
        );
        assert!(
            t.chars().count() <= MAX_CHARS,
            "a field of {} chars",
            t.len()
        );
    }
}

fn inside(r: Rect, area: Rect) -> bool {
    r.x >= area.x && r.y >= area.y && r.right() <= area.right() && r.bottom() <= area.bottom()
}

/// A frame at w×h: the whole buffer, the areas the app learnt inside it, no control
/// character in a cell (it would move the real terminal's cursor), and the "too small"
/// screen exactly below 50×12.
fn frame(a: &mut App, st: &State, w: u16, h: u16, counts: &mut Counts) {
    let v = st.view();
    let buf = draw(a, &v, w, h);
    counts.frames += 1;
    counts.modes[a.mode() as usize] += 1;
    counts.too_small += usize::from(a.areas.too_small);
    let area = Rect::new(0, 0, w, h);
    assert_eq!(buf.area, area, "the buffer's area");
    assert_eq!(buf.content.len(), w as usize * h as usize);
    for (p, r) in &a.areas.panels {
        assert!(inside(*r, area), "panel {p:?} at {r:?} outside {w}x{h}");
    }
    if let Some((x0, y0, cw, _, shown)) = a.areas.heat {
        let right = x0 as usize + cw as usize * shown;
        assert!(
            right <= w as usize && (y0 as usize + KINDS.len()) <= h as usize,
            "heatmap grid at {x0},{y0}, {shown} cells of {cw} outside {w}x{h}"
        );
    }
    if let Some((y0, _, _)) = a.areas.rows {
        assert!(y0 < h, "proposal rows from line {y0} of {h}");
    }
    for (i, c) in buf.content.iter().enumerate() {
        assert!(
            !c.symbol().chars().any(char::is_control),
            "cell {},{} holds {:?}",
            i % w as usize,
            i / w as usize,
            c.symbol()
        );
    }
    assert_eq!(
        a.areas.too_small,
        w < 50 || h < 12,
        "too small at {w}x{h}: {}",
        a.areas.too_small
    );
}

fn is_quit_key(k: &KeyEvent) -> bool {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    let alt = k.modifiers.contains(KeyModifiers::ALT);
    match k.code {
        KeyCode::Char('q') => !ctrl && !alt,
        KeyCode::Char('c') | KeyCode::Char('C') => ctrl,
        _ => false,
    }
}

/// A request from the session's live machine: a fed event must be one the machine takes.
fn feed(st: &mut State, ev: Event, counts: &mut Counts) {
    let State::Live { m, events } = st else {
        panic!("replay (read-only) asked to feed {ev:?}");
    };
    assert!(!m.is_done(), "a finished session was fed {ev:?}");
    let mut probe = m.clone();
    if let Err(e) = probe.handle(&ev) {
        panic!("the app sent an event the machine refuses: {e}: {ev:?}");
    }
    *m = probe;
    events.push(ev);
    counts.feeds += 1;
}

/// What the worker or the agent would report next, made up (the harness's own event: one
/// the machine refuses is dropped, unlike the app's).
fn work(m: &Machine, n: u8) -> Option<Event> {
    use arborist::session::Phase;
    let iteration = m.iteration;
    match m.phase {
        Phase::Applying => {
            let p = m.applying.as_ref()?;
            let applied = p
                .layers
                .iter()
                .map(|l| (l.name.clone(), l.sparsity))
                .collect();
            // Now and then past the guard's limit, so it rolls back.
            let ppl = if n.is_multiple_of(4) {
                30.0
            } else {
                10.0 + f64::from(n) * 0.001
            };
            let eval = fixtures::eval(ppl);
            Some(Event::Evaluated {
                iteration,
                applied,
                eval,
            })
        }
        Phase::Reflecting => Some(Event::Reflected {
            iteration,
            reply: fixtures::reply(format!("iteration {iteration}, work {n}")),
        }),
        Phase::Profiling => Some(Event::Profiled {
            iteration,
            rows: m.profile.clone(),
            seconds: 1.0,
            calib_from_block: None,
        }),
        Phase::Proposing if n.is_multiple_of(3) => {
            let yaml = format!("{{event: agent_failed, iteration: {iteration}, error: timed out}}");
            Some(serde_yaml::from_str(&yaml).expect("an agent failure"))
        }
        Phase::Proposing => Some(Event::Proposed {
            iteration,
            agent: "builtin".into(),
            reply: fixtures::reply(fixtures::proposal(m, 1 + n as usize % 4)),
        }),
        _ => None,
    }
}

pub fn run(s: &Session, cached: &mut Option<Timeline>, counts: &mut Counts) {
    let mut st = match s.kind {
        Kind::Replay { at } => {
            let t = cached.get_or_insert_with(|| Timeline::new(&common::legacy_log()));
            let to = at % (t.len() + 1);
            t.seek_to(to);
            State::Replay(t)
        }
        k => {
            let (m, events) = live(k);
            State::Live {
                m: Box::new(m),
                events,
            }
        }
    };
    let mut a = common::app();
    let (mut w, mut h) = s.size;
    frame(&mut a, &st, w, h, counts);
    for input in &s.inputs {
        counts.inputs += 1;
        let too_small = a.areas.too_small;
        let overlay = a.overlay.clone();
        let editor = a.editor.clone();
        let chars = typed_chars(&a);
        let done = matches!(&st, State::Live { m, .. } if m.is_done());
        let requests = {
            let v = st.view();
            match input {
                Input::Resize(nw, nh) => {
                    (w, h) = (*nw, *nh);
                    vec![]
                }
                Input::Work(_) => vec![],
                Input::Key(k) => {
                    counts.keys += 1;
                    a.on_key(*k, &v)
                }
                // The run loop gives clicks to the app only while it captures the mouse.
                Input::Mouse(m) if a.mouse => {
                    let r = a.on_mouse(*m);
                    assert!(r.is_empty(), "a click asked for {r:?}");
                    r
                }
                Input::Mouse(_) => vec![],
                Input::Paste(t) => {
                    a.on_paste(t, &v);
                    vec![]
                }
            }
        };
        if let Input::Key(k) = input {
            let mods = k.modifiers;
            // Below 50×12 only quit takes keys (README, "The workbench").
            if too_small && !matches!(overlay, Overlay::Confirm { .. }) && !is_quit_key(k) {
                assert!(requests.is_empty(), "too small, yet {requests:?}");
                assert_eq!(a.overlay, overlay, "too small, yet the dialog changed");
                assert_eq!(a.editor, editor, "too small, yet the editor changed");
            }
            // esc cancels the editor and closes the dialog, the field or the help.
            let reaches = !too_small || matches!(overlay, Overlay::Confirm { .. });
            if k.code == KeyCode::Esc && mods.is_empty() && reaches {
                if overlay != Overlay::None {
                    assert_eq!(a.overlay, Overlay::None, "esc left {overlay:?} open");
                    assert_eq!(a.editor.is_some(), editor.is_some(), "esc closed 2 things");
                } else if editor.is_some() {
                    assert!(a.editor.is_none(), "esc left the editor open");
                }
                assert!(requests.is_empty(), "esc asked for {requests:?}");
            }
            // A character typed with ctrl or alt is never text.
            let modified = mods.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
            if modified && matches!(k.code, KeyCode::Char(_)) {
                assert!(
                    typed_chars(&a) <= chars,
                    "{k:?} went into a text field: {:?}",
                    texts(&a)
                );
            }
        }
        if done {
            let fed: Vec<_> = requests
                .iter()
                .filter(|r| matches!(r, Request::Feed(_)))
                .collect();
            assert!(fed.is_empty(), "a finished session asked for {fed:?}");
        }
        for r in requests {
            match r {
                Request::Feed(ev) => feed(&mut st, ev, counts),
                Request::Quit => {}
                Request::SetMouse(on) => assert_eq!(on, a.mouse, "SetMouse against the app"),
                Request::Seek(seek) => {
                    let State::Replay(t) = &mut st else {
                        panic!("a live session asked to seek {seek:?}");
                    };
                    counts.seeks += 1;
                    // As the replay loop does (src/tui/replay.rs, `apply`).
                    match seek {
                        Seek::Iteration(n)
                            if n > t.last_iteration() || t.position_of(n).is_none() =>
                        {
                            let mut field = TextField::default();
                            field.insert_str(&n.to_string());
                            a.overlay = Overlay::Goto(field);
                        }
                        s => t.seek(s),
                    }
                }
                Request::Verify => assert!(
                    matches!(st, State::Replay(_)),
                    "a live session asked to verify"
                ),
            }
        }
        if let (Input::Work(n), State::Live { m, events }) = (input, &mut st) {
            if let Some(ev) = work(m, *n) {
                let mut probe = m.clone();
                if probe.handle(&ev).is_ok() {
                    *m = probe;
                    events.push(ev);
                    counts.work += 1;
                }
            }
        }
        // The live loop feeds an auto-approval after every input (src/tui/live.rs).
        let auto = match &st {
            State::Live { .. } => a.auto_decision(&st.view()),
            State::Replay(_) => None,
        };
        if let Some(ev) = auto {
            feed(&mut st, ev, counts);
        }
        check_state(&a, &st);
        frame(&mut a, &st, w, h, counts);
    }
}
