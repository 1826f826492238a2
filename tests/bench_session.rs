//! `bench --suite session`: its memory figures come from child processes of the same binary.

mod common;
use common::*;

/// `arborist` without an arena count from the environment (a CI that exports
/// MALLOC_ARENA_MAX would otherwise choose for the child), plus `envs`.
fn arborist_default_arenas(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"));
    c.args(args)
        .env_remove("MALLOC_ARENA_MAX")
        .env_remove("GLIBC_TUNABLES");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn session_bench_measures_memory_in_fresh_child_processes() {
    let t = tmp();
    let cache = p(&t.path().join("cache"));
    let o = arborist_default_arenas(
        &[
            "bench",
            "--suite",
            "session",
            "--session-iters",
            "2",
            "--iters",
            "1",
            "--memory-runs",
            "1",
            "--threads",
            "1",
            "--json",
        ],
        &[("ARBORIST_CACHE", &cache)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The sessions with and without the cache record the same perplexities, bit for bit
    // (the bench stops otherwise; checked here from what it printed).
    let ppls = |run: &str| -> Vec<u64> {
        let its = v[run]["iterations"].as_array().unwrap();
        its.iter()
            .map(|i| i["ppl"].as_f64().unwrap().to_bits())
            .collect()
    };
    assert_eq!(ppls("incremental"), ppls("full"), "{v}");
    // Its protocol: where and in what dtype, over which windows.
    assert_eq!(v["device"], "cpu", "{v}");
    assert_eq!(v["dtype"], "f32", "{v}");
    assert!(v["eval_windows"].as_u64().is_some_and(|w| w > 0), "{v}");
    assert!(!ppls("incremental").is_empty(), "{v}");
    let m = &v["memory"];
    assert_eq!(m["runs"], 1);
    let (one, whole) = (&m["one_iteration"][0], &m["session"][0]);
    assert_eq!(one["iterations"], 1, "{m}");
    assert_eq!(whole["iterations"], 2, "{m}");
    let u = |x: &serde_json::Value, k: &str| x[k].as_u64().unwrap_or_else(|| panic!("{k}: {x}"));
    for s in [one, whole] {
        let (start, loaded, peak) = (
            u(s, "rss_start_bytes"),
            u(s, "rss_loaded_bytes"),
            u(s, "peak_rss_bytes"),
        );
        assert!(start > 0 && start < loaded && loaded < peak, "{s}");
        assert!(
            loaded - start >= u(s, "weight_bytes"),
            "loading holds the weights: {s}"
        );
    }
    // On glibc: the heap at the end, in use (the weights at least) and held by malloc.
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        for s in [one, whole] {
            let (used, held) = (u(s, "heap_in_use_end_bytes"), u(s, "heap_held_end_bytes"));
            assert!(u(s, "weight_bytes") <= used && used <= held, "{s}");
        }
        assert_eq!(
            m["heap_in_use_end_bytes"][1], whole["heap_in_use_end_bytes"],
            "the median of one run is that run: {m}"
        );
    }
    // One malloc arena (src/runtime.rs, single_heap_arena), whatever thread allocated.
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert_eq!(whole["heap_arenas"], 1, "{m}");
    }
    // The summary is built from these samples.
    let ws = u(one, "peak_rss_bytes") - u(one, "rss_loaded_bytes");
    assert_eq!(u(m, "working_set_bytes"), ws);
    assert_eq!(u(m, "peak_rss_bytes"), u(whole, "peak_rss_bytes"));
    let ratio = u(whole, "peak_rss_bytes") as f64 / (u(one, "weight_bytes") + ws) as f64;
    let got = m["peak_over_weights_plus_working_set"].as_f64().unwrap();
    assert!((got - ratio).abs() < 1e-12, "{got} vs {ratio}");
}

// Any model directory, with its own texts, which reach the memory children too (a child
// without them would stop: the texts are required for a model other than `bundled`).
#[test]
fn session_bench_takes_a_model_directory_and_its_texts() {
    use candle_core::DType;
    let t = tmp();
    let m = t.path().join("m");
    write_model_dir(&m, TINY_QWEN3, 3, DType::F32);
    let txt = t.path().join("text.txt");
    std::fs::write(&txt, text(6000)).unwrap();
    let (m, txt) = (p(&m), p(&txt));
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--suite",
            "session",
            "--model",
            &m,
            "--session-iters",
            "2",
            "--iters",
            "1",
            "--memory-runs",
            "1",
            "--threads",
            "1",
            "--json",
        ];
        args.extend(extra);
        arborist(&args, &[])
    };
    let o = bench(&["--calib", &txt, "--eval", &txt]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["model"], m.as_str());
    assert_eq!(v["seqlen"], 256, "the model's context: {v}");
    assert_eq!(v["memory"]["session"][0]["iterations"], 2, "{v}");
    let o = bench(&[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--calib FILE is required"),
        "{}",
        stderr(&o)
    );
}

// Compute threads share one malloc arena, so that memory one frees serves the others and a
// session's peak does not grow with each iteration; MALLOC_ARENA_MAX still chooses (glibc).
#[test]
fn compute_threads_share_one_malloc_arena_unless_the_user_chose() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let t = tmp();
    let cache = p(&t.path().join("cache"));
    let arenas = |env: &[(&str, &str)]| -> u64 {
        let mut env = env.to_vec();
        env.push(("ARBORIST_CACHE", &cache));
        env.push(("ARBORIST_BENCH_MEMORY_CHILD", "1"));
        let o = arborist_default_arenas(
            &[
                "bench",
                "--suite",
                "session-memory",
                "--session-iters",
                "1",
                "--threads",
                "2",
            ],
            &env,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["heap_arenas"].as_u64().unwrap_or_else(|| panic!("{v}"))
    };
    assert_eq!(arenas(&[]), 1);
    assert!(arenas(&[("MALLOC_ARENA_MAX", "8")]) > 1);
    assert!(arenas(&[("GLIBC_TUNABLES", "glibc.malloc.arena_max=8")]) > 1);
    // Values glibc ignores choose nothing.
    assert_eq!(arenas(&[("MALLOC_ARENA_MAX", "0")]), 1);
    assert_eq!(
        arenas(&[("GLIBC_TUNABLES", "glibc.malloc.arena_test=8")]),
        1
    );
}

// `bench --suite ppl --json` carries its protocol, with the device as `--device` spells it
// (it said `Cpu` where prune's arborist.json says `cpu`).
#[test]
fn ppl_bench_json_names_its_protocol_and_device_as_flags_do() {
    let o = arborist(
        &[
            "bench",
            "--suite",
            "ppl",
            "--json",
            "--iters",
            "1",
            "--seqlen",
            "32",
            "--calib-windows",
            "4",
            "--batch",
            "8",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["dtype"], "f32");
    assert_eq!(
        (v["seqlen"].as_u64(), v["windows"].as_u64()),
        (Some(32), Some(4))
    );
    // The GEMM it is measured against has the rows a pass multiplies: 4 windows, not the
    // batch of 8 there are not enough windows for.
    assert_eq!(v["gemm_rows"], 4 * 32, "{v}");
    assert!(v["threads"].as_u64().is_some_and(|t| t >= 1), "{v}");
    let fraction = v["fraction_of_gemm"].as_f64().unwrap();
    assert!(fraction > 0.0 && fraction.is_finite(), "{v}");
}

// A bench stopped by Ctrl-C never removed its random model (about 100 MB under /tmp); the
// next run sweeps the directories of runs whose process is gone, and only those.
#[test]
fn a_bench_sweeps_the_temporary_models_of_killed_runs() {
    let t = tmp();
    let cfg = t.path().join("small.json");
    std::fs::write(
        &cfg,
        r#"{"model_type":"qwen3","vocab_size":1024,"hidden_size":64,"intermediate_size":96,
        "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,
        "max_position_embeddings":128,"tie_word_embeddings":true,"rope_theta":10000.0,
        "rms_norm_eps":1e-6}"#,
    )
    .unwrap();
    let dir = |pid: &str| t.path().join(format!("arborist-stream-bench-{pid}"));
    // Far above any pid_max, so no process has it; this test's own process is alive.
    let (dead, alive, other) = (
        dir("999999999"),
        dir(&std::process::id().to_string()),
        dir("x"),
    );
    for d in [&dead, &alive, &other] {
        std::fs::create_dir_all(d.join("model")).unwrap();
        std::fs::write(d.join("model/model.safetensors"), b"left behind").unwrap();
    }
    let o = arborist_default_arenas(
        &[
            "bench",
            "--suite",
            "stream",
            "--config",
            &p(&cfg),
            "--seqlen",
            "32",
            "--calib-windows",
            "1",
            "--iters",
            "1",
        ],
        &[("TMPDIR", &p(t.path()))],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dead.exists(), "the killed run's directory is still there");
    assert!(alive.exists() && other.exists());
    // The run's own directory went when it ended.
    let mut left: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("arborist-"))
        .collect();
    left.sort();
    let mut want = vec![
        alive.file_name().unwrap().to_string_lossy().into_owned(),
        "arborist-stream-bench-x".to_string(),
    ];
    want.sort();
    assert_eq!(left, want);
}

// Every suite's --json carries its protocol: device, dtype, windows and their length, and
// what was run (forward, profile and prune named neither device nor data).
#[test]
fn forward_profile_and_prune_bench_json_name_their_protocol() {
    let run = |args: &[&str]| -> serde_json::Value {
        let mut a = vec!["bench", "--json", "--seqlen", "32"];
        a.extend(args);
        let o = arborist(&a, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let f = run(&["--suite", "forward", "--iters", "1", "--batch", "2"]);
    assert_eq!(
        (&f["suite"], &f["dataset"]),
        (&"forward".into(), &"synthetic".into())
    );
    assert_eq!(
        (f["windows"].as_u64(), f["iters"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(f["gemm_shape"][0], 64, "{f}");
    assert_eq!((&f["device"], &f["dtype"]), (&"cpu".into(), &"f32".into()));
    assert_eq!(
        (f["batch"].as_u64(), f["seqlen"].as_u64()),
        (Some(2), Some(32))
    );
    assert_eq!(f["tokens_per_forward"], 64);
    // The marked pass's phases: the block's parts and the head, each charged once, together
    // its wall time.
    let phases = f["phases"].as_array().unwrap();
    let name = |p: &serde_json::Value| p["phase"].as_str().unwrap().to_string();
    let names: std::collections::BTreeSet<String> = phases.iter().map(name).collect();
    assert_eq!(names.len(), phases.len(), "{f}");
    for want in [
        "q, k, v projections",
        "attention: tiled",
        "gate, up projections",
        "down projection",
        "final norm and head",
    ] {
        assert!(names.contains(want), "no phase {want}: {f}");
    }
    let sum: f64 = phases.iter().map(|p| p["seconds"].as_f64().unwrap()).sum();
    let wall = f["marked_pass_seconds"].as_f64().unwrap();
    assert!(
        wall > 0.0 && (sum - wall).abs() <= 0.01 * wall,
        "{sum} vs {wall}"
    );
    for (suite, what, value) in [
        ("profile", "grad_windows", serde_json::json!(4)),
        ("prune", "method", serde_json::json!("wanda")),
    ] {
        let v = run(&["--suite", suite, "--calib-windows", "2", "--batch", "2"]);
        assert_eq!(v["suite"], suite);
        assert_eq!(
            (&v["device"], &v["dtype"]),
            (&"cpu".into(), &"f32".into()),
            "{v}"
        );
        assert_eq!(
            (v["calib_windows"].as_u64(), v["seqlen"].as_u64()),
            (Some(2), Some(32))
        );
        assert_eq!(v["dataset"], "synthetic");
        assert_eq!(v["what"][what], value, "{v}");
    }
    // The profile's parts: each measured, together no more than the whole.
    let v = run(&["--suite", "profile", "--calib-windows", "2", "--batch", "2"]);
    let part = |k: &str| v["what"]["seconds"][k].as_f64().unwrap_or(-1.0);
    let parts = ["calibration", "gradients", "rows"].map(part);
    assert!(parts.iter().all(|p| *p > 0.0), "{v}");
    assert!(
        parts.iter().sum::<f64>() <= v["seconds"].as_f64().unwrap(),
        "{v}"
    );
}

// A resident load copies each tensor out of the mapped weight file; the mapped pages it
// read counted in the resident set until the file was unmapped, so loading peaked at the
// weights twice over (226.5 MiB for 104 MiB of weights here; 15.7 GB for a Qwen3-4B-shaped
// model's 8 GB in bf16). Each tensor's pages now leave the process once it is copied.
#[test]
fn loading_a_model_holds_its_weights_once() {
    let t = tempfile::tempdir().unwrap();
    let o = arborist(
        &[
            "bench",
            "--suite",
            "stream",
            "--seqlen",
            "32",
            "--calib-windows",
            "1",
            "--iters",
            "1",
            "--json",
        ],
        &[("TMPDIR", &p(t.path()))],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let weights = v["weight_bytes"].as_f64().unwrap();
    assert!(weights > 100e6, "{v}");
    for phase in ["resident", "streamed"] {
        let loaded = v[phase]["rss_loaded_bytes"].as_f64().unwrap();
        let peak = v[phase]["peak_rss_loading_bytes"].as_f64().unwrap();
        assert!(loaded > 0.0, "no RSS measured: {v}");
        assert!(
            peak <= loaded + 0.2 * weights,
            "{phase}: peak while loading {peak} for {loaded} loaded and {weights} of weights"
        );
    }
}

// The gradient pass handed back every layer's G (f32, the size of the weights) before any
// was reduced to its profile row: a Qwen3-4B-shaped model's profile peaked at 16 GB,
// `--stream-layers` or not. Each block's G is now reduced and dropped as soon as its
// backward ends. On this 29M-parameter model the peak was 2.26× the weights; it is 1.45×.
#[test]
fn the_profile_holds_one_blocks_gradients_at_a_time() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"model_type":"qwen3","vocab_size":1024,"hidden_size":512,"intermediate_size":1536,
        "num_hidden_layers":8,"num_attention_heads":8,"num_key_value_heads":4,"head_dim":64,
        "max_position_embeddings":512,"tie_word_embeddings":true,"rope_theta":10000.0,
        "rms_norm_eps":1e-6}"#,
    )
    .unwrap();
    let o = arborist(
        &[
            "bench",
            "--suite",
            "profile",
            "--config",
            &p(&cfg),
            "--calib-windows",
            "1",
            "--seqlen",
            "32",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let weights = v["weight_bytes"].as_f64().unwrap();
    let peak = v["peak_rss_bytes"].as_f64().unwrap();
    assert!(weights > 100e6 && peak > weights, "{v}");
    assert!(
        peak <= 1.7 * weights,
        "peak {peak} for {weights} of weights"
    );
}
