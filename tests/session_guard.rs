//! The guard's rollbacks, and bad input to `run`: one line, and no session left behind.
//!
//! Every expected number is computed here from the session file or from an independent
//! `arborist eval`, never copied from an earlier run.

mod common;
mod session_support;
use common::*;
use serde_json::Value;
use session_support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

// ---------------------------------------------------------------------------------------
// 1. The guard
// ---------------------------------------------------------------------------------------

#[test]
fn rollbacks_restore_the_checkpoint_and_the_builtin_backs_off() {
    let env = Env::new();
    let s = env.path("s.yaml");
    let max_step = 0.5;
    let sum = ok_json(&env.session(
        &s,
        &[
            "--auto-approve",
            "--threshold",
            "0",
            "--max-step",
            "0.5",
            "--max-layers",
            "8",
            // The bundled model's perplexity falls over the first steps; on the current
            // model the first rollbacks come at iterations 6 and 8.
            "--max-iters",
            "9",
            "--json",
        ],
    ));
    let (h, entries) = session_docs(&s);
    assert_grammar(&entries);
    // fold() checks every guard.ppl_before against the last accepted checkpoint's ppl.
    let fo = fold(&h, &entries);
    assert_summary_matches(&sum, &fo);
    assert!(fo.rollbacks() >= 1, "no rollback: {:?}", fo.verdicts);
    let props = events(&entries, "proposed");
    let evs = events(&entries, "evaluated");
    // The sparsity the builtin saw at each iteration: the latest accepted checkpoint.
    let seen = |it: u64| -> BTreeMap<String, f64> {
        fo.checkpoints
            .iter()
            .rev()
            .find(|c| c.0 < it)
            .unwrap()
            .2
            .clone()
    };
    let max_inc = |it: u64| -> f64 {
        let cur = seen(it);
        props[(it - 1) as usize]["reply"]["value"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| f(&l["sparsity"]) - cur[l["name"].as_str().unwrap()])
            .fold(0.0, f64::max)
    };
    let mut checked = 0;
    for w in fo.verdicts.windows(2) {
        let ((it, accepted), (next, _)) = (w[0], w[1]);
        if accepted {
            continue;
        }
        let rolled: BTreeSet<String> = as_map(&evs[(it - 1) as usize]["applied"])
            .into_keys()
            .collect();
        let p = &props[(next - 1) as usize]["reply"]["value"];
        let names: BTreeSet<String> = p["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect();
        assert!(
            names.is_disjoint(&rolled),
            "iteration {next} retries layers rolled back at {it}: {:?}",
            names.intersection(&rolled).collect::<Vec<_>>()
        );
        // The step is max_step halved once per rollback of the last 3 iterations.
        let recent = fo
            .verdicts
            .iter()
            .filter(|(i, acc)| !acc && *i < next && i + 3 > next)
            .count();
        let (before, after) = (max_inc(it), max_inc(next));
        assert!(
            after <= max_step * 0.5f64.powi(recent as i32) + 1e-9,
            "iteration {next}: step {after} above {max_step} halved {recent} time(s)"
        );
        assert!(
            after <= before + 1e-9,
            "iteration {next}: step {after} grew after a rollback (was {before})"
        );
        let why = p["reasoning"].as_str().unwrap();
        for n in &rolled {
            assert!(
                why.contains(n.as_str()),
                "reasoning does not name {n}: {why}"
            );
        }
        // The guard of the next step compares against the checkpoint, not the rolled-back state.
        let g = events(&entries, "guard")[(next - 1) as usize];
        assert_eq!(f(&g["ppl_before"]), fo_ppl_at(&fo, next));
        checked += 1;
    }
    assert!(
        checked >= 1,
        "no iteration followed a rollback: {:?}",
        fo.verdicts
    );
    // The reflection after a rollback says so.
    for (r, (_, accepted)) in events(&entries, "reflected").iter().zip(&fo.verdicts) {
        let text = r["reply"]["value"].as_str().unwrap();
        assert_eq!(text.contains("rolled back"), !accepted, "{text}");
    }
    // The live masks were restored on rollback: a fresh evaluation of the exported final
    // checkpoint gives the recorded perplexity, and replay --verify agrees.
    assert!(
        fo.checkpoints.len() > 1,
        "no step was accepted: nothing to export"
    );
    {
        let out = env.path("exported");
        ok(&env.run(&["export", &p(&s), "--out", &p(&out)]));
        let meta: Value = json_exact(&std::fs::read_to_string(out.join("arborist.json")).unwrap());
        assert_eq!(f(&meta["eval"]["ppl"]), fo.ppl());
        // A rolled-back iteration asked for by `--step` gives the checkpoint before it,
        // and says why.
        let (r, _) = fo.verdicts.iter().find(|(_, accepted)| !accepted).unwrap();
        let kept = fo.checkpoints.iter().rev().find(|c| c.0 < *r).unwrap().0;
        let o = env.run(&[
            "export",
            &p(&s),
            "--step",
            &r.to_string(),
            "--out",
            &p(&env.path("at-r")),
        ]);
        ok(&o);
        let which = match r - kept {
            1 => format!("iteration {r}"),
            _ => format!("iterations {} to {r}", kept + 1),
        };
        let want = format!("; {which} kept no step (rolled back or skipped)");
        assert!(
            o.stdout.contains(&format!("of iteration {kept} ")),
            "{}",
            o.stdout
        );
        assert!(o.stdout.trim_end().ends_with(&want), "{}", o.stdout);
        let text = entries[0]["event"]["eval"]["dataset"]
            .as_str()
            .unwrap()
            .to_string();
        let v = ok_json(&env.run(&[
            "eval",
            "--model",
            &p(&out),
            "--ppl",
            &text,
            "--seqlen",
            "64",
            "--max-windows",
            "4",
            "--batch",
            "4",
            "--json",
        ]));
        assert_eq!(f(&v["ppl"]["value"]), fo.ppl());
    }
    let v = ok_json(&env.run(&["replay", &p(&s), "--verify", "--json"]));
    assert_eq!(v["ok"], true, "{v}");
}

/// The perplexity of the last checkpoint accepted before iteration `it`.
fn fo_ppl_at(fo: &Fold, it: u64) -> f64 {
    fo.checkpoints.iter().rev().find(|c| c.0 < it).unwrap().1
}

// ---------------------------------------------------------------------------------------
// 2. Bad input
// ---------------------------------------------------------------------------------------

#[test]
fn bad_input_is_one_line_and_leaves_no_session() {
    let env = Env::new();
    let s = p(&env.path("s.yaml"));
    let missing = p(&env.dir.path().join("no-such-model"));
    let config = env.dir.path().join("c8.yaml");
    std::fs::write(&config, "loop:\n  target: 2\n").unwrap();
    let (config, prompts) = (p(&config), p(env.dir.path()));
    // Values set in a config file that were blamed on flags never given (`--seed ...`,
    // `--agent openai needs ...`), or, for prompts with the built-in agent, accepted.
    let in_config = |name: &str, text: &str| {
        let f = env.dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        p(&f)
    };
    let seed = in_config("cs.yaml", "seed: 3\n");
    let agent = in_config("ca.yaml", "agent:\n  backend: openai\n");
    let builtin_prompts = in_config("cp.yaml", &format!("agent:\n  prompts: {prompts}\n"));
    // The probe's shots come from `probe.shots` (run has no --shots): named so.
    let probe_shots = in_config("cq.yaml", "probe:\n  kind: mmlu\n  shots: 99\n");
    // An empty file (or one of comments) ran a session with every default.
    let blank = in_config("ce.yaml", "# my settings\n\n");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--auto-approve", "--config", &probe_shots],
            vec!["dev examples, fewer than probe.shots 99"],
        ),
        (
            vec!["--auto-approve", "--config", &seed],
            vec![
                "config ",
                "cs.yaml: --seed draws random calibration windows",
            ],
        ),
        (
            vec!["--auto-approve", "--config", &agent],
            vec![
                "config ",
                "ca.yaml: --agent openai needs --agent-model NAME",
            ],
        ),
        (
            vec!["--auto-approve", "--config", &builtin_prompts],
            vec![
                "config ",
                "cp.yaml: --prompts: the built-in agent writes no prompts",
            ],
        ),
        (
            vec!["--auto-approve", "--config", &blank],
            vec![
                "config ",
                "ce.yaml: holds no settings (empty, or only comments)",
            ],
        ),
        // Which of four count flags is 0 used to be left to the reader.
        (
            vec!["--auto-approve", "--max-iters", "0"],
            vec!["--max-iters 0: a session runs at least one iteration"],
        ),
        // A bad value from a config file names the file.
        (
            vec!["--auto-approve", "--config", &config],
            vec!["config ", "c8.yaml: --target 2 is outside [0, 1)"],
        ),
        // Prompts the built-in agent never reads were accepted and recorded.
        (
            vec!["--auto-approve", "--prompts", &prompts],
            vec!["--prompts: the built-in agent writes no prompts"],
        ),
        (
            vec!["--auto-approve", "--threshold=-1"],
            vec!["--threshold", "-1"],
        ),
        (
            vec!["--auto-approve", "--target", "1.5"],
            vec!["--target", "1.5"],
        ),
        (
            vec!["--auto-approve", "--agent", "nope"],
            vec!["--agent", "nope"],
        ),
        (
            vec!["--auto-approve", "--model", &missing],
            vec![&missing, "does not exist"],
        ),
        (vec![], vec!["--auto-approve", "--decisions"]),
    ];
    for (extra, needles) in cases {
        let mut a = vec!["run", "--headless", "--session", &s];
        a.extend(SMALL);
        a.extend(extra.iter().copied());
        let r = env.run(&a);
        only_one_line(&r, &needles);
        assert!(
            env.leftovers().is_empty(),
            "{extra:?} left {:?}",
            env.leftovers()
        );
    }
    // --resume without --session; the default session directory is not created either.
    let r = env.run(&["run", "--headless", "--auto-approve", "--resume"]);
    only_one_line(&r, &["--resume", "--session"]);
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
    // An existing session is never overwritten without --resume.
    std::fs::write(&s, "---\nsomething: else\n").unwrap();
    let mut a = vec!["run", "--headless", "--auto-approve", "--session", &s];
    a.extend(SMALL);
    only_one_line(&env.run(&a), &[&s, "--resume"]);
    assert_eq!(
        std::fs::read_to_string(&s).unwrap(),
        "---\nsomething: else\n"
    );
    assert_eq!(env.leftovers(), vec![s.clone()]);
    // A directory given as the session is named as such, with no hint to resume it.
    let d = env.path("adir");
    std::fs::create_dir_all(&d).unwrap();
    let dp = p(&d);
    let mut a = vec!["run", "--headless", "--auto-approve", "--session", &dp];
    a.extend(SMALL);
    let line = one_error_line(&env.run(&a), &[&dp, "is a directory"]);
    assert!(!line.contains("--resume"), "{line}");
    // So is a FIFO (it was "already exists (pass --resume ...)").
    let fifo = env.path("fifo.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let fp = p(&fifo);
    let mut a = vec!["run", "--headless", "--auto-approve", "--session", &fp];
    a.extend(SMALL);
    let line = one_error_line(&env.run(&a), &[&fp, "is not a regular file"]);
    assert!(!line.contains("--resume"), "{line}");
    std::fs::remove_file(&fifo).unwrap();
    // A session under a file: named before the model loads (it was "cannot create f: File
    // exists" once loaded).
    let under = p(&std::path::Path::new(&s).join("s.yaml"));
    let mut a = vec!["run", "--headless", "--auto-approve", "--session", &under];
    a.extend(SMALL);
    one_error_line(&env.run(&a), &[&under, "is not a directory"]);
    let mut left = env.leftovers();
    left.sort();
    let mut want = vec![s.clone(), dp.clone()];
    want.sort();
    assert_eq!(left, want);
}

#[test]
fn negative_threshold_as_a_separate_argument_is_one_line() {
    let env = Env::new();
    let s = p(&env.path("s.yaml"));
    let r = env.run(&[
        "run",
        "--headless",
        "--auto-approve",
        "--session",
        &s,
        "--threshold",
        "-1",
    ]);
    only_one_line(&r, &["--threshold", "-1"]);
}

#[test]
fn resume_with_a_different_model_is_refused() {
    let env = Env::new();
    // A private copy of the fixture, recorded once, then replaced by other weights.
    let m = env.dir.path().join("model");
    std::fs::create_dir_all(&m).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(Path::new(&fx("qwen3")).join(f), m.join(f)).unwrap();
    }
    let text = fx("eval.txt");
    let s = env.path("s.yaml");
    ok_json(&env.session(
        &s,
        &[
            "--model",
            &p(&m),
            "--calib",
            &text,
            "--eval",
            &text,
            "--auto-approve",
            "--max-iters",
            "1",
            "--json",
        ],
    ));
    // Cut the finish off so the session is resumable at all.
    let (_, entries) = session_docs(&s);
    cut_inside(&s, &s, entries.len() - 2);
    let before = std::fs::read(&s).unwrap();
    // Other weights of the same architecture: every tensor scaled by 1.01.
    let w = m.join("model.safetensors");
    let t = candle_core::safetensors::load(&w, &candle_core::Device::Cpu).unwrap();
    let t: std::collections::HashMap<String, candle_core::Tensor> = t
        .into_iter()
        .map(|(k, v)| (k, v.affine(1.01, 0.0).unwrap()))
        .collect();
    candle_core::safetensors::save(&t, &w).unwrap();
    let r = env.resume(&s);
    let line = one_error_line(&r, &[&p(&s), "fingerprint"]);
    assert!(line.contains(&p(&m)), "{line}");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(
        std::fs::read(&s).unwrap(),
        before,
        "the session file was changed"
    );
    // replay --verify and export refuse it the same way.
    one_error_line(&env.run(&["replay", &p(&s), "--verify"]), &["fingerprint"]);
    let out = env.path("out");
    one_error_line(
        &env.run(&["export", &p(&s), "--out", &p(&out)]),
        &["fingerprint"],
    );
    assert!(!out.exists());
}
