//! The details overlay (`i`): what an auditor needs beyond the panels: for the iteration
//! shown, the prompt the agent was sent and its raw answer, then the session's recorded
//! options (the protocols of its numbers, the guard, the agent).

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use crate::agent::AgentReply;
use crate::session::Event;
use crate::tui::app::App;
use crate::tui::view::View;

/// What the details' lines depend on besides the session's recorded text, which a given
/// number of events and a session name fix.
#[derive(PartialEq)]
pub struct DetailsKey {
    width: usize,
    events: usize,
    session: String,
    theme: usize,
}

/// The details' lines as last built, and for what.
pub struct DetailsCache {
    key: DetailsKey,
    lines: Vec<Line<'static>>,
}

/// One exchange with the agent, as recorded.
struct Exchange<'a> {
    title: String,
    builtin: bool,
    prompt: Option<&'a str>,
    raw: Option<&'a str>,
    tokens: (u64, u64),
}

fn exchange<'a, T>(title: String, builtin: bool, r: &'a AgentReply<T>) -> Exchange<'a> {
    Exchange {
        title,
        builtin,
        prompt: r.prompt.as_deref(),
        raw: r.raw.as_deref(),
        tokens: (r.usage.prompt_tokens, r.usage.completion_tokens),
    }
}

/// The latest proposal shown (or the failed exchange of an agent that gave no valid
/// proposal), and the reflection on it when that is shown too.
fn exchanges(events: &[Event]) -> Vec<Exchange<'_>> {
    let Some(k) = events
        .iter()
        .rposition(|e| matches!(e, Event::Proposed { .. } | Event::AgentFailed { .. }))
    else {
        return vec![];
    };
    let mut out = Vec::new();
    match &events[k] {
        Event::Proposed {
            iteration,
            agent,
            reply,
        } => out.push(exchange(
            format!("iteration {iteration}: the proposal ({agent})"),
            agent == "builtin",
            reply,
        )),
        Event::AgentFailed {
            iteration,
            error,
            prompt,
            raw,
            usage,
        } => out.push(Exchange {
            title: format!("iteration {iteration}: the agent failed: {error}"),
            builtin: false,
            prompt: prompt.as_deref(),
            raw: raw.as_deref(),
            tokens: (usage.prompt_tokens, usage.completion_tokens),
        }),
        _ => {}
    }
    let builtin = out.first().is_some_and(|x| x.builtin);
    let reflected = events[k..].iter().find_map(|e| match e {
        Event::Reflected { iteration, reply } => Some(exchange(
            format!("iteration {iteration}: the reflection"),
            builtin,
            reply,
        )),
        _ => None,
    });
    out.extend(reflected);
    out
}

/// Text from an agent or a server as the screen may show it: each line's control
/// characters (an ESC sequence would reach the terminal) and bidi overrides escaped.
fn printable(text: &str) -> String {
    let lines: Vec<String> = (text.lines())
        .map(|l| crate::agent::text::one_line(l, usize::MAX))
        .collect();
    lines.join("\n")
}

/// `text` in rows of at most `width` columns, broken after spaces where a line has one:
/// each line of it through `wrap::lines`, in time linear in its length (a 1 MB reply of one
/// line took seconds a frame, cut from the front of a vector a row at a time).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out: Vec<String> = text
        .lines()
        .flat_map(|l| crate::tui::wrap::lines(l, width))
        .collect();
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// The overlay's lines at `width` columns.
pub fn lines(app: &App, view: &View, width: usize) -> Vec<Line<'static>> {
    let t = app.theme();
    let mut lines = Vec::new();
    let mut text = |s: &str, style| {
        let shown = wrap(&printable(s), width);
        lines.extend(shown.into_iter().map(|l| Line::styled(l, style)));
    };
    text(&format!("Session {}", view.session), t.title());
    let shown = exchanges(view.events);
    if shown.is_empty() {
        text("No proposal yet at this point.", t.muted());
    }
    for (n, x) in shown.into_iter().enumerate() {
        if n > 0 {
            text("", t.base());
        }
        text(&x.title, t.title());
        let (i, o) = x.tokens;
        text(&format!("Prompt ({i} tokens in):"), t.accent());
        // Where an auditor reads the prompt: a server that did not read it whole.
        if let Some(w) = x
            .prompt
            .and_then(|p| crate::agent::unread::unread_prompt(p, i))
        {
            text(&format!("warning: {w}"), t.warn());
        }
        match x.prompt {
            Some(p) => text(p, t.base()),
            None if x.builtin => text("(none: the built-in agent sends no prompt)", t.muted()),
            None => text("(none recorded)", t.muted()),
        }
        text(&format!("Raw reply ({o} tokens out):"), t.accent());
        match x.raw {
            Some(r) => text(r, t.base()),
            None if x.builtin => text("(none: the built-in agent has no raw reply)", t.muted()),
            None => text("(none recorded)", t.muted()),
        }
    }
    text("", t.base());
    text(
        "Options as recorded (protocols of its numbers, guard, agent):",
        t.muted(),
    );
    text(view.options.trim_end(), t.base());
    lines
}

/// Draws the overlay over nearly the whole screen; returns how far it can scroll and how
/// many lines it shows.
pub fn render(f: &mut Frame, area: Rect, app: &App, view: &View, scroll: u16) -> (u16, u16) {
    // The whole screen above the status bar, which stays in view.
    let r = super::overlay::above_bar(area);
    let inner = super::overlay::dialog(app, "", r.width).inner(r);
    let width = inner.width.max(1) as usize;
    // Built once for what it shows, not at every frame: a reply of megabytes took seconds
    // to wrap, and the screen redraws while it is open.
    let key = DetailsKey {
        width,
        events: view.events.len(),
        session: view.session.to_string(),
        theme: app.themes.current,
    };
    let mut cache = app.details_cache.borrow_mut();
    if cache.as_ref().is_none_or(|c| c.key != key) {
        let lines = lines(app, view, width);
        *cache = Some(DetailsCache { key, lines });
    }
    let lines = &cache.as_ref().expect("filled above").lines;
    let rows = inner.height.max(1) as usize;
    let max = lines.len().saturating_sub(rows).min(u16::MAX as usize) as u16;
    let top = scroll.min(max) as usize;
    // Where the view is in a long text (a deep model's prompt runs to hundreds of lines).
    let title = if max > 0 {
        format!(
            "Details · lines {}–{} of {} · ↑↓ PgUp PgDn Home End scroll · any other key closes",
            top + 1,
            (top + rows).min(lines.len()),
            lines.len()
        )
    } else {
        "Details · any other key closes".to_string()
    };
    let block = super::overlay::dialog(app, &title, r.width);
    f.render_widget(Clear, r);
    f.render_widget(block, r);
    let end = (top + rows).min(lines.len());
    f.render_widget(Paragraph::new(lines[top..end].to_vec()), inner);
    (max, inner.height)
}

#[cfg(test)]
mod tests {
    use super::{printable, wrap};
    use crate::session::Event;
    use crate::tui::fixtures::{app, ch, code, draw, press, reviewing, view};
    use crossterm::event::KeyCode;

    /// A megabyte reply froze the screen while the overlay was open (3.6 s a key): its
    /// lines are wrapped once for what they show, and frames and keys reuse them.
    #[test]
    fn the_wrapped_lines_are_kept_while_the_view_stays() {
        let (m, mut events) = reviewing(8);
        if let Some(Event::Proposed { reply, .. }) = events.last_mut() {
            reply.raw = Some("a long answer ".repeat(20_000));
        }
        let v = view(&m, &events);
        let mut a = app();
        press(&mut a, &v, &[ch('i')]);
        draw(&mut a, &v, 100, 30);
        let built = |a: &crate::tui::app::App| {
            let c = a.details_cache.borrow();
            let c = c.as_ref().expect("the overlay built its lines");
            (c.lines.as_ptr(), c.lines.len(), c.key.width)
        };
        let first = built(&a);
        assert!(first.1 > 2_000, "{first:?}");
        for k in [
            KeyCode::Down,
            KeyCode::PageDown,
            KeyCode::End,
            KeyCode::Home,
        ] {
            press(&mut a, &v, &[code(k)]);
            draw(&mut a, &v, 100, 30);
            assert_eq!(built(&a), first, "rebuilt after {k:?}");
        }
        // A new width wraps anew.
        draw(&mut a, &v, 80, 30);
        let narrow = built(&a);
        assert_ne!(narrow.0, first.0);
        assert!(
            narrow.1 > first.1 && narrow.2 < first.2,
            "{narrow:?} {first:?}"
        );
    }

    #[test]
    fn agent_text_reaches_the_screen_escaped() {
        let raw = "ok\x1b[2J\r\n\u{202e}evil\tend";
        assert_eq!(printable(raw), "ok\\u{1b}[2J\n\\u{202e}evil\\tend");
    }

    #[test]
    fn wraps_at_spaces_and_cuts_only_words_longer_than_a_line() {
        assert_eq!(wrap("the raw answer", 8), ["the raw", "answer"]);
        assert_eq!(wrap("abcdefghij xy", 4), ["abcd", "efgh", "ij", "xy"]);
        assert_eq!(wrap("a\n\nb", 4), ["a", "", "b"]);
        assert_eq!(wrap("", 4), [""]);
        // Characters, not bytes.
        assert_eq!(wrap("ééé ééé", 3), ["ééé", "ééé"]);
    }
}
