//! Everything drawn over the main screen: help (generated from the keymap), confirmations
//! with the focus on Cancel, the checkpoint picker, text fields, and the loading screen.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::agent::parse::frac;
use crate::tui::app::{App, Confirm, Overlay};
use crate::tui::keymap::{Action, Mode};
use crate::tui::textfield::TextField;
use crate::tui::view::View;

const SECTIONS: [&str; 4] = [
    "Main screen",
    "Editing a proposal",
    "Replay",
    "Dialogs and text fields",
];

/// The help text: every binding of the keymap, by section, in lines of at most `width`
/// columns (a description wraps under itself: at 50 columns lines were cut mid-word).
pub fn help_lines(app: &App, width: usize) -> Vec<Line<'static>> {
    let t = app.theme();
    let entry = |keys: &str, help: &str| -> Vec<Line<'static>> {
        let key = format!("{keys:>12}  ");
        let indent = key.chars().count();
        let room = width.saturating_sub(indent).max(12);
        let parts = crate::tui::wrap::lines(help, room);
        let leads =
            std::iter::once(Span::styled(key, t.accent())).chain(std::iter::repeat_with(|| {
                Span::styled(" ".repeat(indent), t.text())
            }));
        leads
            .zip(parts)
            .map(|(lead, part)| Line::from(vec![lead, Span::styled(part, t.text())]))
            .collect()
    };
    let mut lines = Vec::new();
    for section in SECTIONS {
        lines.push(Line::styled(section.to_string(), t.title()));
        for b in app
            .keymap
            .bindings
            .iter()
            .filter(|b| b.action.section() == section)
        {
            lines.extend(entry(&b.key_labels(), &b.help));
        }
        if section == "Dialogs and text fields" {
            lines.extend(entry(
                "← → home end",
                "move in a text field; backspace, del delete",
            ));
        }
        if section == "Editing a proposal" {
            lines.extend(entry("0-9 . %", "type the selected value"));
        }
        lines.push(Line::default());
    }
    let mouse = "mouse: click a cell or panel to focus it, wheel scrolls";
    for part in crate::tui::wrap::lines(mouse, width.max(12)) {
        lines.push(Line::styled(part, t.muted()));
    }
    lines
}

/// The screen above the two lines of the status bar: the help and the details cover all
/// of it and none of the bar (they covered its first line but a few columns).
pub(super) fn above_bar(area: Rect) -> Rect {
    Rect {
        height: area.height.saturating_sub(2),
        ..area
    }
}

pub(super) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// A dialog's frame in `width` columns. A title too long for it keeps its first parts
/// (" · " between them) and ends in "…" (the details' was cut at the corner mid-word); a
/// first part too long alone is cut at a character.
pub(super) fn dialog<'a>(app: &App, title: &str, width: u16) -> Block<'a> {
    let t = app.theme();
    // The leading space goes with the first part, so that a first part too long for the
    // frame is cut with "…" rather than dropped whole (a bare "…" at 20 columns).
    let mut spans = Vec::new();
    for (i, part) in title.split(" · ").enumerate() {
        let sep = if i == 0 { " " } else { " · " };
        spans.push(Span::styled(format!("{sep}{part}"), t.title()));
    }
    spans.push(Span::styled(" ", t.title()));
    let title = super::fit(Line::from(spans), width.saturating_sub(2) as usize);
    Block::default()
        .borders(Borders::ALL)
        .border_style(t.border(true))
        .title(title)
        .style(t.base())
}

/// Draws the open dialog; returns how far the help or the details can scroll when open,
/// and how many lines they show. `bar`: the screen has a status bar (one too small to draw
/// has none).
pub fn render(f: &mut Frame, area: Rect, app: &App, view: &View, bar: bool) -> Option<(u16, u16)> {
    // Dialogs stay above the status bar, whose key line says what their keys do (a picker
    // as tall as the screen covered it).
    let screen = area;
    let area = if bar { above_bar(area) } else { area };
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help { scroll } => return Some(help(f, screen, app, *scroll)),
        Overlay::Details { scroll } => {
            return Some(super::details::render(f, screen, app, view, *scroll))
        }
        // After a failure there is nothing to reject: it asks again, feedback optional.
        Overlay::Feedback(text) if view.agent_failed_review() => field(
            f,
            area,
            app,
            view,
            "Ask again: feedback for the agent (optional)",
            text,
        ),
        Overlay::Feedback(text) => {
            field(f, area, app, view, "Reject: feedback for the agent", text)
        }
        Overlay::Goto(text) => field(f, area, app, view, "Go to iteration", text),
        Overlay::Picker { selected } => picker(f, area, app, view, *selected),
        Overlay::Confirm { what, ok } => confirm(f, area, app, view, *what, *ok),
    }
    None
}

/// The key list, in two columns when they fit; otherwise one that scrolls (its title says
/// how). Returns how far it can scroll and how many lines it shows.
fn help(f: &mut Frame, area: Rect, app: &App, scroll: u16) -> (u16, u16) {
    // The whole width where only a sliver would be left beside it (the panels' borders
    // showed through at 120 columns: `┌┌ Keys…┐┐`).
    let w = if area.width < 126 { area.width } else { 118 };
    let r = centered(above_bar(area), w, area.height.saturating_sub(2));
    let inner = dialog(app, "", r.width).inner(r);
    let rows = inner.height.max(1) as usize;
    let half = help_lines(app, inner.width as usize / 2);
    let two = inner.width >= 100 && half.len() <= 2 * rows;
    let lines = if two {
        half
    } else {
        help_lines(app, inner.width as usize)
    };
    let max = if two {
        0
    } else {
        lines.len().saturating_sub(rows).min(u16::MAX as usize) as u16
    };
    let title = if max > 0 {
        "Keys · ↑↓ PgUp PgDn Home End scroll · any other key closes"
    } else {
        "Keys · any other key closes"
    };
    let block = dialog(app, title, r.width);
    f.render_widget(Clear, r);
    f.render_widget(block, r);
    if two {
        let split = lines.len().div_ceil(2);
        let (a, b) = lines.split_at(split);
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(inner);
        f.render_widget(Paragraph::new(a.to_vec()), left);
        f.render_widget(Paragraph::new(b.to_vec()), right);
    } else {
        f.render_widget(Paragraph::new(lines).scroll((scroll.min(max), 0)), inner);
    }
    (max, inner.height)
}

/// A text field that grows with its text and, when the text outgrows the screen, shows
/// the lines around the cursor (`typed`).
fn field(f: &mut Frame, area: Rect, app: &App, view: &View, title: &str, text: &TextField) {
    let t = app.theme();
    let width = 72.min(area.width);
    let inner_w = width.saturating_sub(2).max(1) as usize;
    let typed = super::typed::typed(t, ("", t.text()), text, inner_w);
    let at_row = typed.cursor_row;
    let mut rows = typed.rows;
    // Room for the text: the dialog less its borders and the two lines of help.
    let room = (area.height.saturating_sub(2 + 2 + 2) as usize).max(1);
    let first = (at_row + 1)
        .saturating_sub(room)
        .min(rows.len().saturating_sub(room));
    let below = rows.len().saturating_sub(first + room);
    rows.truncate(first + room);
    rows.drain(..first);
    let r = centered(area, width, rows.len() as u16 + 4);
    f.render_widget(Clear, r);
    let mut lines = rows;
    lines.push(Line::default());
    // The counts first, then the keys, in whole groups: at 50 columns the counts came
    // last and were cut off.
    let mut groups = Vec::new();
    if first > 0 {
        groups.push(format!("{first} line(s) above"));
    }
    if below > 0 {
        groups.push(format!("{below} below"));
    }
    groups.push(app.hint(
        &[(&[Action::Submit], "send"), (&[Action::Cancel], "cancel")],
        Mode::Text,
        !view.live(),
    ));
    // ← → move the cursor in any text field, whatever the keymap says.
    groups.push("←→ move".into());
    let hint = wrap_groups(&groups.join(" · "), inner_w);
    lines.push(Line::styled(
        hint.into_iter().next().unwrap_or_default(),
        t.muted(),
    ));
    f.render_widget(Paragraph::new(lines).block(dialog(app, title, r.width)), r);
}

fn picker(f: &mut Frame, area: Rect, app: &App, view: &View, selected: usize) {
    let t = app.theme();
    let m = view.machine;
    let earlier = m.checkpoints.len().saturating_sub(1);
    // As many rows as fit (borders, header, help and a spare line take 5), scrolled to
    // keep the selected one in view.
    let shown = earlier.min((area.height.saturating_sub(5) as usize).max(1));
    let start = selected
        .saturating_sub(shown / 2)
        .min(earlier.saturating_sub(shown));
    let r = centered(area, 72, shown as u16 + 5);
    f.render_widget(Clear, r);
    // The note goes where it would be cut ("(later ones ar").
    let header = "  checkpoint  iteration  sparsity       ppl";
    let note = "   (later ones are dropped)";
    let header = if header.len() + note.len() <= r.width.saturating_sub(2) as usize {
        format!("{header}{note}")
    } else {
        header.to_string()
    };
    let mut lines = vec![Line::styled(header, t.muted())];
    for c in &m.checkpoints[start..start + shown] {
        // Marked in the text too: a colour alone is lost in a plain capture or to a
        // reader who cannot tell it.
        let mark = if c.index == selected { "›" } else { " " };
        let text = format!(
            "{mark} {:>10}  {:>9}  {:>8.4}  {:>8.4}",
            c.index,
            c.iteration,
            m.sparsity_of(c),
            c.eval.ppl
        );
        let style = if c.index == selected {
            t.selected()
        } else {
            t.text()
        };
        lines.push(Line::styled(text, style));
    }
    let range = if shown < earlier {
        format!(" · {}–{} of 0–{}", start, start + shown - 1, earlier - 1)
    } else {
        String::new()
    };
    let keys = app.hint(
        &[
            (&[Action::RowUp, Action::RowDown], "choose"),
            (&[Action::Submit], "next"),
            (&[Action::Cancel], "cancel"),
        ],
        Mode::Dialog,
        !view.live(),
    );
    lines.push(Line::styled(format!("{keys}{range}"), t.muted()));
    let p = Paragraph::new(lines).block(dialog(app, "Roll back to a checkpoint", r.width));
    f.render_widget(p, r);
}

fn confirm(f: &mut Frame, area: Rect, app: &App, view: &View, what: Confirm, ok: bool) {
    let t = app.theme();
    let m = view.machine;
    let (title, text) = match what {
        Confirm::Quit if view.busy() => (
            "Quit while a step runs?",
            format!(
                "The worker is busy ({}): that work is not kept (an agent's answer not yet \
                 given is asked for again). The session file already holds every event; \
                 continue later with --resume.",
                view.worker_state()
            ),
        ),
        // The step ended while the dialog was open (it used to keep its title).
        Confirm::Quit => (
            "Quit?",
            "The step has finished. The session file holds every event; continue later \
             with --resume."
                .to_string(),
        ),
        Confirm::Stop => (
            "Stop the session?",
            format!(
                "It ends at the next safe point and the session is finished: --resume then \
                 only says it is finished. To come back to it later, quit with {} instead.",
                app.key_name(Action::Quit, Mode::Normal, false)
            ),
        ),
        Confirm::Rollback(i) => {
            let c = &m.checkpoints[i.min(m.checkpoints.len().saturating_sub(1))];
            (
                "Roll back?",
                format!(
                    "Restore checkpoint {} (iteration {}, ppl {}) and drop the {} later one(s).",
                    c.index,
                    c.iteration,
                    frac(c.eval.ppl),
                    m.checkpoints.len().saturating_sub(i + 1)
                ),
            )
        }
    };
    // The buttons always show; then as much of the text as fits (cut with "…"), the hint
    // (its key-and-word groups whole, or left out) and a blank line. On a screen too small
    // to draw the text wrapped over the buttons and the hint, and the hint was cut
    // mid-word or split `⏎` from `choose`.
    let width = 64.min(area.width);
    let inner_w = width.saturating_sub(2) as usize;
    let mut text_lines = crate::tui::wrap::lines(&text, inner_w.max(1));
    let hint = app.hint(
        &[
            (&[Action::ToggleChoice], "switch"),
            (&[Action::Submit], "choose"),
            (&[Action::Cancel], "cancel"),
        ],
        Mode::Dialog,
        !view.live(),
    );
    let hint_lines = wrap_groups(&hint, inner_w);
    let room = area.height.saturating_sub(2) as usize;
    let buttons_row = 1;
    let text_shown = text_lines.len().min(room.saturating_sub(buttons_row));
    if text_shown < text_lines.len() {
        text_lines.truncate(text_shown);
        if let Some(last) = text_lines.last_mut() {
            while !last.is_empty() && last.chars().count() + 1 > inner_w {
                last.pop();
            }
            last.push('…');
        }
    }
    let hint_shown = match room >= text_shown + buttons_row + hint_lines.len() {
        true => hint_lines.len(),
        false => 0,
    };
    let blank = usize::from(room > text_shown + buttons_row + hint_shown);
    let [text_shown, hint_shown, blank, buttons_row] =
        [text_shown, hint_shown, blank, buttons_row].map(|n| n as u16);
    let styled = |lines: Vec<String>, style| {
        Paragraph::new(
            lines
                .into_iter()
                .map(|l| Line::styled(l, style))
                .collect::<Vec<_>>(),
        )
    };
    let text = styled(text_lines, t.text());
    let hint = styled(hint_lines, t.muted());
    let r = centered(
        area,
        width,
        text_shown + blank + buttons_row + hint_shown + 2,
    );
    f.render_widget(Clear, r);
    let block = dialog(app, title, r.width);
    let inner = block.inner(r);
    f.render_widget(block, r);
    // Narrower buttons where the usual ones do not fit (down to 13 columns inside).
    let (pad, gap) = match inner.width {
        19.. => (" ", "   "),
        17..=18 => (" ", " "),
        _ => ("", " "),
    };
    let button = |label: &str, on: bool| {
        let style = if on { t.selected() } else { t.muted() };
        Span::styled(format!("[{pad}{label}{pad}]"), style)
    };
    let buttons = Line::from(vec![
        button("Cancel", !ok),
        Span::raw(gap),
        button("OK", ok),
    ]);
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Length(text_shown + blank),
        Constraint::Length(buttons_row),
        Constraint::Length(hint_shown),
    ])
    .areas(inner);
    f.render_widget(text, top);
    f.render_widget(Paragraph::new(buttons), middle);
    f.render_widget(hint, bottom);
}

/// A hint's " · "-separated groups packed into lines of `width` columns, never split
/// inside a group ("⏎ choose"); a group wider than a line is cut with "…".
fn wrap_groups(hint: &str, width: usize) -> Vec<String> {
    let w = |s: &str| Span::raw(s.to_string()).width();
    let mut lines: Vec<String> = Vec::new();
    for group in hint.split(" · ").filter(|g| !g.is_empty()) {
        match lines.last_mut() {
            Some(last) if w(last) + 3 + w(group) <= width => {
                last.push_str(" · ");
                last.push_str(group);
            }
            _ => lines.push(super::cut_line(Line::from(group.to_string()), width).to_string()),
        }
    }
    lines
}

pub fn loading(f: &mut Frame, area: Rect, app: &App, view: &View) {
    let t = app.theme();
    let r = centered(area, 72, 10);
    let mut lines = vec![
        Line::styled(view.loading.unwrap_or("loading").to_string(), t.accent()),
        Line::default(),
        Line::styled(format!("model   {}", view.machine.model), t.text()),
        Line::styled(format!("session {}", view.session), t.text()),
        Line::default(),
        Line::styled(
            format!(
                "{} quits (nothing is written before the model is ready)",
                app.key_name(Action::Quit, Mode::Normal, !view.live())
            ),
            t.muted(),
        ),
    ];
    if let Some(n) = &app.notice {
        lines.push(Line::styled(n.text.clone(), t.warn()));
    }
    let p = Paragraph::new(lines)
        .block(dialog(app, "Arborist", r.width))
        .wrap(Wrap { trim: true });
    f.render_widget(p, r);
}
