//! The status bar: iteration, sparsity against the target, rollbacks, agent tokens and cost,
//! what the worker is doing; underneath, only the keys that do something right now. On a
//! narrow terminal the first line shortens or drops its least important items first.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::session::Event;
use crate::tui::app::{App, Level, Overlay};
use crate::tui::hints::letter;
use crate::tui::key::Key;
use crate::tui::keymap::{Action, Binding};
use crate::tui::view::View;

fn tokens(n: u64) -> String {
    if n >= 10_000 {
        format!("{:.1}k", n as f64 / 1000.0)
    } else {
        n.to_string()
    }
}

/// USD with enough digits that small costs do not read as zero.
pub fn cost(usd: f64) -> String {
    if usd < 0.01 {
        format!("${usd:.4}")
    } else if usd < 100.0 {
        format!("${usd:.3}")
    } else {
        format!("${usd:.2}")
    }
}

/// How much the first line gives up to fit: each level shortens or drops the least
/// important item. Iteration, worker state, sparsity against the target and rollbacks stay.
/// The token counts go first and the gauge keeps the size the width gives it until then
/// (the worker's state changes length from frame to frame, and the gauge flipped between 8
/// and 16 cells with it at 100 columns); then the gauge, then a known cost.
const LEVELS: usize = 5;

/// The sparsity gauge's cells on a line of `width` columns.
fn gauge_cells(width: usize) -> usize {
    if width >= 140 {
        16
    } else {
        8
    }
}

fn width(spans: &[Span]) -> usize {
    spans.iter().map(|s| s.width()).sum()
}

/// Cut `text` to `max` columns (display width: a wide character takes two), marking the
/// cut with `…`.
fn cut(text: &str, max: usize) -> String {
    super::cut_line(Line::from(text.to_string()), max).to_string()
}

/// The first line at `level`, with the worker's state cut to `state_max` columns if given.
fn top_spans(
    app: &App,
    view: &View,
    (level, cells): (usize, usize),
    state_max: Option<usize>,
) -> Vec<Span<'static>> {
    let t = app.theme();
    let m = view.machine;
    let sep = || Span::styled(" │ ", t.muted());
    let (s, target) = (m.global_sparsity(), m.opts.target);
    let frac = if target > 0.0 {
        (s / target).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let (state, state_style) = match &app.failure {
        Some(e) => (e.clone(), t.danger()),
        None => (view.worker_state(), t.accent()),
    };
    let state = match state_max {
        Some(max) => cut(&state, max),
        None => state,
    };
    // A finished session has moved its counter past the last iteration it ran; a replay
    // shows the iteration of the event it stands at (the counter moves on at each
    // reflection: iteration 1's read `iter 2`).
    let iteration = match view.replay {
        Some(_) => (view.events.iter().rev())
            .find_map(|e| match e {
                Event::Finished { iteration, .. } => Some(iteration.saturating_sub(1)),
                e => e.iteration(),
            })
            .unwrap_or(0),
        None if m.is_done() => m.iteration.saturating_sub(1),
        None => m.iteration,
    };
    let mut top = vec![
        Span::styled(format!(" iter {iteration}"), t.title()),
        sep(),
        Span::styled(state, state_style),
    ];
    // Auto-approve and pause steer a running session; a finished one has neither key.
    let steering = view.live() && !m.is_done();
    if steering && app.auto_approve {
        top.push(sep());
        top.push(Span::styled("AUTO", t.warn()));
    }
    if steering && app.paused {
        top.push(sep());
        top.push(Span::styled("PAUSED", t.warn()));
    }
    top.push(sep());
    let cells = if level <= 2 { cells } else { 0 };
    if level >= LEVELS {
        top.push(Span::styled("sp", t.muted()));
    } else {
        top.push(Span::styled("sparsity", t.muted()));
    }
    if cells > 0 {
        let filled = (frac * cells as f64).round() as usize;
        let gauge_style = if s >= target { t.good() } else { t.accent() };
        top.push(Span::raw(" "));
        top.push(Span::styled("█".repeat(filled), gauge_style));
        top.push(Span::styled("░".repeat(cells - filled), t.muted()));
    }
    top.push(Span::styled(format!(" {s:.3}/{target:.2}"), t.text()));
    top.push(sep());
    // Every rollback: the guard's, and the reviewer's (`b`), which the machine does not count.
    let rollbacks = rollbacks(view);
    let rb = if level >= LEVELS { "rb" } else { "rollbacks" };
    top.push(Span::styled(
        format!("{rb} {rollbacks}"),
        if rollbacks > 0 { t.warn() } else { t.text() },
    ));
    let (inp, out) = (m.usage.prompt_tokens, m.usage.completion_tokens);
    let usd = m.usage.cost.map(cost);
    let agent = match level {
        0 => Some(format!("tokens {} in / {} out", tokens(inp), tokens(out))),
        1 => Some(format!("{}/{} tok", tokens(inp), tokens(out))),
        _ => None,
    };
    let agent = match (agent, usd) {
        (Some(a), Some(c)) if level == 0 => Some(format!("{a} · {c}")),
        (Some(a), Some(c)) => Some(format!("{a} {c}")),
        (None, Some(c)) if level <= 3 => Some(c),
        (a, _) => a,
    };
    if let Some(a) = agent {
        top.push(sep());
        top.push(Span::styled(a, t.text()));
    }
    top
}

/// Rollbacks so far: the guard's and the reviewer's.
pub fn rollbacks(view: &View) -> usize {
    view.machine.rollbacks + view.machine.reviewer_rollbacks
}

/// The first line fitted to `max` columns: the first level that fits, else the shortest
/// with the worker's state cut to the room left.
fn top_line(app: &App, view: &View, max: usize) -> Vec<Span<'static>> {
    let cells = gauge_cells(max);
    for level in 0..=LEVELS {
        let spans = top_spans(app, view, (level, cells), None);
        if width(&spans) <= max {
            return spans;
        }
    }
    let rest = width(&top_spans(app, view, (LEVELS, cells), Some(0)));
    // The worker's state gives way first, so the rollback count at the end always shows.
    top_spans(
        app,
        view,
        (LEVELS, cells),
        Some(max.saturating_sub(rest).max(1)),
    )
}

pub fn render(f: &mut Frame, area: Rect, app: &App, view: &View) {
    let t = app.theme();
    let sep = || Span::styled(" │ ", t.muted());
    let top = top_line(app, view, area.width as usize);
    // A notice leads the key line until the next key press, so it is never cut off.
    // The verify verdict stays; a notice leads the key line until the next key press.
    let mut keys = Vec::new();
    for n in [&app.verdict, &app.notice].into_iter().flatten() {
        let style = match n.level {
            Level::Info => t.good(),
            Level::Warn => t.warn(),
            Level::Error => t.danger(),
        };
        keys.push(Span::styled(format!(" {}", n.text), style));
        keys.push(sep());
    }
    let used: usize = keys.iter().map(|s| s.width()).sum();
    let room = (area.width as usize).saturating_sub(used);
    let after = match app.overlay {
        // The help takes every key: it scrolls or closes (the line offered approve, edit...).
        Overlay::Help { .. } => help_keys(app, "the help", room),
        Overlay::Details { .. } => help_keys(app, "the details", room),
        _ => key_line(app, view, room),
    };
    if after.len() > 1 {
        keys.extend(after);
    } else {
        // No key fits after the notices: no separator left dangling at the end.
        keys.pop();
    }
    // A notice longer than the line ends in "…" rather than mid-word at the edge.
    let keys = super::cut_line(Line::from(keys), area.width as usize);
    f.render_widget(Paragraph::new(vec![Line::from(top), keys]), area);
}

/// What the keys do while the help (or the details) is open, in `width` columns: whole
/// groups only, closing first (they were cut mid-word at 50 columns: `↑/↓/pgu…`).
fn help_keys(app: &App, what: &str, width: usize) -> Vec<Span<'static>> {
    let t = app.theme();
    let close = [
        ("any other key".to_string(), format!(" closes {what}  ")),
        ("other keys".to_string(), " close  ".to_string()),
    ];
    let scroll = (
        "↑/↓/pgup/pgdn/home/end".to_string(),
        " scroll  ".to_string(),
    );
    let len = |g: &(String, String)| g.0.chars().count() + g.1.chars().count();
    let mut room = width.saturating_sub(1);
    let mut groups = Vec::new();
    if let Some(c) = close.into_iter().find(|g| len(g) <= room) {
        room -= len(&c);
        groups.push(c);
    }
    if app.areas.help_max.is_some_and(|m| m > 0) && len(&scroll) <= room {
        groups.insert(0, scroll);
    }
    let mut spans = vec![Span::raw(" ")];
    for (keys, word) in groups {
        spans.push(Span::styled(keys, t.accent()));
        spans.push(Span::styled(word, t.muted()));
    }
    spans
}

/// A binding's word; ⏎ in a confirmation chooses the focused button, so with the focus on
/// Cancel it says cancel's word (it said "ok" and cancelled); in a text field it sends. In the checkpoint picker the
/// words are the picker's own hint's (↑/↓ choose a checkpoint, ⏎ goes on to confirm it).
fn submit_label(app: &App, view: &View, b: &Binding) -> String {
    // The failure's own line says "ask again" of the same key.
    if b.action == Action::Reject && view.agent_failed_review() {
        return "ask again".into();
    }
    if matches!(app.overlay, Overlay::Picker { .. }) {
        match b.action {
            Action::RowUp | Action::RowDown => return "choose".into(),
            Action::Submit => return "next".into(),
            _ => {}
        }
    }
    // A text field's own hint says send.
    if matches!(app.overlay, Overlay::Feedback(_) | Overlay::Goto(_)) && b.action == Action::Submit
    {
        return "send".into();
    }
    let on_cancel = matches!(app.overlay, Overlay::Confirm { ok: false, .. });
    if b.action != Action::Submit || !on_cancel {
        return b.short.clone();
    }
    app.keymap
        .bindings
        .iter()
        .find(|c| c.action == Action::Cancel)
        .map_or_else(|| b.short.clone(), |c| c.short.clone())
}

const MOVES: [Action; 4] = [Action::Left, Action::Right, Action::Up, Action::Down];

/// The heatmap's four moves as one key entry when they share a word: their first keys
/// when all are arrows ("←/→/↑/↓"), else their letters ("hjkl": while editing, ↑/↓ pick
/// rows, and "←/→/k/j" read as two kinds of move). None when their words differ or a
/// move has no letter to name: each is then listed as any other action.
fn move_label(app: &App, view: &View) -> Option<String> {
    let bindings: Vec<&Binding> = MOVES
        .iter()
        .map(|&a| app.keymap.binding(a))
        .collect::<Option<_>>()?;
    if bindings.iter().any(|b| b.short != bindings[0].short) {
        return None;
    }
    let keys: Vec<Vec<Key>> = bindings.iter().map(|b| app.live_keys(b, view)).collect();
    if keys.iter().all(|k| k.is_empty()) {
        return None;
    }
    let arrow = |k: &Key| {
        use crossterm::event::KeyCode::*;
        !k.ctrl && !k.alt && matches!(k.code, Left | Right | Up | Down)
    };
    if keys.iter().all(|k| k.first().is_some_and(arrow)) {
        let firsts: Vec<String> = keys.iter().map(|k| k[0].label()).collect();
        return Some(firsts.join("/"));
    }
    // In the heatmap's order: left, down, up, right.
    let order = [0, 3, 2, 1];
    let letters: Option<Vec<String>> = order.iter().map(|&i| letter(&keys[i])).collect();
    letters.map(|l| l.concat())
}

/// "⏎ approve  e edit  …", grouped by the short label. What does not fit is dropped from
/// the end of the table (least important); help and quit go last, whenever they fit.
fn key_line(app: &App, view: &View, width: usize) -> Vec<Span<'static>> {
    let t = app.theme();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut tail: Vec<(String, Vec<String>)> = Vec::new();
    let moves = move_label(app, view);
    for b in app.valid_now(view) {
        let key = match (&moves, MOVES.contains(&b.action)) {
            // The four moves as one entry, said once.
            (Some(_), true) if b.action != MOVES[0] => continue,
            (Some(m), true) => Some(m.clone()),
            _ => crate::tui::hints::shown(b.action, &app.live_keys(b, view)),
        };
        let Some(key) = key else {
            continue;
        };
        let list = if matches!(b.action, Action::Help | Action::Quit) {
            &mut tail
        } else {
            &mut groups
        };
        let short = submit_label(app, view, b);
        match list.iter_mut().find(|(s, _)| *s == short) {
            Some((_, keys)) => keys.push(key),
            None => list.push((short, vec![key])),
        }
    }
    let len = |g: &(String, Vec<String>)| g.1.join("/").chars().count() + g.0.chars().count() + 3;
    let mut room = width.saturating_sub(1);
    // Whole groups only: help and quit first, then the rest in table order (a notice can
    // leave too little room even for help and quit, and a key cut mid-word misleads).
    let mut take = |list: Vec<(String, Vec<String>)>| -> Vec<_> {
        list.into_iter()
            .take_while(|g| {
                let ok = len(g) <= room;
                room = room.saturating_sub(len(g));
                ok
            })
            .collect()
    };
    let tail = take(tail);
    let fits: Vec<_> = take(groups).into_iter().chain(tail).collect();
    let mut spans = vec![Span::raw(" ")];
    for (short, keys) in fits {
        spans.push(Span::styled(keys.join("/"), t.accent()));
        spans.push(Span::styled(format!(" {short}  "), t.muted()));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_counts_display_columns() {
        let w = |t: &str| Span::raw(t.to_string()).width();
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("abcdefgh", 5), "abcd…");
        // Full-width characters take two columns each: 4 of them fill 8.
        let c = cut("ディスクがいっぱいです", 9);
        assert!(w(&c) <= 9, "{c}: {} columns", w(&c));
        assert_eq!(c, "ディスク…");
    }
}
