//! The heatmap: blocks as columns, the seven linear kinds as rows, one coloured cell per
//! layer, a legend, and the exact numbers of the focused cell in text.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{fit, panel_block};
use crate::agent::parse::shown;
use crate::tui::app::{App, Panel};
use crate::tui::colormap::normalise;
use crate::tui::grid::{short_name, Grid, Metric, KINDS};
use crate::tui::keymap::{Action, Mode};

const LABEL: u16 = 6;

/// Returns the grid geometry for mouse clicks: left, top, cell width, first block, shown.
pub fn render(
    f: &mut Frame,
    area: Rect,
    app: &App,
    grid: &Grid,
) -> Option<(u16, u16, u16, usize, usize)> {
    let t = app.theme();
    let focused = app.focus == Panel::Heatmap || app.editor.is_some();
    let avail = area.width.saturating_sub(2 + LABEL) as usize;
    let blocks = grid.blocks.max(1);
    let cw = (avail / blocks).clamp(1, 4);
    let shown = (avail / cw).min(blocks).max(1);
    let cursor = app.cursor.0.min(blocks - 1);
    let first = cursor.saturating_sub(shown - 1).min(blocks - shown);
    // Cut from the end when narrow: the hint goes first.
    let mut title = format!("Heatmap · {}", app.metric.label());
    if shown < blocks {
        title += &format!(" · blocks {}-{} of {blocks}", first, first + shown - 1);
    }
    // A profile is not retaken after a rollback (nor between `--profile-every` steps).
    if let Some(i) = grid.profiled_at.filter(|_| app.metric.from_profile()) {
        title += &format!(" · profiled at iter {i}");
    }
    let metric: Vec<String> = [Action::NextMetric, Action::PrevMetric]
        .iter()
        .filter_map(|&a| app.key(a, Mode::Normal, false))
        .collect();
    // Whole or not at all (it was cut to `m…`): the title sits between the corners, with
    // a space either side.
    let hint = format!(" · {} metric", metric.join("/"));
    let fits = title.chars().count() + hint.chars().count() + 4 <= area.width as usize;
    if !metric.is_empty() && fits {
        title += &hint;
    }
    let block = panel_block(app, title, focused, false, area.width);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if grid.blocks == 0 || inner.height < 3 {
        let msg = Paragraph::new("no layers yet: waiting for the baseline").style(t.muted());
        f.render_widget(msg, inner);
        return None;
    }
    let (lo, hi) = grid.range(app.metric);
    let buf = f.buffer_mut();
    let x0 = inner.x + LABEL;
    header(buf, inner, x0, cw, first, shown, t.muted());
    for (k, kind) in KINDS.iter().enumerate() {
        let y = inner.y + 1 + k as u16;
        if y >= inner.bottom() {
            break;
        }
        buf.set_stringn(inner.x, y, format!("{kind:>5} "), LABEL as usize, t.muted());
        for i in 0..shown {
            let b = first + i;
            let x = x0 + (i * cw) as u16;
            let focus = (b, k) == (cursor, app.cursor.1);
            let (style, text) = match grid.cell(b, k) {
                None => (Style::default(), " ".repeat(cw)),
                Some(c) => match c.value(app.metric) {
                    None => (t.muted(), fill(cw, '·', c.proposed.is_some(), focus)),
                    Some(v) => {
                        let (s, g) = t.heat(normalise(v, lo, hi));
                        (s, fill(cw, g, c.proposed.is_some(), focus))
                    }
                },
            };
            let style = if focus {
                style.add_modifier(Modifier::REVERSED | Modifier::BOLD)
            } else {
                style
            };
            buf.set_stringn(x, y, text, cw, style);
        }
    }
    let mut lines = vec![legend(app, lo, hi, cw)];
    lines.extend(
        details(app, grid, cursor)
            .into_iter()
            .map(|l| fit(l, inner.width as usize)),
    );
    for (y, line) in (inner.y + 8..inner.bottom()).zip(lines) {
        buf.set_line(inner.x, y, &line, inner.width);
    }
    Some((x0, inner.y + 1, cw as u16, first, shown))
}

/// The cell's text: its fill glyph, a dot when the layer is in the proposal, brackets on focus.
fn fill(cw: usize, glyph: char, marked: bool, focus: bool) -> String {
    let mut chars = vec![glyph; cw];
    if marked {
        chars[cw / 2] = '•';
    }
    if focus && cw >= 3 {
        chars[0] = '[';
        chars[cw - 1] = ']';
    }
    chars.into_iter().collect()
}

fn header(buf: &mut Buffer, inner: Rect, x0: u16, cw: usize, first: usize, shown: usize, s: Style) {
    let width = (first + shown - 1).to_string().len();
    // Label every `step`-th block so numbers never run into each other.
    let step = (width + 1).div_ceil(cw).max(1);
    for i in 0..shown {
        let b = first + i;
        if !b.is_multiple_of(step) {
            continue;
        }
        let x = x0 + (i * cw) as u16;
        let text = if step == 1 {
            format!("{b:>cw$}")
        } else {
            format!("{b}")
        };
        let room = (inner.right().saturating_sub(x)) as usize;
        buf.set_stringn(x, inner.y, text, room, s);
    }
}

/// The colour scale and the marks; cells narrower than 3 have no room for the focus's
/// brackets, only its reversed colours.
fn legend(app: &App, lo: f64, hi: f64, cw: usize) -> Line<'static> {
    let t = app.theme();
    let num = |v: f64| match app.metric {
        Metric::WandaZ | Metric::GradZ | Metric::Combined => format!("{v:+.2}"),
        _ => format!("{v:.3}"),
    };
    let mut spans = vec![Span::styled(format!("{:>5} ", num(lo)), t.muted())];
    for i in 0..12 {
        let (s, g) = t.heat(i as f64 / 11.0);
        spans.push(Span::styled(g.to_string(), s));
    }
    spans.push(Span::styled(format!(" {}", num(hi)), t.muted()));
    let focus = if cw >= 3 {
        "[ ] focus"
    } else {
        "reversed: focus"
    };
    spans.push(Span::styled(
        format!("   • in proposal   {focus}"),
        t.muted(),
    ));
    Line::from(spans)
}

/// The focused cell's two lines of numbers, on their own: on a screen too short for the
/// heatmap they stand above the editor, so hjkl and + are not used blind.
pub fn focus_strip(f: &mut Frame, area: Rect, app: &App, grid: &Grid) {
    let t = app.theme();
    let cursor = app.cursor.0.min(grid.blocks.saturating_sub(1));
    let mut lines = details(app, grid, cursor);
    if let Some(first) = lines.first_mut() {
        // The layer's name whole before the words: at 50 columns the long label left
        // "layers.0.self_attn." for q, k, v and o alike.
        let name = first.spans.first().map_or(0, |s| s.width());
        // The editor's keys: the strip stands above the editor only.
        let label = format!(
            "heatmap cursor ({}, {} adds): ",
            app.move_keys(Mode::Edit, false),
            app.key_name(Action::AddLayer, Mode::Edit, false)
        );
        let label = if label.chars().count() + name <= area.width as usize {
            label
        } else {
            "cursor: ".to_string()
        };
        first.spans.insert(0, Span::styled(label, t.muted()));
    }
    let lines: Vec<_> = lines
        .into_iter()
        .map(|l| fit(l, area.width as usize))
        .collect();
    f.render_widget(Paragraph::new(lines).style(t.base()), area);
}

fn details(app: &App, grid: &Grid, cursor: usize) -> Vec<Line<'static>> {
    let t = app.theme();
    let (b, k) = (cursor, app.cursor.1);
    let Some(c) = grid.cell(b, k) else {
        return vec![Line::styled(
            format!("block {b} {}: no such layer", KINDS[k.min(6)]),
            t.muted(),
        )];
    };
    // Sparsities as the proposal table and the prompts show them (0.09375, not 0.0938):
    // a value read here is one the editor accepts. Each part is whole or left out.
    // Most telling first: what does not fit is left out from the end.
    let first = Line::from(vec![
        Span::styled(short_name(c.name).to_string(), t.accent()),
        Span::styled(format!(" · sparsity {}", shown(c.sparsity)), t.text()),
        Span::styled(
            format!(
                " (dense {}, {})",
                shown(c.dense),
                signed(c.sparsity - c.dense)
            ),
            t.text(),
        ),
        Span::styled(format!(" · {} params", c.params), t.muted()),
    ]);
    let mut parts = match c.profile {
        Some(p) => vec![
            format!("z_s {:+.3}", p.z_s),
            format!("  z_g {:+.3}", p.z_g),
            format!("  z_s+z_g {:+.3}", p.z_s + p.z_g),
        ],
        None => vec!["not profiled yet".into()],
    };
    if let Some(to) = c.proposed {
        parts.push(format!(
            " · proposed {} ({})",
            shown(to),
            signed(to - c.sparsity)
        ));
    }
    let second = parts.into_iter().map(|p| Span::styled(p, t.text()));
    vec![first, Line::from(second.collect::<Vec<_>>())]
}

/// A change of sparsity with its sign, as many decimals as the table shows.
fn signed(d: f64) -> String {
    match d < 0.0 {
        true => format!("-{}", shown(-d)),
        false => format!("+{}", shown(d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_show_the_tables_decimals_with_their_sign() {
        assert_eq!(signed(0.09375), "+0.09375");
        assert_eq!(signed(-0.09375), "-0.09375");
        assert_eq!(signed(0.0), "+0");
    }
}
