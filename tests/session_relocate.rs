//! A colleague's session names the paths of their machine. `replay --verify`, `export` and
//! `run --resume` take `--model`, `--calib`, `--eval` (and `--probe-file`) for where the
//! same files are here, checked against the header's fingerprint and data hashes.
//!
//! Every expected number is computed here from the session file or from an independent
//! `arborist eval`, never copied from an earlier run.

mod common;
mod session_support;
use common::*;
use session_support::*;
use std::path::Path;

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap().path();
        std::fs::copy(&e, dst.join(e.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_session_whose_files_moved_verifies_exports_and_resumes_from_their_new_paths() {
    let env = Env::new();
    let recorded = env.dir.path().join("in");
    copy_dir(Path::new(&fx("qwen3")), &recorded.join("model"));
    let text = std::fs::read_to_string(fx("eval.txt")).unwrap();
    let t = env.input("text.txt", &text);
    let s = env.path("s.yaml");
    ok_json(&env.session(
        &s,
        &[
            "--model",
            &p(&recorded.join("model")),
            "--calib",
            &p(&t),
            "--eval",
            &p(&t),
            "--auto-approve",
            "--max-iters",
            "3",
            "--json",
        ],
    ));
    let (h, entries) = session_docs(&s);
    let fo = fold(&h, &entries);
    assert!(fo.checkpoints.len() > 1, "no step was accepted");

    // The files move: the paths in the header name nothing now.
    let here = env.dir.path().join("here");
    std::fs::rename(&recorded, &here).unwrap();
    let (model, t) = (p(&here.join("model")), p(&here.join("text.txt")));
    let moved = ["--model", &model, "--calib", &t, "--eval", &t];
    one_error_line(
        &env.run(&["replay", "--verify", &p(&s)]),
        &[
            "are not on this machine",
            "give --model DIR, --calib FILE, --eval FILE where they are",
        ],
    );

    let with = |head: &[&str], flags: &[&str], tail: &[&str]| {
        let mut a = head.to_vec();
        a.extend(flags);
        a.extend(tail);
        env.run(&a)
    };
    // With the model found, the missing texts are named with their flags, before anything
    // loads, both in one line (a colleague's session took a run for each file).
    one_error_line(
        &env.run(&[
            "export",
            &p(&s),
            "--out",
            &p(&env.path("y")),
            "--model",
            &model,
        ]),
        &[
            "its --calib file",
            "its --eval file",
            "are not on this machine",
            "give --calib FILE, --eval FILE where they are",
        ],
    );
    let v = ok_json(&with(&["replay", "--verify", "--json"], &moved, &[&p(&s)]));
    assert_eq!(
        (v["ok"].clone(), v["bit_exact"].clone()),
        (true.into(), true.into()),
        "{v}"
    );

    let out = env.path("exported");
    ok(&with(&["export", &p(&s), "--out", &p(&out)], &moved, &[]));
    let e = ok_json(&env.run(&[
        "eval",
        "--model",
        &p(&out),
        "--ppl",
        &t,
        "--seqlen",
        "64",
        "--max-windows",
        "4",
        "--json",
    ]));
    assert_eq!(f(&e["ppl"]["value"]), fo.ppl());

    // A file that is not the recorded one is refused, naming it.
    let other = here.join("other.txt");
    std::fs::write(&other, &text[text.len() / 3..]).unwrap();
    let wrong_text = ["--model", &model, "--calib", &p(&other), "--eval", &t];
    one_error_line(
        &with(&["replay", "--verify"], &wrong_text, &[&p(&s)]),
        &["--calib windows read from", "other.txt", "differ"],
    );
    let wrong_model = ["--model", &fx("llama"), "--calib", &t, "--eval", &t];
    one_error_line(
        &with(
            &["export", &p(&s), "--out", &p(&env.path("x"))],
            &wrong_model,
            &[],
        ),
        &["has fingerprint", "the session was recorded on"],
    );
    // Without --verify a replay reads no model: the flag would do nothing.
    one_error_line(
        &env.run(&["replay", "--headless", "--model", &model, &p(&s)]),
        &["--model: a replay without --verify reads no model"],
    );
    one_error_line(
        &with(&["replay", "--verify"], &["--probe-file", &t], &[&p(&s)]),
        &["--probe-file", "recorded without a knowledge probe"],
    );

    // A torn copy resumes from the new paths to the same session.
    let cut = env.path("cut.yaml");
    cut_inside(&s, &cut, entries.len() - 3);
    // A resume without the flags says which one is needed.
    one_error_line(
        &env.run(&[
            "run",
            "--headless",
            "--auto-approve",
            "--session",
            &p(&cut),
            "--resume",
        ]),
        &[
            "are not on this machine",
            "give --model DIR, --calib FILE, --eval FILE where they are",
        ],
    );
    let cut_s = p(&cut);
    let resume = [
        "run",
        "--headless",
        "--auto-approve",
        "--session",
        &cut_s,
        "--resume",
    ];
    let sum = ok_json(&with(&resume, &moved, &["--json"]));
    let (h2, entries2) = session_docs(&cut);
    let fo2 = fold(&h2, &entries2);
    assert_summary_matches(&sum, &fo2);
    assert_eq!(kinds(&entries2), kinds(&entries));
    assert_eq!(fo2.ppl(), fo.ppl());
    assert_eq!(fo2.sparsity(), fo.sparsity());
    // The header keeps the recorded paths: the session still says where it was made.
    assert_eq!(h2["options"]["model"], h["options"]["model"]);
    // A resumed run that stops on an error says how to continue it, moved paths included
    // (the header still names the old ones).
    let last_decided = entries.iter().rposition(|e| kind(e) == "decided").unwrap();
    let n = iter_of(&entries[last_decided]).unwrap();
    let cut2 = env.path("cut2.yaml");
    cut_inside(&s, &cut2, last_decided);
    let dec = env.dir.path().join("here/d.yaml");
    std::fs::write(
        &dec,
        format!("- iteration: {n}\n  action: edit\n  layers:\n  - name: model.layers.99.mlp.up_proj\n    sparsity: 0.05\n"),
    )
    .unwrap();
    let r = with(
        &[
            "run",
            "--headless",
            "--session",
            &p(&cut2),
            "--resume",
            "--decisions",
            &p(&dec),
        ],
        &moved,
        &[],
    );
    one_error_line(
        &r,
        &[
            "model.layers.99.mlp.up_proj",
            &format!(
                "continue with arborist run --session {} --resume --model {model} --calib {t} --eval {t} --headless --decisions {})",
                p(&cut2),
                p(&dec)
            ),
        ],
    );
    // Other options stay the header's.
    one_error_line(
        &with(&resume, &["--seqlen", "32"], &[]),
        &["--seqlen: a resumed session keeps the options in its header"],
    );
}

/// A two-iteration session on the qwen3 fixture copied to `model` (relative to work/),
/// cut three documents short for a resume, then the model directory renamed to `moved`.
fn recorded_then_moved(env: &Env, model: &str, moved: &str) -> (Vec<serde_json::Value>, String) {
    copy_dir(Path::new(&fx("qwen3")), &env.path(model));
    let t = env.input(
        "text.txt",
        &std::fs::read_to_string(fx("eval.txt")).unwrap(),
    );
    let t = p(&t);
    let s = env.path("s.yaml");
    let mut a = vec!["--model", model, "--calib", &t, "--eval", &t];
    a.extend(["--auto-approve", "--max-iters", "2", "--json"]);
    ok_json(&env.session(&s, &a));
    let (_, entries) = session_docs(&s);
    let cut = env.path("cut.yaml");
    cut_inside(&s, &cut, entries.len() - 3);
    let top = |m: &str| env.path(m.split('/').next().unwrap());
    std::fs::rename(top(model), top(moved)).unwrap();
    (entries, p(&cut))
}

/// `run --headless --auto-approve --session CUT --resume` and `extra`.
fn resume_args<'a>(cut: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "run",
        "--headless",
        "--auto-approve",
        "--session",
        cut,
        "--resume",
    ];
    a.extend(extra);
    a
}

// A model recorded by a relative path (not `owner/name`, which may be a hub id) that is
// not here is named before anything loads, with the flag that gives its place.
#[test]
fn a_model_recorded_by_a_relative_path_that_moved_is_named_with_its_flag() {
    let env = Env::new();
    let (entries, cut) = recorded_then_moved(&env, "m", "m2");
    let from = format!(
        "its model m is not on this machine (relative paths are looked up from {})",
        p(&env.work())
    );
    let s = p(&env.path("s.yaml"));
    for r in [
        env.run(&resume_args(&cut, &[])),
        env.run(&["replay", "--verify", &s]),
    ] {
        one_error_line(&r, &[&from, "give --model DIR where it is"]);
    }
    let sum = ok_json(&env.run(&resume_args(&cut, &["--model", "m2", "--json"])));
    let (h2, entries2) = session_docs(Path::new(&cut));
    assert_summary_matches(&sum, &fold(&h2, &entries2));
    assert_eq!(kinds(&entries2), kinds(&entries));
}

// A relative `owner/name` that moved is taken for a hub id, which only resolving can rule
// out; when that fails, a resume says the model may sit elsewhere, as replay does.
#[test]
fn a_resumed_model_that_does_not_resolve_gets_the_model_hint() {
    let env = Env::new();
    let (entries, cut) = recorded_then_moved(&env, "org/qwen", "elsewhere/qwen");
    let offline = [
        ("ARBORIST_CACHE", env.cache.as_str()),
        ("HF_HUB_OFFLINE", "1"),
        ("HF_HOME", "/nonexistent-arborist-test"),
    ];
    let r = arborist_timed(&resume_args(&cut, &[]), &offline, &env.work(), LIMIT);
    one_error_line(
        &r,
        &[
            "its model is not where it was recorded",
            "pass --model DIR",
            "taken as a Hugging Face id",
        ],
    );
    let moved = resume_args(&cut, &["--model", "elsewhere/qwen", "--json"]);
    let sum = ok_json(&arborist_timed(&moved, &offline, &env.work(), LIMIT));
    let (h2, entries2) = session_docs(Path::new(&cut));
    assert_summary_matches(&sum, &fold(&h2, &entries2));
    assert_eq!(kinds(&entries2), kinds(&entries));
}

// A `bundled` session's texts are the bundled model's, implied by its name: given a copy
// of that model with --model, verify used to stop with "--calib FILE is required for a
// model other than `bundled`", also for a directory that holds no model at all.
#[test]
fn a_bundled_session_verifies_on_a_copy_of_the_bundled_model() {
    let env = Env::new();
    let s = env.path("s.yaml");
    ok_json(&env.session(&s, &["--auto-approve", "--max-iters", "2", "--json"]));
    let copy = env.path("copy");
    ok(&env.run(&["bundled", "--out", &p(&copy)]));
    let v = ok_json(&env.run(&["replay", "--verify", "--json", &p(&s), "--model", &p(&copy)]));
    assert_eq!(
        (v["ok"].clone(), v["bit_exact"].clone()),
        (true.into(), true.into()),
        "{v}"
    );
    let empty = env.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    one_error_line(
        &env.run(&["replay", "--verify", &p(&s), "--model", &p(&empty)]),
        &["config.json is missing"],
    );
}

// A path given to a flag that names nothing is that flag's error ("its --calib file X is
// not on this machine" read as if X were the session's); a header edited to a local model
// without its texts names the session (it named a `--calib FILE` nobody had given).
#[test]
fn a_missing_flag_path_and_a_header_without_its_texts_are_each_named() {
    let env = Env::new();
    let s = env.path("s.yaml");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
    std::fs::copy(example, &s).unwrap();
    let nope = env.path("nope/c.txt");
    one_error_line(
        &env.run(&["replay", "--verify", &p(&s), "--calib", &p(&nope)]),
        &[&format!("--calib {}: no such file", p(&nope))],
    );
    let text = std::fs::read_to_string(&s).unwrap();
    let model_dir = env.path("m");
    std::fs::create_dir_all(&model_dir).unwrap();
    let edited = text.replacen(
        "\n  model: bundled\n",
        &format!("\n  model: {}\n", p(&model_dir)),
        1,
    );
    assert_ne!(edited, text);
    std::fs::write(&s, edited).unwrap();
    let out = p(&env.path("out"));
    for cmd in [&["replay", "--verify"][..], &["export", "--out", &out][..]] {
        let mut a = cmd.to_vec();
        let sp = p(&s);
        a.push(&sp);
        let o = env.run(&a);
        one_error_line(
            &o,
            &[
                "s.yaml: its header names the model",
                "no `options.calib` text",
            ],
        );
    }
}

/// The fingerprint samples 16 chunks of each weight file; weights changed between them
/// keep it. `export` re-measures the checkpoint and refuses the changed model.
#[test]
fn export_refuses_weights_changed_between_the_fingerprints_samples() {
    let env = Env::new();
    let copy = env.dir.path().join("copy");
    copy_bundled_model(&copy);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions/example.yaml");
    let sp = p(&example);
    let cp = p(&copy);
    // An unchanged copy exports, with the re-measured perplexity recorded beside the
    // session's own.
    let good = env.path("good");
    ok(&env.run(&["export", &sp, "--out", &p(&good), "--model", &cp]));
    let meta = json_exact(&std::fs::read_to_string(good.join("arborist.json")).unwrap());
    assert_eq!(meta["ppl"]["value"], meta["eval"]["ppl"], "{meta}");
    assert_eq!(meta["source_model"], cp.as_str());

    flip_between_fingerprint_samples(&copy);
    let bad = env.path("bad");
    one_error_line(
        &env.run(&["export", &sp, "--out", &p(&bad), "--model", &cp]),
        &[
            "re-measures at ppl",
            "the model's weights differ",
            "nothing was written",
        ],
    );
    assert!(!bad.exists());
}
