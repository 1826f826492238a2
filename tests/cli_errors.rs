//! Every bad input of `arborist eval` (and of a few other commands' flags) gets one line
//! on stderr that names the culprit, a non-zero exit, no panic and nothing on stdout.

mod common;
use candle_core::DType;
use common::*;

fn assert_one_line_error(o: &std::process::Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        o.stdout.is_empty(),
        "stdout not empty: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {err}");
    }
}

fn setup() -> (tempfile::TempDir, String, String) {
    let d = tmp();
    let model = d.path().join("m");
    write_model_dir(&model, TINY_QWEN3, 1, DType::F32);
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let (m, t) = (p(&model), p(&txt));
    (d, m, t)
}

fn eval(model: &str, txt: &str) -> std::process::Output {
    arborist(
        &["eval", "--model", model, "--ppl", txt, "--seqlen", "64"],
        &[],
    )
}

#[test]
fn a_good_model_evaluates() {
    let (_d, m, t) = setup();
    let o = arborist(
        &[
            "eval", "--model", &m, "--ppl", &t, "--seqlen", "64", "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ppl = v["ppl"]["value"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0, "{v}");
    assert_eq!(v["ppl"]["seqlen"], 64);
    assert_eq!(
        v["ppl"]["windows"].as_u64().unwrap(),
        v["ppl"]["tokens"].as_u64().unwrap() / 64
    );
}

#[test]
fn missing_directory() {
    let (d, _m, t) = setup();
    let missing = p(&d.path().join("nope"));
    assert_one_line_error(&eval(&missing, &t), &[&missing, "does not exist"]);
}

#[test]
fn missing_config_tokenizer_or_weights() {
    for (file, what) in [
        ("config.json", "config.json"),
        ("tokenizer.json", "tokenizer.json"),
        ("model.safetensors", "model.safetensors"),
    ] {
        let (_d, m, t) = setup();
        std::fs::remove_file(std::path::Path::new(&m).join(file)).unwrap();
        assert_one_line_error(&eval(&m, &t), &[what, "missing"]);
    }
}

#[test]
fn truncated_or_corrupt_safetensors() {
    let (_d, m, t) = setup();
    let w = std::path::Path::new(&m).join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    // The tensor whose data is cut off is named (the crate's message names none).
    assert_one_line_error(
        &eval(&m, &t),
        &[
            "model.safetensors",
            "not a valid safetensors",
            "run past the",
        ],
    );
    // A header whose dtype does not fit the tensor's bytes: the tensor and both sizes.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["model.norm.weight"]["dtype"] = "BF16".into();
    let mut text = serde_json::to_vec(&header).unwrap();
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut lied = (text.len() as u64).to_le_bytes().to_vec();
    lied.extend(&text);
    lied.extend(&bytes[8 + n..]);
    std::fs::write(&w, &lied).unwrap();
    assert_one_line_error(
        &eval(&m, &t),
        &["tensor model.norm.weight: BF16 [", "data_offsets ["],
    );
    // A header length that points past the end of the file.
    let mut bad = bytes.clone();
    bad[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(&w, &bad).unwrap();
    assert_one_line_error(&eval(&m, &t), &["model.safetensors"]);
    // Garbage in the JSON header.
    let mut bad = bytes;
    bad[8] = b'#';
    std::fs::write(&w, &bad).unwrap();
    assert_one_line_error(&eval(&m, &t), &["model.safetensors"]);
}

#[test]
fn tensor_shape_disagrees_with_config() {
    let (_d, m, t) = setup();
    let cfg = std::path::Path::new(&m).join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"intermediate_size\":64", "\"intermediate_size\":80");
    std::fs::write(&cfg, text).unwrap();
    assert_one_line_error(
        &eval(&m, &t),
        &[
            "model.layers.0.mlp.gate_proj.weight",
            "shape [64, 32]",
            "[80, 32]",
        ],
    );
}

// A tied config reads the embedding from `lm_head.weight` when that is all the file holds
// (tests/hf_parity.rs); with neither tensor, the error names both and the file. An untied
// config does not read the head: transformers would start that embedding from random
// values, and it is refused as missing, saying the head is there but the config unties it.
#[test]
fn a_checkpoint_without_its_embedding() {
    let (_d, m, t) = setup();
    let w = std::path::Path::new(&m).join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&w, &candle_core::Device::Cpu).unwrap();
    let embed = tensors.remove("model.embed_tokens.weight").unwrap();
    candle_core::safetensors::save(&tensors, &w).unwrap();
    assert_one_line_error(
        &eval(&m, &t),
        &[
            "`model.embed_tokens.weight` is missing",
            "`lm_head.weight`",
            "tie_word_embeddings",
            &p(&w),
        ],
    );
    tensors.insert("lm_head.weight".into(), embed);
    candle_core::safetensors::save(&tensors, &w).unwrap();
    assert!(eval(&m, &t).status.success());
    let cfg = std::path::Path::new(&m).join("config.json");
    let untied = std::fs::read_to_string(&cfg).unwrap().replace(
        "\"tie_word_embeddings\":true",
        "\"tie_word_embeddings\":false",
    );
    std::fs::write(&cfg, untied).unwrap();
    assert_one_line_error(
        &eval(&m, &t),
        &[
            "`model.embed_tokens.weight` is missing",
            &p(&w),
            "the files hold `lm_head.weight`",
            "config.json sets it false",
        ],
    );
}

#[test]
fn unsupported_architecture() {
    let (_d, m, t) = setup();
    let cfg = std::path::Path::new(&m).join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"qwen3\"", "\"gpt_neox\"");
    std::fs::write(&cfg, text).unwrap();
    assert_one_line_error(
        &eval(&m, &t),
        &["gpt_neox", "llama, mistral, qwen2, qwen3", "config.json"],
    );
}

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

// A model whose dense perplexity is NaN cannot start a session: the error says so, and the
// file, which would hold only a header, is not left to block the same command again.
#[test]
fn a_session_that_cannot_start_leaves_no_file() {
    let (d, m, t) = setup();
    let weights = std::path::Path::new(&m).join("model.safetensors");
    let mut w = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    let norm = w["model.norm.weight"].clone();
    let nan = (norm.ones_like().unwrap() * f64::NAN).unwrap();
    w.insert("model.norm.weight".into(), nan);
    candle_core::safetensors::save(&w, &weights).unwrap();
    // So do the directories it created for the file (since 2026-12-02).
    let s = d.path().join("new/dirs/s.yaml");
    let o = arborist(
        &[
            "run",
            "--model",
            &m,
            "--calib",
            &t,
            "--eval",
            &t,
            "--seqlen",
            "64",
            "--calib-windows",
            "2",
            "--eval-windows",
            "2",
            "--headless",
            "--auto-approve",
            "--session",
            &p(&s),
        ],
        &[],
    );
    // The run announces the session first; the error is one line after it.
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("tensor model.norm.weight holds NaN or infinite values")
            && errors[0].ends_with("(nothing was recorded, so no session file was kept)"),
        "{err}"
    );
    assert!(!s.exists(), "a header-only session file was left");
    assert!(
        !d.path().join("new").exists(),
        "the session's new directories were left"
    );
}

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

// A session whose header holds an option the flags would refuse is reported as the file's,
// not as a flag the user never passed.
#[test]
fn bad_options_in_a_session_header_name_the_file() {
    let d = tmp();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
    let text = std::fs::read_to_string(example).unwrap();
    assert!(text.contains("\n  device: cpu\n"));
    let s = d.path().join("s.yaml");
    std::fs::write(&s, text.replace("\n  device: cpu\n", "\n  device: gpu\n")).unwrap();
    let out = d.path().join("out");
    for args in [
        vec!["replay", &p(&s), "--verify", "--headless"],
        vec!["export", &p(&s), "--out", &p(&out)],
        vec![
            "run",
            "--session",
            &p(&s),
            "--resume",
            "--headless",
            "--auto-approve",
        ],
    ] {
        assert_one_line_error(
            &arborist(&args, &[]),
            &[&p(&s), "options in its header", "--device gpu"],
        );
    }
    assert!(!out.exists());
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

// Weights holding NaN: eval printed `perplexity NaN` with exit 0, prune wrote a model with
// masks chosen on NaN scores, profile printed nulls, and a session blamed the dtype.
// Each now names the tensor.
#[test]
fn nan_weights_are_named() {
    let (d, m, t) = setup();
    let file = std::path::Path::new(&m).join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let at = &header["model.embed_tokens.weight"]["data_offsets"];
    let (a, b) = (
        at[0].as_u64().unwrap() as usize,
        at[1].as_u64().unwrap() as usize,
    );
    for w in bytes[8 + n + a..8 + n + b].chunks_mut(4).step_by(7) {
        w.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(&file, bytes).unwrap();
    let out = p(&d.path().join("out"));
    let session = p(&d.path().join("s.yaml"));
    let want = "tensor model.embed_tokens.weight holds NaN or infinite values";
    // The error is the last line (eval's progress ends before it is seen).
    let last_line_error = |o: &std::process::Output| {
        let err = stderr(o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let last = err.lines().last().unwrap_or("");
        assert!(last.starts_with("error: ") && last.contains(want), "{err}");
    };
    last_line_error(&eval(&m, &t));
    let profile = ["profile", "--model", &m, "--calib", &t, "--seqlen", "64"];
    assert_one_line_error(&arborist(&profile, &[]), &[want]);
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
        "--out",
        &out,
    ];
    assert_one_line_error(&arborist(&prune, &[]), &[want]);
    assert!(!d.path().join("out").exists());
    let run = [
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
        "--session",
        &session,
    ];
    last_line_error(&arborist(&run, &[]));
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
