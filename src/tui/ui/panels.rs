//! The text panels: the agent's reflections (newest first) and the event log (one line per
//! event, newest at the bottom, following the end unless scrolled).

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::panel_block;
use crate::session::Event;
use crate::tui::app::{App, Panel};
use crate::tui::theme::Theme;
use crate::tui::view::View;

/// Draws the reflections; returns how far they can scroll.
pub fn reflection(
    f: &mut Frame,
    area: Rect,
    app: &App,
    view: &View,
    focused: bool,
    tabbed: bool,
) -> u16 {
    let t = app.theme();
    let m = view.machine;
    let mut lines = Vec::new();
    for (i, text) in m.reflections.iter().enumerate().rev() {
        let outcome = m.history.get(i);
        let (head, style) = match outcome {
            Some(o) if o.accepted && o.undone_to.is_some() => (
                format!("iter {} · accepted, undone by your rollback", o.iteration),
                t.warn(),
            ),
            Some(o) if o.accepted => (format!("iter {} · accepted", o.iteration), t.good()),
            Some(o) => (format!("iter {} · rolled back", o.iteration), t.danger()),
            None => ("reflection".to_string(), t.muted()),
        };
        lines.push(Line::styled(head, style));
        if let Some(o) = outcome {
            lines.push(Line::styled(o.note.clone(), t.muted()));
        }
        lines.push(Line::styled(text.clone(), t.text()));
        lines.push(Line::default());
    }
    // The blank line after the oldest separates nothing (and would read as more below).
    lines.pop_if(|l| l.spans.is_empty());
    if lines.is_empty() {
        lines.push(Line::styled("no reflections yet", t.muted()));
    }
    let title = format!("Reflection · {} (newest first)", m.reflections.len());
    let block = panel_block(app, title, focused, tabbed, area.width);
    let text = Paragraph::new(lines).wrap(Wrap { trim: true });
    let max = super::overflow(&text, block.inner(area));
    let scroll = app.scroll(Panel::Reflection).min(max);
    let block = super::more_below(block, max - scroll, app, Panel::Reflection);
    f.render_widget(text.block(block).scroll((scroll, 0)), area);
    max
}

fn event_style(t: &Theme, ev: &Event) -> Style {
    match ev {
        Event::Decided { .. } | Event::RollbackTo { .. } | Event::StopRequested { .. } => {
            t.accent()
        }
        Event::Guard {
            accepted: false, ..
        }
        | Event::AgentFailed { .. } => t.danger(),
        Event::Guard { accepted: true, .. } => t.good(),
        Event::Finished { .. } => t.warn(),
        _ => t.text(),
    }
}

/// One screen line of the Log panel: an event (by index), or a line of a session warning
/// (whether its first), kept after the events recorded when it was said.
enum LogLine {
    Event(usize),
    Warning(bool, String),
}

/// The Log panel's lines: the events, each warning wrapped at `wrap` after the events
/// recorded when it was said.
fn log_lines(events: usize, warnings: &[(usize, String)], wrap: usize) -> Vec<LogLine> {
    let mut lines = Vec::with_capacity(events + warnings.len());
    let mut said = warnings.iter().peekable();
    for i in 0..=events {
        while let Some((_, w)) = said.next_if(|(at, _)| *at <= i) {
            let parts = crate::tui::wrap::lines(w, wrap).into_iter().enumerate();
            lines.extend(parts.map(|(k, part)| LogLine::Warning(k == 0, part)));
        }
        if i < events {
            lines.push(LogLine::Event(i));
        }
    }
    lines
}

/// Draws the newest events (and warnings) that fit; returns how far back it can scroll.
pub fn log(f: &mut Frame, area: Rect, app: &App, view: &View, focused: bool, tabbed: bool) -> u16 {
    let t = app.theme();
    let height = area.height.saturating_sub(2) as usize;
    let total = view.events.len();
    // Replay shows the warnings of the events up to the one it is at.
    let shown = app.warnings.partition_point(|(at, _)| *at <= total);
    let warnings = &app.warnings[..shown];
    let width = area.width.saturating_sub(2) as usize;
    // A warning wraps (its end is often what to do); an event is one line, cut.
    let wrap = width.saturating_sub(5).max(1);
    let units = log_lines(total, warnings, wrap);
    // Scrolling counts back from the newest line.
    let back = (app.scroll(Panel::Log) as usize).min(units.len().saturating_sub(height));
    let end = units.len() - back;
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = units[start..end]
        .iter()
        .map(|unit| match unit {
            LogLine::Warning(first, text) => {
                let lead = if *first { "   ! " } else { "     " };
                Line::from(vec![
                    Span::styled(lead, t.warn()),
                    Span::styled(text.clone(), t.warn()),
                ])
            }
            LogLine::Event(i) => {
                let i = *i;
                let n = i + 1;
                let ev = &view.events[i];
                let mut text = ev.summary_at(&view.events[..i], view.machine);
                if text.chars().count() > width.saturating_sub(6) {
                    text = text
                        .chars()
                        .take(width.saturating_sub(7))
                        .collect::<String>()
                        + "…";
                }
                let current = view.replay.is_some() && n == total;
                let style = if current {
                    t.selected()
                } else {
                    event_style(t, ev)
                };
                Line::from(vec![
                    Span::styled(format!("{n:>4} "), t.muted()),
                    Span::styled(text, style),
                ])
            }
        })
        .collect();
    let s = if total == 1 { "" } else { "s" };
    let mut title = format!("Log · {total} event{s}");
    match warnings.len() {
        0 => {}
        1 => title += " · 1 warning",
        n => title += &format!(" · {n} warnings"),
    }
    if back > 0 {
        title += &format!(" · {back} newer below");
    }
    let block = panel_block(app, title, focused, tabbed, area.width);
    f.render_widget(Paragraph::new(lines).block(block), area);
    units.len().saturating_sub(height).min(u16::MAX as usize) as u16
}
