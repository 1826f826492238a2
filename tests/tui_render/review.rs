//! Reviewing a proposal: approve, edit, reject with feedback, override, and the fields they type into.

use super::common::*;

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
    let screen = text(&draw(&mut app(), &v, 50, 12));
    let bar = screen.lines().last().unwrap();
    assert!(!bar.contains("approve"), "{bar}");
    for hint in ["o override", "r ask again", "x skip"] {
        assert!(bar.contains(hint), "{hint}: {bar}");
    }
    let reqs = press(&mut a, &v, &[ch('x')]);
    assert!(matches!(&reqs[..], [Request::Feed(Event::Decided {
        decision: Decision::Skip, by, .. })] if by == "human"));
    // Said, since the next proposal may be the same one.
    assert_eq!(a.notice.as_ref().unwrap().text, "iteration 1 skipped");
    // An emptied value is said to be missing, not "`` is not a number".
    use arborist::tui::editor::parse_value;
    for empty in ["", " ", "%"] {
        assert_eq!(
            parse_value(empty).unwrap_err(),
            "no value yet (type 0.35 or 35%)"
        );
    }
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
