//! The status bar: iteration, sparsity against the target, rollbacks, agent tokens, what the
//! worker is doing; underneath, only the keys that do something right now.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::app::{App, Level};
use crate::tui::keymap::Action;
use crate::tui::view::View;

fn tokens(n: u64) -> String {
    if n >= 10_000 {
        format!("{:.1}k", n as f64 / 1000.0)
    } else {
        n.to_string()
    }
}

pub fn render(f: &mut Frame, area: Rect, app: &App, view: &View) {
    let t = app.theme();
    let m = view.machine;
    let sep = || Span::styled(" │ ", t.muted());
    let (s, target) = (m.global_sparsity(), m.opts.target);
    let frac = if target > 0.0 {
        (s / target).clamp(0.0, 1.0)
    } else {
        1.0
    };
    // Narrow terminals get a shorter gauge; the worker's state comes early so it stays.
    let cells = if area.width < 100 { 8 } else { 16 };
    let filled = (frac * cells as f64).round() as usize;
    let gauge_style = if s >= target { t.good() } else { t.accent() };
    let mut top = vec![
        Span::styled(format!(" iter {}", m.iteration), t.title()),
        sep(),
        match &app.failure {
            Some(e) => Span::styled(e.clone(), t.danger()),
            None => Span::styled(view.worker_state(), t.accent()),
        },
    ];
    if view.live() && app.auto_approve {
        top.push(sep());
        top.push(Span::styled("AUTO", t.warn()));
    }
    if view.live() && app.paused {
        top.push(sep());
        top.push(Span::styled("PAUSED", t.warn()));
    }
    top.extend([
        sep(),
        Span::styled("sparsity ", t.muted()),
        Span::styled("█".repeat(filled), gauge_style),
        Span::styled("░".repeat(cells - filled), t.muted()),
        Span::styled(format!(" {s:.3}/{target:.2}"), t.text()),
        sep(),
        Span::styled(
            format!("rollbacks {}", m.rollbacks),
            if m.rollbacks > 0 { t.warn() } else { t.text() },
        ),
        sep(),
        Span::styled(
            format!(
                "tokens {} in / {} out",
                tokens(m.usage.prompt_tokens),
                tokens(m.usage.completion_tokens)
            ),
            t.text(),
        ),
    ]);
    // A notice leads the key line until the next key press, so it is never cut off.
    let mut keys = Vec::new();
    if let Some(n) = &app.notice {
        let style = match n.level {
            Level::Info => t.good(),
            Level::Warn => t.warn(),
            Level::Error => t.danger(),
        };
        keys.push(Span::styled(format!(" {}", n.text), style));
        keys.push(sep());
    }
    let used: usize = keys.iter().map(|s| s.width()).sum();
    keys.extend(key_line(
        app,
        view,
        (area.width as usize).saturating_sub(used),
    ));
    f.render_widget(
        Paragraph::new(vec![Line::from(top), Line::from(keys)]),
        area,
    );
}

/// "⏎ approve  e edit  …", grouped by the short label. What does not fit is dropped from
/// the end of the table (least important), but help and quit always stay.
fn key_line(app: &App, view: &View, width: usize) -> Vec<Span<'static>> {
    let t = app.theme();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut tail: Vec<(String, Vec<String>)> = Vec::new();
    for b in app.valid_now(view) {
        let Some(key) = app.live_keys(b, view).into_iter().next() else {
            continue;
        };
        let list = if matches!(b.action, Action::Help | Action::Quit) {
            &mut tail
        } else {
            &mut groups
        };
        match list.iter_mut().find(|(s, _)| *s == b.short) {
            Some((_, keys)) => keys.push(key.label()),
            None => list.push((b.short.clone(), vec![key.label()])),
        }
    }
    let len = |g: &(String, Vec<String>)| g.1.join("/").chars().count() + g.0.chars().count() + 3;
    let mut room = width.saturating_sub(1 + tail.iter().map(len).sum::<usize>());
    let mut spans = vec![Span::raw(" ")];
    let fits: Vec<_> = groups
        .into_iter()
        .take_while(|g| {
            let ok = len(g) <= room;
            room = room.saturating_sub(len(g));
            ok
        })
        .chain(tail)
        .collect();
    for (short, keys) in fits {
        spans.push(Span::styled(keys.join("/"), t.accent()));
        spans.push(Span::styled(format!(" {short}  "), t.muted()));
    }
    spans
}
