//! Flag values out of range: devices, dtypes, negative and zero counts, threads, bench
//! options, a session file given to the wrong flag.

use super::*;

#[test]
fn bad_device_and_dtype_flags() {
    let (_d, m, t) = setup();
    let o = arborist(&["eval", "--model", &m, "--ppl", &t, "--dtype", "f8"], &[]);
    assert_one_line_error(&o, &["--dtype f8"]);
    let o = arborist(
        &["eval", "--model", &m, "--ppl", &t, "--device", "tpu"],
        &[],
    );
    assert_one_line_error(&o, &["--device tpu"]);
    // A line break in the value is escaped: the line was cut at it, `--device cuda:0`,
    // which read as the valid part being wrong (found by tests/user_files_random).
    let o = arborist(
        &["eval", "--model", &m, "--ppl", &t, "--device", "cuda:0\nx"],
        &[],
    );
    assert_one_line_error(&o, &["--device cuda:0\\nx"]);
}

// A negative value was "unexpected argument '-5'" with a `-- -5` tip that failed the same way.
#[test]
fn a_negative_value_is_its_flags_error() {
    let (_d, m, t) = setup();
    // A usage error: clap's exit status 2, one line.
    let usage = |args: &[&str], needle: &str| {
        let o = arborist(args, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
        assert!(!err.contains("-- -"), "{err}");
    };
    usage(
        &["eval", "--model", &m, "--ppl", &t, "--seqlen", "-5"],
        "invalid value '-5' for '--seqlen <SEQLEN>'",
    );
    usage(
        &["bench", "--iters", "-1"],
        "invalid value '-1' for '--iters <ITERS>'",
    );
}

// `run --resume S.yaml` is what people type; `--resume` is a switch and the file belongs to
// --session. clap said only "unexpected argument", and nothing was read or written.
#[test]
fn a_session_file_given_to_the_wrong_flag_is_refused_with_the_command_meant() {
    let d = tmp();
    let s = d.path().join("s.yaml");
    std::fs::write(&s, "kept as it was\n").unwrap();
    let o = arborist(&["run", "--resume", &p(&s), "--headless"], &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "tip: --resume continues the session file named by --session: `arborist run --session {} --resume`",
            p(&s)
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&s).unwrap(), "kept as it was\n");
    // A misspelt flag after --resume keeps clap's own tip and gets no other.
    let o = arborist(&["run", "--resume", "--headles"], &[]);
    let err = stderr(&o);
    assert!(
        err.contains("'--headless'") && !err.contains("--session"),
        "{err}"
    );
    // replay and export take the file as their first argument; clap's tip was
    // `-- --session`, which reads "--session" as the file.
    for sub in ["replay", "export"] {
        let o = arborist(&[sub, "--session", &p(&s)], &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        let ours = format!(
            "tip: {sub} takes the session file as its first argument: `arborist {sub} FILE`"
        );
        assert!(
            err.contains(&ours) && !err.contains("-- --session"),
            "{err}"
        );
    }
}

#[test]
fn zero_threads_or_thousands_are_refused() {
    let (_d, m, t) = setup();
    let o = arborist(&["eval", "--model", &m, "--ppl", &t, "--threads", "0"], &[]);
    assert_one_line_error(&o, &["--threads 0"]);
    // 2000 threads made a 0.07 s evaluation take 16 s on 2 cores.
    let cores = std::thread::available_parallelism().unwrap().get();
    let many = (4 * cores + 1).to_string();
    let o = arborist(
        &["eval", "--model", &m, "--ppl", &t, "--threads", &many],
        &[],
    );
    assert_one_line_error(
        &o,
        &[&format!(
            "--threads {many}: this process may use {cores} core"
        )],
    );
}

#[test]
fn bench_flags_are_checked() {
    let d = tmp();
    let o = arborist(&["bench", "--suite", "ppl", "--batch", "0"], &[]);
    assert_one_line_error(&o, &["--batch 0"]);
    // A median of no repetitions printed NaN and exited 0.
    let o = arborist(&["bench", "--iters", "0"], &[]);
    assert_one_line_error(&o, &["--iters 0"]);
    let o = arborist(
        &["bench", "--suite", "session", "--session-iters", "0"],
        &[],
    );
    assert_one_line_error(&o, &["--session-iters 0"]);
    let missing = d.path().join("none.json");
    let o = arborist(&["bench", "--suite", "ppl", "--config", &p(&missing)], &[]);
    assert_one_line_error(&o, &["none.json"]);
    let o = arborist(&["bench", "--suite", "prune", "--calib", "x.txt"], &[]);
    assert_one_line_error(&o, &["--calib", "only the session suite", "--suite prune"]);
    // --config was silently ignored where no random model reads it.
    let cfg = p(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/qwen3-99m.json"));
    for (suite, model) in [
        ("knowledge", "bundled"),
        ("session", "bundled"),
        ("stream", "x"),
        // Given, `bundled` is a model too (it once read as "no --model": the stream
        // suite then ran its random model, of --config's shape).
        ("stream", "bundled"),
    ] {
        let o = arborist(
            &[
                "bench", "--suite", suite, "--model", model, "--config", &cfg,
            ],
            &[],
        );
        assert_one_line_error(&o, &["--config: only a random model reads it", suite]);
    }
    // The session suite's own flags on another suite did nothing.
    for (suite, flag, value) in [
        ("forward", "--session-iters", "3"),
        ("stream", "--memory-runs", "1"),
        ("prune", "--model", "random"),
        ("forward", "--model", "bundled"),
    ] {
        let o = arborist(&["bench", "--suite", suite, flag, value], &[]);
        assert_one_line_error(
            &o,
            &[&format!("{flag}: only the session suite reads it"), suite],
        );
    }
    // And the common flags on a suite that does not read them (since 2026-12-02; a
    // session bench given --dtype bf16 or --seqlen 64 ran in f32 at the model's context).
    for (suite, flag, value, why) in [
        ("session", "--seqlen", "64", "`run`'s windows"),
        ("session", "--calib-windows", "4", "`run`'s windows"),
        ("knowledge", "--dtype", "bf16", "on the CPU in f32"),
        ("agent", "--batch", "2", "on the CPU in f32"),
        ("prune", "--iters", "3", "one run"),
        ("forward", "--calib-windows", "4", "--batch windows"),
    ] {
        let o = arborist(&["bench", "--suite", suite, flag, value], &[]);
        assert_one_line_error(
            &o,
            &[&format!("{flag}: --suite {suite} does not read it"), why],
        );
    }
    // A misspelled suite is named first, not blamed on a flag it would not have read; the
    // memory children's suite is not one a user can ask for.
    for args in [
        &["bench", "--suite", "sesion", "--session-iters", "2"][..],
        &["bench", "--suite", "session-memory"][..],
    ] {
        let o = arborist(args, &[]);
        assert_one_line_error(
            &o,
            &[
                &format!("--suite {}: expected forward, ppl", args[2]),
                "session or stream",
            ],
        );
    }
    // Another model's texts are asked for before the memory children start (each
    // printed the error, then the parent its own).
    let o = arborist(
        &["bench", "--suite", "session", "--model", &fx("qwen3")],
        &[],
    );
    assert_one_line_error(&o, &["--calib FILE is required for --model", "random"]);
    // A random model must hold the bundled tokenizer's ids.
    let small = d.path().join("small.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("4096", "512");
    std::fs::write(&small, text).unwrap();
    let o = arborist(
        &[
            "bench",
            "--suite",
            "session",
            "--model",
            "random",
            "--config",
            &p(&small),
        ],
        &[],
    );
    assert_one_line_error(
        &o,
        &["vocab_size 512 is smaller than the bundled tokenizer's 1024"],
    );
}

// Counts of zero used to panic (`profile --calib-windows 0`) or print NaN with exit 0.
#[test]
fn zero_counts_are_refused() {
    let (d, m, t) = setup();
    let out = p(&d.path().join("out"));
    let with = |base: &[&str], flag: &str, value: &str| {
        let mut a: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        a.extend([flag.to_string(), value.to_string()]);
        arborist(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };
    let eval = ["eval", "--model", &m, "--ppl", &t, "--seqlen", "64"];
    let profile = ["profile", "--model", &m, "--calib", &t, "--seqlen", "64"];
    let prune = [
        "prune",
        "--model",
        &m,
        "--method",
        "wanda",
        "--sparsity",
        "0.5",
        "--calib",
        &t,
        "--seqlen",
        "64",
        "--eval",
        &t,
        "--out",
        &out,
    ];
    let run = [
        "run",
        "--model",
        &m,
        "--calib",
        &t,
        "--eval",
        &t,
        "--headless",
        "--auto-approve",
        "--session",
        &out,
    ];
    let train = ["train-tiny", "--out", &out];
    let bench = ["bench", "--suite", "forward", "--iters", "1"];
    let cases: [(&[&str], &str, &str); 16] = [
        (&train, "--steps", "0"),
        (&train, "--batch", "0"),
        (&train, "--probe-every", "0"),
        (&train, "--lr", "NaN"),
        (&train, "--lr", "0"),
        (&bench, "--seqlen", "0"),
        (&bench, "--calib-windows", "0"),
        (&eval, "--max-windows", "0"),
        (&eval, "--batch", "0"),
        (&eval, "--limit", "0"),
        (&profile, "--calib-windows", "0"),
        (&profile, "--grad-windows", "0"),
        (&profile, "--batch", "0"),
        (&prune, "--eval-windows", "0"),
        (&run, "--profile-every", "0"),
        (&run, "--ceiling", "-1"),
    ];
    for (base, flag, value) in cases {
        assert_one_line_error(&with(base, flag, value), &[&format!("{flag} {value}")]);
    }
    // A window of fewer than 2 tokens predicts nothing: refused before the model loads
    // (a model that does not exist shows that nothing was read first).
    let missing = p(&d.path().join("no-model"));
    for cmd in [
        vec!["eval", "--ppl", &t],
        vec!["profile", "--calib", &t],
        vec![
            "prune",
            "--method",
            "wanda",
            "--sparsity",
            "0.5",
            "--calib",
            &t,
            "--out",
            &out,
        ],
        vec![
            "run",
            "--calib",
            &t,
            "--eval",
            &t,
            "--headless",
            "--auto-approve",
        ],
    ] {
        let mut a = cmd.clone();
        a.extend(["--model", &missing, "--seqlen", "1"]);
        assert_one_line_error(&arborist(&a, &[]), &["--seqlen 1", "at least 2 tokens"]);
    }
    assert!(
        !d.path().join("out").exists(),
        "a refused run left output behind"
    );
}
