//! The session's MMLU knowledge probe: its prompt spelling is a recorded option, and its
//! scores are those of `arborist eval` with the same protocol.

mod common;
use common::*;
use std::path::Path;

/// `arborist eval` of an MMLU set, first `limit` items per subject, in batches of 8
/// prompts as the probe runs them.
fn eval_accuracy(
    mmlu: &Path,
    cwd: &Path,
    cache: &str,
    shots: &str,
    limit: &str,
    prompt: &str,
) -> f64 {
    let args = [
        "eval",
        "--model",
        "bundled",
        "--mmlu",
        &p(mmlu),
        "--shots",
        shots,
        "--limit",
        limit,
        "--mmlu-prompt",
        prompt,
        "--batch",
        "8",
        "--json",
    ];
    let v = ok_json(&arborist_timed(
        &args,
        &[("ARBORIST_CACHE", cache)],
        cwd,
        LIMIT,
    ));
    assert_eq!(v["mmlu"]["prompt"], prompt);
    v["mmlu"]["accuracy"].as_f64().unwrap()
}

/// The bundled MMLU set with every test question padded by tabs, which lm-eval's spelling
/// strips and Hendrycks' keeps: the two prompts then score differently on the bundled
/// model (on the set as it is they agree, and a probe that ignored the option passed).
fn tab_padded_mmlu(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/bundled/data/mmlu");
    let out = dir.join("mmlu-tabs");
    for split in ["dev", "test"] {
        std::fs::create_dir_all(out.join(split)).unwrap();
        for f in std::fs::read_dir(src.join(split)).unwrap() {
            let f = f.unwrap().path();
            let mut text = std::fs::read_to_string(&f).unwrap();
            if split == "test" {
                // Every line opens with the quoted question.
                let pad = "\t".repeat(8);
                text = text
                    .lines()
                    .map(|l| {
                        let (q, rest) = l[1..].split_once("\",").unwrap();
                        format!("\"{pad}{q}{pad}\",{rest}\n")
                    })
                    .collect();
            }
            std::fs::write(out.join(split).join(f.file_name().unwrap()), text).unwrap();
        }
    }
    out
}

#[test]
fn the_mmlu_probe_records_its_prompt_and_scores_as_eval_does() {
    let dir = tmp();
    let cache = p(&dir.path().join("cache"));
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mmlu = tab_padded_mmlu(dir.path());
    let mp = p(&mmlu);
    let mut scores = Vec::new();
    for prompt in ["hendrycks", "lm-eval"] {
        let s = format!("{prompt}.yaml");
        let mut a = vec!["run", "--headless", "--auto-approve", "--session", &s];
        a.extend(SMALL);
        a.extend([
            "--probe",
            "mmlu",
            "--probe-file",
            &mp,
            "--probe-limit",
            "3",
            "--mmlu-prompt",
            prompt,
            "--max-iters",
            "1",
            "--json",
        ]);
        let sum = ok_json(&arborist_timed(
            &a,
            &[("ARBORIST_CACHE", &cache)],
            &work,
            LIMIT,
        ));
        let (h, _) = session_docs(&work.join(&s));
        let probe = &h["options"]["probe"];
        assert_eq!(probe["kind"], "mmlu");
        assert_eq!(probe["mmlu_prompt"], prompt);
        // The dense model's probe is `eval`'s 0-shot accuracy on the same items.
        let dense = eval_accuracy(&mmlu, &work, &cache, "0", "3", prompt);
        assert_eq!(sum["probe_dense"]["accuracy"].as_f64().unwrap(), dense);
        assert_eq!(sum["probe_dense"]["items"], 18);
        // The summary names the probe's protocol beside its accuracies.
        assert_eq!(sum["probe"], *probe, "{sum}");
        scores.push(dense);
    }
    // Otherwise a probe that ignored the option would pass.
    assert_ne!(scores[0], scores[1], "the two spellings score alike here");
    // Without an MMLU probe the flag has nothing to set.
    for extra in [&[][..], &["--probe", "freebaseqa"][..]] {
        let mut a = vec!["run", "--headless", "--auto-approve", "--session", "x.yaml"];
        a.extend(SMALL);
        a.extend(extra);
        a.extend(["--mmlu-prompt", "lm-eval"]);
        let r = arborist_timed(&a, &[("ARBORIST_CACHE", &cache)], &work, LIMIT);
        assert_ne!(r.code, Some(0));
        assert_eq!(r.error_lines().len(), 1, "{}", r.stderr);
        assert!(r.stderr.contains("--mmlu-prompt") && r.stderr.contains("--probe mmlu"));
        assert!(!work.join("x.yaml").exists());
    }
}

/// A one-iteration session in `dir`/work (`s.yaml`) with a FreebaseQA probe read from
/// `probe`, a copy of the bundled set made here; returns a runner of more commands there.
fn probe_session<'a>(dir: &'a tempfile::TempDir, probe: &Path) -> impl Fn(&[&str]) -> Ran + 'a {
    let cache = p(&dir.path().join("cache"));
    let work = dir.path().join("work");
    std::fs::create_dir_all(probe.parent().unwrap()).unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/bundled/data/freebaseqa.json");
    std::fs::copy(bundled, probe).unwrap();
    let run =
        move |args: &[&str]| arborist_timed(args, &[("ARBORIST_CACHE", &cache)], &work, LIMIT);
    let mut a = vec!["run", "--headless", "--auto-approve", "--session", "s.yaml"];
    a.extend(SMALL);
    let pp = p(probe);
    a.extend([
        "--probe",
        "freebaseqa",
        "--probe-file",
        &pp,
        "--probe-limit",
        "5",
    ]);
    a.extend(["--max-iters", "1", "--json"]);
    ok_json(&run(&a));
    run
}

/// The header records a hash of the probe's items; replaying (or resuming) with a probe
/// file whose items changed is refused in one line naming it, as the texts are.
#[test]
fn a_changed_probe_file_is_refused_by_its_hash() {
    let dir = tmp();
    let work = dir.path().join("work");
    let probe = work.join("fq.json");
    let run = probe_session(&dir, &probe);
    let text = std::fs::read_to_string(&probe).unwrap();
    let pp = p(&probe);
    let (h, _) = session_docs(&work.join("s.yaml"));
    let hash = h["data"]["probe"].as_str().unwrap().to_string();
    assert!(hash.starts_with("fnv1a64-items:"), "{h:?}");
    let verify = ["replay", "s.yaml", "--verify"];
    assert_eq!(run(&verify).code, Some(0));
    // An edited accuracy is reported with both numbers (each read NaN until 2026-12-02).
    let (_, entries) = session_docs(&work.join("s.yaml"));
    let dense = entries[0]["event"]["eval"]["probe"]["accuracy"]
        .as_f64()
        .unwrap();
    let session = std::fs::read_to_string(work.join("s.yaml")).unwrap();
    let at = session.find("\n      accuracy: ").unwrap() + 1;
    let end = at + session[at..].find('\n').unwrap();
    let edited = format!("{}      accuracy: 0.125{}", &session[..at], &session[end..]);
    std::fs::write(work.join("edited.yaml"), edited).unwrap();
    let r = run(&["replay", "edited.yaml", "--verify", "--json"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ok"] == false)
        .unwrap_or_else(|| panic!("no failed check: {v}"));
    assert_eq!(check["what"], "baseline probe accuracy", "{check}");
    assert_eq!(check["recorded"].as_f64(), Some(0.125), "{check}");
    assert_eq!(check["recomputed"].as_f64(), Some(dense), "{check}");
    // The first question, which the probe scores, reworded.
    let key = "\"RawQuestion\": \"";
    let at = text.find(key).unwrap() + key.len();
    std::fs::write(&probe, format!("{}Say, {}", &text[..at], &text[at..])).unwrap();
    let r = run(&verify);
    assert_ne!(r.code, Some(0));
    let lines = r.error_lines();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    for needle in ["--probe-file items", &pp, "differ", &hash] {
        assert!(lines[0].contains(needle), "{needle}: {}", r.stderr);
    }
}

/// A colleague's probe file sits elsewhere here: `replay --verify` says which flag gives
/// its place, and with `--probe-file` at the new path verifies the recorded probe scores bit
/// for bit (the file is accepted by its items' hash, not its path).
#[test]
fn a_moved_probe_file_is_given_with_probe_file() {
    let dir = tmp();
    let work = dir.path().join("work");
    let recorded = work.join("theirs/fq.json");
    let run = probe_session(&dir, &recorded);
    let rp = p(&recorded);
    let (_, entries) = session_docs(&work.join("s.yaml"));
    let probes = entries
        .iter()
        .filter(|e| e["event"]["eval"]["probe"]["accuracy"].is_number())
        .count();
    assert!(probes >= 2, "the baseline and the step carry probe scores");

    let mine = work.join("mine.json");
    std::fs::rename(&recorded, &mine).unwrap();
    let r = run(&["replay", "s.yaml", "--verify"]);
    assert_ne!(r.code, Some(0));
    let lines = r.error_lines();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    for needle in [rp.as_str(), "is not on this machine", "--probe-file"] {
        assert!(lines[0].contains(needle), "{needle}: {}", r.stderr);
    }
    let mp = p(&mine);
    let r = run(&[
        "replay",
        "s.yaml",
        "--verify",
        "--probe-file",
        &mp,
        "--json",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (&v["ok"], &v["bit_exact"]),
        (&true.into(), &true.into()),
        "{v}"
    );
}

// During a long probe the status bar kept the evaluation's last count ("evaluating 31/31
// windows"), as if stuck: the engine now names the stage when the probe starts.
#[test]
fn the_engine_names_the_probe_stage_when_it_starts() {
    use arborist::session::{ProbeSpec, RunOptions};
    let dir = tempfile::tempdir().unwrap();
    arborist::model::bundled::write_files(dir.path()).unwrap();
    let data = |f: &str| Some(p(&dir.path().join("data").join(f)));
    let mut o = RunOptions {
        model: p(dir.path()),
        calib: data("calib.txt"),
        eval: data("eval.txt"),
        seqlen: Some(64),
        calib_windows: 2,
        eval_windows: 2,
        ..RunOptions::default()
    };
    o.probe = Some(ProbeSpec {
        kind: "freebaseqa".into(),
        file: data("freebaseqa.json"),
        limit: 2,
        ..ProbeSpec::default()
    });
    let files = arborist::model::ModelFiles::resolve(&o.model).unwrap();
    let mut engine = arborist::worker::launch::load_engine(files, &o).unwrap();
    let stages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = stages.clone();
    engine.on_stage = Some(Box::new(move |s: &str| seen.lock().unwrap().push(s.into())));
    let mut windows = 0;
    engine.baseline(&mut |done, _| windows = done).unwrap();
    assert_eq!(windows, 2);
    assert_eq!(*stages.lock().unwrap(), ["running the FreebaseQA probe"]);
}
