//! The TUI drawn into ratatui's TestBackend from synthetic machine states, and driven by
//! real key events through the app's pure key → request step.

use arborist::session::{Decision, Event, Phase};
use arborist::tui::app::{App, Confirm, Overlay, Request};
use arborist::tui::fixtures::{self, app, ch, code, draw, press, typed, view};
use arborist::tui::keymap::{Action, Keymap, Mode};
use arborist::tui::theme::Themes;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::style::Color;

/// The reviewer approved iteration 1's proposal: a step is running.
fn approved() -> (arborist::session::Machine, Vec<Event>) {
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

fn text(b: &Buffer) -> String {
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
fn text_with_cursor(b: &Buffer) -> String {
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

#[test]
fn heatmap_fits_36_blocks_at_120x40_and_shows_the_focused_cell() {
    let (m, events) = fixtures::reviewing(36);
    let mut a = app();
    let v = view(&m, &events);
    let screen = text(&draw(&mut a, &v, 120, 40));
    assert!(
        !screen.contains("of 36"),
        "all 36 blocks visible:\n{screen}"
    );
    let header = screen.lines().nth(1).unwrap();
    for b in [0, 10, 20, 35] {
        assert!(
            header.contains(&b.to_string()),
            "block {b} labelled: {header}"
        );
    }
    for kind in ["q", "gate", "up", "down"] {
        assert!(screen.contains(&format!("{kind:>5} ")), "row {kind}");
    }
    let (zs, zg) = fixtures::z(0, 0);
    assert!(screen.contains("layers.0.self_attn.q_proj"), "{screen}");
    assert!(
        screen.contains(&format!("z_s {zs:+.3}  z_g {zg:+.3}")),
        "{screen}"
    );
    // Move to the last block's down projection with the keys.
    let mut keys = vec![ch('l'); 35];
    keys.extend(vec![ch('j'); 6]);
    press(&mut a, &v, &keys);
    assert_eq!(a.cursor, (35, 6));
    let screen = text(&draw(&mut a, &v, 120, 40));
    let (zs, zg) = fixtures::z(35, 6);
    assert!(screen.contains("layers.35.mlp.down_proj"), "{screen}");
    assert!(
        screen.contains(&format!("z_s {zs:+.3}  z_g {zg:+.3}")),
        "{screen}"
    );
    // Cells of 3 columns bracket the focus; at 80 columns they are 2 wide, and the legend
    // names the reversed colours instead of brackets that are not drawn.
    assert!(screen.contains("• in proposal   [ ] focus"), "{screen}");
    let screen = text(&draw(&mut a, &v, 80, 24));
    assert!(
        screen.contains("• in proposal   reversed: focus"),
        "{screen}"
    );
    assert!(!screen.contains('['), "{screen}");
}

#[test]
fn heatmap_says_which_iteration_its_z_scores_were_profiled_at() {
    let (m, events) = fixtures::reviewing(8);
    let at = m.profiled_at.expect("the fixture has a profile");
    let mut a = app();
    let v = view(&m, &events);
    let title = |a: &mut App| {
        text(&draw(a, &v, 120, 40))
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert!(
        title(&mut a).contains(&format!(
            "combined z (z_s+z_g) · profiled at iter {at} · m/M"
        )),
        "{}",
        title(&mut a)
    );
    // Sparsities are current: no profile to date them.
    while !title(&mut a).contains("current sparsity") {
        press(&mut a, &v, &[ch('m')]);
    }
    assert!(!title(&mut a).contains("profiled at"), "{}", title(&mut a));
}

#[test]
fn heatmap_marks_the_proposed_layers() {
    let (m, events) = fixtures::reviewing(36);
    let mut a = app();
    let screen = text(&draw(&mut a, &view(&m, &events), 120, 40));
    let down = screen.lines().find(|l| l.contains(" down ")).unwrap();
    assert_eq!(down.matches('•').count(), 4, "four proposed layers: {down}");
    let up = screen.lines().find(|l| l.contains("   up ")).unwrap();
    assert_eq!(up.matches('•').count(), 0, "{up}");
}

#[test]
fn invalid_edit_is_explained_and_never_sent() {
    let (m, events) = fixtures::reviewing(8);
    let mut a = app();
    let v = view(&m, &events);
    assert!(press(&mut a, &v, &[ch('e')]).is_empty());
    assert_eq!(a.mode(), Mode::Edit);
    // 0.9 is far above max_step (0.1) for a dense layer.
    let mut keys = typed("0.9");
    keys.push(code(KeyCode::Enter));
    assert!(press(&mut a, &v, &keys).is_empty(), "nothing fed");
    assert_eq!(a.mode(), Mode::Edit, "still editing");
    let screen = text(&draw(&mut a, &v, 120, 40));
    assert!(screen.contains("✗"), "{screen}");
    assert!(screen.contains("max_step"), "{screen}");
    // Fix it: backspace, a valid value, Enter sends an edit by the human.
    let mut keys = vec![code(KeyCode::Backspace); 3];
    keys.extend(typed("0.05"));
    keys.push(code(KeyCode::Enter));
    let reqs = press(&mut a, &v, &keys);
    let Some(Request::Feed(Event::Decided {
        by,
        decision: Decision::Edit { layers },
        ..
    })) = reqs.first()
    else {
        panic!("an edit: {reqs:?}");
    };
    assert_eq!(by, "human");
    assert_eq!(layers[0].sparsity, 0.05);
    assert_eq!(layers.len(), 4);
}

// Real masks leave sparsities like 410/4096; the next proposal (+0.1 on them) and an added
// layer (+max_step) must pre-fill values that pass the step rule untouched (4 decimals
// rounded 0.20009765625 up to 0.2001, a step of 0.10000234 over max_step 0.1).
#[test]
fn prefilled_values_are_sent_as_proposed() {
    let (mut m, mut events) = fixtures::reviewing(8);
    let iteration = m.iteration;
    let p = m.proposal.clone().unwrap();
    // What Wanda reaches for 0.1 in rows of 4096 (409 weights a row): below the target,
    // with more decimals than the editor shows.
    let whole = 409.0 / 4096.0;
    fixtures::feed(
        &mut m,
        &mut events,
        Event::Decided {
            iteration,
            by: "human".into(),
            decision: Decision::Approve,
        },
    );
    fixtures::feed(
        &mut m,
        &mut events,
        Event::Evaluated {
            iteration,
            applied: p.layers.iter().map(|l| (l.name.clone(), whole)).collect(),
            eval: fixtures::eval(10.0),
        },
    );
    fixtures::feed(
        &mut m,
        &mut events,
        Event::Reflected {
            iteration,
            reply: fixtures::reply("ok".to_string()),
        },
    );
    fixtures::next_proposal(&mut m, &mut events);
    let v = view(&m, &events);
    let mut a = app();
    // e, then the cursor onto block 4's down projection (not proposed), + adds it.
    let mut keys = vec![ch('e')];
    keys.extend([ch('j'); 6]);
    keys.extend([ch('l'); 4]);
    keys.push(ch('+'));
    assert!(press(&mut a, &v, &keys).is_empty());
    let ed = a.editor.as_ref().unwrap();
    assert_eq!(ed.rows[0].value, "0.199854", "{:?}", ed.rows);
    assert!(ed.problems.is_empty(), "{:?}", ed.problems);
    let reqs = press(&mut a, &v, &[code(KeyCode::Enter)]);
    let Some(Request::Feed(Event::Decided {
        decision: Decision::Edit { layers },
        ..
    })) = reqs.first()
    else {
        panic!("an edit: {reqs:?} {:?}", a.editor);
    };
    assert_eq!(layers.len(), 5, "{layers:?}");
    for l in &layers[..4] {
        assert!((l.sparsity - (whole + 0.1)).abs() <= 0.5e-6, "{l:?}");
    }
    assert_eq!(layers[4].name, "model.layers.4.mlp.down_proj", "{layers:?}");
    assert_eq!(layers[4].sparsity, 0.1, "{layers:?}");
}

#[test]
fn override_needs_a_layer_and_a_reasoning() {
    let (m, events) = fixtures::reviewing(8);
    let mut a = app();
    let v = view(&m, &events);
    press(&mut a, &v, &[ch('o'), code(KeyCode::Enter)]);
    assert!(a
        .editor
        .as_ref()
        .unwrap()
        .problems
        .iter()
        .any(|p| p.contains("empty")));
    // The heatmap cursor picks the layer (block 2, up), + adds it, tab goes to the reasoning.
    let mut keys = vec![
        ch('l'),
        ch('l'),
        ch('j'),
        ch('j'),
        ch('j'),
        ch('j'),
        ch('j'),
    ];
    keys.extend([ch('+'), code(KeyCode::Tab)]);
    press(&mut a, &v, &keys);
    // In the reasoning field + and hjkl are text: the key line no longer offers them.
    let hints = |a: &mut App| {
        let screen = text(&draw(a, &v, 120, 40));
        screen.lines().last().unwrap_or("").to_string()
    };
    let line = hints(&mut a);
    assert!(!line.contains("+ ") && !line.contains('j'), "{line}");
    press(&mut a, &v, &[code(KeyCode::Tab)]);
    let line = hints(&mut a);
    assert!(line.contains("+ "), "the table's keys: {line}");
    press(&mut a, &v, &[code(KeyCode::Tab)]);
    // ← → home end del edit the reasoning there: the comma goes in mid-line, the heatmap
    // cursor stays, and the selected row is not removed.
    let mut keys = typed("keep attention thin the MLP!");
    keys.extend([code(KeyCode::Left), code(KeyCode::Delete)]);
    keys.extend(vec![code(KeyCode::Left); 13]);
    keys.extend([ch(','), code(KeyCode::Home), code(KeyCode::End)]);
    let cursor = a.cursor;
    press(&mut a, &v, &keys);
    assert_eq!(a.cursor, cursor);
    let line = hints(&mut a);
    assert!(!line.contains('←') && !line.contains("del"), "{line}");
    let reqs = press(&mut a, &v, &[code(KeyCode::Enter)]);
    let Some(Request::Feed(Event::Decided {
        decision: Decision::Override { layers, reasoning },
        ..
    })) = reqs.first()
    else {
        panic!("an override: {reqs:?}");
    };
    assert_eq!(layers[0].name, "model.layers.2.mlp.up_proj");
    assert!((layers[0].sparsity - 0.1).abs() < 1e-12);
    assert_eq!(reasoning, "keep attention, thin the MLP");
}

#[test]
fn reject_sends_the_feedback_and_approve_is_one_key() {
    let (m, events) = fixtures::reviewing(8);
    let mut a = app();
    let v = view(&m, &events);
    assert!(press(&mut a, &v, &[ch('r'), code(KeyCode::Enter)]).is_empty());
    // Typed with a slip, mended in place: ← home del and typing at the cursor.
    let mut keys = typed("sapre block 0");
    keys.extend(vec![code(KeyCode::Left); 10]);
    keys.extend([code(KeyCode::Backspace), code(KeyCode::Left), ch('p')]);
    keys.push(code(KeyCode::Home));
    keys.extend([code(KeyCode::Delete), ch('S'), code(KeyCode::End)]);
    keys.push(code(KeyCode::Enter));
    let reqs = press(&mut a, &v, &keys);
    assert!(
        matches!(&reqs[..], [Request::Feed(Event::Decided {
        decision: Decision::Reject { feedback }, .. })] if feedback == "Spare block 0"),
        "{reqs:?}"
    );
    let reqs = press(&mut a, &v, &[code(KeyCode::Enter)]);
    assert!(matches!(&reqs[..], [Request::Feed(Event::Decided {
        decision: Decision::Approve, by, .. })] if by == "human"));
}

// Esc in the feedback dialog used to drop what was typed; the text is kept for `r` at
// the same iteration (and for no other: it was about that proposal).
#[test]
fn rejection_feedback_closed_with_esc_is_kept_for_r() {
    let (m, events) = fixtures::reviewing(8);
    let mut a = app();
    let v = view(&m, &events);
    let mut keys = vec![ch('r')];
    keys.extend(typed("spare block 0"));
    keys.push(code(KeyCode::Esc));
    assert!(press(&mut a, &v, &keys).is_empty());
    assert_eq!(a.overlay, Overlay::None);
    assert!(a.notice.as_ref().unwrap().text.contains("r reopens it"));
    press(&mut a, &v, &[ch('r')]);
    match &a.overlay {
        Overlay::Feedback(t) => assert_eq!(t.as_str(), "spare block 0"),
        o => panic!("{o:?}"),
    }
    let reqs = press(&mut a, &v, &typed(" please"));
    assert!(reqs.is_empty());
    let reqs = press(&mut a, &v, &[code(KeyCode::Enter)]);
    assert!(
        matches!(&reqs[..], [Request::Feed(Event::Decided {
        decision: Decision::Reject { feedback }, .. })] if feedback == "spare block 0 please"),
        "{reqs:?}"
    );
    assert_eq!(a.feedback_draft, None, "sent, the draft is gone");
    // Empty feedback is not kept; a draft of another iteration is not offered.
    press(&mut a, &v, &[ch('r'), ch(' '), code(KeyCode::Esc)]);
    assert_eq!(a.feedback_draft, None);
    a.feedback_draft = Some((m.iteration + 1, Default::default()));
    press(&mut a, &v, &[ch('r')]);
    assert!(matches!(&a.overlay, Overlay::Feedback(t) if t.as_str().is_empty()));
}

// An edit sent without a change was recorded as "edited", which an audit reads as the
// reviewer disagreeing; it is an approval of the exact values proposed.
#[test]
fn an_edit_sent_unchanged_is_recorded_as_an_approval() {
    let (m, events) = fixtures::reviewing(8);
    let mut a = app();
    let v = view(&m, &events);
    let reqs = press(&mut a, &v, &[ch('e'), code(KeyCode::Enter)]);
    assert!(
        matches!(&reqs[..], [Request::Feed(Event::Decided {
        decision: Decision::Approve, by, .. })] if by == "human"),
        "{reqs:?}"
    );
    assert!(a
        .notice
        .as_ref()
        .unwrap()
        .text
        .contains("recorded as approved"));
    // Changed and changed back is unchanged too; one row removed is an edit.
    let mut a = app();
    let ed_value = |a: &App| a.editor.as_ref().unwrap().rows[0].value.clone();
    press(&mut a, &v, &[ch('e')]);
    let before = ed_value(&a);
    press(&mut a, &v, &typed("0.05"));
    assert_eq!(ed_value(&a), "0.05");
    let mut keys = vec![code(KeyCode::Backspace); 4];
    keys.extend(typed(&before));
    keys.push(code(KeyCode::Enter));
    let reqs = press(&mut a, &v, &keys);
    assert!(
        matches!(
            &reqs[..],
            [Request::Feed(Event::Decided {
                decision: Decision::Approve,
                ..
            })]
        ),
        "{reqs:?}"
    );
    let mut a = app();
    let reqs = press(
        &mut a,
        &v,
        &[ch('e'), code(KeyCode::Delete), code(KeyCode::Enter)],
    );
    assert!(
        matches!(
            &reqs[..],
            [Request::Feed(Event::Decided {
                decision: Decision::Edit { .. },
                ..
            })]
        ),
        "{reqs:?}"
    );
}

// A paste is text for the open field: its line break does not submit the field, and its
// letters do not run as commands (A would turn auto-approve on).
#[test]
fn a_paste_goes_into_the_open_field_and_never_runs_keys() {
    let (m, events) = fixtures::reviewing(8);
    let mut a = app();
    let v = view(&m, &events);
    a.on_paste("ignored", &v);
    assert!(a
        .notice
        .as_ref()
        .is_some_and(|n| n.text.contains("none is open")));
    assert!(press(&mut a, &v, &[ch('r')]).is_empty());
    a.on_paste("spare block 0\r\nA s", &v);
    assert_eq!(a.auto_decision(&v), None);
    let reqs = press(&mut a, &v, &[code(KeyCode::Enter)]);
    assert!(
        matches!(&reqs[..], [Request::Feed(Event::Decided {
        decision: Decision::Reject { feedback }, .. })] if feedback == "spare block 0  A s"),
        "{reqs:?}"
    );
    // In the editor a pasted number replaces the selected value.
    let mut a = app();
    press(&mut a, &v, &[ch('e')]);
    a.on_paste(" 0.05\n", &v);
    let ed = a.editor.as_ref().unwrap();
    assert_eq!(ed.rows[ed.selected].value, "0.05");
    // A paste longer than any value is refused whole, named by its length.
    a.on_paste("0.05 and some words", &v);
    let ed = a.editor.as_ref().unwrap();
    assert_eq!(ed.rows[ed.selected].value, "0.05");
    let said = &a.notice.as_ref().unwrap().text;
    assert_eq!(said, "a value has at most 8 characters; the paste has 19");
}

/// Feedback and an override's reasoning go into later prompts: a field holds 2000
/// characters, and a longer paste is cut there and said to be (a 100 KB paste into the
/// reasoning took seconds, a character at a time, and was kept whole).
#[test]
fn a_long_paste_is_cut_at_the_fields_limit() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let big = "word ".repeat(20_000);
    let full = "a text field holds at most 2000 characters; the rest was not taken";
    let mut a = app();
    press(&mut a, &v, &[ch('r')]);
    a.on_paste(&big, &v);
    assert_eq!(a.notice.as_ref().unwrap().text, full);
    let Overlay::Feedback(t) = &a.overlay else {
        panic!("{:?}", a.overlay)
    };
    assert_eq!(t.as_str().chars().count(), 2000);
    // A key typed into the full field is refused with the same words.
    press(&mut a, &v, &[ch('x')]);
    assert_eq!(a.notice.as_ref().unwrap().text, full);
    let mut a = app();
    press(&mut a, &v, &[ch('o'), code(KeyCode::Tab)]);
    a.on_paste(&big, &v);
    assert_eq!(a.notice.as_ref().unwrap().text, full);
    let ed = a.editor.as_ref().unwrap();
    assert_eq!(ed.reasoning.as_str().chars().count(), 2000);
    // The panel follows the cursor at the reasoning's end, 2000 characters down.
    let screen = text_with_cursor(&draw(&mut a, &v, 120, 40));
    assert!(screen.contains("word ▏"), "{screen}");
    press(&mut a, &v, &[code(KeyCode::Home)]);
    let screen = text_with_cursor(&draw(&mut a, &v, 120, 40));
    assert!(screen.contains("reasoning (tab): ▏word word"), "{screen}");
}

/// An agent's retry warning speaks of the request in flight: it goes when the proposal
/// comes, without a key (it stayed over the proposal, saying the agent was retrying).
#[test]
fn an_agents_retry_warning_goes_when_its_phase_ends() {
    let (mut m, mut events) = fixtures::profiled(8);
    assert_eq!(m.phase, Phase::Proposing);
    let mut a = app();
    let said = "agent: HTTP 429, retrying in 30 s (1 of 5)";
    a.say_while(
        m.phase.clone(),
        arborist::tui::app::Level::Warn,
        said.into(),
    );
    let screen = text(&draw(&mut a, &view(&m, &events), 120, 40));
    assert!(screen.contains(said), "{screen}");
    fixtures::next_proposal(&mut m, &mut events);
    assert_eq!(m.phase, Phase::Reviewing);
    let screen = text(&draw(&mut a, &view(&m, &events), 120, 40));
    assert!(!screen.contains(said), "{screen}");
    assert!(a.notice.is_none());
    // A plain notice stays through a phase change, until the next key.
    a.say(arborist::tui::app::Level::Warn, said);
    fixtures::step(&mut m, &mut events, 10.1);
    let screen = text(&draw(&mut a, &view(&m, &events), 120, 40));
    assert!(screen.contains(said), "{screen}");
}

// Below the smallest screen only "terminal too small · q quits" is drawn: no other key
// may change what cannot be seen (an `e` then `enter` used to send an edit).
#[test]
fn a_screen_too_small_to_draw_takes_only_quit() {
    let (m, events) = fixtures::reviewing(8);
    let mut a = app();
    let v = view(&m, &events);
    let screen = text(&draw(&mut a, &v, 20, 5));
    assert!(screen.contains("too small"), "{screen}");
    assert!(press(&mut a, &v, &[ch('e'), code(KeyCode::Enter), ch('A')]).is_empty());
    assert!(a.editor.is_none());
    assert_eq!(a.auto_decision(&v), None);
    a.on_paste("0.3", &v);
    assert!(a.editor.is_none() && a.notice.is_none());
    assert!(matches!(
        &press(&mut a, &v, &[ch('q')])[..],
        [Request::Quit]
    ));
    // Back at a usable size every key works again.
    draw(&mut a, &v, 120, 40);
    press(&mut a, &v, &[ch('e')]);
    assert!(a.editor.is_some());
    // A text field or the help left open is not drawn there, and quit still quits (the
    // field kept the keys unseen and took `q` as text); the feedback typed is kept.
    for open in [vec![ch('r'), ch('s'), ch('o')], vec![ch('?')]] {
        let mut a = app();
        draw(&mut a, &v, 120, 40);
        press(&mut a, &v, &open);
        assert_ne!(a.overlay, Overlay::None);
        let screen = text(&draw(&mut a, &v, 20, 5));
        assert!(
            screen.contains("too small") && !screen.contains("Reject") && !screen.contains("Keys"),
            "{screen}"
        );
        assert!(press(&mut a, &v, &[code(KeyCode::Esc), ch('x')]).is_empty());
        assert!(matches!(
            &press(&mut a, &v, &[ch('q')])[..],
            [Request::Quit]
        ));
        assert_eq!(a.overlay, Overlay::None);
    }
}

// Profiles report no counts: the time the job has run shows it moves.
#[test]
fn the_status_shows_how_long_the_worker_has_been_at_its_job() {
    let (m, events) = fixtures::profiled(8);
    let mut v = view(&m, &events);
    v.busy_for = Some(std::time::Duration::from_secs(125));
    assert_eq!(v.worker_state(), "agent is proposing · 2 min 05 s");
    let mut a = app();
    let screen = text(&draw(&mut a, &v, 120, 40));
    assert!(
        screen.contains("agent is proposing · 2 min 05 s"),
        "{screen}"
    );
    // Waiting for the human is not the worker's time.
    let (m, events) = fixtures::reviewing(8);
    let mut v = view(&m, &events);
    v.busy_for = Some(std::time::Duration::from_secs(125));
    assert_eq!(v.worker_state(), "waiting for your review");
    // A resume's mask rebuild counts steps (it read "profiling" for as long as it took).
    let (mut m, events) = fixtures::profiled(8);
    m.phase = Phase::Profiling;
    let rebuilding = (arborist::worker::REBUILDING.to_string(), 3, 45);
    let mut v = view(&m, &events);
    v.progress = Some(&rebuilding);
    assert_eq!(v.worker_state(), "rebuilding masks 3/45 steps");
    m.phase = Phase::Applying;
    let evaluating = ("evaluating".to_string(), 2, 16);
    let mut v = view(&m, &events);
    v.progress = Some(&evaluating);
    assert_eq!(v.worker_state(), "evaluating 2/16 windows");
}

#[test]
fn help_overlay_lists_every_binding_of_the_keymap() {
    let (m, events) = fixtures::reviewing(36);
    let mut a = app();
    let v = view(&m, &events);
    press(&mut a, &v, &[ch('?')]);
    let screen = text(&draw(&mut a, &v, 120, 40));
    for b in &Keymap::builtin().bindings {
        let line = format!("{}  {}", b.key_labels(), b.help);
        assert!(screen.contains(&line), "help shows `{line}`:\n{screen}");
    }
    // It takes the whole width: no sliver of the panels' borders beside it.
    assert!(screen.starts_with("┌ Keys"), "{screen}");
    press(&mut a, &v, &[code(KeyCode::Esc)]);
    assert_eq!(a.overlay, Overlay::None);
}

// At 50 columns each description wraps under itself: every word of every binding's help
// is on screen somewhere while paging through (lines were cut mid-word: `(prune nothing`,
// `backspace, d`, `wheel`).
#[test]
fn the_help_wraps_at_the_smallest_screen() {
    let (m, events) = fixtures::reviewing(8);
    let mut a = app();
    let v = view(&m, &events);
    press(&mut a, &v, &[ch('?')]);
    let mut seen = String::new();
    let mut last = None;
    for _ in 0..200 {
        let screen = text(&draw(&mut a, &v, 50, 12));
        for line in screen.lines().skip(1).take(8) {
            // Inside the dialog's borders, one line's text.
            let inner: String = line.chars().skip(1).take(48).collect();
            seen.push_str(inner.trim());
            seen.push(' ');
        }
        if last == Some(a.overlay.clone()) {
            break;
        }
        last = Some(a.overlay.clone());
        press(&mut a, &v, &[code(KeyCode::Down)]);
    }
    let words: Vec<&str> = seen.split_whitespace().collect();
    let mut wanted: Vec<String> = Keymap::builtin()
        .bindings
        .iter()
        .map(|b| b.help.clone())
        .collect();
    wanted.push("move in a text field; backspace, del delete".into());
    wanted.push("mouse: click a cell or panel to focus it, wheel scrolls".into());
    for help in wanted {
        let want: Vec<&str> = help.split_whitespace().collect();
        assert!(
            words.windows(want.len()).any(|w| w == want.as_slice()),
            "`{help}` is not whole in the help at 50 columns:\n{seen}"
        );
    }
}

// On a screen too short for the heatmap and a panel the heatmap, focused at start, is
// not drawn: the first tab moves on from the panel shown (it moved the focus onto that
// same panel, and nothing on screen changed).
#[test]
fn the_first_tab_on_a_short_screen_changes_the_panel_shown() {
    use arborist::tui::app::Panel;
    let (m, events) = fixtures::reviewing(8);
    let mut a = app();
    let v = view(&m, &events);
    draw(&mut a, &v, 60, 15);
    let shown = |a: &App| a.areas.panels.iter().map(|(p, _)| *p).collect::<Vec<_>>();
    assert_eq!(shown(&a), [Panel::Proposal]);
    assert_eq!(a.focus, Panel::Heatmap);
    press(&mut a, &v, &[code(KeyCode::Tab)]);
    draw(&mut a, &v, 60, 15);
    assert_eq!(shown(&a), [Panel::Proposal.step(1)]);
    assert_eq!(a.focus, Panel::Proposal.step(1));
    // Back and back again: the heatmap would show the proposal once more, so shift-tab
    // passes over it (it stopped there, the screen unchanged), and tab comes back round.
    press(&mut a, &v, &[code(KeyCode::BackTab)]);
    draw(&mut a, &v, 60, 15);
    assert_eq!(shown(&a), [Panel::Proposal]);
    press(&mut a, &v, &[code(KeyCode::BackTab)]);
    draw(&mut a, &v, 60, 15);
    assert_eq!(shown(&a), [Panel::Log]);
    assert_eq!(a.focus, Panel::Log);
    press(&mut a, &v, &[code(KeyCode::Tab)]);
    draw(&mut a, &v, 60, 15);
    assert_eq!(shown(&a), [Panel::Proposal]);
    assert_eq!(a.focus, Panel::Proposal);
    // Where the heatmap is drawn, tab leaves it for the next panel, as before.
    let mut b = app();
    draw(&mut b, &v, 120, 40);
    press(&mut b, &v, &[code(KeyCode::Tab)]);
    assert_eq!(b.focus, Panel::Heatmap.step(1));
}

fn colours(b: &Buffer) -> Vec<Color> {
    b.content()
        .iter()
        .flat_map(|c| [c.fg, c.bg])
        .filter(|c| *c != Color::Reset)
        .collect()
}

#[test]
fn no_color_draws_without_any_colour() {
    let (m, events) = fixtures::reviewing(36);
    let v = view(&m, &events);
    let mut coloured = app();
    assert!(!colours(&draw(&mut coloured, &v, 120, 40)).is_empty());
    let mut plain = App::new(Keymap::builtin(), Themes::builtin(true));
    let buf = draw(&mut plain, &v, 120, 40);
    assert_eq!(colours(&buf), vec![], "NO_COLOR");
    // The heatmap stays readable with shade glyphs.
    assert!(text(&buf).contains('█') || text(&buf).contains('▓'));
}

#[test]
fn a_short_screen_keeps_a_trends_plot_of_three_rows() {
    use arborist::tui::app::Panel;
    let (mut m, mut events) = fixtures::reviewing(36);
    for ppl in [10.2, 10.4, 12.0, 10.5] {
        fixtures::step(&mut m, &mut events, ppl);
        fixtures::next_proposal(&mut m, &mut events);
    }
    let v = view(&m, &events);
    let height = |a: &App, p: Panel| {
        let (_, r) = a
            .areas
            .panels
            .iter()
            .find(|(q, _)| *q == p)
            .copied()
            .unwrap();
        r.height
    };
    for (w, h, trends, reflection) in [(100, 30, 8, 3), (100, 32, 8, 5), (120, 40, 10, 9)] {
        let mut a = app();
        let b = draw(&mut a, &v, w, h);
        let got = (height(&a, Panel::Trends), height(&a, Panel::Reflection));
        assert_eq!(got, (trends, reflection), "{w}x{h}:\n{}", text(&b));
        // Rows of the plot: those with the y axis, above the x axis's corner.
        let (_, r) = a
            .areas
            .panels
            .iter()
            .find(|(q, _)| *q == Panel::Trends)
            .copied()
            .unwrap();
        let x_axis = (r.left()..r.right())
            .find_map(|x| {
                (r.top()..r.bottom())
                    .find(|&y| b[(x, y)].symbol() == "└" && x > r.left())
                    .map(|y| (x, y))
            })
            .unwrap();
        let plot_rows = (r.top() + 1..x_axis.1)
            .filter(|&y| b[(x_axis.0, y)].symbol() == "│")
            .count();
        assert!(
            plot_rows >= 3,
            "{w}x{h}: {plot_rows} plot rows:\n{}",
            text(&b)
        );
    }
}

/// The worker's state changes length from frame to frame; the sparsity gauge keeps its size
/// (at 100 columns it flipped between 16 and 8 cells with the state).
#[test]
fn the_sparsity_gauge_keeps_its_size_as_the_state_changes_length() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let gauge = |a: &mut App, w: u16| {
        let b = draw(a, &v, w, 30);
        status_line(&b)
            .chars()
            .filter(|c| matches!(c, '░' | '█'))
            .count()
    };
    for w in 100..=160 {
        let mut a = app();
        let short = gauge(&mut a, w);
        a.failure = Some("evaluation failed: out of memory".into());
        let long = gauge(&mut a, w);
        assert_eq!(short, long, "{w} columns");
        assert_eq!(short, if w >= 140 { 16 } else { 8 }, "{w} columns");
    }
}

#[test]
fn every_theme_renders_at_80x24_and_200x60() {
    let (mut m, mut events) = fixtures::reviewing(36);
    fixtures::step(&mut m, &mut events, 10.2);
    fixtures::next_proposal(&mut m, &mut events);
    let mut a = app();
    for _ in 0..a.themes.list.len() {
        for (w, h) in [(80, 24), (120, 40), (200, 60)] {
            let v = view(&m, &events);
            let screen = text(&draw(&mut a, &v, w, h));
            assert!(screen.contains("Heatmap"), "{w}x{h} {}", a.theme().name);
            assert!(screen.contains("Proposal"), "{w}x{h}:\n{screen}");
        }
        a.themes.next();
    }
    assert_eq!(a.themes.list.len(), 3);
}

#[test]
fn keymap_resolves_by_mode_and_replay() {
    let k = Keymap::builtin();
    let enter = code(KeyCode::Enter);
    assert_eq!(k.lookup(&enter, Mode::Normal, false), Some(Action::Approve));
    assert_eq!(k.lookup(&enter, Mode::Edit, false), Some(Action::Submit));
    let left = code(KeyCode::Left);
    assert_eq!(k.lookup(&left, Mode::Normal, false), Some(Action::Left));
    assert_eq!(k.lookup(&left, Mode::Normal, true), Some(Action::StepBack));
    assert_eq!(
        k.lookup(&left, Mode::Dialog, false),
        Some(Action::ToggleChoice)
    );
    let shift_a = KeyEvent::new(KeyCode::Char('A'), KeyModifiers::SHIFT);
    assert_eq!(
        k.lookup(&shift_a, Mode::Normal, false),
        Some(Action::ToggleAuto)
    );
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(k.lookup(&ctrl_c, Mode::Normal, false), Some(Action::Quit));
    assert_eq!(k.lookup(&ch('c'), Mode::Normal, false), Some(Action::Mouse));
    // A user file rebinds one action and leaves the rest.
    let mut user = k.clone();
    user.overlay("- { action: approve, keys: [y] }", "test")
        .unwrap();
    assert_eq!(
        user.lookup(&ch('y'), Mode::Normal, false),
        Some(Action::Approve)
    );
    assert_eq!(user.lookup(&enter, Mode::Normal, false), None);
    assert!(user
        .overlay("- { action: approve, keys: [nokey] }", "t")
        .is_err());
    // A file that cannot be read is reported, not skipped; a missing one only when named
    // explicitly (ARBORIST_KEYMAP), since the default place may have none.
    let d = tempfile::tempdir().unwrap();
    let latin1 = d.path().join("latin1.yaml");
    std::fs::write(&latin1, b"- { action: approve, keys: [y] } # caf\xe9\n").unwrap();
    let missing = d.path().join("none.yaml");
    for (path, explicit) in [
        (&latin1, false),
        (&missing, true),
        (&d.path().to_path_buf(), true),
    ] {
        let (map, warning) = Keymap::load_from(Some(path.clone()), explicit);
        let w = warning.unwrap_or_else(|| panic!("no warning for {}", path.display()));
        assert!(
            w.contains(&path.display().to_string()) && w.contains("cannot read"),
            "{w}"
        );
        assert_eq!(
            map.lookup(&enter, Mode::Normal, false),
            Some(Action::Approve)
        );
    }
    assert_eq!(Keymap::load_from(Some(missing), false).1, None);
}

#[test]
fn quitting_during_a_step_asks_with_the_focus_on_cancel() {
    let (mut m, mut events) = fixtures::reviewing(8);
    let idle = view(&m, &events);
    assert_eq!(app().on_key(ch('q'), &idle), vec![Request::Quit]);
    let iteration = m.iteration;
    fixtures::feed(
        &mut m,
        &mut events,
        Event::Decided {
            iteration,
            by: "human".into(),
            decision: Decision::Approve,
        },
    );
    let busy = view(&m, &events);
    assert!(busy.busy());
    let mut a = app();
    assert!(press(&mut a, &busy, &[ch('q')]).is_empty());
    assert_eq!(
        a.overlay,
        Overlay::Confirm {
            what: Confirm::Quit,
            ok: false
        }
    );
    assert!(text(&draw(&mut a, &busy, 120, 40)).contains("Quit while a step runs?"));
    // The step ends with the dialog open: it stops saying a step runs.
    let (m2, e2) = fixtures::reviewing(8);
    let screen = text(&draw(&mut a, &view(&m2, &e2), 120, 40));
    assert!(
        !screen.contains("Quit while a step runs?") && screen.contains("The step has finished"),
        "{screen}"
    );
    // The key line says what ⏎ does with the focus where it is.
    let keys = |a: &mut App| {
        let b = draw(a, &busy, 120, 40);
        text(&b).lines().last().unwrap().to_string()
    };
    let on_cancel = keys(&mut a);
    assert!(on_cancel.contains("⏎/esc cancel"), "{on_cancel}");
    press(&mut a, &busy, &[code(KeyCode::Right)]);
    let on_ok = keys(&mut a);
    assert!(
        on_ok.contains("⏎ ok") && on_ok.contains("esc cancel"),
        "{on_ok}"
    );
    press(&mut a, &busy, &[code(KeyCode::Left)]);
    assert!(
        press(&mut a, &busy, &[code(KeyCode::Enter)]).is_empty(),
        "Enter on Cancel"
    );
    assert_eq!(a.overlay, Overlay::None);
    let reqs = press(
        &mut a,
        &busy,
        &[ch('q'), code(KeyCode::Right), code(KeyCode::Enter)],
    );
    assert_eq!(reqs, vec![Request::Quit]);
    // ctrl-c asks the same, and a second ctrl-c quits (it reopened the dialog, on Cancel,
    // however often it was pressed).
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    let mut a = app();
    assert!(press(&mut a, &busy, &[ctrl_c]).is_empty());
    assert!(matches!(
        a.overlay,
        Overlay::Confirm {
            what: Confirm::Quit,
            ..
        }
    ));
    assert_eq!(press(&mut a, &busy, &[ctrl_c]), vec![Request::Quit]);
}

// Every text that names a key takes it from the keymap in force: with a user's keymap
// that moves them, no dialog, panel or message names a built-in key (`⏎ send` while
// submit was ctrl-s).
#[test]
fn the_texts_that_name_keys_follow_a_users_keymap() {
    let mut k = Keymap::builtin();
    let user = "
- { action: submit, keys: [ctrl-s] }
- { action: cancel, keys: [ctrl-g] }
- { action: quit, keys: [Q] }
- { action: add_layer, keys: [ctrl-a] }
- { action: skip, keys: [X] }
- { action: row_up, keys: [ctrl-p] }
- { action: row_down, keys: [ctrl-n] }
- { action: left, keys: [left, y] }
- { action: down, keys: [down, u] }
- { action: up, keys: [up, i] }
- { action: right, keys: [right, o] }
- { action: next_metric, keys: [n] }
- { action: prev_metric, keys: [N] }
- { action: switch_field, keys: [ctrl-f] }
- { action: next_panel, keys: [ctrl-t] }
- { action: page_down, keys: [ctrl-d] }
- { action: mouse, keys: [ctrl-o] }
";
    k.overlay(user, "user.yaml").unwrap();
    let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
    let new_app = || App::new(k.clone(), Themes::builtin(false));
    let builtin = [
        "⏎", "esc", "hjkl", "q quits", "+ to add", "x skip", "↑/↓", "↑↓", "m/M", "(tab)", "(pgdn)",
    ];
    let screen_of = |a: &mut App, v: &arborist::tui::view::View, w, h| {
        let screen = text(&draw(a, v, w, h));
        // The key line is built from the keymap already; the texts above it are checked.
        let above: Vec<&str> = screen.lines().collect();
        above[..above.len() - 1].join("\n")
    };
    let no_builtin = |screen: &str| {
        for b in builtin {
            assert!(!screen.contains(b), "{b} named:\n{screen}");
        }
    };

    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    // The heatmap's metric keys, the tabs' key and the proposal's page key.
    let mut a = new_app();
    let screen = screen_of(&mut a, &v, 120, 40);
    assert!(screen.contains("· n/N metric"), "{screen}");
    no_builtin(&screen);
    let screen = screen_of(&mut a, &v, 99, 29);
    assert!(screen.contains("(ctrl-t) ·"), "{screen}");
    let screen = screen_of(&mut a, &v, 60, 23);
    assert!(screen.contains("more line (ctrl-d)"), "{screen}");
    no_builtin(&screen);
    // The help lists every binding as the keymap has it, and names no move keys itself.
    press(&mut a, &v, &[ch('?')]);
    let screen = screen_of(&mut a, &v, 120, 40);
    assert!(!screen.contains("hjkl"), "{screen}");

    // The feedback field: its hint, and the message for an empty one.
    let mut a = new_app();
    press(&mut a, &v, &[ch('r')]);
    let screen = screen_of(&mut a, &v, 120, 40);
    assert!(
        screen.contains("ctrl-s send · ctrl-g cancel · ←→ move"),
        "{screen}"
    );
    press(&mut a, &v, &[ctrl('s')]);
    assert_eq!(
        a.notice.as_ref().unwrap().text,
        "type the feedback for the agent, or ctrl-g to cancel"
    );
    no_builtin(&screen_of(&mut a, &v, 120, 40));
    press(&mut a, &v, &[ctrl('g')]);
    assert_eq!(a.overlay, Overlay::None);

    // An override starts empty: the panel and a typed value name the editor's keys (o
    // overrides on the main screen and moves right in the editor).
    press(&mut a, &v, &[ch('o')]);
    assert!(a.editor.is_some());
    let screen = screen_of(&mut a, &v, 120, 40);
    assert!(
        screen.contains("empty: move in the heatmap (yuio) and press ctrl-a to add"),
        "{screen}"
    );
    assert!(
        screen.contains("write why in the reasoning field (ctrl-f)")
            && screen.contains("reasoning (ctrl-f):"),
        "{screen}"
    );
    no_builtin(&screen);
    press(&mut a, &v, &[ch('5')]);
    assert_eq!(
        a.notice.as_ref().unwrap().text,
        "no row to type into: move in the heatmap (yuio) and press ctrl-a to add one"
    );
    // Sent without its reasoning, the message names the key to that field.
    press(&mut a, &v, &[ctrl('s')]);
    let said = &a.notice.as_ref().unwrap().text;
    assert!(
        said.starts_with("not sent: override: write why in the reasoning field (ctrl-f)"),
        "{said}"
    );
    // The cursor strip of a short screen names them too.
    let screen = screen_of(&mut a, &v, 90, 14);
    assert!(
        screen.contains("heatmap cursor (yuio, ctrl-a adds)"),
        "{screen}"
    );

    // An edit of the agent's proposal is valid as it stands.
    let mut a = new_app();
    press(&mut a, &v, &[ch('e')]);
    let screen = screen_of(&mut a, &v, 120, 40);
    assert!(screen.contains("✓ valid: ctrl-s sends it"), "{screen}");
    no_builtin(&screen);

    // The confirmation while a step runs, and its stop sibling.
    let (m2, e2) = approved();
    let busy = view(&m2, &e2);
    let mut a = new_app();
    press(&mut a, &busy, &[ch('Q')]);
    let screen = screen_of(&mut a, &busy, 120, 40);
    assert!(
        screen.contains("←/→/tab switch · ctrl-s choose · ctrl-g cancel"),
        "{screen}"
    );
    no_builtin(&screen);
    press(&mut a, &busy, &[ctrl('g')]);
    let mut a = new_app();
    press(&mut a, &v, &[ch('s')]);
    let screen = screen_of(&mut a, &v, 120, 40);
    assert!(screen.contains("quit with Q instead"), "{screen}");

    // A screen too small to draw, and an agent that proposed nothing.
    let screen = text(&draw(&mut new_app(), &v, 30, 8));
    assert!(
        screen.contains("Q quits") && !screen.contains("q quits"),
        "{screen}"
    );
    let (m3, e3) = agent_failed();
    let failed = view(&m3, &e3);
    let screen = screen_of(&mut new_app(), &failed, 200, 40);
    assert!(
        screen.contains("no valid proposal from the agent: o override, r ask again, X skip"),
        "{screen}"
    );
    // Approving there says the same keys (it named x whatever the keymap said).
    let mut a = new_app();
    press(&mut a, &failed, &[ch('a')]);
    assert_eq!(
        a.notice.as_ref().unwrap().text,
        "nothing to approve or edit: the agent gave no valid proposal (o override, r ask again, X skip)"
    );
    // The mouse toggle names its own key.
    press(&mut a, &failed, &[ctrl('o')]);
    assert_eq!(
        a.notice.as_ref().unwrap().text,
        "mouse capture off: the terminal selects text (ctrl-o turns it back on)"
    );

    // The checkpoint picker.
    let (mut m4, mut e4) = fixtures::reviewing(8);
    fixtures::step(&mut m4, &mut e4, 10.1);
    fixtures::next_proposal(&mut m4, &mut e4);
    let v4 = view(&m4, &e4);
    let mut a = new_app();
    press(&mut a, &v4, &[ch('b')]);
    let screen = screen_of(&mut a, &v4, 120, 40);
    assert!(
        screen.contains("ctrl-p/ctrl-n choose · ctrl-s next · ctrl-g cancel"),
        "{screen}"
    );
    no_builtin(&screen);
}

#[test]
fn rollback_picks_a_checkpoint_and_confirms() {
    let (mut m, mut events) = fixtures::reviewing(8);
    let mut a = app();
    assert!(press(&mut a, &view(&m, &events), &[ch('b')]).is_empty());
    assert_eq!(a.overlay, Overlay::None, "no earlier checkpoint yet");
    fixtures::step(&mut m, &mut events, 10.1);
    fixtures::next_proposal(&mut m, &mut events);
    let v = view(&m, &events);
    assert!(v.can_rollback());
    let keys = [ch('b'), code(KeyCode::Enter), code(KeyCode::Enter)];
    assert!(press(&mut a, &v, &keys).is_empty(), "cancel is the default");
    let keys = [
        ch('b'),
        code(KeyCode::Enter),
        code(KeyCode::Left),
        code(KeyCode::Enter),
    ];
    let reqs = press(&mut a, &v, &keys);
    assert_eq!(
        reqs,
        vec![Request::Feed(Event::RollbackTo {
            checkpoint: 0,
            by: "human".into()
        })]
    );
    m.handle(&Event::RollbackTo {
        checkpoint: 0,
        by: "human".into(),
    })
    .unwrap();
}

#[test]
fn auto_approve_and_pause() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    assert_eq!(a.auto_decision(&v), None);
    press(
        &mut a,
        &v,
        &[KeyEvent::new(KeyCode::Char('A'), KeyModifiers::SHIFT)],
    );
    let Some(Event::Decided {
        by,
        decision: Decision::Approve,
        ..
    }) = a.auto_decision(&v)
    else {
        panic!("auto approves");
    };
    assert_eq!(by, "auto");
    press(&mut a, &v, &[ch('p')]);
    assert_eq!(a.auto_decision(&v), None, "paused");
    press(&mut a, &v, &[ch('p'), ch('e')]);
    assert_eq!(a.auto_decision(&v), None, "never while the human edits");
}

// Auto-approve, pause and stop have nothing to act on once the session is finished or in
// replay: they say so instead of toggling a mark that changes nothing.
#[test]
fn auto_pause_and_stop_say_why_they_do_nothing_after_the_end() {
    let (mut m, mut events) = fixtures::reviewing(8);
    let stop = Event::StopRequested { by: "human".into() };
    fixtures::feed(&mut m, &mut events, stop);
    assert!(m.is_done());
    let v = view(&m, &events);
    let mut a = app();
    // b and the decisions too (they spoke of a proposal waiting, or of a step).
    for k in [
        KeyEvent::new(KeyCode::Char('A'), KeyModifiers::SHIFT),
        ch('p'),
        ch('s'),
        ch('b'),
        ch('x'),
        code(KeyCode::Enter),
    ] {
        assert!(press(&mut a, &v, &[k]).is_empty());
        let notice = a.notice.as_ref().map(|n| n.text.clone());
        assert_eq!(
            notice.as_deref(),
            Some("the session is finished: nothing more to decide")
        );
    }
    assert!(!a.auto_approve && !a.paused);
}

/// A stop asked for during a step ends the session at the next safe point: until then
/// auto, pause and stop leave the key line and say so (they were offered for about a
/// second; TUI audit).
#[test]
fn after_a_stop_is_asked_for_auto_pause_and_stop_say_it_is_coming() {
    let (mut m, mut events) = fixtures::reviewing(8);
    let iteration = m.iteration;
    let approve = Event::Decided {
        iteration,
        by: "human".into(),
        decision: Decision::Approve,
    };
    fixtures::feed(&mut m, &mut events, approve);
    let v = view(&m, &events);
    let keys = text(&draw(&mut app(), &v, 120, 40));
    assert!(keys.contains("s stop"), "{keys}");
    fixtures::feed(
        &mut m,
        &mut events,
        Event::StopRequested { by: "human".into() },
    );
    assert!(!m.is_done());
    let v = view(&m, &events);
    let mut a = app();
    let screen = text(&draw(&mut a, &v, 120, 40));
    let keys = screen.lines().last().unwrap();
    for gone in ["s stop", "A auto", "p pause"] {
        assert!(!keys.contains(gone), "{gone}: {keys}");
    }
    for k in [
        KeyEvent::new(KeyCode::Char('A'), KeyModifiers::SHIFT),
        ch('p'),
        ch('s'),
    ] {
        assert!(press(&mut a, &v, &[k]).is_empty());
        assert_eq!(
            a.notice.as_ref().map(|n| n.text.as_str()),
            Some("the session stops at the end of this step, as you asked")
        );
    }
    assert!(!a.auto_approve && !a.paused);
}

// A session that finished while auto-approve (or pause) was on no longer shows the mark:
// nothing is left to approve, and the keys that toggle it have left the key line.
#[test]
fn a_finished_session_shows_neither_auto_nor_paused() {
    fn top_bar(a: &mut App, m: &arborist::session::Machine, events: &[Event]) -> String {
        let screen = text(&draw(a, &view(m, events), 120, 40));
        screen.lines().rev().nth(1).unwrap_or_default().to_string()
    }
    let (mut m, mut events) = fixtures::reviewing(8);
    let mut a = app();
    a.auto_approve = true;
    a.paused = true;
    let running = top_bar(&mut a, &m, &events);
    assert!(
        running.contains("AUTO") && running.contains("PAUSED"),
        "{running}"
    );
    let stop = Event::StopRequested { by: "human".into() };
    fixtures::feed(&mut m, &mut events, stop);
    let done = top_bar(&mut a, &m, &events);
    assert!(done.contains("finished"), "{done}");
    assert!(!done.contains("AUTO") && !done.contains("PAUSED"), "{done}");
}

// Replay's moves at either end: off the key line, and said when pressed (they did nothing
// and said nothing, while the key line offered them).
#[test]
fn replay_moves_past_the_ends_are_refused_with_a_word() {
    use arborist::tui::view::ReplayPos;
    let (m, events) = fixtures::reviewing(8);
    let total = events.len();
    for (index, dead, live) in [
        (0, ["←", "home", "["], ["→", "end", "]"]),
        (total, ["→", "end", "]"], ["←", "home", "["]),
    ] {
        let mut v = view(&m, &events);
        v.replay = Some(ReplayPos {
            index,
            total,
            unfinished: false,
        });
        let mut a = app();
        let bar = text(&draw(&mut a, &v, 160, 40));
        let keys = bar.lines().last().unwrap().to_string();
        for k in live {
            assert!(keys.contains(&format!("{k} ")), "{k} at {index}: {keys}");
        }
        for k in dead {
            assert!(!keys.contains(&format!("{k} ")), "{k} at {index}: {keys}");
        }
        let press_key = if index == 0 {
            code(KeyCode::Left)
        } else {
            code(KeyCode::Right)
        };
        assert!(press(&mut a, &v, &[press_key]).is_empty(), "at {index}");
        let said = a
            .notice
            .as_ref()
            .map(|n| n.text.clone())
            .unwrap_or_default();
        let want = if index == 0 {
            "at the first event"
        } else {
            "at the last event"
        };
        assert!(said.starts_with(want), "at {index}: {said:?}");
    }
}

// On the smallest screen the editor's cursor strip names the whole layer, so that `+`
// is not used blind (at 50 columns it read "layers.0.self_attn." for q, k, v and o).
#[test]
fn the_cursor_strip_names_the_whole_layer_at_50_columns() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    press(&mut a, &v, &[ch('e')]);
    for (k, kind) in ["q_proj", "k_proj", "v_proj", "o_proj"].iter().enumerate() {
        if k > 0 {
            press(&mut a, &v, &[ch('j')]);
        }
        let screen = text(&draw(&mut a, &v, 50, 12));
        let name = format!("layers.0.self_attn.{kind}");
        assert!(screen.contains(&name), "{name}:\n{screen}");
    }
}

#[test]
fn a_whole_iteration_with_a_rollback_shows_in_trends_reflection_and_log() {
    let (mut m, mut events) = fixtures::reviewing(36);
    fixtures::step(&mut m, &mut events, 10.1);
    fixtures::next_proposal(&mut m, &mut events);
    fixtures::step(&mut m, &mut events, 12.0); // +19% > 5%: rolled back
    assert_eq!(m.rollbacks, 1);
    fixtures::next_proposal(&mut m, &mut events);
    let mut a = app();
    let screen = text(&draw(&mut a, &view(&m, &events), 120, 40));
    assert!(screen.contains("rollbacks 1"), "{screen}");
    assert!(screen.contains("iter 2 · rolled back"), "{screen}");
    assert!(screen.contains("Trends"), "{screen}");
    assert!(screen.contains("tokens 6000 in / 1500 out"), "{screen}");
    assert!(screen.contains("waiting for your review"), "{screen}");
}

#[test]
fn replay_timeline_steps_and_jumps_to_iterations() {
    use arborist::session::file::{Entry, Header, SessionLog};
    use arborist::tui::{app::Seek, replay::Timeline};
    let (mut m, mut events) = fixtures::reviewing(8);
    fixtures::step(&mut m, &mut events, 10.1);
    fixtures::next_proposal(&mut m, &mut events);
    let header: Header = serde_yaml::from_str(
        "{format: arborist-session/1, arborist: test, created_unix: 0, model: synthetic, \
         fingerprint: x, options: {}}",
    )
    .unwrap();
    let log_of = |events: &[Event]| SessionLog {
        header: header.clone(),
        entries: events
            .iter()
            .enumerate()
            .map(|(i, e)| Entry {
                seq: i as u64 + 1,
                unix_ms: 0,
                event: e.clone(),
            })
            .collect(),
        valid_len: 0,
        torn_tail: false,
        appended: false,
        unknown_fields: Vec::new(),
    };
    let mut t = Timeline::new(&log_of(&events));
    assert_eq!(
        (t.index(), t.machine().phase.clone()),
        (events.len(), Phase::Reviewing)
    );
    t.seek(Seek::First);
    assert_eq!((t.index(), t.machine().phase.clone()), (0, Phase::Baseline));
    t.seek(Seek::Iteration(1));
    assert!(matches!(
        t.events().last(),
        Some(Event::Decided { iteration: 1, .. })
    ));
    assert_eq!(t.machine().phase, Phase::Applying);
    t.seek(Seek::Back);
    assert_eq!(t.machine().phase, Phase::Reviewing);
    t.seek(Seek::Last);
    assert_eq!(t.index(), events.len());
    assert!(t.error.is_none());
    assert_eq!(t.last_iteration(), 2);
    // A profile names the iteration after it before that has a proposal: `g` offered it
    // (a 6-iteration session said "0 to 7").
    let (_, profiled) = fixtures::profiled(8);
    assert!(matches!(
        profiled.last(),
        Some(Event::Profiled { iteration: 1, .. })
    ));
    assert_eq!(Timeline::new(&log_of(&profiled)).last_iteration(), 0);
}

/// Iteration 1 after the agent gave no valid proposal.
fn agent_failed() -> (arborist::session::Machine, Vec<Event>) {
    let (mut m, mut events) = fixtures::profiled(8);
    let failed: Event =
        serde_yaml::from_str("{event: agent_failed, iteration: 1, error: server timed out}")
            .unwrap();
    fixtures::feed(&mut m, &mut events, failed);
    (m, events)
}

#[test]
fn a_failed_agent_leaves_override_reject_or_skip_to_the_human() {
    let (m, events) = agent_failed();
    let v = view(&m, &events);
    let mut a = app();
    let screen = text(&draw(&mut a, &v, 120, 40));
    assert!(
        screen.contains("no valid proposal from the agent"),
        "{screen}"
    );
    // Nothing to approve or edit: said, never sent (it was recorded as an approval).
    for key in [ch('a'), code(KeyCode::Enter), ch('e')] {
        assert!(press(&mut a, &v, &[key]).is_empty(), "{key:?}");
        let screen = text(&draw(&mut a, &v, 120, 40));
        assert!(screen.contains("nothing to approve or edit"), "{screen}");
        assert!(a.editor.is_none(), "{key:?} opened an editor");
    }
    // The key line offers what can be done, even at 50 columns.
    let bar = text(&draw(&mut app(), &v, 50, 12));
    assert!(!bar.contains("approve"), "{bar}");
    for hint in ["o override", "r reject", "x skip"] {
        assert!(bar.contains(hint), "{hint}: {bar}");
    }
    let reqs = press(&mut a, &v, &[ch('x')]);
    assert!(matches!(&reqs[..], [Request::Feed(Event::Decided {
        decision: Decision::Skip, by, .. })] if by == "human"));
    // Auto-approve skips, as headless does.
    let mut auto = app();
    press(
        &mut auto,
        &v,
        &[KeyEvent::new(KeyCode::Char('A'), KeyModifiers::SHIFT)],
    );
    assert!(matches!(auto.auto_decision(&v), Some(Event::Decided {
        decision: Decision::Skip, by, .. }) if by == "auto"));
}

// A notice leads the key line; the keys after it are whole or absent at every width (help
// and quit were forced in and cut mid-word: "q qu").
#[test]
fn keys_after_a_notice_are_never_cut_mid_word() {
    let (m, events) = agent_failed();
    let v = view(&m, &events);
    let mut a = app();
    press(&mut a, &v, &[ch('a')]);
    let notice = a
        .notice
        .as_ref()
        .expect("a refused approval says why")
        .text
        .clone();
    let shorts: Vec<String> = Keymap::builtin()
        .bindings
        .iter()
        .map(|b| b.short.clone())
        .collect();
    let mut keys_shown = 0;
    for w in 50..=notice.chars().count() as u16 + 40 {
        let screen = text(&draw(&mut a, &v, w, 20));
        let row = screen.lines().last().unwrap().trim_end();
        assert!(row.contains(&notice[..20]), "{w}: {row}");
        let Some((_, keys)) = row.split_once(&notice) else {
            // The notice itself is cut at the edge, and says so (it ended mid-word).
            assert!(row.ends_with('…'), "{w}: {row:?}");
            continue;
        };
        assert!(
            !row.ends_with('│'),
            "{w}: a separator with no keys after it: {row:?}"
        );
        let keys = keys.trim_start_matches([' ', '│']).trim();
        if keys.is_empty() {
            continue;
        }
        keys_shown += 1;
        for group in keys.split("  ") {
            let (_, short) = group.trim().split_once(' ').unwrap_or(("", group));
            assert!(
                shorts.iter().any(|s| s == short),
                "{w}: `{group}` in {row:?}"
            );
        }
    }
    assert!(
        keys_shown > 10,
        "the keys showed at {keys_shown} widths only"
    );
}

#[test]
fn a_click_focuses_the_heatmap_cell_under_the_mouse() {
    use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let (m, events) = fixtures::reviewing(36);
    let mut a = app();
    let v = view(&m, &events);
    draw(&mut a, &v, 120, 40);
    let (x0, y0, cw, first, _) = a.areas.heat.expect("the grid was drawn");
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: x0 + 20 * cw,
        row: y0 + 5,
        modifiers: KeyModifiers::NONE,
    };
    a.on_mouse(click);
    assert_eq!(a.cursor, (first + 20, 5));
    let screen = text(&draw(&mut a, &v, 120, 40));
    assert!(screen.contains("layers.20.mlp.up_proj"), "{screen}");
}

/// The issue's goal is 2 ms per 200x60 frame (release); this only reports the time and
/// catches gross regressions, as the test build and a shared CI machine are slower.
// Frame time is measured by `cargo bench --bench tui` (a timed test would fail on a busy
// machine and pass a slow build on a fast one); here the same screen must draw whole.
#[test]
fn the_200x60_screen_with_36_blocks_draws_every_block_and_panel() {
    let (mut m, mut events) = fixtures::reviewing(36);
    fixtures::step(&mut m, &mut events, 10.2);
    fixtures::next_proposal(&mut m, &mut events);
    let v = view(&m, &events);
    let mut a = app();
    let screen = text(&draw(&mut a, &v, 200, 60));
    let header = screen.lines().nth(1).unwrap();
    let shown: Vec<usize> = header
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(shown, (0..36).collect::<Vec<_>>(), "{header}");
    for panel in ["Heatmap", "Proposal", "Reflection", "Trends", "Log"] {
        assert!(screen.contains(panel), "{panel}:\n{screen}");
    }
}

fn status_line(b: &Buffer) -> String {
    text(b)
        .lines()
        .nth(b.area.height as usize - 2)
        .unwrap()
        .to_string()
}

/// How far the last frame let `p` scroll.
fn scroll_max(a: &App, p: arborist::tui::app::Panel) -> u16 {
    let found = a.areas.scroll_max.iter().find(|(q, _)| *q == p);
    found.expect("the panel was drawn").1
}

#[test]
fn an_editor_opens_with_its_table_in_view_and_pages_while_editing() {
    use arborist::tui::app::Panel::Proposal;
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    // Short enough that the proposal overflows its panel.
    draw(&mut a, &v, 60, 23);
    let max = scroll_max(&a, Proposal);
    assert!(max > 0, "the proposal fits: the test checks nothing");
    press(&mut a, &v, &[code(KeyCode::Tab), code(KeyCode::PageDown)]);
    assert_eq!(a.scroll(Proposal), max.min(10));
    press(&mut a, &v, &[ch('o')]);
    assert_eq!(a.mode(), Mode::Edit);
    assert_eq!(a.scroll(Proposal), 0, "reset");
    let screen = text(&draw(&mut a, &v, 60, 23));
    assert!(screen.contains("empty: move in the heatmap"), "{screen}");
    let max = scroll_max(&a, Proposal);
    press(&mut a, &v, &[code(KeyCode::PageDown)]);
    assert_eq!(a.scroll(Proposal), max.min(10));
    press(&mut a, &v, &[code(KeyCode::PageUp)]);
    assert_eq!(a.scroll(Proposal), 0, "pageup edits");
}

// Rows and reasoning below the panel's edge were hidden without a sign (an audit at
// 80x24 with 8 proposed layers); the bottom border says how many lines are below.
#[test]
fn a_proposal_taller_than_its_panel_says_how_much_is_below() {
    use arborist::tui::app::Panel::Proposal;
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    let screen = text(&draw(&mut a, &v, 60, 23));
    let max = scroll_max(&a, Proposal);
    assert!(max > 0, "the proposal fits: the test checks nothing");
    let s = if max == 1 { "" } else { "s" };
    let mark = format!("↓ {max} more line{s} (pgdn)");
    assert!(screen.contains(&mark), "{screen}");
    // With the focus on the heatmap, which does not scroll, pgdn pages the proposal as
    // its border says (it did nothing).
    assert_eq!(a.focus, arborist::tui::app::Panel::Heatmap);
    press(&mut a, &v, &[code(KeyCode::PageDown)]);
    assert_eq!(a.scroll(Proposal), max.min(10));
    press(&mut a, &v, &[code(KeyCode::PageUp)]);
    assert_eq!(a.scroll(Proposal), 0);
    // Scrolled to its end, nothing is below.
    press(&mut a, &v, &[code(KeyCode::Tab)]);
    while a.scroll(Proposal) < max {
        press(&mut a, &v, &[code(KeyCode::PageDown)]);
    }
    let screen = text(&draw(&mut a, &v, 60, 23));
    assert!(!screen.contains("more line"), "{screen}");
    // A panel that holds it all has no mark.
    let screen = text(&draw(&mut app(), &v, 120, 40));
    assert!(!screen.contains("more line"), "{screen}");
}

// esc out of the editor gives the focus back to the heatmap (the arrows went on scrolling
// the proposal), and the next proposal is shown from its top (a scroll kept from the one
// before hid the table's header).
#[test]
fn the_editor_returns_the_focus_and_a_new_proposal_starts_at_its_top() {
    use arborist::tui::app::Panel::{Heatmap, Proposal};
    let (mut m, mut events) = fixtures::reviewing(8);
    let mut a = app();
    draw(&mut a, &view(&m, &events), 60, 23);
    assert_eq!(a.focus, Heatmap);
    press(&mut a, &view(&m, &events), &[ch('e')]);
    assert_eq!(a.focus, Proposal);
    press(&mut a, &view(&m, &events), &[code(KeyCode::Esc)]);
    assert_eq!(a.focus, Heatmap, "esc gives the focus back");
    press(&mut a, &view(&m, &events), &[code(KeyCode::Down)]);
    assert_eq!(a.cursor, (0, 1), "the arrows move the heatmap cursor again");
    // Paged down in this proposal...
    press(
        &mut a,
        &view(&m, &events),
        &[code(KeyCode::Tab), code(KeyCode::PageDown)],
    );
    assert!(
        a.scroll(Proposal) > 0,
        "the proposal fits: the test checks nothing"
    );
    // ...the next one opens at its top.
    fixtures::step(&mut m, &mut events, 10.1);
    fixtures::next_proposal(&mut m, &mut events);
    let screen = text(&draw(&mut a, &view(&m, &events), 60, 23));
    assert_eq!(a.scroll(Proposal), 0);
    assert!(screen.contains("current"), "the table's header: {screen}");
    // The Reflection panel, newest first, shows a new reflection at its top.
    use arborist::tui::app::Panel::Reflection;
    for _ in 0..4 {
        fixtures::step(&mut m, &mut events, 10.1);
        fixtures::next_proposal(&mut m, &mut events);
    }
    draw(&mut a, &view(&m, &events), 120, 40);
    a.scroll_by(Reflection, 5);
    draw(&mut a, &view(&m, &events), 120, 40);
    assert!(a.scroll(Reflection) > 0, "reflections fit: nothing checked");
    fixtures::step(&mut m, &mut events, 10.1);
    draw(&mut a, &view(&m, &events), 120, 40);
    assert_eq!(a.scroll(Reflection), 0);
}

// Scrolling stops at the end of the text the last frame drew (it used to count on, so
// coming back took as many presses), in the text panels and the help.
#[test]
fn scrolling_stops_at_the_end_of_the_text() {
    use arborist::tui::app::Panel;
    let (mut m, mut events) = fixtures::reviewing(36);
    for _ in 0..6 {
        fixtures::step(&mut m, &mut events, 10.1);
        fixtures::next_proposal(&mut m, &mut events);
    }
    let v = view(&m, &events);
    let mut a = app();
    let screen = text(&draw(&mut a, &v, 120, 40));
    // With the focus on the heatmap pgdn pages the proposal; a reflection with more below
    // says to move the focus to it first.
    let reflection = screen
        .lines()
        .find(|l| l.contains("more line"))
        .unwrap_or("");
    assert!(reflection.contains("(tab to it, then pgdn)"), "{screen}");
    // A page is what the panel shows less one line (a fixed 10 skipped lines in a 4-line
    // Log).
    let rows = |a: &App, p: Panel| {
        let r = a.areas.panels.iter().find(|(q, _)| *q == p).unwrap().1;
        r.height - 2
    };
    a.focus = Panel::Log;
    let log_rows = rows(&a, Panel::Log);
    assert!(
        log_rows < 10 && scroll_max(&a, Panel::Log) > log_rows,
        "{log_rows}"
    );
    press(&mut a, &v, &[code(KeyCode::PageUp)]);
    assert_eq!(a.scroll(Panel::Log), log_rows - 1);
    press(&mut a, &v, &[code(KeyCode::PageDown)]);
    assert_eq!(a.scroll(Panel::Log), 0);
    a.focus = Panel::Heatmap;
    for p in [Panel::Proposal, Panel::Reflection, Panel::Log] {
        let max = scroll_max(&a, p);
        for _ in 0..50 {
            a.scroll_by(p, 10);
        }
        let end = if p == Panel::Log { 0 } else { max };
        assert_eq!(a.scroll(p), end, "{p:?}");
        a.scroll_by(p, -1);
        let back = if p == Panel::Log {
            max.min(1)
        } else {
            max.saturating_sub(1)
        };
        assert_eq!(a.scroll(p), back, "{p:?}: one step back from the end");
    }
    assert!(
        scroll_max(&a, Panel::Reflection) > 0,
        "reflections fit: nothing checked"
    );
    // The log scrolls back in time up to its first event, and comes back in one press.
    let max = scroll_max(&a, Panel::Log);
    assert!(max > 0, "the log fits: nothing checked");
    for _ in 0..50 {
        a.scroll_by(Panel::Log, -10);
    }
    assert_eq!(a.scroll(Panel::Log), max);
    a.scroll_by(Panel::Log, 1);
    assert_eq!(a.scroll(Panel::Log), max - 1);
    // An offset beyond the end (the text shrank) counts from what is shown.
    a.scroll_to(Panel::Reflection, u16::MAX);
    a.scroll_by(Panel::Reflection, -1);
    assert_eq!(
        a.scroll(Panel::Reflection),
        scroll_max(&a, Panel::Reflection) - 1
    );
    // The help in one column on a small screen says how to scroll, and stops at its end.
    press(&mut a, &v, &[ch('?')]);
    let screen = text(&draw(&mut a, &v, 80, 24));
    assert!(screen.contains("↑↓ PgUp PgDn Home End scroll"), "{screen}");
    let max = a.areas.help_max.unwrap();
    assert!(max > 0);
    for _ in 0..30 {
        press(&mut a, &v, &[code(KeyCode::PageDown)]);
    }
    assert_eq!(a.overlay, Overlay::Help { scroll: max });
    press(&mut a, &v, &[code(KeyCode::Up)]);
    assert_eq!(a.overlay, Overlay::Help { scroll: max - 1 });
    // The key line says what the keys do now (it offered approve, edit..., which only
    // closed the help).
    let screen = text(&draw(&mut a, &v, 80, 24));
    let keys = screen.lines().last().unwrap();
    assert!(
        keys.contains("scroll") && keys.contains("any other key closes the help"),
        "{keys}"
    );
    assert!(!keys.contains("approve"), "{keys}");
    // Narrower, whole groups only, closing first (it was cut mid-word: `↑/↓/pgu…`).
    for (w, want) in [
        (50, " any other key closes the help"),
        (
            80,
            " ↑/↓/pgup/pgdn/home/end scroll  any other key closes the help",
        ),
    ] {
        let screen = text(&draw(&mut a, &v, w, 12));
        let keys = screen.lines().last().unwrap().trim_end().to_string();
        assert_eq!(keys, want, "{w}");
    }
}

// A refused table names its first problem in the message: under a long table the problem
// lines can be out of view (the message said only "see the table").
#[test]
fn a_table_that_is_not_sent_names_its_first_problem() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    draw(&mut a, &v, 80, 24);
    press(&mut a, &v, &[ch('e')]);
    press(&mut a, &v, &typed("0.9"));
    assert!(
        press(&mut a, &v, &[code(KeyCode::Enter)]).is_empty(),
        "sent"
    );
    let ed = a.editor.as_ref().expect("still editing");
    let first = ed.problems[0].clone();
    let notice = a.notice.as_ref().unwrap().text.clone();
    assert_eq!(notice, format!("not sent: {first}"));
    let name = &m.proposal.as_ref().unwrap().layers[0].name;
    assert!(first.starts_with(name.as_str()), "{first}");
}

#[test]
fn every_typed_ascii_character_is_kept_and_a_bad_value_is_never_sent() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    let mut keys = vec![ch('e')];
    keys.extend(vec![code(KeyCode::Backspace); 10]);
    keys.extend(typed("-0.2"));
    press(&mut a, &v, &keys);
    let ed = a.editor.as_ref().unwrap();
    assert_eq!(ed.rows[0].value, "-0.2", "the minus is kept");
    assert!(
        ed.problems
            .iter()
            .any(|p| p.contains("-0.2 is not a sparsity in [0, 1)")),
        "{:?}",
        ed.problems
    );
    assert!(press(&mut a, &v, &[code(KeyCode::Enter)]).is_empty());
    let screen = text(&draw(&mut a, &v, 120, 40));
    assert!(screen.contains("not a sparsity"), "{screen}");
    // Letters the editor has no use for are kept too; hjkl still move the heatmap.
    press(&mut a, &v, &[code(KeyCode::Backspace); 4]);
    press(&mut a, &v, &typed("0.1x"));
    assert_eq!(a.editor.as_ref().unwrap().rows[0].value, "0.1x");
    press(&mut a, &v, &[ch('l')]);
    assert_eq!(a.cursor.0, 1, "l moves the heatmap cursor");
    // A character outside ASCII is refused, typed or pasted: a full-width one used to
    // shift the table's columns.
    press(&mut a, &v, &typed("\u{ff10}"));
    a.on_paste("\u{ff0e}5", &v);
    assert_eq!(a.editor.as_ref().unwrap().rows[0].value, "0.1x");
    assert!(a
        .notice
        .as_ref()
        .unwrap()
        .text
        .contains("cannot be part of a sparsity"));
}

#[test]
fn a_long_value_is_capped_with_a_notice() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    press(&mut a, &v, &[ch('e')]);
    press(&mut a, &v, &typed("9999999999999999999999"));
    let ed = a.editor.as_ref().unwrap();
    assert_eq!(ed.rows[0].value, "99999999");
    assert!(a.notice.as_ref().unwrap().text.contains("at most 8"));
}

#[test]
fn an_edit_that_changes_nothing_is_not_valid() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    let mut keys = vec![ch('e')];
    keys.extend(typed("0"));
    press(&mut a, &v, &keys);
    let ed = a.editor.as_ref().unwrap();
    assert!(
        ed.problems.iter().any(|p| p.contains("sparsity already")),
        "{:?}",
        ed.problems
    );
}

#[test]
fn short_terminals_keep_the_proposal_and_the_editor_in_view() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    for (w, h) in [(60, 15), (80, 18), (50, 12), (80, 20)] {
        let mut a = app();
        let screen = text(&draw(&mut a, &v, w, h));
        assert!(screen.contains("Proposal"), "{w}x{h}:\n{screen}");
        assert!(screen.contains("layer"), "{w}x{h}:\n{screen}");
        press(&mut a, &v, &[ch('e')]);
        let screen = text(&draw(&mut a, &v, w, h));
        assert!(screen.contains("editing"), "{w}x{h}:\n{screen}");
        assert!(screen.contains('▏'), "the cursor, {w}x{h}:\n{screen}");
    }
    for (w, h) in [(40, 10), (44, 20), (49, 30), (100, 11), (30, 8)] {
        let mut a = app();
        let screen = text(&draw(&mut a, &v, w, h));
        assert!(screen.contains("too small"), "{w}x{h}:\n{screen}");
        // Whole, on one line (it wrapped inside at 40–45 columns).
        assert!(screen.contains("q quits"), "{w}x{h}:\n{screen}");
        assert!(!screen.contains("no layers yet"), "{w}x{h}:\n{screen}");
    }
}

// With one panel on a short screen, the tab lit in its title is the panel drawn, even
// when another tab is selected (the proposal takes over while a review waits).
#[test]
fn the_lit_tab_is_the_panel_shown() {
    use ratatui::style::Modifier;
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    a.tab = arborist::tui::app::Panel::Trends;
    let b = draw(&mut a, &v, 80, 18);
    let screen = text(&b);
    let row = screen
        .lines()
        .position(|l| l.contains("Proposal") && l.contains("Trends"));
    let y = row.unwrap_or_else(|| panic!("no tab row:\n{screen}")) as u16;
    let line: String = screen.lines().nth(y as usize).unwrap().to_string();
    let bold = |name: &str| {
        let x = line.chars().collect::<String>().find(name).unwrap();
        let x = line[..x].chars().count() as u16;
        b[(x, y)].modifier.contains(Modifier::BOLD)
    };
    assert!(bold("Proposal"), "the shown panel is not lit: {line}");
    assert!(!bold("Trends"), "a hidden tab is lit: {line}");
}

#[test]
fn the_light_theme_paints_its_background_under_the_chart() {
    let (mut m, mut events) = fixtures::reviewing(8);
    fixtures::step(&mut m, &mut events, 10.1);
    fixtures::next_proposal(&mut m, &mut events);
    let v = view(&m, &events);
    let mut a = app();
    while a.theme().name != "light" {
        a.themes.next();
    }
    let b = draw(&mut a, &v, 120, 40);
    let (_, r) = a
        .areas
        .panels
        .iter()
        .find(|(p, _)| *p == arborist::tui::app::Panel::Trends)
        .copied()
        .unwrap();
    let bg = b[(0, 0)].bg;
    assert_ne!(bg, Color::Reset);
    for y in r.top()..r.bottom() {
        for x in r.left()..r.right() {
            assert_eq!(b[(x, y)].bg, bg, "cell {x},{y} of the trends");
        }
    }
}

#[test]
fn without_colour_each_trend_has_its_own_glyph() {
    let (mut m, mut events) = fixtures::reviewing(8);
    fixtures::step(&mut m, &mut events, 10.4);
    fixtures::next_proposal(&mut m, &mut events);
    // A second iteration: the limit is a line (from iteration 1 to 2), not one point.
    fixtures::step(&mut m, &mut events, 10.5);
    fixtures::next_proposal(&mut m, &mut events);
    let v = view(&m, &events);
    let mut a = App::new(Keymap::builtin(), Themes::builtin(true));
    let b = draw(&mut a, &v, 120, 40);
    let screen = text(&b);
    for key in ["⣀ kept", "━ dense", "╌ limit", "• step", "█ rolled back"] {
        assert!(screen.contains(key), "legend {key}:\n{screen}");
    }
    let (_, r) = a
        .areas
        .panels
        .iter()
        .find(|(p, _)| *p == arborist::tui::app::Panel::Trends)
        .copied()
        .unwrap();
    let plot: String = (r.top() + 2..r.bottom())
        .flat_map(|y| (r.left()..r.right()).map(move |x| (x, y)))
        .map(|p| b[p].symbol().to_string())
        .collect();
    // Both flat lines drawn, each with its own glyph (bar and quadrant markers drew both
    // as "▄▄▄").
    assert!(plot.matches('━').count() > 3, "the dense line:\n{screen}");
    assert!(plot.matches('╌').count() > 3, "the limit line:\n{screen}");
}

#[test]
fn the_status_bar_counts_every_rollback_and_keeps_it_at_50_columns() {
    let (mut m, mut events) = fixtures::reviewing(8);
    fixtures::step(&mut m, &mut events, 10.1);
    fixtures::next_proposal(&mut m, &mut events);
    fixtures::feed(
        &mut m,
        &mut events,
        Event::RollbackTo {
            checkpoint: 0,
            by: "human".into(),
        },
    );
    let v = view(&m, &events);
    let mut a = app();
    let line = status_line(&draw(&mut a, &v, 120, 40));
    assert!(line.contains("rollbacks 1"), "{line}");
    a.auto_approve = true;
    a.paused = true;
    let line = status_line(&draw(&mut a, &v, 50, 20));
    assert!(line.trim_end().ends_with("rb 1"), "{line}");
}

#[test]
fn long_feedback_keeps_its_cursor_on_screen() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    press(&mut a, &v, &[ch('r')]);
    press(&mut a, &v, &typed(&"word ".repeat(400)));
    let screen = text_with_cursor(&draw(&mut a, &v, 80, 24));
    assert!(screen.contains("word ▏"), "{screen}");
    assert!(screen.contains("line(s) above"), "{screen}");
    // At the start of the text the first lines show, and how many follow.
    press(&mut a, &v, &[code(KeyCode::Home)]);
    let screen = text_with_cursor(&draw(&mut a, &v, 80, 24));
    assert!(screen.contains("▏word word"), "{screen}");
    assert!(
        screen.contains("below") && !screen.contains("above"),
        "{screen}"
    );
    // In the middle of the text on a 50x12 screen both counts show, before the keys (they
    // came after them and were cut off), and the key line says what the dialog says.
    press(&mut a, &v, &vec![code(KeyCode::Right); 1000]);
    let b = draw(&mut a, &v, 50, 12);
    let screen = text(&b);
    assert!(screen.contains("line(s) above · "), "{screen}");
    assert!(screen.contains(" below · ⏎ send"), "{screen}");
    let keys = screen.lines().last().unwrap();
    assert!(
        keys.contains("⏎ send") && !keys.contains(" ok "),
        "{screen}"
    );
}

#[test]
fn the_log_names_the_stop_reason_in_words() {
    let (m, mut events) = fixtures::reviewing(8);
    events.push(Event::Finished {
        reason: arborist::session::StopReason::UserStop,
        iteration: 1,
        global_sparsity: 0.0,
        ppl: 10.0,
    });
    let v = view(&m, &events);
    let mut a = app();
    let screen = text(&draw(&mut a, &v, 120, 40));
    assert!(screen.contains("finished (stopped by you)"), "{screen}");
    assert!(!screen.contains("UserStop"), "{screen}");
}

// The rollback picker of a long session scrolls to keep the selected checkpoint and its
// help line on a short screen (it ran off the bottom: 14 checkpoints at 80x15).
#[test]
fn the_rollback_picker_scrolls_on_a_short_screen() {
    let (mut m, mut events) = fixtures::reviewing(8);
    for i in 0..8 {
        fixtures::step(&mut m, &mut events, 10.0 + 0.01 * i as f64);
        fixtures::next_proposal(&mut m, &mut events);
    }
    assert_eq!(m.checkpoints.len(), 9);
    let mut a = app();
    let v = view(&m, &events);
    assert!(fixtures::press(&mut a, &v, &[ch('b')]).is_empty());
    // Checkpoint i was accepted at iteration i: its row starts "         i          i".
    let row = |i: usize, s: &str| s.contains(&format!("{i:>10}  {i:>9}  "));
    for (keys, selected) in [(0, 7), (7, 0)] {
        let up = vec![code(KeyCode::Up); keys];
        fixtures::press(&mut a, &v, &up);
        let screen = text(&draw(&mut a, &v, 80, 12));
        assert!(
            screen.contains("↑/↓ choose") && screen.contains("of 0–7"),
            "{screen}"
        );
        // The key line says what the picker's hint says.
        let keys = screen.lines().last().unwrap();
        assert!(
            keys.contains("↑/↓ choose") && keys.contains("⏎ next"),
            "{keys}"
        );
        assert!(
            row(selected, &screen),
            "checkpoint {selected} not shown:\n{screen}"
        );
    }
    // Its header's note goes where it would be cut ("(later ones ar" at 60 columns).
    let wide = text(&draw(&mut a, &v, 80, 12));
    assert!(wide.contains("(later ones are dropped)"), "{wide}");
    let narrow = text(&draw(&mut a, &v, 60, 12));
    assert!(narrow.contains("checkpoint  iteration"), "{narrow}");
    assert!(!narrow.contains("(later"), "{narrow}");
}

// At widths where the proposal panel is narrower than a table row, rows are cut, never
// wrapped onto a second line (clicks and the editor count one line per row).
#[test]
fn proposal_rows_never_wrap() {
    let (m, events) = fixtures::reviewing(8);
    for w in [50, 53, 56, 100, 101, 102, 103, 120] {
        let screen = text(&draw(&mut app(), &view(&m, &events), w, 30));
        // The table's rows, not the log's mention of them; a narrow panel shortens the
        // names, never the numbers (at 100x30 the deltas read "+0.0").
        let rows: Vec<&str> = screen
            .lines()
            .filter(|l| l.contains("│ layers.") || l.contains("│ …"))
            .collect();
        assert_eq!(rows.len(), 4, "width {w}:\n{screen}");
        for r in rows {
            assert!(r.contains("+0.100"), "width {w}: {r}\n{screen}");
        }
        assert!(
            !screen.contains("│+0.1"),
            "width {w}: a wrapped delta:\n{screen}"
        );
    }
}

// A session stopped during review shows no proposal waiting for review (replay said so
// at its last event).
#[test]
fn a_stopped_session_has_no_pending_proposal() {
    let (mut m, mut events) = fixtures::reviewing(8);
    assert!(arborist::tui::view::pending(&m).is_some());
    let stop = Event::StopRequested { by: "human".into() };
    fixtures::feed(&mut m, &mut events, stop);
    assert!(matches!(m.phase, Phase::Done(_)) && m.proposal.is_some());
    assert!(arborist::tui::view::pending(&m).is_none());
    let screen = text(&draw(&mut app(), &view(&m, &events), 120, 40));
    assert!(!screen.contains("waiting for review"), "{screen}");
}

// A failure is cut to the status bar's width there; the proposal panel wraps it in full
// (until 2026-12-01 its end was seen only at exit).
#[test]
fn a_failure_is_shown_in_full_in_the_proposal_panel() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    let cause = "cannot write session sessions/s.yaml: No space left on device (os error 28); \
                 it holds every event before this one (--resume continues it)";
    a.failure = Some(cause.to_string());
    let screen = text(&draw(&mut a, &v, 120, 40));
    let flat: String = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("(--resume continues it)"),
        "the end of the failure is not on screen:\n{screen}"
    );
    assert!(flat.contains("stopped: cannot write session"), "{screen}");
    // Nothing steers the session any more: the keys leave the key line and say why (they
    // did nothing, unsaid), and q quits without asking about work it cannot keep.
    assert!(!flat.contains("approve"), "{screen}");
    for k in ['a', 's', 'A', 'p', 'b'] {
        assert!(press(&mut a, &v, &[ch(k)]).is_empty(), "{k}");
        assert!(a.overlay == Overlay::None, "{k} opened {:?}", a.overlay);
        let screen = text(&draw(&mut a, &v, 120, 40));
        assert!(
            screen.contains("this session cannot go on in this process"),
            "{k}: {screen}"
        );
    }
    assert_eq!(press(&mut a, &v, &[ch('q')]), vec![Request::Quit]);
}

// Below 23 lines the editor fills the screen and the heatmap is hidden; the layer its
// cursor is on (what + adds) shows above the table, and follows hjkl.
#[test]
fn a_short_screen_shows_the_heatmap_cursor_above_the_editor() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    press(&mut a, &v, &[ch('o')]);
    let screen = text(&draw(&mut a, &v, 100, 20));
    assert!(!screen.contains("Heatmap"), "{screen}");
    let strip = |s: &str| {
        s.lines()
            .find(|l| l.contains("heatmap cursor"))
            .unwrap_or_else(|| panic!("no cursor line:\n{s}"))
            .to_string()
    };
    assert!(
        strip(&screen).contains("layers.0.self_attn.q_proj"),
        "{screen}"
    );
    press(&mut a, &v, &[ch('l'), ch('j')]);
    let screen = text(&draw(&mut a, &v, 100, 20));
    assert!(
        strip(&screen).contains("layers.1.self_attn.k_proj"),
        "{screen}"
    );
    press(&mut a, &v, &[ch('+')]);
    let screen = text(&draw(&mut a, &v, 100, 20));
    let table = screen.lines().skip(4).take(2).collect::<String>();
    assert!(table.contains("1.self_attn.k_proj"), "{screen}");
    // With room for the heatmap it shows the cursor itself: no strip.
    let screen = text(&draw(&mut a, &v, 120, 40));
    assert!(!screen.contains("heatmap cursor"), "{screen}");
}

// The y axis's labels are evenly spaced at every height: with an even number of plot rows
// the middle one was drawn a row off its value, so it is left out there.
#[test]
fn trends_axis_labels_are_evenly_spaced() {
    let (mut m, mut events) = fixtures::reviewing(8);
    fixtures::step(&mut m, &mut events, 10.1);
    fixtures::next_proposal(&mut m, &mut events);
    fixtures::step(&mut m, &mut events, 12.0);
    fixtures::next_proposal(&mut m, &mut events);
    let v = view(&m, &events);
    let mut counts = std::collections::BTreeSet::new();
    for h in 30..=48 {
        let mut a = app();
        let screen = text(&draw(&mut a, &v, 120, h));
        // Columns count characters (the plot is braille).
        let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
        let top = screen.lines().position(|l| l.contains("┌ Trends")).unwrap();
        let col = (0..lines[top].len())
            .find(|&c| lines[top][c..].starts_with(&['┌', ' ', 'T']))
            .unwrap();
        // Rows of the panel whose text left of the axis holds a number.
        let labelled: Vec<usize> = lines[top + 1..]
            .iter()
            .take_while(|l| l[col] != '└')
            .enumerate()
            .filter(|(_, l)| {
                let inner: String = l[col + 1..].iter().take_while(|&&c| c != '│').collect();
                inner.trim().parse::<f64>().is_ok()
            })
            .map(|(i, _)| i)
            .collect();
        let gaps: Vec<usize> = labelled.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.windows(2).all(|g| g[0] == g[1]),
            "height {h}: rows {labelled:?}\n{screen}"
        );
        counts.insert(labelled.len());
    }
    // Both the two-label and the three-label axes were drawn.
    assert!(counts.contains(&2) && counts.contains(&3), "{counts:?}");
}

// A theme file without a name is refused (it showed as `theme ` and could not be chosen),
// and an unknown ARBORIST_THEME is the first warning, the one the status line shows.
#[test]
fn theme_files_without_a_name_and_unknown_choices_are_reported_first() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a-bin.yaml"), [0xff, 0xfe, 0x00]).unwrap();
    std::fs::write(d.path().join("noname.yaml"), "name: \"\"\ncolors: {}\n").unwrap();
    std::fs::write(d.path().join("mine.yaml"), "name: mine\ncolors: {}\n").unwrap();
    let (themes, warnings) =
        Themes::load_from(Some(d.path().to_path_buf()), Some("nosuchtheme"), false);
    assert_eq!(
        warnings[0], "ARBORIST_THEME=nosuchtheme: no such theme",
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("noname.yaml: `name` is empty")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("a-bin.yaml")),
        "{warnings:?}"
    );
    let mut names = vec![];
    let mut t = themes;
    for _ in 0..8 {
        names.push(t.theme().name.clone());
        t.next();
    }
    assert!(names.iter().all(|n| !n.trim().is_empty()), "{names:?}");
    assert!(names.contains(&"mine".to_string()), "{names:?}");
    let (t, w) = Themes::load_from(Some(d.path().to_path_buf()), Some("mine"), false);
    assert_eq!(t.theme().name, "mine");
    assert!(!w.iter().any(|w| w.contains("ARBORIST_THEME")), "{w:?}");
}

/// The view of a replay standing where `t` stands, with `options` for the details.
fn replay_view<'a>(
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
fn legacy_log() -> arborist::session::file::SessionLog {
    let legacy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sessions/legacy-abs-of-mean.yaml"
    );
    arborist::session::file::read(std::path::Path::new(legacy)).unwrap()
}

/// A replay words each verdict as the file does, on every panel: the machine re-derives
/// the guard's note, and a file of an older version recorded fewer decimals (`+0.0% <=
/// 0.2%` in the log beside `+0.004% <= 0.200%` in the proposal's title).
#[test]
fn replay_shows_the_recorded_guard_notes() {
    use arborist::tui::replay::Timeline;
    let log = legacy_log();
    let recorded: Vec<(usize, String)> = log
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Guard {
                iteration, note, ..
            } => Some((*iteration, note.clone())),
            _ => None,
        })
        .collect();
    assert!(recorded.len() > 30);
    let mut t = Timeline::new(&log);
    let shown = |t: &Timeline| -> Vec<(usize, String)> {
        let h = &t.machine().history;
        h.iter().map(|o| (o.iteration, o.note.clone())).collect()
    };
    assert_eq!(shown(&t), recorded);
    // Stepping back rebuilds the machine: the notes stay the file's.
    t.seek_to(t.len() / 2);
    let half = shown(&t);
    assert!(!half.is_empty() && half[..] == recorded[..half.len()]);
}

/// The TUI reads a file as headless replay does: an event that does not follow from the
/// ones before it (an edited perplexity, a note forged into another verdict) ends the
/// timeline there with the reason (both were replayed without a word).
#[test]
fn replay_stops_before_an_edited_guard() {
    use arborist::tui::replay::Timeline;
    let log = legacy_log();
    let at = (log.entries.iter())
        .position(|e| {
            matches!(
                e.event,
                Event::Guard {
                    accepted: false,
                    ..
                }
            )
        })
        .expect("a rolled-back step");
    let sound = Timeline::new(&log);
    assert_eq!(
        (sound.len(), sound.error.clone()),
        (log.entries.len(), None)
    );
    for (field, edit) in [
        (
            "ppl_after",
            (|e: &mut Event| {
                if let Event::Guard { ppl_after, .. } = e {
                    *ppl_after *= 1.0 + 1e-12;
                }
            }) as fn(&mut Event),
        ),
        ("note", |e: &mut Event| {
            if let Event::Guard { note, .. } = e {
                *note = "accepted: +0.07% <= 0.3%".into();
            }
        }),
    ] {
        let mut edited = legacy_log();
        edit(&mut edited.entries[at].event);
        let t = Timeline::new(&edited);
        assert_eq!(t.len(), at, "{field}");
        let why = t.error.clone().unwrap_or_default();
        let seq = edited.entries[at].seq;
        assert!(
            why.starts_with(&format!("event {seq} (guard) {field}: recorded "))
                && why.ends_with("(was the file edited?)"),
            "{field}: {why}"
        );
    }
}

/// The status bar of a replay names the iteration of the event it stands at: the baseline
/// is iteration 0, a reflection its own iteration, the end the last one that ran (the
/// machine's counter moves on at each reflection, so iteration 1's read `iter 2`).
#[test]
fn replay_status_names_the_iteration_of_the_event_shown() {
    use arborist::tui::replay::Timeline;
    let log = legacy_log();
    let mut t = Timeline::new(&log);
    let total = t.len();
    let reflected_1 = 1 + log
        .entries
        .iter()
        .position(|e| matches!(e.event, Event::Reflected { iteration: 1, .. }))
        .unwrap();
    let ran = log
        .entries
        .iter()
        .filter(|e| matches!(e.event, Event::Reflected { .. }))
        .count();
    for (at, want) in [(0, 0), (1, 0), (reflected_1, 1), (total, ran)] {
        t.seek_to(at);
        let screen = text(&draw(&mut app(), &replay_view(&t, ""), 160, 45));
        let bar: Vec<&str> = screen.lines().filter(|l| l.starts_with(" iter ")).collect();
        assert_eq!(bar.len(), 1, "{screen}");
        let want = format!(" iter {want} │");
        assert!(bar[0].starts_with(&want), "event {at}: {}", bar[0]);
    }
}

/// `i` opens the details: the options the session recorded (its protocols, guard and
/// agent) and the prompt and raw reply of the proposal shown, scrolled to the end with
/// the keys the key line offers; any other key closes it. The panels showed neither.
#[test]
fn details_show_the_recorded_options_prompt_and_reply() {
    use arborist::tui::replay::Timeline;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
    let mut log = arborist::session::file::read(std::path::Path::new(example)).unwrap();
    let prompt: String = (1..=120).map(|i| format!("prompt line {i}\n")).collect();
    for e in &mut log.entries {
        if let Event::Proposed {
            iteration: 2,
            reply,
            ..
        } = &mut e.event
        {
            reply.prompt = Some(prompt.clone());
            reply.raw = Some("{\"layers\": [], \"reasoning\": \"the raw answer\"}".into());
            reply.usage.prompt_tokens = 1234;
        }
    }
    let options = serde_yaml::to_string(&log.header).unwrap();
    let mut t = Timeline::new(&log);
    let screen_at = |t: &Timeline, a: &mut App| text(&draw(a, &replay_view(t, &options), 120, 40));
    // Iteration 1: the built-in agent's proposal, which has no prompt.
    t.seek(arborist::tui::app::Seek::Iteration(1));
    let mut a = app();
    assert!(press(&mut a, &replay_view(&t, &options), &[ch('i')]).is_empty());
    assert!(matches!(a.overlay, Overlay::Details { scroll: 0 }));
    let s = screen_at(&t, &mut a);
    for want in [
        "iteration 1: the proposal (builtin)",
        "(none: the built-in agent sends no prompt)",
        "any other key closes the details",
    ] {
        assert!(s.contains(want), "{want}: {s}");
    }
    // The recorded options follow: the protocols of the numbers, the guard, the agent.
    {
        let v = replay_view(&t, &options);
        press(&mut a, &v, &[code(KeyCode::Tab)]);
        assert!(matches!(a.overlay, Overlay::None), "any other key closes");
        press(&mut a, &v, &[ch('i')]);
        for _ in 0..20 {
            press(&mut a, &v, &[code(KeyCode::PageDown)]);
        }
    }
    let s = screen_at(&t, &mut a);
    for want in ["threshold: 0.003", "eval_windows: 8", "backend: builtin"] {
        assert!(s.contains(want), "{want}: {s}");
    }
    // Iteration 2, with a recorded prompt: scrolled down, its last line and the raw reply
    // come into view.
    // Just after iteration 2's reflection: the reflection is shown too.
    let reflected_2 = log
        .entries
        .iter()
        .position(|e| matches!(e.event, Event::Reflected { iteration: 2, .. }))
        .unwrap();
    t.seek_to(reflected_2 + 1);
    a.overlay = Overlay::Details { scroll: 0 };
    let s = screen_at(&t, &mut a);
    assert!(s.contains("Prompt (1234 tokens in):"), "{s}");
    assert!(!s.contains("prompt line 120"), "{s}");
    {
        let v = replay_view(&t, &options);
        // Three pages of 35 lines down: the prompt's end, the reply and the reflection's
        // title.
        for _ in 0..3 {
            press(&mut a, &v, &[code(KeyCode::PageDown)]);
        }
    }
    let s = screen_at(&t, &mut a);
    for want in [
        "prompt line 120",
        "the raw answer",
        "iteration 2: the reflection",
    ] {
        assert!(s.contains(want), "{want}: {s}");
    }
    {
        let v = view(t.machine(), t.events());
        press(&mut a, &v, &[ch('x')]);
    }
    assert!(matches!(a.overlay, Overlay::None));
}

/// A reply of a megabyte on one line, of wide characters, right-to-left text and emoji
/// (an agent audit's case: the details took seconds a key, wrapping it anew each frame in
/// time quadratic in its length) wraps into the overlay and scrolls to its end.
#[test]
fn a_megabyte_reply_wraps_whole_in_the_details() {
    let (m, mut events) = fixtures::reviewing(8);
    let unit = "שלום 世界 👋🏽 tokens ";
    let raw = format!("{}THE END", unit.repeat((1 << 20) / unit.len()));
    if let Some(Event::Proposed { reply, .. }) = events.last_mut() {
        reply.raw = Some(raw);
    }
    let v = view(&m, &events);
    let mut a = app();
    press(&mut a, &v, &[ch('i')]);
    draw(&mut a, &v, 100, 30);
    let total = a.areas.help_max.unwrap() + a.areas.help_page;
    assert!(total > 5_000, "{total}");
    press(&mut a, &v, &[code(KeyCode::End)]);
    let s = text(&draw(&mut a, &v, 100, 30));
    assert!(s.contains("THE END"), "{s}");
    assert!(s.contains(&format!("of {total} ·")), "{s}");
}

/// A long text in the details (a deep model's prompt) says which of its lines are shown;
/// a page moves by the lines shown less one, and Home and End go to either end.
#[test]
fn the_details_say_where_they_are_and_go_to_either_end() {
    let (m, mut events) = fixtures::reviewing(8);
    let prompt: String = (1..=500).map(|i| format!("prompt line {i}\n")).collect();
    if let Some(Event::Proposed { reply, .. }) = events.last_mut() {
        reply.prompt = Some(prompt);
    }
    let v = view(&m, &events);
    let mut a = app();
    press(&mut a, &v, &[ch('i')]);
    let title = |a: &mut App| {
        let s = text(&draw(a, &v, 120, 40));
        s.lines()
            .find(|l| l.contains("Details"))
            .unwrap_or_else(|| panic!("{s}"))
            .to_string()
    };
    let first = title(&mut a);
    let shown = a.areas.help_page;
    let max = a.areas.help_max.unwrap();
    let total = max + shown;
    assert!(shown > 10 && total > 500, "{shown} {max}");
    let span = |from: u16| {
        format!(
            "lines {}–{} of {total} · ↑↓ PgUp PgDn Home End scroll",
            from + 1,
            from + shown
        )
    };
    assert!(first.contains(&span(0)), "{first}");
    press(&mut a, &v, &[code(KeyCode::PageDown)]);
    assert_eq!(a.overlay, Overlay::Details { scroll: shown - 1 });
    assert!(title(&mut a).contains(&span(shown - 1)));
    press(&mut a, &v, &[code(KeyCode::End)]);
    assert_eq!(a.overlay, Overlay::Details { scroll: max });
    let last = title(&mut a);
    assert!(
        last.contains(&format!("lines {}–{total} of {total}", max + 1)),
        "{last}"
    );
    press(&mut a, &v, &[code(KeyCode::PageUp)]);
    assert_eq!(
        a.overlay,
        Overlay::Details {
            scroll: max - (shown - 1)
        }
    );
    press(&mut a, &v, &[code(KeyCode::Home)]);
    assert_eq!(a.overlay, Overlay::Details { scroll: 0 });
    // On a narrow screen the title keeps its first parts whole and ends in "…" (it was
    // cut at the corner mid-word).
    let s = text(&draw(&mut a, &v, 60, 20));
    let total = a.areas.help_max.unwrap() + a.areas.help_page;
    let line = s.lines().find(|l| l.contains("Details")).unwrap();
    let want = format!("┌ Details · lines 1–{} of {total}…─", a.areas.help_page);
    assert!(line.contains(&want), "{want}\n{line}");
    // The help's title alike.
    let mut a = app();
    press(&mut a, &v, &[ch('?')]);
    let s = text(&draw(&mut a, &v, 60, 20));
    let line = s.lines().find(|l| l.contains("Keys")).unwrap();
    assert!(
        line.contains("┌ Keys · ↑↓ PgUp PgDn Home End scroll…─"),
        "{line}"
    );
    // Both leave the status bar whole: they covered its first line but a few columns.
    for key in ['?', 'i'] {
        let mut a = app();
        press(&mut a, &v, &[ch(key)]);
        for (w, h) in [(200, 60), (120, 40), (80, 24)] {
            let s = text(&draw(&mut a, &v, w, h));
            let bar = s.lines().nth(h as usize - 2).unwrap();
            assert!(
                bar.starts_with(" iter 1 │ waiting for your review"),
                "{key} {w}x{h}: {bar}"
            );
            let above = s.lines().nth(h as usize - 3).unwrap();
            assert!(
                above.starts_with('└') && above.trim_end().ends_with('┘'),
                "{key} {w}x{h}: {above}"
            );
        }
    }
}

/// The details say when the server counted too few tokens for the prompt to have been
/// read whole (Ollama cuts past num_ctx without an error).
#[test]
fn the_details_warn_of_a_prompt_the_server_did_not_read_whole() {
    let prompt: String = (1..=500).map(|i| format!("prompt line {i}\n")).collect();
    let chars = prompt.chars().count();
    for (tokens, warned) in [(3000, false), (1024, true)] {
        let (m, mut events) = fixtures::reviewing(8);
        if let Some(Event::Proposed { reply, .. }) = events.last_mut() {
            reply.prompt = Some(prompt.clone());
            reply.usage.prompt_tokens = tokens;
        }
        let v = view(&m, &events);
        let mut a = app();
        press(&mut a, &v, &[ch('i')]);
        let s = text(&draw(&mut a, &v, 200, 60));
        let want = format!(
            "warning: the server counted 1024 prompt tokens for {chars} characters of prompt"
        );
        assert_eq!(s.contains(&want), warned, "{tokens}: {s}");
        assert_eq!(s.contains("warning:"), warned, "{tokens}: {s}");
    }
}

/// After the guard the panel lists what was applied in model order (block 2 before block
/// 10), as the profile table does, not in the names' text order.
#[test]
fn the_applied_table_is_in_model_order() {
    let (mut m, mut events) = fixtures::reviewing(12);
    let iteration = m.iteration;
    let layers: Vec<_> = [
        "10.self_attn.k_proj",
        "10.mlp.down_proj",
        "2.mlp.up_proj",
        "2.self_attn.k_proj",
    ]
    .iter()
    .map(|l| arborist::agent::LayerTarget {
        name: format!("model.layers.{l}"),
        sparsity: 0.05,
    })
    .collect();
    let applied = layers.iter().map(|l| (l.name.clone(), 0.05)).collect();
    for ev in [
        Event::Decided {
            iteration,
            by: "human".into(),
            decision: Decision::Edit { layers },
        },
        Event::Evaluated {
            iteration,
            applied,
            eval: fixtures::eval(10.0),
        },
    ] {
        fixtures::feed(&mut m, &mut events, ev);
    }
    let screen = text(&draw(&mut app(), &view(&m, &events), 120, 40));
    let at = |name: &str| {
        screen
            .lines()
            .position(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not shown:\n{screen}"))
    };
    assert!(screen.contains("applied"), "{screen}");
    // The name column takes the longest name whole where there is room (it stopped at 25).
    let rows = [
        at("layers.2.self_attn.k_proj"),
        at("layers.2.mlp.up_proj"),
        at("layers.10.self_attn.k_proj"),
        at("layers.10.mlp.down_proj"),
    ];
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "{rows:?}\n{screen}");
}

/// Feedback waits for the agent's next proposal. A session stopped before that shows the
/// last step that ran without it: under that step's table it read as its feedback (TUI
/// audit: iteration 2's rejection under iteration 1's accepted step).
#[test]
fn a_stopped_session_shows_no_feedback_under_the_last_step() {
    let (mut m, mut events) = fixtures::reviewing(8);
    fixtures::step(&mut m, &mut events, 10.01);
    fixtures::next_proposal(&mut m, &mut events);
    let iteration = m.iteration;
    fixtures::feed(
        &mut m,
        &mut events,
        Event::Decided {
            iteration,
            by: "human".into(),
            decision: Decision::Reject {
                feedback: "too aggressive".into(),
            },
        },
    );
    // The agent proposes again, with the feedback.
    let again = Event::Proposed {
        iteration,
        agent: "builtin".into(),
        reply: fixtures::reply(fixtures::proposal(&m, 2)),
    };
    fixtures::feed(&mut m, &mut events, again);
    let screen = |m: &arborist::session::Machine, events: &[Event]| {
        text(&draw(&mut app(), &view(m, events), 120, 40))
    };
    let s = screen(&m, &events);
    assert!(
        s.contains("your feedback to the agent: too aggressive"),
        "{s}"
    );
    fixtures::feed(
        &mut m,
        &mut events,
        Event::StopRequested { by: "human".into() },
    );
    assert!(m.is_done());
    let s = screen(&m, &events);
    assert!(!s.contains("your feedback to the agent"), "{s}");
    assert!(s.contains("iter 1 · accepted"), "{s}");
}

/// `g`'s field says what is wrong with what was typed: nothing, a number past any
/// iteration (it read "is not an iteration number"), or not a number.
#[test]
fn the_goto_field_says_what_is_wrong_with_its_text() {
    use arborist::tui::replay::Timeline;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
    let log = arborist::session::file::read(std::path::Path::new(example)).unwrap();
    let t = Timeline::new(&log);
    let v = replay_view(&t, "");
    for (typed_text, said) in [
        ("", "type an iteration number, or esc to cancel"),
        (
            "99999999999999999999999",
            "no iteration 99999999999999999999999 in this session",
        ),
        ("x1", "`x1` is not an iteration number"),
    ] {
        let mut a = app();
        press(&mut a, &v, &[ch('g')]);
        let mut keys = typed(typed_text);
        keys.push(code(KeyCode::Enter));
        assert!(press(&mut a, &v, &keys).is_empty(), "{typed_text}");
        assert_eq!(a.notice.as_ref().unwrap().text, said);
        // Still open, with what was typed, to be corrected.
        assert!(
            matches!(&a.overlay, Overlay::Goto(t) if t.as_str() == typed_text),
            "{typed_text}: {:?}",
            a.overlay
        );
    }
    // A number that parses is asked for; the replay judges it against the session.
    let mut a = app();
    let mut keys = vec![ch('g')];
    keys.extend(typed("12"));
    keys.push(code(KeyCode::Enter));
    assert!(matches!(
        &press(&mut a, &v, &keys)[..],
        [Request::Seek(arborist::tui::app::Seek::Iteration(12))]
    ));
}

// A confirmation keeps its buttons at every size, also on a screen too small to draw,
// where quit still opens it (its text wrapped over the buttons and the hint below 40×10);
// the text and then the hint give way first.
/// The lines inside the dialog whose frame's title starts "Quit" or "Stop", trimmed.
fn dialog_lines(screen: &str) -> Vec<String> {
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

#[test]
fn a_confirmation_keeps_its_buttons_on_any_screen() {
    let (m, e) = approved();
    let busy = view(&m, &e);
    let (m2, e2) = fixtures::reviewing(8);
    let idle = view(&m2, &e2);
    for (v, key) in [(&busy, 'q'), (&idle, 's')] {
        let mut a = app();
        press(&mut a, v, &[ch(key)]);
        assert!(matches!(a.overlay, Overlay::Confirm { .. }), "{key}");
        let sizes = [
            (15, 5),
            (16, 7),
            (20, 5),
            (21, 8),
            (21, 9),
            (25, 9),
            (30, 8),
            (36, 14),
            (40, 10),
            (50, 12),
            (64, 16),
            (120, 40),
        ];
        for (w, h) in sizes {
            let screen = text(&draw(&mut a, v, w, h));
            let buttons = ["[ Cancel ]   [ OK ]", "[ Cancel ] [ OK ]", "[Cancel] [OK]"];
            assert!(
                buttons.iter().any(|b| screen.contains(b)),
                "{key} at {w}x{h}:\n{screen}"
            );
            let words = ["The worker", "It ends at"];
            assert!(
                words.iter().any(|t| screen.contains(t)),
                "{w}x{h}:\n{screen}"
            );
            // The hint's groups are whole on their lines, or the hint is absent (it was cut
            // mid-word, and split `⏎` from `choose`); a text cut short ends in "…".
            let lines = dialog_lines(&screen);
            let groups = ["←/→/tab switch", "⏎ choose", "esc cancel"];
            let shown = groups
                .iter()
                .filter(|g| lines.iter().any(|l| l.contains(*g)))
                .count();
            let any = ["switch", "choose", "esc"];
            let some = lines.iter().any(|l| any.iter().any(|a| l.contains(a)));
            assert!(
                shown == 3 || (shown == 0 && !some),
                "{key} at {w}x{h}:\n{screen}"
            );
            if w >= 36 && h >= 10 {
                assert_eq!(shown, 3, "{key} at {w}x{h}:\n{screen}");
            }
            let whole = lines
                .iter()
                .any(|l| l.ends_with("--resume.") || l.ends_with("instead."));
            assert!(
                whole || lines.iter().any(|l| l.ends_with('…')),
                "{key} at {w}x{h}:\n{screen}"
            );
            // The title is cut, not dropped.
            assert!(
                screen.contains("┌ Quit w") || screen.contains("┌ Stop t"),
                "{key} at {w}x{h}:\n{screen}"
            );
        }
    }
}

// A session warning (it cannot reach its target, a server that read part of a prompt) is
// said on the status line, which drops it at the next key, and stays in the Log panel
// after the events recorded when it was said, wrapped whole.
#[test]
fn a_session_warning_stays_in_the_log_after_the_next_key() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    let end = "or more layers or a larger step per iteration";
    // Long enough to wrap in the 200-column Log panel.
    let middle = "(the built-in agent prunes 8 layers by at most 0.05 each step) ".repeat(3);
    let warning = format!(
        "warning: target 0.45 needs at least 78 iterations at this pace (max 60) {middle}{end}"
    );
    a.warn_kept(2, warning.clone());
    let screen = text(&draw(&mut a, &v, 200, 60));
    let key_line = |b: &Buffer| text(b).lines().last().unwrap().to_string();
    assert!(key_line(&draw(&mut a, &v, 200, 60)).contains("needs at least 78"));
    let log = screen
        .lines()
        .filter(|l| l.contains("Log ·"))
        .collect::<Vec<_>>();
    assert!(log.iter().any(|l| l.contains("· 1 warning")), "{screen}");
    press(&mut a, &v, &[ch('m')]);
    assert!(a.notice.is_none());
    let b = draw(&mut a, &v, 200, 60);
    let screen = text(&b);
    assert!(!key_line(&b).contains("needs at least"), "{screen}");
    // Between events 2 and 3, marked, and whole over its wrapped lines.
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("   ! warning: target 0.45"))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(lines[at - 1].contains("   2 "), "{screen}");
    let flat: String = lines[at..]
        .iter()
        .take_while(|l| !l.contains("   3 "))
        .map(|l| l.split('│').nth(1).unwrap_or("").trim().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let words = |s: &str| s.split_whitespace().collect::<String>();
    assert!(words(&flat).contains(&words(end)), "{flat}\n{screen}");
}

/// A file without its finish (a run that stopped, or one still writing) says so beside
/// the position: "event 19/19" read like a whole session's end (replay audit).
#[test]
fn an_unfinished_replay_says_so_in_the_status_bar() {
    let (m, events) = fixtures::reviewing(8);
    let v = replay_at(&m, &events, events.len());
    let s = text(&draw(&mut app(), &v, 160, 40));
    let want = format!(
        "replay: event {0}/{0} (read-only, unfinished)",
        events.len()
    );
    assert!(s.contains(&want), "{s}");
}

/// A replay view at event `n` of `events`.
fn replay_at<'a>(
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

// Replay keeps, under each event up to the one it shows, the warning of a prompt the
// server did not read whole (the Log showed none: a live run says only the first), and
// the startup's warnings above the first event.
#[test]
fn replay_keeps_each_unread_prompt_warning_under_its_event() {
    let (m, mut events) = fixtures::reviewing(8);
    let at = events
        .iter()
        .position(|e| matches!(e, Event::Proposed { .. }))
        .unwrap();
    if let Event::Proposed { reply, .. } = &mut events[at] {
        reply.prompt = Some("| model.layers.0.mlp.up_proj | 0.100000 |\n".repeat(700));
        reply.usage.prompt_tokens = 2048;
    }
    let mut a = app();
    a.keep_warnings(0, vec!["keymap /k.yaml: not a list".into()]);
    a.keep_event_warnings(&events);
    assert_eq!(a.warnings.len(), 2);
    let screen = text(&draw(&mut a, &replay_at(&m, &events, at), 200, 60));
    assert!(screen.contains("! keymap /k.yaml: not a list"), "{screen}");
    assert!(!screen.contains("prompt tokens"), "{screen}");
    assert!(
        screen.contains("Log · ") && screen.contains("· 1 warning"),
        "{screen}"
    );
    let screen = text(&draw(&mut a, &replay_at(&m, &events, at + 1), 200, 60));
    let lines: Vec<&str> = screen.lines().collect();
    let w = lines
        .iter()
        .position(|l| {
            l.contains("! iter 1, the agent's proposal: the server counted 2048 prompt tokens")
        })
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(
        lines[w - 1].contains(&format!("{:>4} ", at + 1)),
        "{screen}"
    );
    assert!(screen.contains("· 2 warnings"), "{screen}");
}

// The heatmap title's metric keys are whole or absent at every width (cut to `m…` at 60).
#[test]
fn the_heatmap_titles_metric_keys_are_whole_or_absent() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    let mut whole = 0;
    for w in 50..=130 {
        let screen = text(&draw(&mut a, &v, w, 40));
        let title = screen.lines().next().unwrap();
        if title.contains("metric") {
            assert!(title.contains("· m/M metric"), "{w}: {title}");
            whole += 1;
        } else {
            assert!(!title.contains("· m"), "{w}: {title}");
        }
    }
    assert!(whole > 0, "the keys never fit: nothing checked");
}

// The feedback field wraps after spaces: a word is never split across its lines (at 50
// columns "prune" was cut to "prun" / "e").
#[test]
fn the_feedback_field_wraps_whole_words() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    let feedback =
        "keep the attention layers of block 0 dense; prune the MLPs of the last blocks first";
    press(&mut a, &v, &[ch('r')]);
    press(&mut a, &v, &typed(feedback));
    let screen = text_with_cursor(&draw(&mut a, &v, 50, 24));
    let rows: Vec<String> = screen
        .lines()
        .filter(|l| l.starts_with('│'))
        .map(|l| l.trim_matches(|c| c == '│' || c == ' ').to_string())
        .collect();
    let words: Vec<&str> = rows.iter().flat_map(|r| r.split_whitespace()).collect();
    let typed_words: Vec<&str> = feedback.split_whitespace().collect();
    let start = words
        .iter()
        .position(|w| *w == "keep")
        .unwrap_or_else(|| panic!("{screen}"));
    assert_eq!(
        words[start..start + typed_words.len() - 1],
        typed_words[..typed_words.len() - 1],
        "{screen}"
    );
    assert!(screen.contains("first▏"), "{screen}");
}

// With switch_field unbound no key reaches an override's reasoning: the message says so
// (it named no key and read as if one were shown).
#[test]
fn an_override_says_when_no_key_goes_to_its_reasoning() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut k = Keymap::builtin();
    k.overlay("- { action: switch_field, keys: [] }\n", "user.yaml")
        .unwrap();
    let mut a = App::new(k, Themes::builtin(false));
    press(&mut a, &v, &[ch('o'), code(KeyCode::Enter)]);
    let said = &a.notice.as_ref().unwrap().text;
    assert!(
        said.starts_with(
            "not sent: override: write why in the reasoning field (no key is bound to switch_field, which goes there)"
        ),
        "{said}"
    );
}

/// The Log panel's event lines (their numbers and texts) on a drawn screen.
fn log_rows(screen: &str) -> Vec<String> {
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

// A Log scrolled back keeps its lines in view while events arrive (they moved up by one
// line per new event), and follows the end again once scrolled to it.
#[test]
fn a_scrolled_back_log_stays_put_as_events_arrive() {
    let (mut m, mut events) = fixtures::reviewing(8);
    for i in 0..4 {
        fixtures::step(&mut m, &mut events, 10.0 + i as f64);
        fixtures::next_proposal(&mut m, &mut events);
    }
    let (mut m2, mut e2) = (m.clone(), events.clone());
    fixtures::step(&mut m2, &mut e2, 20.0);
    fixtures::next_proposal(&mut m2, &mut e2);
    assert!(e2.len() > events.len());
    let mut a = app();
    let v = view(&m, &events);
    draw(&mut a, &v, 120, 40);
    a.scroll_to(arborist::tui::app::Panel::Log, 2);
    let before = log_rows(&text(&draw(&mut a, &v, 120, 40)));
    let v2 = view(&m2, &e2);
    let after = log_rows(&text(&draw(&mut a, &v2, 120, 40)));
    assert_eq!(before, after);
    assert_eq!(
        a.scroll(arborist::tui::app::Panel::Log),
        2 + (e2.len() - events.len()) as u16
    );
    // Not scrolled back, it follows the newest event.
    a.scroll_to(arborist::tui::app::Panel::Log, 0);
    let newest = log_rows(&text(&draw(&mut a, &v2, 120, 40)));
    assert!(newest
        .iter()
        .any(|l| l.contains(&format!("{:>4} ", e2.len()))));
}

// The cursor is drawn over the character it stands on, not inserted before it: moving it
// through a text moves no word between rows (an inserted `▏` took a column, so words
// did), and it is one cell on the character it names, also on a space that ends a row.
#[test]
fn moving_a_text_cursor_moves_no_word() {
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let text_typed =
        "keep the attention layers of block 0 dense; prune the MLPs of the last blocks first";
    let chars: Vec<char> = text_typed.chars().collect();
    // The feedback dialog at 50 columns, an override's reasoning in the proposal panel.
    for (keys, w) in [(vec![ch('r')], 50), (vec![ch('o'), code(KeyCode::Tab)], 60)] {
        let mut a = app();
        press(&mut a, &v, &keys);
        press(&mut a, &v, &typed(text_typed));
        let plain = text(&draw(&mut a, &v, w, 40));
        for left in 0..=chars.len() {
            let b = draw(&mut a, &v, w, 40);
            assert_eq!(text(&b), plain, "{w} columns, {left} left");
            let marked = text_with_cursor(&b);
            assert_eq!(marked.matches('▏').count(), 1, "{left} left:\n{marked}");
            let on = marked.split('▏').nth(1).and_then(|s| s.chars().next());
            let want = chars.get(chars.len() - left).copied().unwrap_or(' ');
            assert_eq!(on, Some(want), "{w} columns, {left} left:\n{marked}");
            press(&mut a, &v, &[code(KeyCode::Left)]);
        }
    }
}
