//! Keys and dialogs: the keymap, quitting, auto-approve, pause and stop, rollback, notices and the log.

use super::common::*;

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
    // A key with a line break is one line, escaped: the status line showed two (found by
    // tests/user_files_random).
    let file = d.path().join("keymap.yaml");
    std::fs::write(&file, "- action: approve\n  keys: [\"a\\nb\"]\n").unwrap();
    let w = Keymap::load_from(Some(file), true).1.unwrap();
    assert!(w.contains("a\\nb") && !w.contains('\n'), "{w}");
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
    // Un-pausing with a proposal on screen says auto-approve takes it (it said "resumed").
    press(&mut a, &v, &[ch('p')]);
    assert_eq!(
        a.notice.as_ref().unwrap().text,
        "resumed: auto-approve approves the proposal waiting"
    );
    assert!(a.auto_decision(&v).is_some());
    press(&mut a, &v, &[ch('p'), ch('p'), ch('e')]);
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
    let (mut m, mut events) = approved();
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
        // Marked in the text, not by colour alone (a plain capture could not tell).
        let marked: Vec<&str> = screen.lines().filter(|l| l.contains("│›")).collect();
        assert_eq!(marked.len(), 1, "{screen}");
        assert!(row(selected, marked[0]), "{screen}");
    }
    // Its header's note goes where it would be cut ("(later ones ar" at 60 columns).
    let wide = text(&draw(&mut a, &v, 80, 12));
    assert!(wide.contains("(later ones are dropped)"), "{wide}");
    let narrow = text(&draw(&mut a, &v, 60, 12));
    assert!(narrow.contains("checkpoint  iteration"), "{narrow}");
    assert!(!narrow.contains("(later"), "{narrow}");
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

// After an agent failure `r` asks again, as the panel says: the key line names it so (it
// said reject), and the feedback may be left empty, which leaves nothing for the prompt to
// answer (an empty text was refused, so a retry after an HTTP 500 needed made-up words).
#[test]
fn after_an_agent_failure_r_asks_again_with_optional_feedback() {
    let (mut m, events) = agent_failed();
    let v = view(&m, &events);
    let mut a = app();
    let screen = text(&draw(&mut a, &v, 200, 40));
    let keys = screen.lines().last().unwrap();
    assert!(
        keys.contains("r ask again") && !keys.contains("reject"),
        "{keys}"
    );
    press(&mut a, &v, &[ch('r')]);
    let screen = text(&draw(&mut a, &v, 200, 40));
    assert!(
        screen.contains("Ask again: feedback for the agent (optional)"),
        "{screen}"
    );
    let reqs = press(&mut a, &v, &[code(KeyCode::Enter)]);
    let [Request::Feed(ev)] = &reqs[..] else {
        panic!("{reqs:?}")
    };
    let Event::Decided {
        decision: Decision::Reject { feedback },
        ..
    } = ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(feedback, "");
    let fx = m.handle(ev).unwrap();
    assert!(
        matches!(&fx[..], [arborist::session::Effect::Propose(_)]),
        "{fx:?}"
    );
    let ctx = m.context();
    assert!(
        ctx.feedback.is_none() && ctx.earlier_feedback.is_empty(),
        "{ctx:?}"
    );
    // On a proposal there is something to reject: the text is still asked for.
    let (m, events) = fixtures::reviewing(8);
    let v = view(&m, &events);
    let mut a = app();
    press(&mut a, &v, &[ch('r')]);
    assert!(press(&mut a, &v, &[code(KeyCode::Enter)]).is_empty());
    assert!(a
        .notice
        .as_ref()
        .unwrap()
        .text
        .starts_with("type the feedback for the agent"));
}
