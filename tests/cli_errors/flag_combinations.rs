//! Flags that make no sense together or without the evaluation they belong to, and the
//! hint printed without a terminal.

use super::*;

// Options that only mean something with another one, or whose values would be clamped or
// ignored, are refused before any work.
#[test]
fn prune_option_combinations_are_checked() {
    let (d, m, t) = setup();
    let out = p(&d.path().join("out"));
    let alloc = d.path().join("alloc.yaml");
    std::fs::write(&alloc, "model.layers.0.mlp.down_proj: 0.5\n").unwrap();
    let dup = d.path().join("dup.yaml");
    std::fs::write(
        &dup,
        "model.layers.0.mlp.down_proj: 0.5\nmodel.layers.0.mlp.down_proj: 0.2\n",
    )
    .unwrap();
    let empty = d.path().join("empty.yaml");
    std::fs::write(&empty, "{}\n").unwrap();
    let prune = |extra: &[&str]| {
        let mut a = vec![
            "prune", "--model", &m, "--method", "wanda", "--calib", &t, "--seqlen", "64", "--out",
            &out,
        ];
        a.extend_from_slice(extra);
        arborist(&a, &[])
    };
    let (al, du, em) = (p(&alloc), p(&dup), p(&empty));
    let owl = |lambda: &'static str| {
        [
            "--sparsity",
            "0.5",
            "--allocation",
            "owl",
            "--owl-lambda",
            lambda,
        ]
    };
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["--allocation", &al, "--nm", "2:4"],
            &["--allocation", "--nm"],
        ),
        (&["--allocation", &du], &["dup.yaml", "duplicate"]),
        (&["--allocation", &em], &["empty.yaml", "names no layer"]),
        (
            &["--sparsity", "0.5", "--owl-lambda", "0.1"],
            &["--owl-lambda", "--allocation owl"],
        ),
        (&owl("-0.1"), &["--owl-lambda -0.1"]),
        (
            &["--sparsity", "0.5", "--magnitude-layerwide"],
            &["--magnitude-layerwide", "not wanda"],
        ),
    ];
    for (extra, want) in cases {
        assert_one_line_error(&prune(extra), want);
    }
    // OWL's λ is checked against the per-block sparsities it gives, which needs blocks with
    // different outlier shares (the bundled model's; the random model's are equal).
    let calib = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/bundled/data/calib.txt");
    let mut a = vec![
        "prune",
        "--model",
        "bundled",
        "--method",
        "wanda",
        "--calib",
        calib,
        "--seqlen",
        "128",
        "--calib-windows",
        "2",
        "--out",
        &out,
    ];
    a.extend_from_slice(&owl("5"));
    assert_one_line_error(&arborist(&a, &[]), &["--owl-lambda 5", "outside [0, 1)"]);
    assert!(
        !d.path().join("out").exists(),
        "a refused run left output behind"
    );
    // An allocation file alone prunes the layers it names; with --sparsity the others get
    // that sparsity (it used to be required and then ignored).
    let o = prune(&["--allocation", &al, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"]["pattern"], serde_json::Value::Null, "{v}");
    let layers = v["result"]["layers"].as_array().unwrap();
    let pruned: Vec<_> = layers
        .iter()
        .filter(|l| l["sparsity"].as_f64() > Some(0.0))
        .collect();
    assert_eq!(pruned.len(), 1, "{v}");
    assert_eq!(pruned[0]["name"], "model.layers.0.mlp.down_proj");
    let o = prune(&[
        "--allocation",
        &al,
        "--sparsity",
        "0.25",
        "--force",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for l in v["result"]["layers"].as_array().unwrap() {
        let want = if l["name"] == "model.layers.0.mlp.down_proj" {
            0.5
        } else {
            0.25
        };
        let got = l["sparsity"].as_f64().unwrap();
        assert!((got - want).abs() < 0.02, "{l}");
    }
}

// --per-item only shapes the JSON; alone it used to be silently ignored.
#[test]
fn per_item_without_json_is_refused() {
    let (_d, m, t) = setup();
    let o = arborist(&["eval", "--model", &m, "--ppl", &t, "--per-item"], &[]);
    assert_one_line_error(&o, &["--per-item needs --json"]);
}

// A flag that tunes an evaluation nobody asked for used to be silently ignored: `--shots 0`
// on a perplexity run looked like a zero-shot measurement.
#[test]
fn flags_without_their_evaluation_are_refused() {
    let (_d, m, t) = setup();
    let ppl = ["eval", "--model", &m, "--ppl", &t];
    let mmlu = ["eval", "--model", &m, "--mmlu", &t];
    let fbqa = ["eval", "--model", &m, "--freebaseqa", &t];
    let cases: [(&[&str], &str, &str, &str); 9] = [
        (&ppl, "--shots", "0", "--mmlu PATH"),
        (&ppl, "--mmlu-prompt", "lm-eval", "--mmlu PATH"),
        (&ppl, "--mmlu-max-context", "64", "--mmlu PATH"),
        (&ppl, "--max-new-tokens", "8", "--freebaseqa FILE"),
        (&ppl, "--limit", "3", "--mmlu PATH or --freebaseqa FILE"),
        (&mmlu, "--seqlen", "64", "--ppl FILE"),
        (&mmlu, "--max-windows", "2", "--ppl FILE"),
        (&fbqa, "--batch", "4", "--ppl FILE or --mmlu PATH"),
        (
            &ppl,
            "--per-item",
            "--json",
            "--mmlu PATH or --freebaseqa FILE",
        ),
    ];
    for (base, flag, value, needs) in cases {
        let mut a = base.to_vec();
        a.extend([flag, value]);
        let o = arborist(&a, &[]);
        assert_one_line_error(
            &o,
            &[&format!(
                "{flag} tunes an evaluation that was not requested: it needs {needs}"
            )],
        );
    }
}

// Calibration flags without calibration text, and a seed for windows not drawn at random,
// tune nothing: refused before anything loads (they were silently ignored, and recorded in
// the protocol as if they had run).
#[test]
fn calibration_flags_without_their_calibration_are_refused() {
    let (d, m, t) = setup();
    let out = p(&d.path().join("out"));
    let magnitude = [
        "prune",
        "--model",
        &m,
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--out",
        &out,
    ];
    let profile = ["profile", "--model", &m, "--calib", &t, "--seqlen", "64"];
    let needs_calib = "tunes the calibration windows: it needs --calib FILE";
    let cases: [(&[&str], &[&str], String); 4] = [
        (
            &magnitude,
            &["--calib-windows", "4"],
            format!("--calib-windows {needs_calib}"),
        ),
        (
            &magnitude,
            &["--calib-sample", "random"],
            format!("--calib-sample {needs_calib}"),
        ),
        (
            &magnitude,
            &["--seed", "3"],
            format!("--seed {needs_calib}"),
        ),
        (
            &profile,
            &["--seed", "3"],
            "--seed draws random calibration windows: it needs --calib-sample random or documents"
                .into(),
        ),
    ];
    for (base, extra, want) in cases {
        let mut a = base.to_vec();
        a.extend(extra);
        assert_one_line_error(&arborist(&a, &[]), &[&want]);
    }
    assert!(!d.path().join("out").exists());
    // A window length for no windows at all.
    let mut a = magnitude.to_vec();
    a.extend(["--seqlen", "64"]);
    assert_one_line_error(
        &arborist(&a, &[]),
        &["--seqlen sets the windows of --calib and --eval: neither was given"],
    );
    // Magnitude pruning reads no calibration: given anyway, it runs, says so, and records
    // no calibration.
    let mut a = magnitude.to_vec();
    a.extend(["--calib", &t, "--seqlen", "64", "--json"]);
    let o = arborist(&a, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--method magnitude uses no calibration"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["result"]["calibration"].is_null(), "{v}");
    assert!(!stderr(&o).contains("--batch"), "{}", stderr(&o));
    // Nor does it run a forward pass without --eval: --batch is said to do nothing.
    let mut a = magnitude.to_vec();
    a.extend(["--batch", "8", "--force"]);
    let o = arborist(&a, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--batch sets the windows per forward pass"),
        "{}",
        stderr(&o)
    );
}

// A --base-url with a query or fragment is refused before any file is written: its key
// went into the session header (and the endpoint was appended after the query).
#[test]
fn a_base_url_query_is_refused_before_the_session_file() {
    for url in [
        "http://127.0.0.1:9/v1?api-key=sk-SECRET-1",
        "http://127.0.0.1:9/#SECRET",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("s.yaml");
        let o = arborist(
            &[
                "run",
                "--headless",
                "--auto-approve",
                "--agent",
                "openai",
                "--agent-model",
                "m",
                "--base-url",
                url,
                "--session",
                &p(&s),
            ],
            &[],
        );
        assert_one_line_error(
            &o,
            &["--base-url: a query (?...) or fragment (#...) is not taken"],
        );
        assert!(!stderr(&o).contains("SECRET"), "{}", stderr(&o));
        assert!(!s.exists());
    }
}

// Without a terminal each front end names a command that runs: bare `arborist` takes no
// flags, so its hint is the demo subcommand's (it said "pass --headless", which bare
// `arborist` refuses).
#[test]
fn without_a_terminal_the_hint_is_a_command_that_runs() {
    let o = arborist(&[], &[]);
    assert_one_line_error(&o, &["arborist demo --headless --auto-approve"]);
    let o = arborist(&["demo"], &[]);
    assert_one_line_error(
        &o,
        &["pass --headless with --auto-approve or --decisions FILE"],
    );
}
