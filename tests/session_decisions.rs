//! Scripted human decisions (`--decisions`): reject with feedback, edit, override, stop,
//! and the errors of a bad decisions file.
//!
//! Every expected number is computed here from the session file or from an independent
//! `arborist eval`, never copied from an earlier run.

mod common;
mod session_support;
use common::*;
use serde_json::Value;
use session_support::*;
use std::collections::BTreeSet;

fn decided(entries: &[Value]) -> Vec<&Value> {
    events(entries, "decided")
}

#[test]
fn decisions_reject_with_feedback_then_approve() {
    let env = Env::new();
    let fb = "Leave the MLP down projections alone (feedback 7731)";
    let dec = env.input(
        "d.yaml",
        &format!(
            "- iteration: 1\n  action: reject\n  feedback: \"{fb}\"\n- iteration: 1\n  action: approve\n"
        ),
    );
    let s = env.path("s.yaml");
    let sum = ok_json(&env.session(&s, &["--decisions", &p(&dec), "--max-iters", "1", "--json"]));
    let (h, entries) = session_docs(&s);
    let k = kinds(&entries);
    let want = [
        "baseline",
        "profiled",
        "proposed",
        "decided",
        "proposed",
        "decided",
        "evaluated",
        "guard",
        "reflected",
        "finished",
    ];
    assert_eq!(k, want);
    let d = decided(&entries);
    assert_eq!(d[0]["by"], "script");
    assert_eq!(d[0]["iteration"], 1);
    assert_eq!(d[0]["decision"]["action"], "reject");
    assert_eq!(d[0]["decision"]["feedback"], fb);
    assert_eq!(d[1]["by"], "script");
    assert_eq!(d[1]["decision"]["action"], "approve");
    let props = events(&entries, "proposed");
    let first = props[0]["reply"]["value"]["reasoning"].as_str().unwrap();
    let second = props[1]["reply"]["value"]["reasoning"].as_str().unwrap();
    assert!(!first.contains(fb), "{first}");
    assert!(
        second.contains(fb),
        "the next proposal ignores the feedback: {second}"
    );
    assert_eq!(props[1]["iteration"], 1);
    // The approved (second) proposal is what was applied.
    let names: BTreeSet<String> = props[1]["reply"]["value"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    let applied: BTreeSet<String> = as_map(&events(&entries, "evaluated")[0]["applied"])
        .into_keys()
        .collect();
    assert_eq!(applied, names);
    let fo = fold(&h, &entries);
    assert_summary_matches(&sum, &fo);
    // The feedback is consumed: the reflection step does not carry it on.
    assert!(!events(&entries, "reflected")[0]["reply"]["value"]
        .as_str()
        .unwrap()
        .contains(fb));
}

#[test]
fn decisions_edit_and_override_are_what_gets_applied() {
    let env = Env::new();
    let edit = [
        ("model.layers.0.self_attn.q_proj", 0.05),
        ("model.layers.3.mlp.up_proj", 0.08),
    ];
    let over = [
        ("model.layers.1.self_attn.v_proj", 0.06),
        ("model.layers.5.mlp.gate_proj", 0.04),
    ];
    let list = |l: &[(&str, f64)]| {
        l.iter()
            .map(|(n, s)| format!("  - name: {n}\n    sparsity: {s}\n"))
            .collect::<String>()
    };
    let dec = env.input(
        "d.yaml",
        &format!(
            "- iteration: 1\n  action: edit\n  layers:\n{}- iteration: 2\n  action: override\n  reasoning: hand-picked 4242\n  layers:\n{}",
            list(&edit),
            list(&over)
        ),
    );
    let s = env.path("s.yaml");
    let sum = ok_json(&env.session(&s, &["--decisions", &p(&dec), "--max-iters", "2", "--json"]));
    let (h, entries) = session_docs(&s);
    assert_grammar(&entries);
    let d = decided(&entries);
    assert_eq!(d[0]["by"], "script");
    assert_eq!(d[0]["decision"]["action"], "edit");
    assert_eq!(d[1]["decision"]["action"], "override");
    assert_eq!(d[1]["decision"]["reasoning"], "hand-picked 4242");
    let evs = events(&entries, "evaluated");
    for (ev, want) in evs.iter().zip([&edit[..], &over[..]]) {
        let applied = as_map(&ev["applied"]);
        let names: Vec<&str> = applied.keys().map(String::as_str).collect();
        let mut want_names: Vec<&str> = want.iter().map(|w| w.0).collect();
        want_names.sort();
        assert_eq!(names, want_names, "iteration {}", ev["iteration"]);
        for (n, s) in want {
            // Wanda prunes whole counts per row: never above the target, within one row step.
            let a = applied[*n];
            assert!(a <= s + 1e-12 && a > s - 0.02, "{n}: applied {a} for {s}");
        }
        let recorded: Vec<(String, f64)> = d[(ev["iteration"].as_u64().unwrap() - 1) as usize]
            ["decision"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["name"].as_str().unwrap().to_string(), f(&l["sparsity"])))
            .collect();
        let want: Vec<(String, f64)> = want.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        assert_eq!(recorded, want);
    }
    // The builtin proposed something else: the edit really replaced it.
    let first: BTreeSet<&str> = events(&entries, "proposed")[0]["reply"]["value"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_ne!(first, edit.iter().map(|e| e.0).collect::<BTreeSet<_>>());
    assert_summary_matches(&sum, &fold(&h, &entries));
}

#[test]
fn decisions_stop_at_iteration_2() {
    let env = Env::new();
    let dec = env.input("d.yaml", "- iteration: 2\n  action: stop\n");
    let s = env.path("s.yaml");
    let sum = ok_json(&env.session(
        &s,
        &[
            "--auto-approve",
            "--decisions",
            &p(&dec),
            "--max-iters",
            "5",
            "--json",
        ],
    ));
    assert_eq!(sum["finished"], "user_stop", "{sum}");
    let (h, entries) = session_docs(&s);
    let k = kinds(&entries);
    assert_eq!(k.last().unwrap(), "finished");
    assert_eq!(k[k.len() - 2], "stop_requested", "{k:?}");
    assert_eq!(events(&entries, "stop_requested")[0]["by"], "script");
    // Iteration 1 was applied, iteration 2 was proposed but never applied.
    let evs = events(&entries, "evaluated");
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["iteration"], 1);
    assert_eq!(decided(&entries).len(), 1);
    assert_eq!(decided(&entries)[0]["by"], "auto");
    assert!(events(&entries, "proposed")
        .iter()
        .any(|p| p["iteration"] == 2));
    let fo = fold(&h, &entries);
    assert_summary_matches(&sum, &fo);
    assert_eq!(fo.finished.unwrap()["reason"], "user_stop");
}

#[test]
fn decisions_invalid_edits_are_one_line_naming_the_layer() {
    let env = Env::new();
    for (name, sparsity, why) in [
        ("model.layers.2.mlp.up_proj", 0.5, "max_step"),
        ("model.layers.2.mlp.up_proj", 0.95, "max_layer_sparsity"),
        ("model.layers.99.mlp.up_proj", 0.05, "unknown layer"),
    ] {
        let dec = env.input(
            "d.yaml",
            &format!(
                "- iteration: 1\n  action: edit\n  layers:\n  - name: {name}\n    sparsity: {sparsity}\n"
            ),
        );
        let s = env.path(&format!("s-{sparsity}.yaml"));
        let r = env.session(&s, &["--decisions", &p(&dec), "--max-iters", "2", "--json"]);
        let line = one_error_line(&r, &[name, &format!("{}: iteration 1", p(&dec))]);
        assert!(line.contains(why), "{line}");
        // The bad decision is not recorded.
        let (_, entries) = session_docs(&s);
        assert!(decided(&entries).is_empty(), "{:?}", kinds(&entries));
        assert!(events(&entries, "evaluated").is_empty());
    }
}

#[test]
fn decisions_unknown_action_is_one_line_naming_file_and_iteration() {
    let env = Env::new();
    let dec = env.input("d.yaml", "- iteration: 2\n  action: prune-harder\n");
    let s = env.path("s.yaml");
    let r = env.session(
        &s,
        &[
            "--auto-approve",
            "--decisions",
            &p(&dec),
            "--max-iters",
            "3",
            "--json",
        ],
    );
    one_error_line(&r, &[&p(&dec), "iteration 2", "prune-harder"]);
    // Checked before the model loads: no session file is left behind.
    assert!(!s.exists(), "a refused decisions file left {}", s.display());
    // A reject without feedback, an edit out of range and an empty file are refused the
    // same way.
    for (file, text, want) in [
        ("e.yaml", "- iteration: 1\n  action: reject\n", "feedback"),
        (
            "f.yaml",
            "- iteration: 3\n  action: edit\n  layers:\n  - name: model.layers.0.mlp.up_proj\n    sparsity: 1.5\n",
            "outside [0, 1)",
        ),
        ("g.yaml", "", "no decisions"),
    ] {
        let dec = env.input(file, text);
        let s = env.path(&format!("t-{file}"));
        let r = env.session(&s, &["--decisions", &p(&dec), "--max-iters", "3", "--json"]);
        one_error_line(&r, &[&p(&dec), want]);
        assert!(!s.exists(), "{file}: a session file was left behind");
    }
}

// The README's example decisions file, read from the README, runs as it says: its edit
// of iteration 2 once raised a layer by 0.2, past the default max step, and stopped.
#[test]
fn the_readme_decisions_example_runs() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("### Review without a TUI").unwrap()..];
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let env = Env::new();
    let dec = env.input("d.yaml", block);
    let s = env.path("s.yaml");
    let r = env.run(&[
        "run",
        "--headless",
        "--decisions",
        &p(&dec),
        "--session",
        &p(&s),
        "--json",
    ]);
    let sum = ok_json(&r);
    assert_eq!(sum["finished"], "user_stop", "{sum}");
    let (_, entries) = session_docs(&s);
    let actions: Vec<(u64, String)> = decided(&entries)
        .iter()
        .map(|d| {
            let a = d["decision"]["action"].as_str().unwrap().to_string();
            (d["iteration"].as_u64().unwrap(), a)
        })
        .collect();
    let want = [(1, "reject"), (1, "approve"), (2, "edit"), (3, "override")];
    let want: Vec<(u64, String)> = want.iter().map(|(i, a)| (*i, a.to_string())).collect();
    assert_eq!(actions, want);
    assert_eq!(events(&entries, "evaluated").len(), 3);
}
