//! Drawing one frame from the app state and a view. Layout adapts to the terminal: side by
//! side panels when there is room, one tabbed panel under the heatmap when there is not.

mod details;
pub(crate) use details::DetailsCache;
mod heatmap;
mod overlay;
mod panels;
mod proposal;
mod status;
mod trends;
mod typed;

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Areas, Panel};
use super::grid::Grid;
use super::keymap::{Action, Mode};
use super::view::View;
use crate::agent::LayerTarget;
use crate::session::Phase;

pub use overlay::help_lines;

/// Heatmap height: borders, block numbers, seven kinds, legend, two lines for the focus.
const HEAT_HEIGHT: u16 = 13;

/// Below this nothing useful fits: a message says so.
pub const MIN_WIDTH: u16 = 50;
pub const MIN_HEIGHT: u16 = 12;

/// The fewest lines a panel under the heatmap gets; with less, one panel fills the screen.
const MIN_PANEL: u16 = 8;

/// Below this the panels collapse into tabs.
pub fn compact(area: Rect) -> bool {
    area.width < 100 || area.height < 30
}

/// The layers the heatmap marks: the editor's table, the proposal under review, or the
/// one being applied.
fn marked(app: &App, view: &View) -> Vec<LayerTarget> {
    if let Some(ed) = &app.editor {
        return ed.preview();
    }
    if let Some(p) = view.pending {
        return p.layers.clone();
    }
    match (&view.machine.phase, &view.machine.applying) {
        (Phase::Applying, Some(p)) => p.layers.clone(),
        _ => vec![],
    }
}

pub fn draw(f: &mut Frame, app: &App, view: &View) -> Areas {
    let area = f.area();
    let t = app.theme();
    f.render_widget(Block::default().style(t.base()), area);
    if view.loading.is_some() {
        overlay::loading(f, area, app, view);
        return Areas::default();
    }
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        // `q quits` on a line of its own: wrapped with the rest, it split at 40–45 columns.
        let msg = vec![
            Line::from(format!(
                "terminal too small ({}×{}): need {MIN_WIDTH}×{MIN_HEIGHT}",
                area.width, area.height
            )),
            Line::from(format!(
                "{} quits",
                app.key_name(Action::Quit, Mode::Normal, !view.live())
            )),
        ];
        let y = area.y + area.height / 2;
        f.render_widget(
            Paragraph::new(msg)
                .style(t.warn())
                .wrap(Wrap { trim: true })
                .alignment(Alignment::Center),
            Rect::new(area.x, y.saturating_sub(1), area.width, 3.min(area.height)),
        );
        let mut areas = Areas {
            too_small: true,
            ..Areas::default()
        };
        // Only a confirmation (of quit) is drawn over it: anything else open waits unseen.
        if matches!(app.overlay, crate::tui::app::Overlay::Confirm { .. }) {
            areas.overlay(overlay::render(f, area, app, view, false));
        }
        return areas;
    }
    let mut areas = Areas::default();
    let [body, bar] = Layout::vertical([Constraint::Min(0), Constraint::Length(2)]).areas(area);
    let targets = marked(app, view);
    let grid = Grid::build(view.machine, &targets);
    // Too short for the heatmap and a panel: one of them fills the body. The proposal
    // (or the editor) wins while it matters, so `e` never edits out of sight.
    if body.height < HEAT_HEIGHT + MIN_PANEL {
        areas.one_panel = true;
        let panel_first = app.editor.is_some() || view.can_review() || app.focus != Panel::Heatmap;
        if panel_first {
            let shown = if app.editor.is_some() || app.focus == Panel::Heatmap {
                Panel::Proposal
            } else {
                app.tab
            };
            // The editor picks layers with the heatmap's cursor: its cell's numbers show
            // above the table (until 2026-12-01 nothing showed where the cursor was).
            let body = if app.editor.is_some() {
                let [strip, rest] =
                    Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(body);
                heatmap::focus_strip(f, strip, app, &grid);
                rest
            } else {
                body
            };
            draw_panel(f, body, shown, app, view, &mut areas, true);
            areas.panels.push((shown, body));
        } else {
            areas.heat = heatmap::render(f, body, app, &grid);
            areas.panels.push((Panel::Heatmap, body));
        }
        status::render(f, bar, app, view);
        areas.overlay(overlay::render(f, area, app, view, true));
        return areas;
    }
    let heat_h = HEAT_HEIGHT.min(body.height);
    let [top, rest] =
        Layout::vertical([Constraint::Length(heat_h), Constraint::Min(0)]).areas(body);
    let natural = (8 + 4 * grid.blocks as u16).max(84);
    let trends_on_top = !compact(area) && top.width >= natural + 40;
    let heat_area = if trends_on_top {
        let [h, tr] =
            Layout::horizontal([Constraint::Length(natural), Constraint::Min(0)]).areas(top);
        trends::render(f, tr, app, view, app.focus == Panel::Trends, false);
        areas.panels.push((Panel::Trends, tr));
        h
    } else {
        top
    };
    areas.heat = heatmap::render(f, heat_area, app, &grid);
    areas.panels.push((Panel::Heatmap, heat_area));
    if compact(area) {
        let shown = app.tab;
        draw_panel(f, rest, shown, app, view, &mut areas, true);
        areas.panels.push((shown, rest));
    } else {
        let log_h = (rest.height / 4).clamp(4, 12);
        let [middle, log] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(log_h)]).areas(rest);
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(middle);
        let mut place = |p: Panel, r: Rect, areas: &mut Areas| {
            draw_panel(f, r, p, app, view, areas, false);
            areas.panels.push((p, r));
        };
        place(Panel::Proposal, left, &mut areas);
        if trends_on_top {
            place(Panel::Reflection, right, &mut areas);
        } else {
            let [tr, refl] = Layout::vertical([
                Constraint::Length(trends_height(right.height)),
                Constraint::Min(0),
            ])
            .areas(right);
            place(Panel::Trends, tr, &mut areas);
            place(Panel::Reflection, refl, &mut areas);
        }
        place(Panel::Log, log, &mut areas);
    }
    status::render(f, bar, app, view);
    areas.overlay(overlay::render(f, area, app, view, true));
    areas
}

/// The Trends panel's rows above the Reflection: half the column, but on a short screen
/// enough for a plot of three rows while the Reflection keeps one line (at 100x30 the
/// halves left the plot one row).
fn trends_height(column: u16) -> u16 {
    const PLOT: u16 = 8; // borders, legend, three plot rows, the x axis and its labels
    const REFLECTION: u16 = 3;
    column
        .div_ceil(2)
        .max(PLOT.min(column.saturating_sub(REFLECTION)))
}

fn draw_panel(
    f: &mut Frame,
    r: Rect,
    p: Panel,
    app: &App,
    view: &View,
    areas: &mut Areas,
    tabbed: bool,
) {
    let focused = app.focus == p || (tabbed && app.focus != Panel::Heatmap);
    let max = match p {
        Panel::Proposal => {
            let (rows, max) = proposal::render(f, r, app, view, focused, tabbed);
            areas.rows = rows;
            max
        }
        Panel::Reflection => panels::reflection(f, r, app, view, focused, tabbed),
        Panel::Log => panels::log(f, r, app, view, focused, tabbed),
        Panel::Trends => return trends::render(f, r, app, view, focused, tabbed),
        Panel::Heatmap => return,
    };
    areas.scroll_max.push((p, max));
}

/// Lines of `p` (wrapped at `inner`'s width) that do not fit in `inner`.
pub(crate) fn overflow(p: &Paragraph, inner: Rect) -> u16 {
    let lines = p.line_count(inner.width);
    lines
        .saturating_sub(inner.height as usize)
        .min(u16::MAX as usize) as u16
}

/// `block` with `↓ N more lines (pgdn)` on its bottom border when `hidden` lines lie below
/// the view: a proposal of 8 layers on a 24-line screen hid its last rows and reasoning
/// without a sign. The keys are the keymap's; a panel pgdn does not scroll now says to
/// move the focus to it first.
pub(crate) fn more_below<'a>(block: Block<'a>, hidden: u16, app: &App, panel: Panel) -> Block<'a> {
    if hidden == 0 {
        return block;
    }
    let s = if hidden == 1 { "" } else { "s" };
    let key = |a| app.key(a, Mode::Normal, false);
    let how = match (key(Action::PageDown), key(Action::NextPanel)) {
        (Some(down), _) if app.paged_panel() == panel => format!(" ({down})"),
        (Some(down), Some(next)) => format!(" ({next} to it, then {down})"),
        _ => String::new(),
    };
    block.title_bottom(
        Line::styled(
            format!(" ↓ {hidden} more line{s}{how} "),
            app.theme().warn(),
        )
        .right_aligned(),
    )
}

/// A bordered panel with its title; a tabbed panel lists the tabs first, the shown one lit.
pub(crate) fn panel_block<'a>(
    app: &App,
    title: String,
    focused: bool,
    tabbed: bool,
    width: u16,
) -> Block<'a> {
    let t = app.theme();
    let mut spans = vec![Span::raw(" ")];
    if tabbed {
        // The panel drawn, named by its title's first part: with one panel on a short
        // screen it can differ from the selected tab.
        let shown = title
            .split_once(" · ")
            .map_or(title.as_str(), |(name, _)| name);
        for p in [
            Panel::Proposal,
            Panel::Reflection,
            Panel::Trends,
            Panel::Log,
        ] {
            let style = if panel_name(p) == shown {
                t.title()
            } else {
                t.muted()
            };
            spans.push(Span::styled(format!("{} ", panel_name(p)), style));
        }
        // The key that cycles them, as the keymap has it.
        let how = app
            .key(Action::NextPanel, Mode::Normal, false)
            .map_or(String::new(), |k| format!("({k}) "));
        spans.push(Span::styled(format!("{how}· "), t.muted()));
        let rest = title.split_once(" · ").map_or("", |(_, r)| r);
        spans.push(Span::styled(format!("{rest} "), t.text()));
    } else {
        spans.push(Span::styled(format!("{title} "), t.title()));
    }
    // Cut with a mark between the corners: a title cut at the border read as whole
    // ("its evaluation is the").
    let title = cut_line(Line::from(spans), width.saturating_sub(2) as usize);
    Block::default()
        .borders(Borders::ALL)
        .border_style(t.border(focused))
        .title(title)
}

/// `line` in `width` columns: the spans that fit whole, then "…" when any is left out
/// (cut at the edge, "· 16384 params" read "· 1"). The first span is cut if it must be.
pub(crate) fn fit(line: Line<'static>, width: usize) -> Line<'static> {
    if line.width() <= width {
        return line;
    }
    let mut kept: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for span in line.spans {
        if used + span.width() + 1 > width {
            if kept.is_empty() {
                return cut_line(Line::from(span), width);
            }
            break;
        }
        used += span.width();
        kept.push(span);
    }
    kept.push(Span::raw("…"));
    Line::from(kept)
}

/// `line` in `width` columns, cut at a character with "…" marking the cut.
pub(crate) fn cut_line(line: Line<'static>, width: usize) -> Line<'static> {
    if line.width() <= width {
        return line;
    }
    let mut kept: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    'spans: for span in line.spans {
        let mut text = String::new();
        for c in span.content.chars() {
            let w = Span::raw(c.to_string()).width();
            if used + w + 1 > width {
                kept.push(Span::styled(text, span.style));
                break 'spans;
            }
            used += w;
            text.push(c);
        }
        kept.push(Span::styled(text, span.style));
    }
    if width > 0 {
        kept.push(Span::raw("…"));
    }
    Line::from(kept)
}

pub fn panel_name(p: Panel) -> &'static str {
    match p {
        Panel::Heatmap => "Heatmap",
        Panel::Proposal => "Proposal",
        Panel::Reflection => "Reflection",
        Panel::Trends => "Trends",
        Panel::Log => "Log",
    }
}

#[cfg(test)]
mod fit_tests {
    use super::*;

    #[test]
    fn a_cell_line_too_long_loses_whole_parts_and_says_so() {
        let line = || {
            Line::from(
                [
                    "layers.0.self_attn.q_proj",
                    " · 16384 params",
                    " · sparsity 0.59375",
                ]
                .map(Span::raw)
                .to_vec(),
            )
        };
        let at = |w| fit(line(), w).to_string();
        assert_eq!(
            at(80),
            "layers.0.self_attn.q_proj · 16384 params · sparsity 0.59375"
        );
        // Cut at the edge this read "· 1", a layer of one parameter.
        assert_eq!(at(45), "layers.0.self_attn.q_proj · 16384 params…");
        assert_eq!(at(40), "layers.0.self_attn.q_proj…");
        assert_eq!(at(10), "layers.0.…");
    }

    #[test]
    fn a_long_title_is_cut_with_a_mark_at_a_character() {
        let title = || {
            Line::from(vec![
                Span::raw(" Proposal · iter 45 · "),
                Span::raw("decided; its evaluation is the next job "),
            ])
        };
        let at = |w| cut_line(title(), w).to_string();
        assert_eq!(
            at(80),
            " Proposal · iter 45 · decided; its evaluation is the next job "
        );
        assert_eq!(at(30), " Proposal · iter 45 · decided…");
        assert_eq!(at(12), " Proposal ·…");
        // Full-width characters take two columns: never half of one.
        let wide = Line::from("ディスク");
        assert_eq!(cut_line(wide, 6).to_string(), "ディ…");
    }
}
