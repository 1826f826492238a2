//! Snapshot tests of the TUI: whole screens, single panels, theme colours and the narrow
//! layout, drawn into ratatui's `TestBackend` from the synthetic sessions of
//! `arborist::tui::fixtures` and driven by real key events. The snapshots live in
//! `tests/snapshots/`; after an intended change, regenerate them with
//! `INSTA_UPDATE=always cargo test --test tui_snapshots` and review the diff.

use std::collections::BTreeMap;
use std::fmt::Write;

use arborist::session::{Decision, Event, Machine, Phase};
use arborist::tui::app::{App, Panel, Request};
use arborist::tui::fixtures::{self, app, ch, code, draw, press, typed, view};
use crossterm::event::KeyCode;
use insta::assert_snapshot;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;

/// An app on the built-in theme called `name`.
fn themed(name: &str) -> App {
    let mut a = app();
    for _ in 0..a.themes.list.len() {
        if a.theme().name == name {
            return a;
        }
        a.themes.next();
    }
    panic!("no built-in theme {name}");
}

/// The text of `r`, one line per row, trailing blanks trimmed.
fn region(b: &Buffer, r: Rect) -> String {
    let mut s = String::new();
    for y in r.top()..r.bottom() {
        let mut line = String::new();
        for x in r.left()..r.right() {
            line.push_str(b[(x, y)].symbol());
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

fn text(b: &Buffer) -> String {
    region(b, b.area)
}

/// The rectangle the last frame gave `p`.
fn panel(app: &App, p: Panel) -> Rect {
    app.areas
        .panels
        .iter()
        .find(|(q, _)| *q == p)
        .map(|(_, r)| *r)
        .unwrap_or_else(|| panic!("{p:?} was not drawn"))
}

/// The status bar: the last two lines.
fn status_bar(b: &Buffer) -> Rect {
    Rect::new(0, b.area.height - 2, b.area.width, 2)
}

/// Feed requests to the machine like the live loop does; the requests must all be feeds.
fn feed_all(m: &mut Machine, events: &mut Vec<Event>, reqs: Vec<Request>) {
    for r in reqs {
        let Request::Feed(ev) = r else {
            panic!("expected an event to feed, got {r:?}");
        };
        fixtures::feed(m, events, ev);
    }
}

/// The worker's answer to an applied step: its evaluation at `ppl` and the reflection.
fn evaluate(m: &mut Machine, events: &mut Vec<Event>, ppl: f64) {
    let iteration = m.iteration;
    let applied = m
        .applying
        .as_ref()
        .expect("a step is being applied")
        .layers
        .iter()
        .map(|l| (l.name.clone(), l.sparsity))
        .collect::<BTreeMap<_, _>>();
    let ev = Event::Evaluated {
        iteration,
        applied,
        eval: fixtures::eval(ppl),
    };
    fixtures::feed(m, events, ev);
    let ev = Event::Reflected {
        iteration,
        reply: fixtures::reply(format!("iteration {iteration} landed at ppl {ppl}")),
    };
    fixtures::feed(m, events, ev);
}

/// A session with history: one accepted step, one rolled back, a third proposal waiting.
fn with_history(blocks: usize) -> (Machine, Vec<Event>) {
    let (mut m, mut events) = fixtures::reviewing(blocks);
    fixtures::step(&mut m, &mut events, 10.1);
    fixtures::next_proposal(&mut m, &mut events);
    fixtures::step(&mut m, &mut events, 12.0); // +19% over the checkpoint: rolled back
    fixtures::next_proposal(&mut m, &mut events);
    assert_eq!(m.rollbacks, 1);
    (m, events)
}

// ---------------------------------------------------------------------------------------
// (a) A whole scripted iteration, driven by real keys.

#[test]
fn scripted_iteration_with_edit_approve_evaluation_and_rollback() {
    let (mut m, mut events) = fixtures::reviewing(36);
    let mut a = app();
    let (w, h) = (120, 40);

    // 1. The agent's proposal waits for review.
    let screen = text(&draw(&mut a, &view(&m, &events), w, h));
    assert!(screen.contains("waiting for your review"), "{screen}");
    assert_snapshot!("iteration_1_proposal", screen);

    // 2. Edit the second row in place: 0.05 instead of 0.1.
    let v = view(&m, &events);
    let mut keys = vec![ch('e'), code(KeyCode::Down)];
    keys.extend(typed("0.05"));
    assert!(press(&mut a, &v, &keys).is_empty());
    let screen = text(&draw(&mut a, &v, w, h));
    assert!(screen.contains("0.05"), "{screen}");
    assert_snapshot!("iteration_2_editing", screen);

    // 3. Enter sends the edit; the step is applied and evaluated.
    let reqs = press(&mut a, &v, &[code(KeyCode::Enter)]);
    assert!(
        matches!(&reqs[..], [Request::Feed(Event::Decided { decision: Decision::Edit { layers }, by, .. })]
            if by == "human" && layers[1].sparsity == 0.05),
        "{reqs:?}"
    );
    feed_all(&mut m, &mut events, reqs);
    assert_eq!(m.phase, Phase::Applying);
    let progress = ("evaluating".to_string(), 3, 8);
    let mut v = view(&m, &events);
    v.progress = Some(&progress);
    let screen = text(&draw(&mut a, &v, w, h));
    assert!(screen.contains("evaluating 3/8 windows"), "{screen}");
    assert_snapshot!("iteration_3_applying", screen);

    // 4. The evaluation arrives and the agent reflects; the next proposal waits.
    evaluate(&mut m, &mut events, 10.15);
    fixtures::next_proposal(&mut m, &mut events);
    let screen = text(&draw(&mut a, &view(&m, &events), w, h));
    assert!(screen.contains("ppl 10.15"), "{screen}");
    assert_snapshot!("iteration_4_evaluated", screen);

    // 5. Approve with the key; the step costs too much perplexity and the guard rolls back.
    let reqs = press(&mut a, &view(&m, &events), &[code(KeyCode::Enter)]);
    feed_all(&mut m, &mut events, reqs);
    evaluate(&mut m, &mut events, 12.5);
    assert_eq!(m.rollbacks, 1);
    fixtures::next_proposal(&mut m, &mut events);
    let screen = text(&draw(&mut a, &view(&m, &events), w, h));
    assert!(screen.contains("rollbacks 1"), "{screen}");
    assert_snapshot!("iteration_5_guard_rollback", screen);

    // 6. The reviewer rolls back to the dense checkpoint: pick it, move to OK, confirm.
    let v = view(&m, &events);
    assert!(press(&mut a, &v, &[ch('b')]).is_empty());
    let screen = text(&draw(&mut a, &v, w, h));
    assert_snapshot!("iteration_6_rollback_picker", screen);
    let keys = [code(KeyCode::Enter), code(KeyCode::Left)];
    assert!(press(&mut a, &v, &keys).is_empty());
    let screen = text(&draw(&mut a, &v, w, h));
    assert_snapshot!("iteration_7_rollback_confirm", screen);
    let reqs = press(&mut a, &v, &[code(KeyCode::Enter)]);
    assert_eq!(
        reqs,
        vec![Request::Feed(Event::RollbackTo {
            checkpoint: 0,
            by: "human".into()
        })]
    );
    feed_all(&mut m, &mut events, reqs);
    let screen = text(&draw(&mut a, &view(&m, &events), w, h));
    assert_snapshot!("iteration_8_after_rollback", screen);
}

// ---------------------------------------------------------------------------------------
// (b) One snapshot per panel.

fn panels_screen() -> (App, Buffer) {
    let (m, events) = with_history(36);
    let mut a = app();
    let buf = draw(&mut a, &view(&m, &events), 120, 40);
    (a, buf)
}

#[test]
fn panel_heatmap() {
    let (a, buf) = panels_screen();
    assert_snapshot!(region(&buf, panel(&a, Panel::Heatmap)));
}

#[test]
fn panel_proposal() {
    let (a, buf) = panels_screen();
    assert_snapshot!(region(&buf, panel(&a, Panel::Proposal)));
}

#[test]
fn panel_reflection() {
    let (a, buf) = panels_screen();
    assert_snapshot!(region(&buf, panel(&a, Panel::Reflection)));
}

#[test]
fn panel_trends() {
    let (a, buf) = panels_screen();
    assert_snapshot!(region(&buf, panel(&a, Panel::Trends)));
}

#[test]
fn panel_log() {
    let (a, buf) = panels_screen();
    assert_snapshot!(region(&buf, panel(&a, Panel::Log)));
}

#[test]
fn panel_status_bar() {
    let (_, buf) = panels_screen();
    assert_snapshot!(region(&buf, status_bar(&buf)));
}

// ---------------------------------------------------------------------------------------
// (c) Themes: colours, not only text.

fn color(c: Color) -> String {
    match c {
        Color::Reset => "-".into(),
        Color::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
        Color::Indexed(i) => format!("i{i}"),
        named => format!("{named:?}").to_lowercase(),
    }
}

/// Every run of cells with the same style in `r`: `y x+len fg/bg mods "text"`.
fn style_dump(b: &Buffer, r: Rect) -> String {
    let mut s = String::new();
    for y in r.top()..r.bottom() {
        let mut x = r.left();
        while x < r.right() {
            let key = |c: &ratatui::buffer::Cell| (c.fg, c.bg, c.modifier);
            let first = key(&b[(x, y)]);
            let start = x;
            let mut run = String::new();
            while x < r.right() && key(&b[(x, y)]) == first {
                run.push_str(b[(x, y)].symbol());
                x += 1;
            }
            let (fg, bg, md) = first;
            let mods = if md.is_empty() {
                String::new()
            } else {
                format!(" {md:?}")
                    .replace("Modifier(", "")
                    .replace(')', "")
                    .replace(" | ", "|")
            };
            let _ = writeln!(
                s,
                "{y:>2} {start:>3}+{:<3} {}/{}{mods} {run:?}",
                x - start,
                color(fg),
                color(bg)
            );
        }
    }
    s
}

/// A compact style dump of the key areas: the heatmap's title and first rows, the
/// proposal's first rows, and the status bar.
fn theme_dump(name: &str) -> String {
    let (m, events) = with_history(12);
    let mut a = themed(name);
    let buf = draw(&mut a, &view(&m, &events), 120, 40);
    assert!(
        a.areas.heat.is_some(),
        "the heatmap grid was drawn for {name}"
    );
    let heat = panel(&a, Panel::Heatmap);
    let prop = panel(&a, Panel::Proposal);
    let mut s = format!("theme {name}\n## heatmap (first 5 rows)\n");
    s += &style_dump(&buf, Rect::new(heat.x, heat.y, heat.width, 5));
    s += "## proposal (first 4 rows)\n";
    s += &style_dump(&buf, Rect::new(prop.x, prop.y, prop.width, 4));
    s += "## status bar\n";
    s += &style_dump(&buf, status_bar(&buf));
    s
}

#[test]
fn theme_dark_colours() {
    let dump = theme_dump("dark");
    assert!(dump.contains('#'), "dark uses rgb colours:\n{dump}");
    assert_snapshot!(dump);
}

#[test]
fn theme_light_colours() {
    let dump = theme_dump("light");
    assert_snapshot!(dump);
}

#[test]
fn theme_ansi16_colours() {
    let dump = theme_dump("ansi16");
    // Only the 16 named colours (and the terminal's default), on the whole screen.
    let (m, events) = with_history(12);
    let buf = draw(&mut themed("ansi16"), &view(&m, &events), 120, 40);
    for c in buf.content() {
        for col in [c.fg, c.bg] {
            assert!(
                !matches!(col, Color::Rgb(..) | Color::Indexed(_)),
                "ansi16 draws only named colours, got {col:?}"
            );
        }
    }
    assert_snapshot!(dump);
}

/// The editor's selected row in ansi16 is reversed, so its light blue value stays readable
/// (it was light blue on a blue row); dark keeps its row colour.
#[test]
fn the_selected_row_keeps_its_values_readable() {
    use ratatui::style::Modifier;
    let (m, events) = with_history(12);
    let v = view(&m, &events);
    let row_cells = |name: &str| {
        let mut a = themed(name);
        fixtures::press(&mut a, &v, &[fixtures::ch('e')]);
        assert!(a.editor.is_some(), "{name}: the editor opened");
        let buf = draw(&mut a, &v, 120, 40);
        let y = (0..buf.area.height)
            .find(|&y| {
                (0..buf.area.width).any(|x| buf[(x, y)].modifier.contains(Modifier::UNDERLINED))
            })
            .expect("the selected row's value is underlined");
        // The row's text, from the panel's edge to its last character.
        let prop = panel(&a, Panel::Proposal);
        let end = (prop.x + 1..prop.right() - 1)
            .rfind(|&x| buf[(x, y)].symbol().trim() != "")
            .unwrap();
        assert!(end > prop.x + 30, "a whole row");
        (prop.x + 1..=end)
            .map(|x| buf[(x, y)].clone())
            .collect::<Vec<_>>()
    };
    for c in row_cells("ansi16") {
        assert!(c.modifier.contains(Modifier::REVERSED), "ansi16: {c:?}");
        assert_eq!(c.bg, Color::Reset, "ansi16: {c:?}");
    }
    for c in row_cells("dark") {
        assert!(!c.modifier.contains(Modifier::REVERSED), "dark: {c:?}");
        assert!(matches!(c.bg, Color::Rgb(..)), "dark: {c:?}");
    }
    // A theme file may ask for it; a wrong value names the choices.
    let base = arborist::tui::theme::Themes::builtin(false);
    let dark = base.list.first();
    let t = arborist::tui::theme::Theme::from_yaml("name: x\ncolors: {selected: reverse}", dark);
    assert!(t.is_ok(), "{t:?}");
    let e = arborist::tui::theme::Theme::from_yaml("name: x\ncolors: {selected: upside}", dark)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`selected: upside`") && e.contains("reverse"),
        "{e}"
    );
}

#[test]
fn themes_differ_in_colour() {
    assert_ne!(theme_dump("dark"), theme_dump("light"));
    assert_ne!(theme_dump("dark"), theme_dump("ansi16"));
}

// ---------------------------------------------------------------------------------------
// (d) The 80x24 layout, and the status bar on narrow terminals.

#[test]
fn layout_80x24_with_tabs() {
    let (m, events) = with_history(36);
    let mut a = app();
    let v = view(&m, &events);
    let screen = text(&draw(&mut a, &v, 80, 24));
    assert_snapshot!("layout_80x24_proposal_tab", screen);
    // tab focuses the next panel, which becomes the shown tab.
    press(&mut a, &v, &[code(KeyCode::Tab), code(KeyCode::Tab)]);
    let screen = text(&draw(&mut a, &v, 80, 24));
    assert_snapshot!("layout_80x24_reflection_tab", screen);
}

/// Iteration, worker state, sparsity against the target, rollbacks and the main keys stay
/// on an 80-column status bar, even with AUTO and PAUSED on.
#[test]
fn status_bar_at_80_columns_keeps_the_essentials() {
    let (m, events) = with_history(36);
    let v = view(&m, &events);
    for (auto, paused) in [(false, false), (true, true)] {
        let mut a = app();
        a.auto_approve = auto;
        a.paused = paused;
        let buf = draw(&mut a, &v, 80, 24);
        let bar = region(&buf, status_bar(&buf));
        let (top, keys) = bar.split_once('\n').unwrap();
        assert!(top.starts_with(" iter 3 │ "), "{bar}");
        assert!(top.contains("waiting for"), "worker state: {bar}");
        assert!(
            top.contains(&format!("/{:.2}", m.opts.target)),
            "sparsity vs target: {bar}"
        );
        assert!(top.contains("rb 1") || top.contains("rollbacks 1"), "{bar}");
        if auto {
            assert!(top.contains("AUTO") && top.contains("PAUSED"), "{bar}");
        }
        for k in ["approve", "edit", "reject", "help", "quit"] {
            assert!(keys.contains(k), "key {k}: {bar}");
        }
        assert_snapshot!(format!("status_bar_80_auto_{auto}"), bar);
    }
}

/// An OpenRouter-style usage with a cost shows the cost next to the tokens; without a cost
/// only tokens are shown.
#[test]
fn status_bar_shows_the_agents_cost_when_known() {
    let (mut m, mut events) = fixtures::profiled(8);
    let ev = Event::Proposed {
        iteration: m.iteration,
        agent: "openai".into(),
        reply: fixtures::reply_costing(fixtures::proposal(&m, 2), 0.0123),
    };
    fixtures::feed(&mut m, &mut events, ev);
    assert_eq!(m.usage.cost, Some(0.0123));
    let v = view(&m, &events);
    let mut a = app();
    let buf = draw(&mut a, &v, 120, 40);
    let bar = region(&buf, status_bar(&buf));
    assert!(bar.contains("tokens 1200 in / 300 out · $0.012"), "{bar}");
    assert_snapshot!(bar);
    // At 80 columns the cost outlives the token counts.
    let buf = draw(&mut a, &v, 80, 24);
    let bar = region(&buf, status_bar(&buf));
    assert!(bar.contains("$0.012"), "{bar}");

    let (m, events) = fixtures::reviewing(8);
    let buf = draw(&mut a, &view(&m, &events), 120, 40);
    let bar = region(&buf, status_bar(&buf));
    assert!(bar.contains("tokens 1200 in / 300 out"), "{bar}");
    assert!(!bar.contains('$'), "no cost known: {bar}");
}

#[test]
fn status_bar_cuts_a_long_failure_message_but_keeps_the_rest() {
    let (m, events) = with_history(36);
    let v = view(&m, &events);
    let mut a = app();
    a.failure = Some("compute worker failed: ".to_string() + &"out of memory ".repeat(10));
    let buf = draw(&mut a, &v, 80, 24);
    let bar = region(&buf, status_bar(&buf));
    let top = bar.lines().next().unwrap();
    assert!(top.contains('…'), "{bar}");
    assert!(top.contains("rb 1") && top.contains("/0."), "{bar}");
    assert!(top.chars().count() <= 80, "{bar}");
}
