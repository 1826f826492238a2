//! The proposal panel: layer → current → proposed → delta, the reasoning, and while editing
//! the table in place with every problem explained under it.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::panel_block;
use crate::agent::context::model_order;
use crate::agent::parse::shown;
use crate::agent::{LayerTarget, StepOutcome};
use crate::session::{Decision, Event, Phase};
use crate::tui::app::App;
use crate::tui::editor::{parse_value, EditKind, Editor, Field};
use crate::tui::grid::short_name;
use crate::tui::keymap::{Action, Mode};
use crate::tui::theme::Theme;
use crate::tui::view::View;

/// One table row: layer, its sparsity before the step, the proposed value as text, added
/// by the reviewer, selected in the editor.
struct RowText<'a> {
    name: &'a str,
    before: f64,
    text: String,
    added: bool,
    selected: bool,
}

/// Draws the panel; returns the first table row's line, its index and the row count, and
/// how far the panel can scroll.
pub fn render(
    f: &mut Frame,
    area: Rect,
    app: &App,
    view: &View,
    focused: bool,
    tabbed: bool,
) -> (Option<(u16, usize, usize)>, u16) {
    let t = app.theme();
    let m = view.machine;
    let current = |name: &str| {
        m.checkpoint()
            .and_then(|c| c.sparsity.get(name).copied())
            .unwrap_or(0.0)
    };
    let targets = |layers| target_rows(layers, &current);
    let agent_reasoning = view.pending.map(|p| p.reasoning.as_str());
    let (state, rows, reasoning) = match (&app.editor, view.pending) {
        (Some(ed), _) => (
            editing_title(ed),
            editor_rows(ed, &current),
            agent_reasoning,
        ),
        (None, Some(p)) => (
            format!(
                "iter {} · {} · waiting for review",
                m.iteration,
                agent(view)
            ),
            targets(&p.layers),
            agent_reasoning,
        ),
        (None, None) => match (&m.phase, &m.applying, m.history.last()) {
            (Phase::Applying, Some(p), _) => (
                if view.live() {
                    format!("iter {} · applying and evaluating", m.iteration)
                } else {
                    // Approved, edited or overridden: the reviewer's line below says which.
                    format!(
                        "iter {} · decided; its evaluation is the next event",
                        m.iteration
                    )
                },
                targets(&p.layers),
                Some(p.reasoning.as_str()),
            ),
            // After the guard: what was actually applied, from the sparsity it had before.
            (_, Some(p), Some(o)) => (
                format!("iter {} · {}", o.iteration, o.note),
                applied_rows(o),
                Some(p.reasoning.as_str()),
            ),
            _ => ("none yet".to_string(), vec![], None),
        },
    };
    // After the guard the table shows what was applied, from the sparsity before it.
    let (before, after) = match (&app.editor, view.pending, &m.phase) {
        (None, None, Phase::Reflecting | Phase::Profiling | Phase::Proposing | Phase::Done(_)) => {
            ("before", "applied")
        }
        _ => ("current", "proposed"),
    };
    // Table lines are cut, not wrapped: clicks and the editor count one line per row.
    let width = area.width.saturating_sub(2) as usize;
    // The numbers keep their columns: a narrow panel shortens the layer names instead (at
    // 100x30 the deltas were cut to "+0.0").
    // As wide as the longest name where there is room (a block past 9 made q_proj's 26).
    let longest = rows
        .iter()
        .map(|r| short_name(r.name).chars().count())
        .max();
    let name_w = width
        .saturating_sub(1 + NUMBERS)
        .clamp(8, longest.unwrap_or(0).max(25));
    // The lines up to the reasoning's cursor, while it is typed.
    let mut typing_at = None;
    let mut lines = vec![clip(
        Line::from(vec![
            Span::styled(format!("{:<w$}", "layer", w = name_w + 1), t.muted()),
            Span::styled(format!("{before:>9}{after:>11}{:>10}", "delta"), t.muted()),
        ]),
        width,
    )];
    for r in &rows {
        lines.push(clip(row_line(t, r, name_w), width));
    }
    let table_top: i32 = 1;
    if rows.is_empty() {
        lines.push(Line::styled(empty_message(app, view), t.muted()));
    }
    // The status bar has room for the start of a failure only; here it wraps in full.
    // (In replay it is the note on a damaged event, which says itself what stopped.)
    if let Some(e) = &app.failure {
        let text = if view.live() {
            format!("stopped: {e}")
        } else {
            e.clone()
        };
        lines.push(Line::styled(text, t.danger()));
    }
    if let Some(ed) = &app.editor {
        typing_at = editor_lines(app, view, ed, width, &mut lines);
    }
    // Feedback waits for the agent's next proposal; once the session is finished no agent
    // reads it, and under the last step's table it read as that step's.
    if let Some(fb) = m.feedback().filter(|_| !m.is_done()) {
        lines.push(Line::styled(
            format!("your feedback to the agent: {fb}"),
            t.warn(),
        ));
    }
    if let Some(d) = decision_line(view) {
        lines.push(Line::styled(d, t.accent()));
    }
    if let Some(r) = reasoning {
        // Under an editor it is the agent's, not what the reviewer is writing.
        let label = match app.editor {
            Some(_) => "the agent's reasoning: ",
            None => "reasoning: ",
        };
        lines.push(Line::from(vec![
            Span::styled(label, t.muted()),
            Span::styled(r.to_string(), t.text()),
        ]));
    }
    let block = panel_block(
        app,
        format!("Proposal · {state}"),
        focused,
        tabbed,
        area.width,
    );
    let inner = block.inner(area);
    let text = Paragraph::new(lines).wrap(Wrap { trim: false });
    let max = super::overflow(&text, inner);
    let mut scroll = app.scroll(crate::tui::app::Panel::Proposal).min(max);
    // The reasoning being typed keeps its cursor in view (a long one ran off the bottom,
    // and typed characters changed nothing that could be seen).
    if let Some(to_cursor) = typing_at {
        let rows = Paragraph::new(to_cursor)
            .wrap(Wrap { trim: false })
            .line_count(inner.width);
        let need = rows.saturating_sub(inner.height as usize).min(max as usize) as u16;
        scroll = scroll.max(need);
    }
    let block = super::more_below(block, max - scroll, app, crate::tui::app::Panel::Proposal);
    f.render_widget(text.block(block).scroll((scroll, 0)), area);
    let top = table_top - scroll as i32;
    let first = (-top).max(0) as usize;
    (Some((inner.y + top.max(0) as u16, first, rows.len())), max)
}

/// What an empty table says: the agent is working, how to add a layer, or what to do
/// about an agent that gave no valid proposal.
fn empty_message(app: &App, view: &View) -> String {
    let replay = !view.live();
    let key = |a: Action, mode: Mode| app.key_name(a, mode, replay);
    match view.machine.phase {
        Phase::Proposing => "the agent is working on a proposal…".to_string(),
        _ if app.editor.is_some() => format!(
            "empty: move in the heatmap ({}) and press {} to add",
            app.move_keys(Mode::Edit, replay),
            key(Action::AddLayer, Mode::Edit)
        ),
        _ if view.pending.is_some() => format!(
            "no valid proposal from the agent: {} override, {} ask again, {} skip",
            key(Action::Override, Mode::Normal),
            key(Action::Reject, Mode::Normal),
            key(Action::Skip, Mode::Normal)
        ),
        _ => "no proposal".to_string(),
    }
}

/// The editor's problems (or that it is valid) and an override's reasoning field, added
/// to `lines`; the lines up to the reasoning's cursor while it is typed.
fn editor_lines(
    app: &App,
    view: &View,
    ed: &Editor,
    width: usize,
    lines: &mut Vec<Line<'static>>,
) -> Option<Vec<Line<'static>>> {
    let t = app.theme();
    let field = app
        .key(Action::SwitchField, Mode::Edit, false)
        .map_or(String::new(), |k| format!(" ({k})"));
    for p in &ed.problems {
        let p = app.with_keys(p.clone(), view);
        lines.push(Line::styled(format!("✗ {p}"), t.danger()));
    }
    if ed.problems.is_empty() {
        let send = app.key_name(Action::Submit, Mode::Edit, !view.live());
        lines.push(Line::styled(format!("✓ valid: {send} sends it"), t.good()));
    }
    if ed.kind == EditKind::Override {
        let style = if ed.field == Field::Reasoning {
            t.accent()
        } else {
            t.muted()
        };
        let label = format!("reasoning{field}: ");
        if ed.field == Field::Reasoning {
            // Rows of its own, so the cursor's row is known and kept in view.
            let typed = super::typed::typed(t, (&label, style), &ed.reasoning, width);
            let mut to_cursor = lines.clone();
            to_cursor.extend(typed.rows[..=typed.cursor_row].iter().cloned());
            lines.extend(typed.rows);
            return Some(to_cursor);
        } else {
            lines.push(Line::from(vec![
                Span::styled(label, style),
                Span::styled(ed.reasoning.as_str().to_string(), t.text()),
            ]));
        }
    }
    None
}

fn editing_title(ed: &Editor) -> String {
    match ed.kind {
        EditKind::Edit => "editing: digits change a value".into(),
        EditKind::Override => "override: your own proposal".into(),
    }
}

fn editor_rows<'a>(ed: &'a Editor, current: &impl Fn(&str) -> f64) -> Vec<RowText<'a>> {
    ed.rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let selected = i == ed.selected && ed.field == Field::Table;
            RowText {
                name: &r.name,
                before: current(&r.name),
                text: if selected {
                    format!("{}▏", r.value)
                } else {
                    r.value.clone()
                },
                added: r.added,
                selected,
            }
        })
        .collect()
}

fn target_rows<'a>(layers: &'a [LayerTarget], current: &impl Fn(&str) -> f64) -> Vec<RowText<'a>> {
    layers
        .iter()
        .map(|l| RowText {
            name: &l.name,
            before: current(&l.name),
            text: shown(l.sparsity),
            added: false,
            selected: false,
        })
        .collect()
}

fn applied_rows(o: &StepOutcome) -> Vec<RowText<'_>> {
    let mut changes: Vec<_> = o.changes.iter().collect();
    changes.sort_by(|a, b| model_order(&a.name).cmp(&model_order(&b.name)));
    changes
        .into_iter()
        .map(|c| RowText {
            name: &c.name,
            before: c.from,
            text: shown(c.to),
            added: false,
            selected: false,
        })
        .collect()
}

/// `line` cut to `width` characters (the table holds no wide characters).
fn clip(line: Line<'static>, width: usize) -> Line<'static> {
    let mut left = width;
    let mut spans = Vec::new();
    for s in line.spans {
        let n = s.content.chars().count();
        if n <= left {
            left -= n;
            spans.push(s);
        } else {
            let cut: String = s.content.chars().take(left).collect();
            spans.push(Span::styled(cut, s.style));
            break;
        }
    }
    Line::from(spans)
}

/// Columns of a row's three numbers (before, after, delta).
const NUMBERS: usize = 9 + 11 + 10;

/// `name` in `w` columns: whole and padded, or its end after "…" (the layer kind and block
/// are at the end).
fn fit_name(name: &str, w: usize) -> String {
    let n = name.chars().count();
    if n <= w {
        return format!("{name:<w$}");
    }
    let tail: String = name.chars().skip(n + 1 - w).collect();
    format!("…{tail}")
}

fn row_line(t: &Theme, r: &RowText, name_w: usize) -> Line<'static> {
    let value = parse_value(r.text.trim_end_matches('▏')).ok();
    let delta = value.map_or("?".to_string(), |v| signed(v - r.before));
    let mark = if r.added { "+" } else { " " };
    let base = if r.selected {
        t.selected()
    } else {
        Style::default()
    };
    let delta_style = match value {
        None => t.danger(),
        Some(v) if v > r.before => t.warn(),
        Some(_) => t.muted(),
    };
    let underline = if r.selected {
        Modifier::UNDERLINED
    } else {
        Modifier::empty()
    };
    Line::from(vec![
        Span::styled(
            format!("{mark}{}", fit_name(short_name(r.name), name_w)),
            base.patch(t.text()),
        ),
        // To the digits a typed value is held to: the current value read off a 4-digit
        // column (0.2969 for 0.296875) was refused as below it or taken as a change.
        Span::styled(format!("{:>9}", shown(r.before)), base.patch(t.muted())),
        Span::styled(
            format!("{:>11}", r.text),
            base.patch(t.accent()).add_modifier(underline),
        ),
        Span::styled(format!("{delta:>10}"), base.patch(delta_style)),
    ])
}

/// A change of sparsity at three decimals, or to the digits values are shown with when
/// three would hide it (a step of 0.000025 read "+0.000").
fn signed(d: f64) -> String {
    let three = (d * 1e3).round() / 1e3;
    if (d - three).abs() < crate::agent::parse::SHOWN_TOLERANCE {
        return format!("{three:+.3}");
    }
    let text = shown(d.abs());
    if d < 0.0 {
        format!("-{text}")
    } else {
        format!("+{text}")
    }
}

/// The agent that made the latest proposal.
fn agent(view: &View) -> String {
    view.events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Proposed { agent, .. } => Some(agent.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "agent".into())
}

/// In replay: the latest decision so far, so an auditor sees it beside the table.
fn decision_line(view: &View) -> Option<String> {
    view.replay?;
    let events = view.events;
    events.iter().enumerate().rev().find_map(|(k, e)| match e {
        Event::Decided {
            iteration,
            by,
            decision,
        } => Some(format!(
            "iter {iteration} decided by {by}: {}",
            match decision {
                Decision::Approve => "approved as proposed".to_string(),
                Decision::Edit { layers } => {
                    match crate::session::events::proposal_of(&events[..k], *iteration) {
                        Some(p) => {
                            format!("edited, {}", crate::session::events::edit_detail(p, layers))
                        }
                        None => format!("edited ({} layers)", layers.len()),
                    }
                }
                Decision::Override { reasoning, .. } => format!("overridden: {reasoning}"),
                Decision::Reject { feedback } => format!("rejected: {feedback}"),
                Decision::Skip => "skipped (nothing pruned)".to_string(),
            }
        )),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_values_to_the_digits_they_are_checked_at() {
        let themes = crate::tui::theme::Themes::builtin(true);
        let row = |before: f64, text: &str| {
            let r = RowText {
                name: "model.layers.2.mlp.down_proj",
                before,
                text: text.into(),
                added: false,
                selected: false,
            };
            let line = row_line(themes.theme(), &r, 24);
            line.spans
                .iter()
                .map(|s| s.content.as_ref())
                .collect::<String>()
        };
        let line = row("0.296875".parse().unwrap(), "0.2969");
        assert!(line.contains(" 0.296875 "), "{line}");
        assert!(line.ends_with(" +0.000025"), "{line}");
        assert!(row(0.296875, "0.296875").ends_with(" +0.000"));
        assert!(row(0.3, "0.25").ends_with(" -0.050"));
        assert!(row(0.1, "0.2").ends_with(" +0.100"));
        assert!(row(0.1, "x").ends_with(" ?"));
    }
}
