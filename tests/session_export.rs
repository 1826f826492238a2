//! `arborist export` of a session's checkpoints: the final one and an earlier step.
//!
//! Every expected number is computed here from the session file or from an independent
//! `arborist eval`, never copied from an earlier run.

mod common;
mod session_support;
use common::*;
use serde_json::Value;
use session_support::*;
use std::path::Path;

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
    let meta: Value = json_exact(&std::fs::read_to_string(out.join("arborist.json")).unwrap());
    let listed: std::collections::BTreeMap<String, f64> = meta["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap().to_string(), f(&l["sparsity"])))
        .collect();
    let linear = dense_w
        .keys()
        .filter(|k| k.ends_with("_proj.weight"))
        .count();
    assert_eq!(
        listed.len(),
        linear,
        "arborist.json lists every linear layer"
    );
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
        assert_eq!(
            listed[name], frac,
            "{name}: arborist.json vs the written zeros"
        );
        pruned_layers += (zeros > 0) as usize;
    }
    assert!(pruned_layers > 0);
    assert!(
        (f(&meta["global_sparsity"]) - fo.global()).abs() < 1e-12,
        "{meta}"
    );
    // ... and it is the zeros written, counted over every linear layer.
    let (zeros, all) = pruned_w
        .iter()
        .filter(|(k, _)| k.ends_with("_proj.weight"))
        .fold((0usize, 0usize), |(z, n), (_, w)| {
            (z + w.iter().filter(|x| **x == 0.0).count(), n + w.len())
        });
    assert_eq!(
        f(&meta["global_sparsity"]),
        zeros as f64 / all as f64,
        "{meta}"
    );
    // The weights were saved in the f32 the fixture stores and the session ran in.
    assert_eq!(meta["weights_dtype"], "f32", "{meta}");
    // The perplexity re-measured before writing, with the session's protocol.
    assert_eq!(f(&meta["ppl"]["value"]), fo.ppl());
    let recorded = &entries[0]["event"]["eval"];
    for k in ["dataset", "seqlen", "windows", "dtype"] {
        assert_eq!(meta["ppl"][k], recorded[k], "ppl.{k}: {meta}");
    }
    // The fixture has no tokenizer_config.json: the export names the class that reads
    // tokenizer.json as it is, or AutoTokenizer would pick Qwen2Tokenizer and its own split.
    assert!(!Path::new(&model).join("tokenizer_config.json").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap(),
        arborist::model::save::FAST_TOKENIZER_CONFIG
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
    // A plain replay ends with the state in words: finished, and how many iterations.
    let r = env.run(&["replay", &p(&s), "--headless"]);
    ok(&r);
    let reflected = entries
        .iter()
        .filter(|e| e["event"]["event"] == "reflected")
        .count();
    let last = r.stdout.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("finished (") && last.contains(&format!("): {reflected} iteration(s), ")),
        "{last}"
    );
    // Each proposal's reasoning is printed under it, as the file has it.
    let lines: Vec<&str> = r.stdout.lines().collect();
    let proposals: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event"]["event"] == "proposed")
        .collect();
    assert!(!proposals.is_empty());
    for e in proposals {
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("{}  ", e["seq"])))
            .expect("the proposal's line");
        let reasoning = e["event"]["reply"]["value"]["reasoning"].as_str().unwrap();
        assert_eq!(lines[at + 1], format!("      reasoning: {reasoning}"));
    }
    let out = env.path("step1");
    let r = env.run(&["export", &p(&s), "--out", &p(&out), "--step", "1"]);
    ok(&r);
    let want = format!(
        "exported checkpoint 1 of iteration {} ",
        fo.checkpoints[1].0
    );
    assert!(r.stdout.contains(&want), "`{want}` not in {}", r.stdout);
    // The perplexity with its protocol (it was a bare number).
    let protocol = format!(
        "on {}, seqlen ",
        h["options"]["eval"].as_str().unwrap_or("")
    );
    assert!(
        r.stdout.contains(&protocol) && r.stdout.contains(" windows, f32) to "),
        "`{protocol}` not in {}",
        r.stdout
    );
    let v = eval_ppl(&env, &p(&out), &text);
    assert_eq!(f(&v["value"]), fo.checkpoints[1].1);
    // --json: one document on stdout, the directory and its arborist.json.
    let again = env.path("step1-json");
    let j = ok_json(&env.run(&[
        "export",
        &p(&s),
        "--out",
        &p(&again),
        "--step",
        "1",
        "--json",
    ]));
    assert_eq!(j["out"], p(&again));
    let meta: Value = json_exact(&std::fs::read_to_string(again.join("arborist.json")).unwrap());
    assert_eq!(j["result"], meta);
    assert_eq!(f(&j["result"]["eval"]["ppl"]), fo.checkpoints[1].1);
    // A step the session never reached is refused (it used to export the last one).
    let beyond = env.path("step99");
    let r = env.run(&["export", &p(&s), "--out", &p(&beyond), "--step", "99"]);
    one_error_line(&r, &["--step 99", "finished iteration"]);
    assert!(!beyond.exists());
    // A file that ends just after iteration 2's guard has finished iteration 2: `--step 2`
    // writes what the plain export writes (it used to be refused).
    let text = std::fs::read_to_string(&s).unwrap();
    let starts = doc_starts(&text);
    let k = entries
        .iter()
        .position(|e| kind(e) == "guard" && iter_of(e) == Some(2))
        .expect("a guard in iteration 2");
    let cut = env.path("cut.yaml");
    std::fs::write(&cut, &text[..starts[k + 2]]).unwrap();
    let (plain, step2) = (env.path("plain"), env.path("step2"));
    ok(&env.run(&["export", &p(&cut), "--out", &p(&plain)]));
    ok(&env.run(&["export", &p(&cut), "--out", &p(&step2), "--step", "2"]));
    let weights = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(weights(&plain), weights(&step2));
    // The same checkpoint in shards holds the same tensors.
    let split = env.path("split");
    let r = env.run(&[
        "export",
        &p(&cut),
        "--out",
        &p(&split),
        "--step",
        "2",
        "--max-shard-size",
        "0.1MB",
    ]);
    ok(&r);
    let mut shards: Vec<_> = std::fs::read_dir(&split)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    shards.sort();
    assert!(
        shards.len() > 1 && shards[0].starts_with("model-00001-of-"),
        "{shards:?}"
    );
    let mut tensors = std::collections::HashMap::new();
    for f in &shards {
        tensors.extend(load_f32(&split.join(f)));
    }
    assert!(tensors == load_f32(&plain.join("model.safetensors")));
    assert!(split.join("model.safetensors.index.json").is_file());
    let bad = env.path("bad");
    let r = env.run(&[
        "export",
        &p(&cut),
        "--out",
        &p(&bad),
        "--max-shard-size=-1GB",
    ]);
    one_error_line(&r, &["--max-shard-size -1GB", "at least one byte"]);
    assert!(!bad.exists());
}

/// A reviewer's rollback drops later checkpoints from the session's end state, not from
/// its history: `--step N` writes the checkpoint that stood after iteration N (it wrote the
/// restored one and said N "kept no step"; code review, 2026-12-05).
#[test]
fn export_step_n_after_a_reviewer_rollback_writes_the_checkpoint_n_had() {
    let env = Env::new();
    let (model, text) = (fx("qwen3"), fx("eval.txt"));
    let s = env.path("s.yaml");
    fixture_session(&env, &s, &model, &text);
    let full = std::fs::read_to_string(&s).unwrap();
    let (_, entries) = session_docs(&s);
    let guard = |it: u64| {
        let g = entries
            .iter()
            .find(|e| kind(e) == "guard" && iter_of(e) == Some(it));
        g.expect("a guard").clone()
    };
    assert_eq!(
        guard(2)["event"]["accepted"],
        true,
        "needs iteration 2 accepted"
    );
    // Cut after iteration 3's proposal; the reviewer rolls back to checkpoint 1, and the
    // resumed run does iteration 3 again from there.
    let k = (entries.iter())
        .position(|e| kind(e) == "proposed" && iter_of(e) == Some(3))
        .expect("iteration 3's proposal");
    let (seq, ms) = (&entries[k]["seq"], &entries[k]["unix_ms"]);
    let back = format!(
        "---\nseq: {}\nunix_ms: {}\nevent:\n  event: rollback_to\n  checkpoint: 1\n  by: human\n...\n",
        seq.as_u64().unwrap() + 1,
        ms.as_u64().unwrap() + 1
    );
    let rb = env.path("rb.yaml");
    std::fs::write(&rb, format!("{}{back}", &full[..doc_starts(&full)[k + 2]])).unwrap();
    ok_json(&env.resume(&rb));
    let v = ok_json(&env.run(&["replay", &p(&rb), "--verify", "--json"]));
    assert_eq!(v["bit_exact"], true, "{v}");
    let out = env.path("step2");
    let j = ok_json(&env.run(&[
        "export",
        &p(&rb),
        "--out",
        &p(&out),
        "--step",
        "2",
        "--json",
    ]));
    let (meta, g) = (&j["result"], &guard(2)["event"]);
    assert_eq!(
        (&meta["iteration"], &meta["checkpoint"]),
        (&2.into(), &2.into()),
        "{meta}"
    );
    assert_eq!(f(&meta["eval"]["ppl"]), f(&g["ppl_after"]), "{meta}");
    assert!(
        (f(&meta["global_sparsity"]) - f(&g["global_sparsity"])).abs() < 1e-9,
        "{meta}"
    );
    // The same weights as the export of the file without the rollback.
    let plain = env.path("plain2");
    ok(&env.run(&["export", &p(&s), "--out", &p(&plain), "--step", "2"]));
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(weights(&out) == weights(&plain));
}

/// The fields `prune --out` and `export` share, in the shapes both write them.
const SHARED: [&str; 9] = [
    "arborist_version",
    "source_model",
    "source_commit",
    "device",
    "dtype",
    "method",
    "global_sparsity",
    "layers",
    "ppl",
];

#[test]
fn prune_and_export_write_the_shared_fields_of_arborist_json_alike() {
    let env = Env::new();
    let (model, text) = (fx("qwen3"), fx("eval.txt"));
    let s = env.path("s.yaml");
    fixture_session(&env, &s, &model, &text);
    let exported = env.path("exported");
    ok(&env.run(&["export", &p(&s), "--out", &p(&exported)]));
    let pruned = env.path("pruned");
    ok(&env.run(&[
        "prune",
        "--model",
        &model,
        "--method",
        "magnitude",
        "--sparsity",
        "0.3",
        "--seqlen",
        "64",
        "--eval",
        &text,
        "--out",
        &p(&pruned),
    ]));
    let read = |d: &Path| -> Value {
        json_exact(&std::fs::read_to_string(d.join("arborist.json")).unwrap())
    };
    let (e, q) = (read(&exported), read(&pruned));
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    for k in SHARED {
        assert_eq!(
            kind(&e[k]),
            kind(&q[k]),
            "{k}: export {} vs prune {}",
            e[k],
            q[k]
        );
        // A directory has no hub commit: null in both.
        if k != "source_commit" {
            assert_ne!(kind(&e[k]), "null", "{k} missing: {e}");
        }
    }
    assert_eq!(e["method"], "arborist-session");
    assert_eq!(q["method"], "magnitude");
    for k in ["source_model", "device", "dtype", "arborist_version"] {
        assert_eq!(e[k], q[k], "{k}");
    }
    let names = |v: &Value| -> Vec<String> {
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&e), names(&q), "the same layers in the same order");
    let keys =
        |v: &Value| -> Vec<String> { v["ppl"].as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&e), keys(&q));
    assert_eq!(q["ppl"]["seqlen"], 64);
    // Magnitude pruning at 0.3 gives every layer its rounded share of zeros.
    for l in q["layers"].as_array().unwrap() {
        assert!((f(&l["sparsity"]) - 0.3).abs() < 0.01, "{l}");
    }
}

// SIGTERM while `export --out ek/x/new` is written: as for `prune --out`, the temporary
// and the directories the export made go, one line says nothing was written, and the
// process ends as SIGTERM would. A shard per tensor of 64 blocks makes the write last; an
// export that ends before the signal arrives is tried again.
#[test]
fn an_interrupted_export_leaves_nothing_behind() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let env = Env::new();
    let model = env.dir.path().join("in/m64");
    let config = TINY_QWEN3.replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":64");
    write_model_dir(&model, &config, 5, candle_core::DType::F32);
    let s = env.path("s.yaml");
    fixture_session(&env, &s, &p(&model), &fx("eval.txt"));
    let interrupted = (0..5).any(|attempt| {
        let ek = env.path(&format!("ek{attempt}"));
        std::fs::create_dir(&ek).unwrap();
        let out = ek.join("x/new");
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"));
        c.args(["export", &p(&s), "--max-shard-size", "1", "--out", &p(&out)])
            .current_dir(env.work())
            .env("ARBORIST_CACHE", &env.cache)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // SAFETY: only signal(2), async-signal-safe, between fork and exec (a SIGTERM
        // ignored by whatever runs the tests would stay ignored).
        unsafe {
            c.pre_exec(|| {
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = c.spawn().unwrap();
        let partial = |e: std::fs::DirEntry| e.file_name().to_string_lossy().starts_with(".new.");
        let writing =
            || std::fs::read_dir(ek.join("x")).is_ok_and(|mut r| r.any(|e| partial(e.unwrap())));
        while !writing() && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let o = child.wait_with_output().unwrap();
        if out.exists() {
            return false;
        }
        let e = stderr(&o);
        assert_eq!(o.status.signal(), Some(libc::SIGTERM), "{e}");
        let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
        let want = format!("error: interrupted: nothing was written to {}", p(&out));
        assert_eq!(lines, [want], "{e}");
        let left: Vec<_> = std::fs::read_dir(&ek).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        true
    });
    assert!(interrupted, "every export ended before the signal came");
}

/// Names the file system takes (up to 255 bytes) are taken whole: the hidden siblings a
/// session and an export make (`.NAME.new-PID`, `.NAME.reserved`, `.NAME.partial-HOST-PID`)
/// are shortened instead. A session name of 243 bytes or more was refused with "File name
/// too long", though no file of that name was too long.
#[test]
fn names_up_to_the_file_system_limit_are_taken_whole() {
    let env = Env::new();
    let (model, text) = (fx("qwen3"), fx("eval.txt"));
    // 250 bytes, two-byte characters included so the shortening cuts between characters.
    let name = format!("{}{}.yaml", "é".repeat(100), "s".repeat(45));
    assert_eq!(name.len(), 250);
    let s = env.path(&name);
    fixture_session(&env, &s, &model, &text);
    let r = env.resume(&s);
    ok(&r);
    let out = env.path(&format!("{}{}", "ü".repeat(100), "o".repeat(55)));
    for force in [false, true] {
        let mut a = vec!["export".to_string(), p(&s), "--out".into(), p(&out)];
        a.extend(force.then(|| "--force".to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&env.run(&a));
        assert!(out.join("model.safetensors").is_file(), "force {force}");
    }
    let mut left: Vec<String> = std::fs::read_dir(s.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want = vec![
        name,
        out.file_name().unwrap().to_string_lossy().into_owned(),
    ];
    want.sort();
    assert_eq!(left, want);
}

/// A session that has not finished (still running, killed, or a copy cut at a document
/// boundary) exports its last checkpoint with a warning, and arborist.json
/// says how the session ended; a finished one exports without a word.
#[test]
fn an_unfinished_session_exports_with_a_warning_and_says_so() {
    let env = Env::new();
    let s = env.path("s.yaml");
    fixture_session(&env, &s, &fx("qwen3"), &fx("eval.txt"));
    let text = std::fs::read_to_string(&s).unwrap();
    // Cut before the last reflection (the machine derives `finished` after it).
    let starts = doc_starts(&text);
    let last = *starts
        .iter()
        .rev()
        .find(|&&a| {
            text[a..]
                .split("\n---\n")
                .next()
                .unwrap()
                .contains("event: reflected")
        })
        .unwrap();
    let cut = env.path("cut.yaml");
    std::fs::write(&cut, &text[..last]).unwrap();
    for (file, out, finished) in [(&s, "a", Some("max_iterations")), (&cut, "b", None)] {
        let out = env.path(out);
        let r = env.run(&["export", &p(file), "--out", &p(&out)]);
        ok(&r);
        let meta: Value = json_exact(&std::fs::read_to_string(out.join("arborist.json")).unwrap());
        assert_eq!(meta["session_finished"].as_str(), finished, "{meta}");
        assert_eq!(meta["session_iterations"], 3, "{meta}");
        let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warning")).collect();
        if finished.is_some() {
            assert!(warnings.is_empty(), "{}", r.stderr);
        } else {
            assert_eq!(warnings.len(), 1, "{}", r.stderr);
            let w = warnings[0];
            assert!(
                w.starts_with(&format!(
                    "warning: {} has not finished (3 iteration(s)",
                    p(file)
                )),
                "{w}"
            );
            assert!(w.contains("not the end of a run"), "{w}");
        }
    }
    // An earlier step is asked for by name: no warning.
    let r = env.run(&[
        "export",
        &p(&cut),
        "--out",
        &p(&env.path("c")),
        "--step",
        "1",
    ]);
    ok(&r);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}
