//! Evaluation and calibration data that is too short, not UTF-8, unreadable or not a file.

use super::*;

#[test]
fn text_too_short_for_one_window() {
    let (d, m, _t) = setup();
    let short = d.path().join("short.txt");
    std::fs::write(&short, "only a few words").unwrap();
    assert_one_line_error(
        &eval(&m, &p(&short)),
        &["short.txt", "too short for one window of 64 tokens"],
    );
}

#[test]
fn non_utf8_text() {
    let (d, m, _t) = setup();
    let bin = d.path().join("latin1.txt");
    std::fs::write(&bin, b"caf\xe9 au lait and more words here").unwrap();
    assert_one_line_error(
        &eval(&m, &p(&bin)),
        &["latin1.txt", "not UTF-8", "offset 3"],
    );
}

// Asking for more windows than the text holds runs on what there is, and says so: a
// session once evaluated 31 of 48 windows without a word.
#[test]
fn more_windows_than_the_text_holds_is_warned_about() {
    let (_d, m, t) = setup();
    let profile = |calib_windows: &str, grad_windows: &str| {
        let o = arborist(
            &[
                "profile",
                "--model",
                &m,
                "--calib",
                &t,
                "--seqlen",
                "64",
                "--calib-windows",
                calib_windows,
                "--grad-windows",
                grad_windows,
                "--json",
            ],
            &[],
        );
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v, err)
    };
    let (v, err) = profile("100000", "200000");
    let n = v["protocol"]["calib_windows"].as_u64().unwrap();
    assert!(n > 1 && n < 100000, "{v}");
    assert_eq!(v["protocol"]["grad_windows"].as_u64(), Some(n), "{v}");
    let want =
        format!("--calib-windows 100000: {t} holds only {n} windows of 64 tokens; using {n}");
    assert!(err.contains(&want), "`{want}` not in: {err}");
    let want = format!("--grad-windows 200000: the gradient takes the first calibration windows, and there are {n}; using {n}");
    assert!(err.contains(&want), "`{want}` not in: {err}");
    // Capped by --calib-windows, not by the text: the warning says so, not that the text is
    // short.
    let (v, err) = profile("2", "4");
    assert_eq!(v["protocol"]["grad_windows"].as_u64(), Some(2), "{v}");
    assert!(
        err.contains("--grad-windows 4: the gradient takes the first calibration windows, and there are 2; using 2"),
        "{err}"
    );
    assert!(!err.contains("holds only"), "{err}");
    // eval --max-windows too, with the count used in its JSON.
    let o = arborist(
        &[
            "eval",
            "--model",
            &m,
            "--ppl",
            &t,
            "--seqlen",
            "64",
            "--max-windows",
            "100000",
            "--json",
        ],
        &[],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let n = v["ppl"]["windows"].as_u64().unwrap();
    let want = format!("--max-windows 100000: {t} holds only {n} windows of 64 tokens; using {n}");
    assert!(err.contains(&want), "`{want}` not in: {err}");
}

// A device given as an input file was read until memory ran out (/dev/zero took 3–8 GB in
// seconds); each reader now refuses it in one line naming it.
#[test]
fn a_device_as_an_input_file_is_refused() {
    let (d, m, t) = setup();
    let session = p(&d.path().join("s.yaml"));
    let out = p(&d.path().join("out"));
    let z = "/dev/zero";
    let cases: [(Vec<&str>, &str); 7] = [
        (vec!["eval", "--model", &m, "--ppl", z], ""),
        (vec!["eval", "--model", &m, "--freebaseqa", z], ""),
        (
            vec!["profile", "--model", &m, "--calib", z, "--seqlen", "64"],
            "",
        ),
        (
            vec![
                "profile",
                "--model",
                &m,
                "--calib",
                z,
                "--calib-sample",
                "documents",
            ],
            "",
        ),
        (
            vec![
                "prune",
                "--model",
                &m,
                "--method",
                "magnitude",
                "--sparsity",
                "0.5",
                "--allocation",
                z,
                "--out",
                &out,
            ],
            "--allocation",
        ),
        (vec!["run", "--config", z, "--headless"], "--config"),
        (
            vec![
                "run",
                "--model",
                &m,
                "--calib",
                &t,
                "--eval",
                &t,
                "--seqlen",
                "64",
                "--headless",
                "--auto-approve",
                "--decisions",
                z,
                "--session",
                &session,
            ],
            "--decisions",
        ),
    ];
    for (args, flag) in &cases {
        let o = arborist(args, &[]);
        assert_one_line_error(&o, &[flag, "/dev/zero: a device, not a file"]);
    }
    assert!(!d.path().join("s.yaml").exists(), "a session file was left");
    assert!(!d.path().join("out").exists(), "an output was left");
}

/// A data file that cannot be read is named with the flag that gave it (the file alone did
/// not say which flag to fix).
#[test]
fn an_unreadable_data_file_names_its_flag() {
    let (d, m, t) = setup();
    let missing = p(&d.path().join("missing.txt"));
    let dir = p(d.path());
    let out = p(&d.path().join("out"));
    let cases: [(Vec<&str>, [&str; 2]); 5] = [
        (
            vec!["eval", "--model", &m, "--ppl", &missing],
            ["--ppl: cannot read", &missing],
        ),
        // Said without its flag until 2026-12-03 (the model-format audit).
        (
            vec![
                "prune",
                "--model",
                &m,
                "--method",
                "magnitude",
                "--sparsity",
                "0.5",
            ]
            .into_iter()
            .chain(["--eval", &missing, "--out", &out])
            .collect(),
            ["--eval: cannot read", &missing],
        ),
        (
            vec!["eval", "--model", &m, "--mmlu", &missing],
            ["--mmlu: ", &missing],
        ),
        (
            vec!["eval", "--model", &m, "--freebaseqa", &dir],
            ["--freebaseqa: cannot read", &dir],
        ),
        (
            vec!["profile", "--model", &m, "--calib", &missing],
            ["--calib: cannot read", &missing],
        ),
    ];
    for (args, needles) in cases {
        assert_one_line_error(&arborist(&args, &[]), &needles);
    }
    // In a session, from the worker: before the session file is made.
    let s = d.path().join("s.yaml");
    let session = |extra: &[&str]| {
        let mut a = vec![
            "run",
            "--headless",
            "--auto-approve",
            "--model",
            &m,
            "--seqlen",
            "64",
        ];
        a.extend_from_slice(extra);
        a.extend(["--session", s.to_str().unwrap()]);
        arborist(&a, &[])
    };
    let probe = ["--probe", "freebaseqa", "--probe-file", &dir];
    let short = d.path().join("short.txt");
    std::fs::write(&short, "only a few words").unwrap();
    let short = p(&short);
    for (extra, flag, what) in [
        (
            vec!["--calib", &missing, "--eval", &t],
            "--calib",
            "cannot read",
        ),
        (
            vec!["--calib", &t, "--eval", &missing],
            "--eval",
            "cannot read",
        ),
        (
            [&["--calib", &t, "--eval", &t][..], &probe].concat(),
            "--probe-file",
            "cannot read",
        ),
        // Too short for one window: found after the read, named by its flag too.
        (vec!["--calib", &t, "--eval", &short], "--eval", &short),
        (vec!["--calib", &short, "--eval", &t], "--calib", &short),
    ] {
        let e = stderr(&session(&extra));
        let want = format!("error: {flag}: {what}");
        assert!(e.lines().any(|l| l.starts_with(&want)), "{want}: {e}");
    }
    assert!(!s.exists());
    // And `eval --ppl`, `prune --eval`.
    let prune = [
        "prune",
        "--model",
        &m,
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
    ];
    for (args, flag) in [
        (
            vec!["eval", "--model", &m, "--seqlen", "64", "--ppl", &short],
            "--ppl",
        ),
        (
            [
                &prune[..],
                &["--seqlen", "64", "--eval", &short, "--out", &out],
            ]
            .concat(),
            "--eval",
        ),
    ] {
        let want = format!("{flag}: {short} has");
        assert_one_line_error(&arborist(&args, &[]), &[&want, "too short for one window"]);
    }
}
