//! What the tui_render tests share: imports, machine-state fixtures and screen readers.

pub use arborist::session::{Decision, Event, Phase};
pub use arborist::tui::app::{App, Confirm, Overlay, Request};
pub use arborist::tui::fixtures::{self, app, ch, code, draw, press, typed, view};
pub use arborist::tui::keymap::{Action, Keymap, Mode};
pub use arborist::tui::theme::Themes;
pub use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
pub use ratatui::buffer::Buffer;
pub use ratatui::style::Color;

/// The reviewer approved iteration 1's proposal: a step is running.
pub fn approved() -> (arborist::session::Machine, Vec<Event>) {
    let (mut m, mut events) = fixtures::reviewing(8);
    let iteration = m.iteration;
    let approve = Event::Decided {
        iteration,
        by: "human".into(),
        decision: Decision::Approve,
    };
    fixtures::feed(&mut m, &mut events, approve);
    (m, events)
}

pub fn text(b: &Buffer) -> String {
    let mut s = String::new();
    for y in 0..b.area.height {
        for x in 0..b.area.width {
            s.push_str(b[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

/// The screen with a `▏` put before each cell drawn in a text field's cursor style.
pub fn text_with_cursor(b: &Buffer) -> String {
    let cursor = app().theme().cursor();
    let mut s = String::new();
    for y in 0..b.area.height {
        for x in 0..b.area.width {
            let c = &b[(x, y)];
            if Some(c.fg) == cursor.fg && c.modifier == cursor.add_modifier {
                s.push('▏');
            }
            s.push_str(c.symbol());
        }
        s.push('\n');
    }
    s
}

pub fn colours(b: &Buffer) -> Vec<Color> {
    b.content()
        .iter()
        .flat_map(|c| [c.fg, c.bg])
        .filter(|c| *c != Color::Reset)
        .collect()
}

/// Iteration 1 after the agent gave no valid proposal.
pub fn agent_failed() -> (arborist::session::Machine, Vec<Event>) {
    let (mut m, mut events) = fixtures::profiled(8);
    let failed: Event =
        serde_yaml::from_str("{event: agent_failed, iteration: 1, error: server timed out}")
            .unwrap();
    fixtures::feed(&mut m, &mut events, failed);
    (m, events)
}

pub fn status_line(b: &Buffer) -> String {
    text(b)
        .lines()
        .nth(b.area.height as usize - 2)
        .unwrap()
        .to_string()
}

/// How far the last frame let `p` scroll.
pub fn scroll_max(a: &App, p: arborist::tui::app::Panel) -> u16 {
    let found = a.areas.scroll_max.iter().find(|(q, _)| *q == p);
    found.expect("the panel was drawn").1
}

/// The view of a replay standing where `t` stands, with `options` for the details.
pub fn replay_view<'a>(
    t: &'a arborist::tui::replay::Timeline,
    options: &'a str,
) -> arborist::tui::view::View<'a> {
    let mut v = view(t.machine(), t.events());
    v.replay = Some(arborist::tui::view::ReplayPos {
        index: t.index(),
        total: t.len(),
        unfinished: !t.finished(),
    });
    v.options = options;
    v
}

/// The session recorded by an older version (fewer decimals in its guard notes).
pub fn legacy_log() -> arborist::session::file::SessionLog {
    let legacy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sessions/legacy-abs-of-mean.yaml"
    );
    arborist::session::file::read(std::path::Path::new(legacy)).unwrap()
}

// A confirmation keeps its buttons at every size, also on a screen too small to draw,
// where quit still opens it (its text wrapped over the buttons and the hint below 40×10);
// the text and then the hint give way first.
/// The lines inside the dialog whose frame's title starts "Quit" or "Stop", trimmed.
pub fn dialog_lines(screen: &str) -> Vec<String> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let top = lines.iter().position(|l| {
        let s: String = l.iter().collect();
        s.contains("┌ Quit") || s.contains("┌ Stop")
    });
    let Some(top) = top else {
        return vec![];
    };
    let s: String = lines[top].iter().collect();
    let at = s.find("┌ Quit").or_else(|| s.find("┌ Stop")).unwrap();
    let x0 = s[..at].chars().count();
    let x1 = x0 + lines[top][x0..].iter().position(|&c| c == '┐').unwrap();
    let mut out = Vec::new();
    for l in &lines[top + 1..] {
        if l[x0] == '└' {
            break;
        }
        out.push(l[x0 + 1..x1].iter().collect::<String>().trim().to_string());
    }
    out
}

/// A replay view at event `n` of `events`.
pub fn replay_at<'a>(
    m: &'a arborist::session::Machine,
    events: &'a [Event],
    n: usize,
) -> arborist::tui::view::View<'a> {
    let mut v = view(m, &events[..n]);
    v.replay = Some(arborist::tui::view::ReplayPos {
        index: n,
        total: events.len(),
        unfinished: !events.iter().any(|e| matches!(e, Event::Finished { .. })),
    });
    v
}

/// The Log panel's event lines (their numbers and texts) on a drawn screen.
pub fn log_rows(screen: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let top = lines
        .iter()
        .position(|l| l.contains("Log ·"))
        .unwrap_or_else(|| panic!("{screen}"));
    lines[top + 1..]
        .iter()
        .take_while(|l| !l.contains('└'))
        .map(|l| l.to_string())
        .collect()
}
