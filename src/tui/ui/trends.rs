//! Perplexity per iteration against the dense baseline and the guard's threshold band,
//! rollbacks marked; the knowledge-probe accuracy underneath when probes are on.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};

use super::panel_block;
use ratatui::Frame;

use crate::session::Event;
use crate::tui::app::App;
use crate::tui::view::View;

pub fn render(f: &mut Frame, area: Rect, app: &App, view: &View, focused: bool, tabbed: bool) {
    let t = app.theme();
    let m = view.machine;
    let block = panel_block(
        app,
        "Trends · ppl per iteration".into(),
        focused,
        tabbed,
        area.width,
    );
    let body = block.inner(area);
    f.render_widget(block, area);
    let Some(dense) = m.dense.as_ref().map(|d| d.ppl) else {
        f.render_widget(Paragraph::new("no baseline yet").style(t.muted()), body);
        return;
    };
    let probes = probe_line(view, body.width as usize);
    let th = m.opts.threshold;
    let last = m.history.last().map_or(m.iteration, |o| o.iteration).max(1) as f64;
    let dense_line = vec![(0.0, dense), (last, dense)];
    let checkpoints: Vec<(f64, f64)> = m
        .checkpoints
        .iter()
        .map(|c| (c.iteration as f64, c.eval.ppl))
        .collect();
    let limit: Vec<(f64, f64)> = m
        .history
        .iter()
        .map(|o| (o.iteration as f64, o.ppl_before * (1.0 + th)))
        .collect();
    // A step your rollback undid is marked as rolled back: drawn as a kept step, the
    // kept line seemed to pass through it.
    let pick = |kept: bool| -> Vec<(f64, f64)> {
        m.history
            .iter()
            .filter(|o| (o.accepted && o.undone_to.is_none()) == kept && o.ppl_after.is_finite())
            .map(|o| (o.iteration as f64, o.ppl_after))
            .collect()
    };
    let (tried, rolled) = (pick(true), pick(false));
    // Scale to the perplexities; the limit line joins only when it is near them, so small
    // changes stay visible (the legend says when it is off the scale).
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (_, y) in [&dense_line, &checkpoints, &tried, &rolled]
        .iter()
        .flat_map(|v| v.iter())
    {
        lo = lo.min(*y);
        hi = hi.max(*y);
    }
    let span = (hi - lo).max(lo.abs() * 1e-3);
    let limit_low = limit.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let limit_shown = limit_low <= hi + span;
    if limit_shown {
        hi = limit.iter().map(|p| p.1).fold(hi, f64::max);
    }
    let pad = ((hi - lo) * 0.05).max(lo.abs() * 1e-4).max(1e-6);
    let (lo, hi) = (lo - pad, hi + pad);
    // Without colour every series needs its own glyph, in the plot and in the legend.
    let mono = t.mono;
    // A heavy dense line (the axes are light) and a dashed limit: bar and quadrant markers
    // both drew a flat line as "▄▄▄" and could not be told apart.
    let (kept_m, dense_m, limit_m) = if mono {
        (Marker::Braille, Marker::Custom('━'), Marker::Custom('╌'))
    } else {
        (Marker::Braille, Marker::Braille, Marker::Braille)
    };
    let glyph = |m: Marker| match (mono, m) {
        (false, _) => "━".to_string(),
        (true, Marker::Custom(c)) => c.to_string(),
        (true, _) => "⣀".to_string(),
    };
    // A limit above the scale is not drawn: its item says so with an arrow (the short form
    // drops "off scale" where the whole legend would not fit one line).
    // Before the first step no limit line is drawn: the item gives the threshold (it named a
    // line the plot did not have).
    let items = |short: bool| {
        let limit_label = match (limit.is_empty(), limit_shown, short) {
            (true, _, _) | (false, false, true) => format!("↑ limit +{:.1}% ", th * 100.0),
            (false, true, _) => format!("{} limit ", glyph(limit_m)),
            (false, false, false) => format!("↑ limit +{:.1}% off scale ", th * 100.0),
        };
        vec![
            Span::styled(format!("{} kept ", glyph(kept_m)), t.good()),
            Span::styled(format!("{} dense ", glyph(dense_m)), t.muted()),
            Span::styled(limit_label, t.warn()),
            Span::styled("• step ", t.accent()),
            Span::styled("█ rolled back", t.danger()),
        ]
    };
    let key = legend_lines(items(false), items(true), body.width, body.height);
    let [legend, inner] =
        Layout::vertical([Constraint::Length(key.len() as u16), Constraint::Min(0)]).areas(body);
    f.render_widget(Paragraph::new(key), legend);
    let [chart_area, probe_area] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(u16::from(probes.is_some())),
    ])
    .areas(inner);
    let datasets = vec![
        line(&dense_line, t.muted(), dense_m),
        line(&limit, t.warn(), limit_m),
        line(&checkpoints, t.good(), kept_m),
        Dataset::default()
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(t.accent())
            .data(&tried),
        Dataset::default()
            .marker(Marker::Block)
            .graph_type(GraphType::Scatter)
            .style(t.danger())
            .data(&rolled),
    ];
    let digits = if hi - lo < 0.1 {
        4
    } else if hi - lo < 10.0 {
        2
    } else {
        0
    };
    let num = |v: f64| format!("{v:.digits$}");
    // The middle label sits on the middle row only when the plot has an odd number of rows
    // (below it: the x axis's line and labels); otherwise it was drawn a row off the value.
    let rows = chart_area.height.saturating_sub(2);
    let y_labels = if rows >= 3 && rows % 2 == 1 {
        vec![num(lo), num((lo + hi) / 2.0), num(hi)]
    } else {
        vec![num(lo), num(hi)]
    };
    // The theme's background under the plot too (the chart paints its own).
    let chart = Chart::new(datasets)
        .style(t.base())
        .legend_position(None)
        .x_axis(
            Axis::default()
                .bounds([0.0, last])
                .style(t.muted())
                .labels(["0".to_string(), format!("iter {}", last as usize)]),
        )
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .style(t.muted())
                .labels(y_labels),
        );
    f.render_widget(chart, chart_area);
    if let Some(p) = probes {
        f.render_widget(Paragraph::new(p).style(t.text()), probe_area);
    }
}

/// The legend on one line: whole when it fits `width`, else in its short form; on two
/// lines, broken between items, when even that does not fit and the panel is tall enough
/// to keep a plot under them (a legend cut at the edge read "█ rolled").
fn legend_lines(
    whole: Vec<Span<'static>>,
    short: Vec<Span<'static>>,
    width: u16,
    height: u16,
) -> Vec<Line<'static>> {
    let cols = |items: &[Span]| items.iter().map(Span::width).sum::<usize>();
    let width = width as usize;
    if cols(&whole) <= width {
        return vec![Line::from(whole)];
    }
    if cols(&short) <= width || height < 8 {
        return vec![super::fit(Line::from(short), width)];
    }
    let (mut first, mut second, mut used) = (Vec::new(), Vec::new(), 0);
    for item in short {
        if second.is_empty() && (first.is_empty() || used + item.width() <= width) {
            used += item.width();
            first.push(item);
        } else {
            second.push(item);
        }
    }
    vec![Line::from(first), Line::from(second)]
}

fn line<'a>(data: &'a [(f64, f64)], style: ratatui::style::Style, marker: Marker) -> Dataset<'a> {
    Dataset::default()
        .marker(marker)
        .graph_type(GraphType::Line)
        .style(style)
        .data(data)
}

/// "probe freebaseqa: dense: 0.620 · 1: 0.610 · 2: 0.580" in `width` columns: when it is
/// longer, the dense score and the newest that fit, with "…" for those left out (the end
/// was cut, newest first).
fn probe_line(view: &View, width: usize) -> Option<String> {
    let mut kind = None;
    let mut parts = Vec::new();
    for ev in view.events {
        let (label, probe) = match ev {
            Event::Baseline { eval, .. } => ("dense".to_string(), &eval.probe),
            Event::Evaluated {
                iteration, eval, ..
            } => (iteration.to_string(), &eval.probe),
            _ => continue,
        };
        if let Some(p) = probe {
            kind = Some(p.kind.clone());
            parts.push(format!("{label}: {:.3}", p.accuracy));
        }
    }
    let kind = kind?;
    let whole = format!("probe {kind}: {}", parts.join(" · "));
    if whole.chars().count() <= width || parts.len() < 3 {
        return Some(whole);
    }
    // The first part and "…" (for at least the second), then as many of the newest as fit
    // (one at least), each with its " · ".
    let head = format!("probe {kind}: {} · …", parts[0]);
    let mut room = width.saturating_sub(head.chars().count());
    let fits = parts[2..]
        .iter()
        .rev()
        .enumerate()
        .take_while(|(i, p)| {
            let cols = p.chars().count() + 3;
            let fit = *i == 0 || cols <= room;
            room = room.saturating_sub(cols);
            fit
        })
        .count();
    let newest = &parts[parts.len() - fits..];
    Some(format!("{head} · {}", newest.join(" · ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn a_legend_too_wide_for_one_line_is_shortened_then_broken_between_items() {
        let items = |limit: &'static str| {
            ["━ kept ", "━ dense ", limit, "• step ", "█ rolled back"]
                .map(Span::raw)
                .to_vec()
        };
        let whole = || items("↑ limit +5.0% off scale ");
        let short = || items("↑ limit +5.0% ");
        let legend = |w, h| texts(&legend_lines(whole(), short(), w, h));
        assert_eq!(
            legend(70, 20),
            [whole()
                .iter()
                .map(|s| s.content.clone())
                .collect::<String>()]
        );
        // 52 columns (the 80x24 screen's panel): the short form fits one line.
        assert_eq!(
            legend(52, 20),
            ["━ kept ━ dense ↑ limit +5.0% • step █ rolled back"]
        );
        // Narrower: two lines, never an item cut in two...
        assert_eq!(
            legend(40, 20),
            ["━ kept ━ dense ↑ limit +5.0% • step ", "█ rolled back"]
        );
        // ...unless the panel is too short to keep a plot under two lines: then whole
        // items, and "…" for those left out.
        assert_eq!(legend(40, 7), ["━ kept ━ dense ↑ limit +5.0% • step …"]);
        // The first item alone is kept whole on the first line, whatever the width.
        assert_eq!(legend(3, 20)[0], "━ kept ");
    }

    #[test]
    fn a_long_probe_line_keeps_the_dense_score_and_the_newest() {
        use crate::session::{Evaluation, ProbeScore};
        let (_, mut events) = crate::tui::fixtures::reviewing(8);
        let probe = |a: f64| Evaluation {
            ppl: 10.0,
            dataset: "x".into(),
            seqlen: 64,
            windows: 4,
            dtype: "f32".into(),
            probe: Some(ProbeScore {
                kind: "freebaseqa".into(),
                accuracy: a,
                items: 10,
            }),
            seconds: 0.0,
            from_block: None,
        };
        events.retain(|e| !matches!(e, Event::Baseline { .. }));
        events.insert(
            0,
            Event::Baseline {
                layers: vec![],
                eval: probe(0.9),
            },
        );
        for i in 1..=12 {
            events.push(Event::Evaluated {
                iteration: i,
                applied: Default::default(),
                eval: probe(0.9 - i as f64 / 100.0),
            });
        }
        let m = crate::session::Machine::new("m", Default::default());
        let v = crate::tui::fixtures::view(&m, &events);
        let long = probe_line(&v, 1000).unwrap();
        assert!(long.ends_with("11: 0.790 · 12: 0.780"), "{long}");
        let short = probe_line(&v, 60).unwrap();
        assert!(short.chars().count() <= 60, "{short}");
        assert!(
            short.starts_with("probe freebaseqa: dense: 0.900 · … · "),
            "{short}"
        );
        assert!(short.ends_with("12: 0.780"), "{short}");
    }
}
