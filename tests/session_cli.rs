//! The headless agent-guided session end to end: `arborist run --headless`, its session
//! file and `replay --verify`. The built-in agent is deterministic, so two runs with the
//! same options must agree to the bit.
//!
//! Every expected number is computed here from the session file or from an independent
//! `arborist eval`, never copied from an earlier run.

mod common;
mod session_support;
use common::*;
use serde_json::Value;
use session_support::*;
use std::collections::BTreeSet;
use std::path::Path;

// ---------------------------------------------------------------------------------------
// 1. A headless run and its session file
// ---------------------------------------------------------------------------------------

#[test]
fn session_file_is_a_yaml_stream_with_ordered_iterations() {
    let env = Env::new();
    let s = env.path("s.yaml");
    let sum = ok_json(&env.session(
        &s,
        &[
            "--auto-approve",
            "--max-iters",
            "4",
            "--threshold",
            "0.07",
            "--json",
        ],
    ));
    let text = std::fs::read_to_string(&s).unwrap();
    assert!(
        text.starts_with("---\nformat: arborist-session/1\n"),
        "the header must be the first document: {}",
        &text[..80.min(text.len())]
    );
    let (h, entries) = session_docs(&s);
    assert_eq!(doc_starts(&text).len(), entries.len() + 1);
    assert_eq!(h["format"], "arborist-session/1");
    assert_eq!(h["model"], "bundled");
    let fp = h["fingerprint"].as_str().unwrap();
    assert!(fp.len() >= 16, "{fp}");
    assert!(h["arborist"].as_str().is_some(), "{h}");
    let o = &h["options"];
    assert_eq!(o["model"], "bundled");
    assert_eq!(o["agent"]["backend"], "builtin");
    assert_eq!(f(&o["loop"]["threshold"]), 0.07);
    assert_eq!(o["loop"]["max_iters"], 4);
    assert_eq!(o["seqlen"], 64);
    assert_eq!(o["calib_windows"], 4);
    assert_eq!(o["eval_windows"], 4);
    assert_eq!(o["grad_windows"], 1);
    for k in ["target", "ceiling", "bounds", "profile_every"] {
        assert!(o["loop"].get(k).is_some(), "options.loop.{k} missing: {o}");
    }
    assert_contiguous(&entries);
    assert_grammar(&entries);
    let fo = fold(&h, &entries);
    assert_eq!(fo.verdicts.len(), 4);
    assert_summary_matches(&sum, &fo);
    // Every evaluation uses the protocol of the header.
    for e in events(&entries, "evaluated") {
        assert_eq!(e["eval"]["seqlen"], 64);
        assert_eq!(e["eval"]["windows"], 4);
        assert_eq!(e["eval"]["dtype"], "f32");
    }
    // Four iterations cannot reach 0.45 within the bounds, so the loop stopped on max_iters.
    assert!(4.0 * largest_step_gain(&fo, &h) < f(&o["loop"]["target"]));
    assert_eq!(sum["finished"], "max_iterations");
    assert!(fo.global() > 0.0, "nothing was pruned: {sum}");
    // The builtin never proposes beyond the bounds, and masks only grow.
    let max_step = f(&o["loop"]["bounds"]["max_step"]);
    let mut cur = fo.checkpoints[0].2.clone();
    for (prop, ev) in events(&entries, "proposed")
        .iter()
        .zip(events(&entries, "evaluated"))
    {
        let layers = prop["reply"]["value"]["layers"].as_array().unwrap();
        assert!(
            !layers.is_empty()
                && layers.len() as u64 <= o["loop"]["bounds"]["max_layers"].as_u64().unwrap()
        );
        for l in layers {
            let n = l["name"].as_str().unwrap();
            let to = f(&l["sparsity"]);
            assert!(
                to > cur[n] && to <= cur[n] + max_step + 1e-9,
                "{n}: {} -> {to}",
                cur[n]
            );
        }
        for (n, a) in as_map(&ev["applied"]) {
            assert!(a >= cur[&n], "{n} shrank");
        }
        let it = ev["iteration"].as_u64().unwrap();
        if let Some(c) = fo.checkpoints.iter().find(|c| c.0 == it) {
            cur = c.2.clone();
        }
    }
}

// Two runs started in the same second used to share the default name: the second was
// refused and told to resume the first.
#[test]
fn a_default_session_name_taken_this_second_gets_the_next_number() {
    let env = Env::new();
    let sessions = env.path("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Every name of the next minute is taken, so the run starts in a taken second.
    let taken: Vec<String> = (now..now + 60)
        .map(|t| format!("{t}-bundled.yaml"))
        .collect();
    for f in &taken {
        std::fs::write(sessions.join(f), "taken").unwrap();
    }
    let mut args = vec!["run", "--headless", "--auto-approve", "--max-iters", "1"];
    args.extend(SMALL);
    ok(&env.run(&args));
    let new: Vec<String> = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !taken.contains(n))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    let stem = new[0].strip_suffix("-bundled-2.yaml").expect("numbered -2");
    assert!(taken.contains(&format!("{stem}-bundled.yaml")), "{new:?}");
    for f in &taken {
        assert_eq!(std::fs::read_to_string(sessions.join(f)).unwrap(), "taken");
    }
    let (h, _) = session_docs(&sessions.join(&new[0]));
    assert_eq!(h["options"]["model"], "bundled");
}

// Two runs started at once both saw the default name free and loaded their models; the
// second was then refused ("cannot create session ...: entity already exists"). Each now
// claims its name before loading, and neither leaves its claim behind.
#[test]
fn two_runs_started_at_once_get_two_sessions() {
    let env = Env::new();
    let mut args = vec!["run", "--headless", "--auto-approve", "--max-iters", "1"];
    args.extend(SMALL);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| env.run(&args));
        let b = s.spawn(|| env.run(&args));
        (a.join().unwrap(), b.join().unwrap())
    });
    ok(&a);
    ok(&b);
    let mut names: Vec<String> = std::fs::read_dir(env.path("sessions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.ends_with(".yaml") && !n.starts_with('.')),
        "{names:?}"
    );
}

// The claim on a default name was kept to the end of the run, so every kill (and every
// signal) left a `.NAME.reserved` beside the session (an audit counted 8 after a few
// runs). It goes once the session file exists: checked while the run still waits on an
// agent that never answers.
#[test]
fn a_default_name_claim_goes_once_the_session_file_exists() {
    let env = Env::new();
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", silent.local_addr().unwrap());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"))
        .current_dir(env.work())
        .env("ARBORIST_CACHE", &env.cache)
        .args(["run", "--headless", "--auto-approve", "--max-iters", "1"])
        .args([
            "--agent",
            "openai",
            "--agent-model",
            "m",
            "--base-url",
            &url,
        ])
        .args(["--agent-timeout", "600"])
        .args(SMALL)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sessions = env.path("sessions");
    let names = || -> Vec<String> {
        std::fs::read_dir(&sessions).map_or(vec![], |d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
    };
    let t = std::time::Instant::now();
    // The baseline is recorded once the model and data are in; by then the header has
    // long been written.
    let recorded = || {
        names()
            .iter()
            .filter(|n| n.ends_with(".yaml") && !n.starts_with('.'))
            .any(|n| {
                std::fs::read_to_string(sessions.join(n))
                    .is_ok_and(|t| t.contains("event: baseline"))
            })
    };
    while !recorded() {
        assert!(t.elapsed().as_secs() < 300, "no baseline: {:?}", names());
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let seen = names();
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(running, "the run must still be waiting on the agent");
    assert_eq!(
        seen.len(),
        1,
        "a claim is left beside the session: {seen:?}"
    );
    assert!(seen[0].ends_with("-bundled.yaml"), "{seen:?}");
    assert_eq!(names(), seen, "the kill left something behind");
}

#[test]
fn builtin_reaches_a_small_target() {
    let env = Env::new();
    let s = env.path("s.yaml");
    let sum = ok_json(&env.session(
        &s,
        &[
            "--auto-approve",
            "--target",
            "0.1",
            "--max-iters",
            "20",
            "--json",
        ],
    ));
    let (h, entries) = session_docs(&s);
    assert_grammar(&entries);
    let fo = fold(&h, &entries);
    assert_summary_matches(&sum, &fo);
    assert_eq!(sum["finished"], "target_reached", "{sum}");
    assert!(
        fo.global() >= 0.1 - 1e-9,
        "global {} below the target",
        fo.global()
    );
}

#[test]
fn every_applied_builtin_step_changes_a_mask() {
    let env = Env::new();
    let s = env.path("s.yaml");
    ok_json(&env.session(
        &s,
        &[
            "--auto-approve",
            "--target",
            "0.05",
            "--max-iters",
            "6",
            "--json",
        ],
    ));
    let (h, entries) = session_docs(&s);
    let fo = fold(&h, &entries);
    let mut cur = fo.checkpoints[0].2.clone();
    let mut accepted = fo.checkpoints.iter().skip(1).peekable();
    let evaluated = events(&entries, "evaluated");
    assert!(!evaluated.is_empty(), "no step was evaluated");
    for ev in evaluated {
        let applied = as_map(&ev["applied"]);
        let grew = applied.iter().any(|(n, a)| *a > cur[n]);
        assert!(
            grew,
            "iteration {}: the step changed no mask: {applied:?}",
            ev["iteration"]
        );
        if accepted.peek().map(|c| c.0) == ev["iteration"].as_u64() {
            cur = accepted.next().unwrap().2.clone();
        }
    }
}

/// The stop on the target itself, independent of how the builtin gets there: a scripted
/// edit prunes past a low target in the first iteration.
#[test]
fn reaching_the_target_finishes_target_reached() {
    let env = Env::new();
    let layers: String = (0..4)
        .map(|b| format!("  - name: model.layers.{b}.mlp.down_proj\n    sparsity: 0.1\n"))
        .collect();
    let dec = env.input(
        "d.yaml",
        &format!("- iteration: 1\n  action: edit\n  layers:\n{layers}"),
    );
    let s = env.path("s.yaml");
    let sum = ok_json(&env.session(
        &s,
        &[
            "--auto-approve",
            "--decisions",
            &p(&dec),
            "--target",
            "0.005",
            "--threshold",
            "0.5",
            "--max-iters",
            "10",
            "--json",
        ],
    ));
    let (h, entries) = session_docs(&s);
    assert_grammar(&entries);
    let fo = fold(&h, &entries);
    assert_summary_matches(&sum, &fo);
    assert_eq!(fo.verdicts, vec![(1, true)], "{sum}");
    assert!(fo.global() >= 0.005, "{}", fo.global());
    assert_eq!(sum["finished"], "target_reached", "{sum}");
    assert!(f(&sum["global_sparsity"]) >= f(&sum["target"]), "{sum}");
}

// ---------------------------------------------------------------------------------------
// 2. replay --verify
// ---------------------------------------------------------------------------------------

/// Replace the `ppl:` of the evaluated event of `iteration`; returns (seq, new value).
fn tamper_ppl(src: &Path, dst: &Path, iteration: u64, factor: f64) -> (u64, f64) {
    let (_, entries) = session_docs(src);
    let k = entries
        .iter()
        .position(|e| kind(e) == "evaluated" && iter_of(e) == Some(iteration))
        .expect("an evaluated event");
    let old = f(&entries[k]["event"]["eval"]["ppl"]);
    let new = tamper_line(src, dst, k, "\n    ppl: ", factor);
    assert_eq!(new, old * factor);
    (entries[k]["seq"].as_u64().unwrap(), new)
}

/// Multiply the first number after `key` in entry `k` by `factor`; returns the new value.
fn tamper_line(src: &Path, dst: &Path, k: usize, key: &str, factor: f64) -> f64 {
    let text = std::fs::read_to_string(src).unwrap();
    let starts = doc_starts(&text);
    let (a, b) = (starts[k + 1], *starts.get(k + 2).unwrap_or(&text.len()));
    let doc = &text[a..b];
    let at = doc.find(key).expect("the key's line") + key.len();
    let end = at + doc[at..].find('\n').unwrap();
    let new = doc[at..end].parse::<f64>().unwrap() * factor;
    let out = format!("{}{new:?}{}", &text[..a + at], &text[a + end..]);
    std::fs::write(dst, out).unwrap();
    new
}

#[test]
fn replay_verify_is_bit_exact_and_names_a_tampered_ppl() {
    let env = Env::new();
    let s = env.path("s.yaml");
    ok_json(&env.session(&s, &["--auto-approve", "--max-iters", "3", "--json"]));
    let (_, entries) = session_docs(&s);
    let r = env.run(&["replay", &p(&s), "--verify", "--json"]);
    let v = ok_json(&r);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["bit_exact"], true, "{v}");
    assert_eq!(f(&v["tolerance"]), 1e-6, "{v}");
    // Without --verify: one object, the header (the protocols) with the events.
    let printed = ok_json(&env.run(&["replay", &p(&s), "--headless", "--json"]));
    assert_eq!(printed["events"].as_array().unwrap().len(), entries.len());
    assert_eq!(
        printed["header"]["options"]["seqlen"], 64,
        "{}",
        printed["header"]
    );
    assert_eq!(printed["iterations"], 3, "{}", printed["finished"]);
    let computes = entries
        .iter()
        .filter(|e| matches!(kind(e), "baseline" | "profiled" | "evaluated"))
        .count();
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), computes, "{v}");
    for c in checks {
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(f(&c["max_rel_diff"]), 0.0, "{c}");
        assert_eq!(f(&c["recorded"]), f(&c["recomputed"]), "{c}");
    }
    let derived = events(&entries, "guard").len() + events(&entries, "finished").len();
    assert_eq!(v["derived_checked"].as_u64(), Some(derived as u64), "{v}");
    assert_eq!(v["derived_mismatches"].as_array().unwrap().len(), 0, "{v}");
    // The recorded ppl values are the ones the checks compared.
    let seqs: BTreeSet<u64> = checks.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    for e in &entries {
        if kind(e) == "evaluated" {
            assert!(
                seqs.contains(&e["seq"].as_u64().unwrap()),
                "{e} not checked"
            );
        }
    }

    // One recorded perplexity changed by 0.1%.
    let t = env.path("tampered.yaml");
    let (seq, new) = tamper_ppl(&s, &t, 2, 1.001);
    let r = env.run(&["replay", &p(&t), "--verify", "--json"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let line = one_error_line_allow_stdout(&r, &[&p(&t), "does not match"]);
    // 0.1% is more than last-bit drift: no hint to loosen the tolerance.
    assert!(!line.contains("--tolerance"), "{line}");
    // The line names the edited event, not only the table above it (since 2026-12-02).
    assert!(
        line.contains(&format!(
            "first at event {seq} (iter 2 ppl: recorded {new}, recomputed "
        )),
        "{line}"
    );
    let v: Value = json_exact(r.stdout.lines().last().unwrap());
    assert_eq!(v["ok"], false, "{v}");
    for c in v["checks"].as_array().unwrap() {
        let bad = c["seq"].as_u64() == Some(seq);
        assert_eq!(c["ok"], !bad, "{c}");
        if bad {
            assert_eq!(f(&c["recorded"]), new);
            assert!(c["what"].as_str().unwrap().contains("iter 2"), "{c}");
        }
    }
    // The text report names the event and its check.
    let r = env.run(&["replay", &p(&t), "--verify"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let bad: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains("MISMATCH"))
        .collect();
    assert_eq!(bad.len(), 1, "{}", r.stdout);
    assert!(
        bad[0].trim_start().starts_with(&seq.to_string()),
        "{}",
        bad[0]
    );
    assert!(bad[0].contains("iter 2 ppl"), "{}", bad[0]);

    // A profile number off by a few parts in 1e6, as another build or CPU gives (the
    // recorded decisions stay consistent): the error says how far off it is and which
    // tolerance accepts it, and that tolerance does.
    let k = entries
        .iter()
        .position(|e| kind(e) == "profiled" && iter_of(e) == Some(2))
        .expect("a profiled event");
    tamper_line(&s, &t, k, "\n    s: ", 1.000003);
    let r = env.run(&["replay", &p(&t), "--verify"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    // The report names the row and field that differ, not a sum that hides them.
    let layer = entries[k]["event"]["rows"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("MISMATCH") && l.contains(&format!("iter 2 {layer} s "))),
        "{}",
        r.stdout
    );
    let line = one_error_line_allow_stdout(&r, &[&p(&t), "does not match", "--tolerance 1e-5"]);
    assert!(
        line.contains("largest relative difference 3.0e-6"),
        "{line}"
    );
    let v = ok_json(&env.run(&[
        "replay",
        &p(&t),
        "--verify",
        "--tolerance",
        "1e-5",
        "--json",
    ]));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["bit_exact"], false, "{v}");

    // A profile number hand-edited to NaN differs from any number (NaN compares unequal
    // and, unchecked, would never be the largest difference).
    let text = std::fs::read_to_string(&s).unwrap();
    let starts = doc_starts(&text);
    let at = starts[k + 1] + text[starts[k + 1]..].find("\n    s: ").unwrap() + 8;
    let end = at + text[at..].find('\n').unwrap();
    std::fs::write(&t, format!("{}.nan{}", &text[..at], &text[end..])).unwrap();
    let r = env.run(&["replay", &p(&t), "--verify"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("MISMATCH") && l.contains(&format!("iter 2 {layer} s "))),
        "{}",
        r.stdout
    );
    // The protocol recorded with a perplexity (which export publishes beside it) is checked
    // too: an edited seqlen or dtype passed as bit-exact.
    let k = entries
        .iter()
        .position(|e| kind(e) == "evaluated" && iter_of(e) == Some(2))
        .unwrap();
    // Accepted, so it is the checkpoint `export --step 2` writes.
    assert_eq!(
        entries[k + 1]["event"]["accepted"],
        true,
        "{}",
        entries[k + 1]
    );
    let text = std::fs::read_to_string(&s).unwrap();
    let starts = doc_starts(&text);
    let doc = &text[starts[k + 1]..starts[k + 2]];
    let seqlen = entries[k]["event"]["eval"]["seqlen"].as_u64().unwrap();
    for (from, to, what) in [
        (
            format!("\n    seqlen: {seqlen}\n"),
            format!("\n    seqlen: {}\n", seqlen * 4),
            "iter 2 seqlen".to_string(),
        ),
        (
            "\n    dtype: f32\n".into(),
            "\n    dtype: bf16\n".into(),
            "iter 2 dtype (recorded bf16, recomputed f32)".into(),
        ),
    ] {
        assert_eq!(doc.matches(&from).count(), 1, "{from} in {doc}");
        let edited = doc.replace(&from, &to);
        std::fs::write(&t, text.replacen(doc, &edited, 1)).unwrap();
        let r = env.run(&["replay", &p(&t), "--verify"]);
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(
            r.stdout
                .lines()
                .any(|l| l.contains("MISMATCH") && l.contains(&what)),
            "{what}: {}",
            r.stdout
        );
        // export publishes the protocol beside the number: it refuses to.
        let out = env.path("protocol-out");
        let r = env.run(&["export", &p(&t), "--step", "2", "--out", &p(&out)]);
        one_error_line(&r, &["was recorded as", "(was the file edited?)"]);
        assert!(!out.exists());
    }
    // Two layers of one shape with their recorded sparsities swapped, in the last
    // iteration the file keeps (later proposals are checked against them): the global
    // sparsity and every verdict still add up, and export wrote weights whose masks
    // disagreed with the numbers it printed. Since 2026-12-02 the rebuilt masks are held
    // to the file; since 2026-12-04 the swap is refused before, at its event: one of the
    // two now lies past its approved target.
    let kind_of = |name: &str| name.split('.').skip(3).collect::<Vec<_>>().join(".");
    let swappable = |e: &Value| -> Option<(String, String)> {
        let applied = e["event"]["applied"].as_object()?;
        applied
            .iter()
            .flat_map(|a| applied.iter().map(move |b| (a, b)))
            .find(|((na, va), (nb, vb))| kind_of(na) == kind_of(nb) && va != vb)
            .map(|((na, _), (nb, _))| (na.clone(), nb.clone()))
    };
    let (g, (x, y)) = (0..entries.len())
        .rev()
        .filter(|&g| kind(&entries[g]) == "guard" && entries[g]["event"]["accepted"] == true)
        .find_map(|g| swappable(&entries[g - 1]).map(|pair| (g, pair)))
        .expect("an accepted step changing two layers of one kind by different amounts");
    let (k, i) = (g - 1, iter_of(&entries[g]).unwrap());
    assert_eq!(kind(&entries[k]), "evaluated");
    let applied = &entries[k]["event"]["applied"];
    let doc = &text[starts[k + 1]..starts[k + 2]];
    let line = |n: &str| format!("\n    {n}: {}\n", applied[n]);
    let swapped = doc
        .replacen(&line(&x), &line(&y).replacen(&y, &x, 1), 1)
        .replacen(&line(&y), &line(&x).replacen(&x, &y, 1), 1);
    assert_ne!(swapped, doc, "{x} and {y} in {doc}");
    // The file as a crash right after that guard leaves it.
    let kept = text[..starts[g + 2]].replacen(doc, &swapped, 1);
    std::fs::write(&t, kept).unwrap();
    let out = env.path("swapped-out");
    let r = env.run(&[
        "export",
        &p(&t),
        "--step",
        &i.to_string(),
        "--out",
        &p(&out),
    ]);
    one_error_line(
        &r,
        &[
            &format!("event {}: applied gives ", entries[k]["seq"]),
            "past its approved target",
        ],
    );
    assert!(!out.exists());
    let r = env.run(&["replay", &p(&s), "--verify", "--tolerance", "NaN"]);
    only_one_line(&r, &["--tolerance NaN", "finite"]);
    // Without --verify a tolerance was accepted and compared nothing.
    let r = env.run(&["replay", &p(&s), "--headless", "--tolerance", "0.1"]);
    only_one_line(&r, &["--tolerance is what --verify accepts"]);
    // A perplexity edited so that its guard would roll back is named at the guard (it was
    // an error about phases at a later event), and --verify names the edited number.
    let g = entries
        .iter()
        .position(|e| kind(e) == "guard" && e["event"]["accepted"] == true)
        .expect("an accepted step");
    let i = iter_of(&entries[g]).unwrap();
    let flipped = env.path("flipped.yaml");
    let (eval_seq, _) = tamper_ppl(&s, &flipped, i, 3.0);
    let r = env.run(&["replay", &p(&flipped), "--headless"]);
    let guard_seq = entries[g]["seq"].as_u64().unwrap();
    only_one_line(
        &r,
        &[&format!(
            "event {guard_seq} records iteration {i} accepted, but the events before it give iteration {i} rolled back"
        )],
    );
    // The same verdict with another number (here the guard's delta) was shown and
    // exported as recorded; replay, export and resume now name the number.
    let edited = env.path("edited.yaml");
    let was = f(&entries[g]["event"]["delta"]);
    let now = tamper_line(&s, &edited, g, "\n  delta: ", 0.5);
    let want = format!("event {guard_seq} (guard) delta: recorded {now}, the events before it give {was} (was the file edited?)");
    only_one_line(&env.run(&["replay", &p(&edited), "--headless"]), &[&want]);
    let out = env.path("edited-out");
    only_one_line(
        &env.run(&["export", &p(&edited), "--out", &p(&out)]),
        &[&want],
    );
    assert!(!out.exists());
    one_error_line(&env.resume(&edited), &[&want]);
    // The guard's note, which replay prints as the verdict, turned into another rise: it
    // was compared with nothing, and a forged "accepted" read as the file's word.
    let forged = env.path("forged.yaml");
    let note = entries[g]["event"]["note"].as_str().unwrap().to_string();
    let text = std::fs::read_to_string(&s).unwrap();
    let starts = doc_starts(&text);
    let (a, b) = (starts[g + 1], *starts.get(g + 2).unwrap_or(&text.len()));
    let doc = text[a..b].replacen(&note, "accepted: +4.99% <= 5.00%", 1);
    assert_ne!(doc, text[a..b]);
    std::fs::write(&forged, format!("{}{doc}{}", &text[..a], &text[b..])).unwrap();
    let want = format!(
        "event {guard_seq} (guard) note: recorded \"accepted: +4.99% <= 5.00%\", the events before it give {:?} (was the file edited?)",
        note
    );
    only_one_line(&env.run(&["replay", &p(&forged), "--headless"]), &[&want]);
    // A NaN is named as the file holds it (JSON has none: it read "recorded null").
    let nan = env.path("nan.yaml");
    tamper_line(&s, &nan, g, "\n  delta: ", 2.0);
    let text = std::fs::read_to_string(&nan).unwrap();
    let doubled = format!("\n  delta: {:?}\n", 2.0 * was);
    assert!(text.contains(&doubled), "{doubled}");
    std::fs::write(&nan, text.replacen(&doubled, "\n  delta: .nan\n", 1)).unwrap();
    let want = format!("event {guard_seq} (guard) delta: recorded .nan, the events before it give {was} (was the file edited?)");
    only_one_line(&env.run(&["replay", &p(&nan), "--headless"]), &[&want]);
    // Not a session file in ways an editor or a typo makes: each said as what it is (a
    // device was read without end, CRLF read as "no header document", a BOM as a
    // header missing `format`, a dangling link advised resuming a missing file).
    let text = std::fs::read_to_string(&s).unwrap();
    let crlf = env.path("crlf.yaml");
    std::fs::write(&crlf, text.replace('\n', "\r\n")).unwrap();
    only_one_line(
        &env.run(&["replay", &p(&crlf), "--headless"]),
        &["crlf.yaml: has Windows line endings (CRLF)"],
    );
    let bom = env.path("bom.yaml");
    std::fs::write(&bom, format!("\u{feff}{text}")).unwrap();
    one_error_line(
        &env.resume(&bom),
        &["bom.yaml: starts with a byte-order mark"],
    );
    only_one_line(
        &env.run(&["replay", "/dev/zero", "--headless"]),
        &["/dev/zero: not a regular file"],
    );
    one_error_line(
        &env.resume(std::path::Path::new("/dev/full")),
        &["/dev/full: not a regular file"],
    );
    let link = env.path("dangling.yaml");
    std::os::unix::fs::symlink(env.path("nowhere.yaml"), &link).unwrap();
    one_error_line(
        &env.session(&link, &["--auto-approve"]),
        &[
            "dangling.yaml is a symbolic link to",
            "nowhere.yaml, which does not exist",
        ],
    );
    // Notes added after the last document: replay leaves them out and says so; a resume
    // refuses, since it would cut them off.
    let added = env.path("added.yaml");
    let text = std::fs::read_to_string(&s).unwrap() + "my notes\n";
    std::fs::write(&added, &text).unwrap();
    let r = env.run(&["replay", &p(&added), "--headless"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("9 byte(s) after its last document's end marker are not a document"),
        "{}",
        r.stderr
    );
    one_error_line(
        &env.resume(&added),
        &["move them out of the file to resume it"],
    );
    assert_eq!(std::fs::read_to_string(&added).unwrap(), text);
    let r = env.run(&["replay", &p(&flipped), "--verify"]);
    one_error_line_allow_stdout(
        &r,
        &[&format!(": event {eval_seq} did not match (iter {i} ppl")],
    );

    // A recorded guard verdict's perplexity in its last digits: the mismatch names the
    // field with both values (the one-line summaries read the same).
    let g = entries
        .iter()
        .position(|e| kind(e) == "guard" && iter_of(e) == Some(2))
        .expect("a guard event");
    tamper_line(&s, &t, g, "\n  ppl_after: ", 1.0 + 1e-15);
    let r = env.run(&["replay", &p(&t), "--verify"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stdout.lines().any(
            |l| l.starts_with("derived mismatch") && l.contains("(guard): ppl_after: recorded")
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("the compute checks are bit-exact"),
        "{}",
        r.stdout
    );
}

/// Like `one_error_line` but stdout may hold a report.
fn one_error_line_allow_stdout(r: &Ran, needles: &[&str]) -> String {
    assert!(!r.timed_out);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let lines = r.error_lines();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {}", lines[0]);
    }
    lines[0].to_string()
}

// A file that holds only its header verified as "0 compute checks, 0 derived events;
// verified (bit-exact)": it now says that nothing past the model and data was checked.
#[test]
fn verifying_a_header_only_file_says_what_was_checked() {
    let env = Env::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
    let text = std::fs::read_to_string(example).unwrap();
    let h = env.path("h.yaml");
    std::fs::write(&h, &text[..doc_starts(&text)[1]]).unwrap();
    let r = env.run(&["replay", &p(&h), "--verify"]);
    ok(&r);
    assert!(
        r.stdout.contains(
            "0 compute checks, 0 derived events; verified (the file records no event: only its model and data were checked)"
        ),
        "{}",
        r.stdout
    );
}

// A new session's path that can only name a directory is refused before the model loads
// (`newdir/` failed with "Is a directory" after calibration), and nothing is created.
#[test]
fn a_session_path_ending_in_a_separator_is_refused_at_once() {
    let env = Env::new();
    for (arg, needle) in [
        (
            "newdir/",
            "ends in '/': it takes a file, e.g. newdir/session.yaml",
        ),
        (
            "a/b//",
            "ends in '/': it takes a file, e.g. a/b/session.yaml",
        ),
        ("newdir/.", "ends in '.': it takes a file"),
    ] {
        let mut a = vec!["run", "--headless", "--auto-approve", "--session", arg];
        a.extend(SMALL);
        only_one_line(&env.run(&a), &[&format!("--session {arg} "), needle]);
        assert!(env.leftovers().is_empty(), "{arg}: {:?}", env.leftovers());
    }
}

// A new session whose header cannot be written (a full disk; here a file size limit, so
// the write fails with EFBIG) leaves neither the file nor the directories made for it, as
// a failure at the first event does.
#[test]
fn a_failed_header_write_leaves_no_directories() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let s = env.path("small/s/t/s.yaml");
    let (model, text) = (fx("qwen3"), fx("eval.txt"));
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"));
    c.args(["run", "--headless", "--auto-approve", "--model", &model])
        .args(["--calib", &text, "--eval", &text, "--session", &p(&s)])
        .args(SMALL)
        .current_dir(env.work())
        .env("ARBORIST_CACHE", &env.cache);
    // SAFETY: only setrlimit and signal, both async-signal-safe, between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            match libc::setrlimit(libc::RLIMIT_FSIZE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let o = c.output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(
        lines[0].contains(&format!("cannot create session {}", p(&s)))
            && lines[0].contains("File too large"),
        "{e}"
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// A key no event type has (a mistyped edit, or a newer version's field) is read past
/// with one warning naming it; what the replay shows is unchanged.
#[test]
fn replay_names_an_unknown_event_field_and_shows_the_rest() {
    let env = Env::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
    let text = std::fs::read_to_string(example).unwrap();
    let at = text.find("event: guard").unwrap() + "event: guard".len();
    let edited = format!("{}\n  acceptd: false{}", &text[..at], &text[at..]);
    let (s, t) = (env.path("s.yaml"), env.path("t.yaml"));
    std::fs::write(&s, &text).unwrap();
    std::fs::write(&t, &edited).unwrap();
    for args in [&["--headless"][..], &["--headless", "--json"]] {
        let [a, b] = [&s, &t].map(|f| {
            let mut v = vec!["replay".to_string(), p(f)];
            v.extend(args.iter().map(|x| x.to_string()));
            let r = env.run(&v.iter().map(String::as_str).collect::<Vec<_>>());
            ok(&r);
            r
        });
        assert!(!a.stderr.contains("warning"), "{}", a.stderr);
        let warnings: Vec<&str> = b.stderr.lines().filter(|l| l.contains("warning")).collect();
        let line = edited[..at].matches('\n').count() + 1;
        let doc_line = edited[..at]
            .rfind("\n---\n")
            .map_or(0, |i| edited[..i].matches('\n').count() + 2);
        assert!(doc_line > 1 && doc_line < line);
        let want = format!(
            "warning: {}: 1 event document(s) hold fields that this version does not know, which were ignored (written by a newer arborist, or edited?); the first: `event.acceptd` in event document {} (from line {doc_line}, `guard`)",
            p(&t),
            edited[..at].matches("\n---\n").count()
        );
        assert_eq!(warnings, [want.as_str()], "{}", b.stderr);
        let same = |o: &str| o.replace(&p(&t), &p(&s));
        assert_eq!(same(&b.stdout), a.stdout);
    }
}

// A headless session whose output pipe closes goes on to its end (`run --headless 2>&1 |
// head -2` killed it at the baseline: SIGPIPE); what it said after is dropped, and a
// result it cannot print is an error once the session is saved.
#[test]
fn a_closed_output_pipe_does_not_stop_a_headless_session() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let d = tmp();
    let s = d.path().join("s.yaml");
    let session = |s: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_arborist"))
            .args(["--threads", "1", "run", "--model", "bundled", "--headless"])
            .args(["--auto-approve", "--max-iters", "2", "--session", &p(s)])
            .env("ARBORIST_CACHE", d.path().join("cache"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = session(&s);
    let mut first = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("session "), "{first}");
    // Both ends closed, as when `head` has had its lines.
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), None, "killed by a signal: {status:?}");
    // Its summary went nowhere: an error, not a success (nor a panic's 101).
    assert_eq!(status.code(), Some(1), "{status:?}");
    let o = arborist(&["replay", &p(&s), "--headless"], &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("finished (max iterations)"), "{text}");

    // With stderr still open (`| true`), the session's lines are all there, and the one
    // error says what was lost.
    let mut child = session(&d.path().join("s2.yaml"));
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("finished (max iterations)"), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cannot write to standard output"),
        "{err}"
    );
}
