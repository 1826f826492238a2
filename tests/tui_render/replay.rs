//! Replay: moving through a recorded session, its guard notes, details and warnings.

use super::common::*;

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
