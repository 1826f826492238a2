//! What the headless session tests share: an isolated working environment, the session
//! recomputed from its events (`Fold`), and the assertions on errors and event grammar.
#![allow(dead_code)]

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const KEYS: [&str; 5] = ["proposed", "decided", "evaluated", "guard", "reflected"];

/// A temp dir with its own ARBORIST_CACHE (`cache/`), a working directory for the child
/// (`work/`, where sessions go) and a place for inputs (`in/`).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub cache: String,
}

impl Env {
    pub fn new() -> Env {
        let dir = tmp();
        for d in ["cache", "work", "in"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let cache = p(&dir.path().join("cache"));
        Env { dir, cache }
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// A path under work/.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work().join(name)
    }

    /// A file under in/ with `text`.
    pub fn input(&self, name: &str, text: &str) -> PathBuf {
        let f = self.dir.path().join("in").join(name);
        std::fs::write(&f, text).unwrap();
        f
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        self.run_limit(args, LIMIT)
    }

    pub fn run_limit(&self, args: &[&str], limit: Duration) -> Ran {
        arborist_timed(
            args,
            &[("ARBORIST_CACHE", &self.cache)],
            &self.work(),
            limit,
        )
    }

    /// `run --headless --session S` with the small protocol and `extra`.
    pub fn session(&self, session: &Path, extra: &[&str]) -> Ran {
        let s = p(session);
        let mut a = vec!["run", "--headless", "--session", s.as_str()];
        a.extend(SMALL);
        a.extend(extra);
        self.run(&a)
    }

    /// `run --headless --auto-approve --session S --resume --json`.
    pub fn resume(&self, session: &Path) -> Ran {
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
    pub fn leftovers(&self) -> Vec<String> {
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

/// Exit 1, one `error:` line holding every needle, no panic, nothing on stdout.
pub fn one_error_line(r: &Ran, needles: &[&str]) -> String {
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
pub fn only_one_line(r: &Ran, needles: &[&str]) {
    one_error_line(r, needles);
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "more than one line: {}",
        r.stderr
    );
}

pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

pub fn kind(e: &Value) -> &str {
    e["event"]["event"].as_str().unwrap()
}

pub fn iter_of(e: &Value) -> Option<u64> {
    e["event"]["iteration"].as_u64()
}

pub fn events<'a>(entries: &'a [Value], k: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| kind(e) == k)
        .map(|e| &e["event"])
        .collect()
}

pub fn kinds(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| kind(e).to_string()).collect()
}

pub fn as_map(v: &Value) -> BTreeMap<String, f64> {
    v.as_object()
        .unwrap_or_else(|| panic!("not a map: {v}"))
        .iter()
        .map(|(k, x)| (k.clone(), f(x)))
        .collect()
}

/// The session recomputed from its events alone, with the guard's rule checked on the way.
#[derive(Debug, Clone)]
pub struct Fold {
    pub params: BTreeMap<String, f64>,
    pub dense_ppl: f64,
    /// Accepted checkpoints: (iteration, ppl, per-layer sparsity); [0] is the baseline.
    pub checkpoints: Vec<(u64, f64, BTreeMap<String, f64>)>,
    /// (iteration, accepted) per guard event.
    pub verdicts: Vec<(u64, bool)>,
    pub finished: Option<Value>,
}

impl Fold {
    pub fn sparsity(&self) -> &BTreeMap<String, f64> {
        &self.checkpoints.last().unwrap().2
    }

    pub fn ppl(&self) -> f64 {
        self.checkpoints.last().unwrap().1
    }

    pub fn global_of(&self, s: &BTreeMap<String, f64>) -> f64 {
        let total: f64 = self.params.values().sum();
        self.params
            .iter()
            .map(|(n, w)| s.get(n).copied().unwrap_or(0.0) * w)
            .sum::<f64>()
            / total
    }

    pub fn global(&self) -> f64 {
        self.global_of(self.sparsity())
    }

    pub fn rollbacks(&self) -> usize {
        self.verdicts.iter().filter(|v| !v.1).count()
    }
}

pub fn fold(header: &Value, entries: &[Value]) -> Fold {
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
pub fn assert_contiguous(entries: &[Value]) {
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
pub fn assert_grammar(entries: &[Value]) {
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
pub fn assert_summary_matches(sum: &Value, fo: &Fold) {
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
        sum["steps_evaluated"].as_u64(),
        Some(fo.verdicts.len() as u64),
        "{sum}"
    );
    // The `finished` event names the iteration that did not run (or did not end).
    let next = fin["iteration"]
        .as_u64()
        .expect("finished names an iteration");
    assert_eq!(sum["iterations"].as_u64(), Some(next - 1), "{sum}");
    assert!(next > fo.verdicts.len() as u64, "{sum}");
}

/// Total parameters and the largest layer, for bounds on what one iteration can prune.
pub fn largest_step_gain(fo: &Fold, header: &Value) -> f64 {
    let b = &header["options"]["loop"]["bounds"];
    let total: f64 = fo.params.values().sum();
    let biggest = fo.params.values().cloned().fold(0.0, f64::max);
    b["max_layers"].as_f64().unwrap() * f(&b["max_step"]) * biggest / total
}

/// Copy `src` cut in the middle of entry `k` (a torn write).
pub fn cut_inside(src: &Path, dst: &Path, k: usize) {
    let text = std::fs::read(src).unwrap();
    let starts = doc_starts(std::str::from_utf8(&text).unwrap());
    let (a, b) = (starts[k + 1], *starts.get(k + 2).unwrap_or(&text.len()));
    std::fs::write(dst, &text[..a + (b - a) / 2]).unwrap();
}

/// A copy of the bundled model's files (config, tokenizer, weights) in `dir`.
pub fn copy_bundled_model(dir: &Path) {
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/bundled");
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(bundled.join(f), dir.join(f)).unwrap();
    }
}

/// Flip 2048 bytes of `dir/model.safetensors` in the middle of the widest gap between
/// the chunks the session fingerprint samples: the weights change, the fingerprint not.
pub fn flip_between_fingerprint_samples(dir: &Path) {
    let weights = dir.join("model.safetensors");
    let fingerprint = || {
        arborist::session::file::fingerprint(
            &dir.join("config.json"),
            std::slice::from_ref(&weights),
        )
        .unwrap()
    };
    let before = fingerprint();
    let mut bytes = std::fs::read(&weights).unwrap();
    let (len, chunk) = (bytes.len(), 65536usize);
    let starts: Vec<usize> = (0..16).map(|k| (len - chunk) * k / 15).collect();
    let (gap_start, gap_end) = starts
        .windows(2)
        .map(|w| (w[0] + chunk, w[1]))
        .max_by_key(|(a, b)| b.saturating_sub(*a))
        .unwrap();
    assert!(gap_end > gap_start + 4096, "no gap between the samples");
    let mid = (gap_start + gap_end) / 2;
    for b in &mut bytes[mid - 1024..mid + 1024] {
        *b ^= 0x80;
    }
    std::fs::write(&weights, &bytes).unwrap();
    assert_eq!(
        fingerprint(),
        before,
        "the change should keep the fingerprint"
    );
}
