//! The headless agent-guided session end to end: `arborist run --headless`, the session
//! file, `replay --verify`, `export`, `--resume` after a crash, scripted decisions, the
//! guard's rollbacks and the refusals of bad input. The built-in agent is deterministic,
//! so two runs with the same options must agree to the bit.
//!
//! Every expected number is computed here from the session file or from an independent
//! `arborist eval`, never copied from an earlier run.

mod common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEYS: [&str; 5] = ["proposed", "decided", "evaluated", "guard", "reflected"];

/// A temp dir with its own ARBORIST_CACHE (`cache/`), a working directory for the child
/// (`work/`, where sessions go) and a place for inputs (`in/`).
struct Env {
    dir: tempfile::TempDir,
    cache: String,
}

impl Env {
    fn new() -> Env {
        let dir = tmp();
        for d in ["cache", "work", "in"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let cache = p(&dir.path().join("cache"));
        Env { dir, cache }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// A path under work/.
    fn path(&self, name: &str) -> PathBuf {
        self.work().join(name)
    }

    /// A file under in/ with `text`.
    fn input(&self, name: &str, text: &str) -> PathBuf {
        let f = self.dir.path().join("in").join(name);
        std::fs::write(&f, text).unwrap();
        f
    }

    fn run(&self, args: &[&str]) -> Ran {
        self.run_limit(args, LIMIT)
    }

    fn run_limit(&self, args: &[&str], limit: Duration) -> Ran {
        arborist_timed(
            args,
            &[("ARBORIST_CACHE", &self.cache)],
            &self.work(),
            limit,
        )
    }

    /// `run --headless --session S` with the small protocol and `extra`.
    fn session(&self, session: &Path, extra: &[&str]) -> Ran {
        let s = p(session);
        let mut a = vec!["run", "--headless", "--session", s.as_str()];
        a.extend(SMALL);
        a.extend(extra);
        self.run(&a)
    }

    /// `run --headless --auto-approve --session S --resume --json`.
    fn resume(&self, session: &Path) -> Ran {
        let s = p(session);
        self.run(&[
            "run",
            "--headless",
            "--auto-approve",
            "--session",
            &s,
            "--resume",
            "--json",
        ])
    }

    /// Files and directories left under work/.
    fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.work()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap().path();
                out.push(p(&e));
                if e.is_dir() {
                    stack.push(e);
                }
            }
        }
        out
    }
}

/// Success, no hang, and the `--json` summary on stdout.
/// Exit 1, one `error:` line holding every needle, no panic, nothing on stdout.
fn one_error_line(r: &Ran, needles: &[&str]) -> String {
    assert!(!r.timed_out, "timed out: {}", r.stderr);
    assert_eq!(r.code, Some(1), "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(r.stdout.trim().is_empty(), "stdout: {}", r.stdout);
    let lines = r.error_lines();
    assert_eq!(lines.len(), 1, "want one error line: {}", r.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {}", lines[0]);
    }
    lines[0].to_string()
}

/// Exactly one line on stderr, and it is the error.
fn only_one_line(r: &Ran, needles: &[&str]) {
    one_error_line(r, needles);
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "more than one line: {}",
        r.stderr
    );
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn kind(e: &Value) -> &str {
    e["event"]["event"].as_str().unwrap()
}

fn iter_of(e: &Value) -> Option<u64> {
    e["event"]["iteration"].as_u64()
}

fn events<'a>(entries: &'a [Value], k: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| kind(e) == k)
        .map(|e| &e["event"])
        .collect()
}

fn kinds(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| kind(e).to_string()).collect()
}

fn as_map(v: &Value) -> BTreeMap<String, f64> {
    v.as_object()
        .unwrap_or_else(|| panic!("not a map: {v}"))
        .iter()
        .map(|(k, x)| (k.clone(), f(x)))
        .collect()
}

/// The session recomputed from its events alone, with the guard's rule checked on the way.
#[derive(Debug, Clone)]
struct Fold {
    params: BTreeMap<String, f64>,
    dense_ppl: f64,
    /// Accepted checkpoints: (iteration, ppl, per-layer sparsity); [0] is the baseline.
    checkpoints: Vec<(u64, f64, BTreeMap<String, f64>)>,
    /// (iteration, accepted) per guard event.
    verdicts: Vec<(u64, bool)>,
    finished: Option<Value>,
}

impl Fold {
    fn sparsity(&self) -> &BTreeMap<String, f64> {
        &self.checkpoints.last().unwrap().2
    }

    fn ppl(&self) -> f64 {
        self.checkpoints.last().unwrap().1
    }

    fn global_of(&self, s: &BTreeMap<String, f64>) -> f64 {
        let total: f64 = self.params.values().sum();
        self.params
            .iter()
            .map(|(n, w)| s.get(n).copied().unwrap_or(0.0) * w)
            .sum::<f64>()
            / total
    }

    fn global(&self) -> f64 {
        self.global_of(self.sparsity())
    }

    fn rollbacks(&self) -> usize {
        self.verdicts.iter().filter(|v| !v.1).count()
    }
}

fn fold(header: &Value, entries: &[Value]) -> Fold {
    let th = f(&header["options"]["loop"]["threshold"]);
    let mut fo = Fold {
        params: BTreeMap::new(),
        dense_ppl: f64::NAN,
        checkpoints: Vec::new(),
        verdicts: Vec::new(),
        finished: None,
    };
    let mut pending: Option<(u64, BTreeMap<String, f64>, f64)> = None;
    for e in entries {
        let ev = &e["event"];
        match kind(e) {
            "baseline" => {
                let mut s = BTreeMap::new();
                for l in ev["layers"].as_array().unwrap() {
                    let n = l["name"].as_str().unwrap().to_string();
                    fo.params.insert(n.clone(), f(&l["params"]));
                    s.insert(n, f(&l["sparsity"]));
                }
                fo.dense_ppl = f(&ev["eval"]["ppl"]);
                fo.checkpoints.push((0, fo.dense_ppl, s));
            }
            "evaluated" => {
                pending = Some((
                    iter_of(e).unwrap(),
                    as_map(&ev["applied"]),
                    f(&ev["eval"]["ppl"]),
                ));
            }
            "guard" => {
                let (it, applied, ppl) = pending.take().expect("a guard follows an evaluation");
                assert_eq!(iter_of(e), Some(it), "guard for another iteration: {ev}");
                let before = fo.ppl();
                assert_eq!(
                    f(&ev["ppl_before"]),
                    before,
                    "guard.ppl_before is not the last accepted checkpoint's ppl: {ev}"
                );
                assert_eq!(f(&ev["ppl_after"]), ppl, "{ev}");
                let delta = ppl / before - 1.0;
                assert_eq!(f(&ev["delta"]), delta, "{ev}");
                let accepted = ev["accepted"].as_bool().unwrap();
                assert_eq!(
                    accepted,
                    ppl.is_finite() && delta <= th,
                    "verdict against threshold {th}: {ev}"
                );
                if accepted {
                    let mut s = fo.sparsity().clone();
                    s.extend(applied);
                    fo.checkpoints.push((it, ppl, s));
                }
                let g = fo.global();
                assert!(
                    (f(&ev["global_sparsity"]) - g).abs() < 1e-12,
                    "guard global sparsity {} vs {g} from the file",
                    ev["global_sparsity"]
                );
                fo.verdicts.push((it, accepted));
            }
            "finished" => fo.finished = Some(ev.clone()),
            _ => {}
        }
    }
    fo
}

/// Entries are numbered 1, 2, 3 ... with no gap.
fn assert_contiguous(entries: &[Value]) {
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(
            e["seq"].as_u64(),
            Some(i as u64 + 1),
            "seq gap at entry {i}"
        );
        assert!(e["unix_ms"].as_u64().is_some(), "{e}");
    }
}

/// The exact event grammar of an auto-approved built-in session:
/// baseline, then per iteration [profiled] proposed decided evaluated guard reflected,
/// then finished.
fn assert_grammar(entries: &[Value]) {
    let k = kinds(entries);
    assert_eq!(k.first().map(String::as_str), Some("baseline"), "{k:?}");
    assert_eq!(k.last().map(String::as_str), Some("finished"), "{k:?}");
    let mut i = 1;
    let mut it = 1;
    while i + 1 < k.len() {
        if k[i] == "profiled" {
            assert_eq!(iter_of(&entries[i]), Some(it), "profile of iteration {it}");
            i += 1;
        }
        let got: Vec<&str> = k[i..(i + KEYS.len()).min(k.len())]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(got, KEYS, "iteration {it} at entry {i}: {k:?}");
        for e in &entries[i..i + KEYS.len()] {
            assert_eq!(iter_of(e), Some(it), "{e}");
        }
        i += KEYS.len();
        it += 1;
    }
    assert_eq!(i, k.len() - 1, "{k:?}");
}

/// The summary agrees with what the file says.
fn assert_summary_matches(sum: &Value, fo: &Fold) {
    let fin = fo.finished.as_ref().expect("a finished event");
    assert_eq!(sum["finished"], fin["reason"], "{sum}");
    assert_eq!(f(&sum["ppl"]), fo.ppl(), "{sum}");
    assert_eq!(f(&fin["ppl"]), fo.ppl(), "{fin}");
    assert_eq!(f(&sum["dense_ppl"]), fo.dense_ppl, "{sum}");
    assert!(
        (f(&sum["global_sparsity"]) - fo.global()).abs() < 1e-12,
        "{sum}"
    );
    assert!(
        (f(&fin["global_sparsity"]) - fo.global()).abs() < 1e-12,
        "{fin}"
    );
    assert_eq!(
        sum["rollbacks"].as_u64(),
        Some(fo.rollbacks() as u64),
        "{sum}"
    );
    assert_eq!(
        sum["iterations"].as_u64(),
        Some(fo.verdicts.len() as u64),
        "{sum}"
    );
}

/// Total parameters and the largest layer, for bounds on what one iteration can prune.
fn largest_step_gain(fo: &Fold, header: &Value) -> f64 {
    let b = &header["options"]["loop"]["bounds"];
    let total: f64 = fo.params.values().sum();
    let biggest = fo.params.values().cloned().fold(0.0, f64::max);
    b["max_layers"].as_f64().unwrap() * f(&b["max_step"]) * biggest / total
}

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
    for ev in events(&entries, "evaluated") {
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

// ---------------------------------------------------------------------------------------
// 3. export
// ---------------------------------------------------------------------------------------

fn eval_ppl(env: &Env, model: &str, text: &str) -> Value {
    let v = ok_json(&env.run(&[
        "eval",
        "--model",
        model,
        "--ppl",
        text,
        "--seqlen",
        "64",
        "--max-windows",
        "4",
        "--batch",
        "2",
        "--json",
    ]));
    v["ppl"].clone()
}

fn load_f32(path: &Path) -> std::collections::HashMap<String, Vec<f32>> {
    let t = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    t.into_iter()
        .map(|(k, v)| {
            let v = v
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (k, v)
        })
        .collect()
}

/// Three auto-approved iterations on a Hugging Face fixture; the summary line.
fn fixture_session(env: &Env, s: &Path, model: &str, text: &str) -> Value {
    ok_json(&env.session(
        s,
        &[
            "--model",
            model,
            "--calib",
            text,
            "--eval",
            text,
            "--batch",
            "2",
            "--auto-approve",
            "--max-iters",
            "3",
            "--json",
        ],
    ))
}

#[test]
fn export_evaluates_to_the_final_checkpoint_and_stores_the_masks_as_zeros() {
    let env = Env::new();
    let (model, text) = (fx("qwen3"), fx("eval.txt"));
    let s = env.path("s.yaml");
    let sum = fixture_session(&env, &s, &model, &text);
    let (h, entries) = session_docs(&s);
    let fo = fold(&h, &entries);
    assert_summary_matches(&sum, &fo);
    assert!(fo.checkpoints.len() > 1, "no step was accepted: {sum}");
    // The same protocol outside the session gives the recorded dense perplexity ...
    let dense = eval_ppl(&env, &model, &text);
    assert_eq!(dense["windows"], 4);
    assert_eq!(f(&dense["value"]), fo.dense_ppl, "dense {dense} vs session");
    // ... and the exported model gives the final checkpoint's.
    let out = env.path("exported");
    ok(&env.run(&["export", &p(&s), "--out", &p(&out)]));
    let pruned = eval_ppl(&env, &p(&out), &text);
    assert_eq!(
        f(&pruned["value"]),
        fo.ppl(),
        "exported {pruned} vs session"
    );
    assert_ne!(fo.ppl(), fo.dense_ppl);
    // Zeros exactly where pruned: the fraction per layer is the recorded sparsity, and every
    // kept weight is the dense one.
    let dense_w = load_f32(&Path::new(&model).join("model.safetensors"));
    let pruned_w = load_f32(&out.join("model.safetensors"));
    let mut pruned_layers = 0;
    for (name, s_rec) in fo.sparsity() {
        let key = format!("{name}.weight");
        let (d, w) = (&dense_w[&key], &pruned_w[&key]);
        assert_eq!(d.len(), w.len(), "{key}");
        assert_eq!(
            d.iter().filter(|x| **x == 0.0).count(),
            0,
            "{key} has dense zeros"
        );
        let zeros = w.iter().filter(|x| **x == 0.0).count();
        let frac = zeros as f64 / w.len() as f64;
        assert!(
            (frac - s_rec).abs() < 1e-9,
            "{key}: {zeros} zeros = {frac}, recorded {s_rec}"
        );
        for (a, b) in d.iter().zip(w) {
            assert!(*b == 0.0 || a == b, "{key}: a kept weight changed");
        }
        pruned_layers += (zeros > 0) as usize;
    }
    assert!(pruned_layers > 0);
    let meta: Value = json_exact(&std::fs::read_to_string(out.join("arborist.json")).unwrap());
    assert!(
        (f(&meta["global_sparsity"]) - fo.global()).abs() < 1e-12,
        "{meta}"
    );
}

#[test]
fn export_step_n_writes_an_earlier_checkpoint() {
    let env = Env::new();
    let (model, text) = (fx("qwen3"), fx("eval.txt"));
    let s = env.path("s.yaml");
    fixture_session(&env, &s, &model, &text);
    let (h, entries) = session_docs(&s);
    let fo = fold(&h, &entries);
    assert!(fo.checkpoints.len() > 2, "needs two accepted steps");
    let out = env.path("step1");
    ok(&env.run(&["export", &p(&s), "--out", &p(&out), "--step", "1"]));
    let v = eval_ppl(&env, &p(&out), &text);
    assert_eq!(f(&v["value"]), fo.checkpoints[1].1);
    // A step the session never reached is refused (it used to export the last one).
    let beyond = env.path("step99");
    let r = env.run(&["export", &p(&s), "--out", &p(&beyond), "--step", "99"]);
    one_error_line(&r, &["--step 99", "finished iteration"]);
    assert!(!beyond.exists());
}

// A second process on a session that one holds is refused before it loads anything,
// option flags with --resume are refused, and a signal names the file to resume.
#[test]
fn resume_is_refused_while_held_or_with_option_flags_and_signals_say_where() {
    let env = Env::new();
    let (s, _, entries, _, _) = reference(&env, "ref.yaml");
    let cut = env.path("cut.yaml");
    cut_inside(&s, &cut, entry_index(&entries, "proposed", 2));
    let held = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
    held.try_lock().unwrap();
    let r = env.resume(&cut);
    one_error_line(&r, &[&p(&cut), "open in another arborist process"]);
    drop(held);
    for flag in [
        ["--seqlen", "64"],
        ["--max-iters", "9"],
        ["--target", "0.1"],
    ] {
        let mut args = vec!["run", "--headless", "--auto-approve", "--session"];
        let cp = p(&cut);
        args.extend([cp.as_str(), "--resume"]);
        args.extend(flag);
        let r = env.run(&args);
        one_error_line(&r, &[flag[0], "keeps the options in its header"]);
    }
    // SIGTERM while the resumed run computes: the default exit, after one line on where
    // the session is.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"));
    c.args([
        "run",
        "--headless",
        "--auto-approve",
        "--session",
        &p(&cut),
        "--resume",
    ])
    .env("ARBORIST_CACHE", &env.cache)
    .current_dir(env.work())
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let docs = count_docs(&cut);
    let t0 = std::time::Instant::now();
    while count_docs(&cut) <= docs {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the signal"
        );
        assert!(t0.elapsed() < LIMIT, "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stopped by a signal")
            && err.contains(&format!("--session {} --resume", p(&cut))),
        "{err}"
    );
    // What it left resumes to the reference's end.
    ok_json(&env.resume(&cut));
    let r = env.resume(&cut);
    assert!(r.stderr.contains("had already finished"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------
// 4. Crash and --resume
// ---------------------------------------------------------------------------------------

const RESUME_ITERS: &str = "4";

/// A complete reference run: (file, header, entries, fold, summary).
fn reference(env: &Env, name: &str) -> (PathBuf, Value, Vec<Value>, Fold, Value) {
    let s = env.path(name);
    let sum = ok_json(&env.session(
        &s,
        &["--auto-approve", "--max-iters", RESUME_ITERS, "--json"],
    ));
    let (h, entries) = session_docs(&s);
    let fo = fold(&h, &entries);
    assert_grammar(&entries);
    (s, h, entries, fo, sum)
}

/// The resumed session equals the reference in every event kind, verdict and number.
fn assert_same_session(resumed: &Path, sum: &Value, reference: &[Value], ref_fold: &Fold) {
    let (h, entries) = session_docs(resumed);
    assert_contiguous(&entries);
    assert_eq!(kinds(&entries), kinds(reference), "event sequence differs");
    let fo = fold(&h, &entries);
    assert_summary_matches(sum, &fo);
    assert_eq!(fo.verdicts, ref_fold.verdicts);
    assert_eq!(fo.global(), ref_fold.global());
    assert_eq!(fo.ppl(), ref_fold.ppl());
    assert_eq!(fo.sparsity(), ref_fold.sparsity());
    for (a, b) in events(&entries, "evaluated")
        .iter()
        .zip(events(reference, "evaluated"))
    {
        assert_eq!(a["applied"], b["applied"]);
        assert_eq!(a["eval"]["ppl"], b["eval"]["ppl"]);
    }
    for (a, b) in events(&entries, "proposed")
        .iter()
        .zip(events(reference, "proposed"))
    {
        assert_eq!(a["reply"]["value"], b["reply"]["value"]);
    }
}

/// Copy `src` cut in the middle of entry `k` (a torn write).
fn cut_inside(src: &Path, dst: &Path, k: usize) {
    let text = std::fs::read(src).unwrap();
    let starts = doc_starts(std::str::from_utf8(&text).unwrap());
    let (a, b) = (starts[k + 1], *starts.get(k + 2).unwrap_or(&text.len()));
    std::fs::write(dst, &text[..a + (b - a) / 2]).unwrap();
}

fn entry_index(entries: &[Value], k: &str, iteration: u64) -> usize {
    entries
        .iter()
        .position(|e| kind(e) == k && iter_of(e) == Some(iteration))
        .unwrap_or_else(|| panic!("no {k} at iteration {iteration}"))
}

#[test]
fn resume_after_a_torn_input_event_matches_the_reference() {
    let env = Env::new();
    let (s, _, entries, fo, _) = reference(&env, "ref.yaml");
    let mut cases = Vec::new();
    for k in ["profiled", "proposed", "decided", "evaluated", "reflected"] {
        cases.push((k, entry_index(&entries, k, 2)));
    }
    cases.push(("baseline", 0));
    for (k, idx) in cases {
        let cut = env.path(&format!("cut-{k}.yaml"));
        cut_inside(&s, &cut, idx);
        let r = env.resume(&cut);
        let sum = ok_json(&r);
        assert!(
            r.stderr.contains("resumed"),
            "cut inside {k}: no resume notice: {}",
            r.stderr
        );
        assert_same_session(&cut, &sum, &entries, &fo);
        let v = ok_json(&env.run(&["replay", &p(&cut), "--verify", "--json"]));
        assert_eq!(v["ok"], true, "cut inside {k}: {v}");
        assert_eq!(v["bit_exact"], true, "cut inside {k}: {v}");
    }
}

#[test]
fn resume_after_a_torn_guard_event_matches_the_reference() {
    let env = Env::new();
    let (s, _, entries, fo, _) = reference(&env, "ref.yaml");
    let cut = env.path("cut-guard.yaml");
    cut_inside(&s, &cut, entry_index(&entries, "guard", 2));
    let sum = ok_json(&env.resume(&cut));
    assert_same_session(&cut, &sum, &entries, &fo);
    let v = ok_json(&env.run(&["replay", &p(&cut), "--verify", "--json"]));
    assert_eq!(v["ok"], true, "{v}");
}

// A header whose agent timeout is 0 (accepted before the flag was checked): replay and
// export never reach the agent, so they read it; a resume names the flag that replaces it.
#[test]
fn a_header_timeout_of_zero_blocks_only_a_resume() {
    let env = Env::new();
    let s = env.path("zero.yaml");
    ok_json(&env.session(&s, &["--auto-approve", "--max-iters", "1", "--json"]));
    let text = std::fs::read_to_string(&s).unwrap();
    let llm =
        "backend: openai\n    model: m\n    base_url: null\n    prompts: null\n    timeout_s: 0";
    let edited = text.replacen(
        "backend: builtin\n    model: null\n    base_url: null\n    prompts: null\n    timeout_s: null",
        llm,
        1,
    );
    assert_ne!(
        edited,
        text,
        "the header's agent section moved: {}",
        &text[..600]
    );
    std::fs::write(&s, edited).unwrap();
    ok(&env.run(&["replay", &p(&s), "--headless"]));
    let out = env.path("exported");
    ok(&env.run(&["export", &p(&s), "--out", &p(&out)]));
    let r = env.resume(&s);
    one_error_line(&r, &["agent-timeout 0", "--agent-timeout N"]);
}

#[test]
fn resume_of_a_done_session_returns() {
    let env = Env::new();
    let (s, _, entries, fo, _) = reference(&env, "ref.yaml");
    // Torn `finished`: the file must end with it again, as in the reference.
    let cut = env.path("cut-finished.yaml");
    cut_inside(&s, &cut, entries.len() - 1);
    let r = env.run_limit(
        &[
            "run",
            "--headless",
            "--auto-approve",
            "--session",
            &p(&cut),
            "--resume",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert!(
        !r.timed_out,
        "--resume after a torn `finished` hangs: {}",
        r.stderr
    );
    let sum = ok_json(&r);
    assert_same_session(&cut, &sum, &entries, &fo);
    // An already finished session: an answer, not a hang, and the file unchanged.
    let before = std::fs::read(&s).unwrap();
    let r = env.run_limit(
        &[
            "run",
            "--headless",
            "--auto-approve",
            "--session",
            &p(&s),
            "--resume",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert!(
        !r.timed_out,
        "--resume of a finished session hangs: {}",
        r.stderr
    );
    assert!(matches!(r.code, Some(0) | Some(1)), "{}", r.stderr);
    assert_eq!(std::fs::read(&s).unwrap(), before);
}

fn count_docs(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| doc_starts(&t).len())
        .unwrap_or(0)
}

#[test]
fn resume_after_kill_9_matches_the_reference() {
    let env = Env::new();
    let (_, _, entries, fo, _) = reference(&env, "ref.yaml");
    // Kill while the next compute job runs: just after a `reflected` was written (a profile
    // follows), so the kill never lands between an evaluation and its guard.
    let points: Vec<usize> = [1u64, 3]
        .iter()
        .map(|&it| entry_index(&entries, "reflected", it) + 2) // header + entries up to it
        .collect();
    for (n, docs) in points.into_iter().enumerate() {
        let s = env.path(&format!("killed-{n}.yaml"));
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"));
        c.args(["run", "--headless", "--auto-approve", "--session", &p(&s)])
            .args(SMALL)
            .args(["--max-iters", RESUME_ITERS])
            .env("ARBORIST_CACHE", &env.cache)
            .current_dir(env.work())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        let t0 = std::time::Instant::now();
        while count_docs(&s) < docs {
            assert!(
                child.try_wait().unwrap().is_none(),
                "finished before the kill"
            );
            assert!(t0.elapsed() < LIMIT, "no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let left = count_docs(&s);
        assert!(
            left < entries.len() + 1,
            "killed too late ({left} documents)"
        );
        let sum = ok_json(&env.resume(&s));
        assert_same_session(&s, &sum, &entries, &fo);
    }
}

#[test]
fn resume_with_the_same_decisions_file() {
    let env = Env::new();
    let dec = env.input(
        "d.yaml",
        "- iteration: 1\n  action: edit\n  layers:\n  - name: model.layers.0.self_attn.q_proj\n    sparsity: 0.05\n- iteration: 3\n  action: approve\n",
    );
    let args = [
        "--auto-approve",
        "--decisions",
        &p(&dec),
        "--max-iters",
        "3",
        "--json",
    ];
    let s = env.path("ref.yaml");
    ok_json(&env.session(&s, &args));
    let (h, entries) = session_docs(&s);
    let fo = fold(&h, &entries);
    let cut = env.path("cut.yaml");
    cut_inside(&s, &cut, entry_index(&entries, "proposed", 2));
    let sum = ok_json(&env.run(&[
        "run",
        "--headless",
        "--auto-approve",
        "--decisions",
        &p(&dec),
        "--session",
        &p(&cut),
        "--resume",
        "--json",
    ]));
    let (_, resumed) = session_docs(&cut);
    assert_eq!(kinds(&resumed), kinds(&entries));
    let rf = fold(&h, &resumed);
    assert_summary_matches(&sum, &rf);
    assert_eq!(rf.verdicts, fo.verdicts);
    assert_eq!(rf.ppl(), fo.ppl());
}

// ---------------------------------------------------------------------------------------
// 5. Scripted decisions
// ---------------------------------------------------------------------------------------

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
        let line = one_error_line(&r, &[name]);
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

// ---------------------------------------------------------------------------------------
// 6. The guard
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
    if fo.checkpoints.len() > 1 {
        let out = env.path("exported");
        ok(&env.run(&["export", &p(&s), "--out", &p(&out)]));
        let meta: Value = json_exact(&std::fs::read_to_string(out.join("arborist.json")).unwrap());
        assert_eq!(f(&meta["eval"]["ppl"]), fo.ppl());
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
// 7. Bad input
// ---------------------------------------------------------------------------------------

#[test]
fn bad_input_is_one_line_and_leaves_no_session() {
    let env = Env::new();
    let s = p(&env.path("s.yaml"));
    let missing = p(&env.dir.path().join("no-such-model"));
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
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
