//! Which files a model directory's weights come from, what is said about the ones it does
//! not use, a tokenizer.json's own truncation and padding, and outputs that would delete
//! their own inputs.

mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use std::collections::HashMap;
use std::path::Path;

fn ppl(model: &str, txt: &str) -> (f64, String) {
    let o = arborist(
        &[
            "eval", "--model", model, "--ppl", txt, "--seqlen", "64", "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (v["ppl"]["value"].as_f64().unwrap(), stderr(&o))
}

/// Split `dir`'s model.safetensors into two shards with an index (first shard: the
/// embeddings and block 0), optionally keeping the single file beside them.
fn shard(dir: &Path, keep_single: bool) {
    let single = dir.join("model.safetensors");
    let all = candle_core::safetensors::load(&single, &Device::Cpu).unwrap();
    let (mut a, mut b): (HashMap<String, Tensor>, HashMap<String, Tensor>) = Default::default();
    let mut map = serde_json::Map::new();
    for (name, t) in all {
        let first = name.starts_with("model.embed") || name.starts_with("model.layers.0.");
        let file = if first {
            "model-1.safetensors"
        } else {
            "model-2.safetensors"
        };
        map.insert(name.clone(), file.into());
        if first { &mut a } else { &mut b }.insert(name, t);
    }
    candle_core::safetensors::save(&a, dir.join("model-1.safetensors")).unwrap();
    candle_core::safetensors::save(&b, dir.join("model-2.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    if !keep_single {
        std::fs::remove_file(single).unwrap();
    }
}

// transformers loads model.safetensors when an index sits beside it; so do we.
#[test]
fn a_single_file_wins_over_an_index_beside_it() {
    let d = tmp();
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let (one, other) = (d.path().join("one"), d.path().join("other"));
    write_model_dir(&one, TINY_QWEN3, 1, DType::F32);
    write_model_dir(&other, TINY_QWEN3, 2, DType::F32);
    shard(&other, false);
    let (p_one, _) = ppl(&p(&one), &p(&txt));
    let (p_other, _) = ppl(&p(&other), &p(&txt));
    assert_ne!(p_one, p_other);
    // `one`'s single file beside `other`'s shards and index.
    for f in [
        "model-1.safetensors",
        "model-2.safetensors",
        "model.safetensors.index.json",
    ] {
        std::fs::copy(other.join(f), one.join(f)).unwrap();
    }
    assert_eq!(ppl(&p(&one), &p(&txt)).0, p_one);
}

#[test]
fn a_tensor_in_two_shards_is_refused() {
    let d = tmp();
    let m = d.path().join("m");
    write_model_dir(&m, TINY_QWEN3, 1, DType::F32);
    shard(&m, false);
    // A copy of a block-1 tensor in the first shard as well.
    let mut a =
        candle_core::safetensors::load(m.join("model-1.safetensors"), &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(m.join("model-2.safetensors"), &Device::Cpu).unwrap();
    let name = "model.layers.1.input_layernorm.weight";
    a.insert(name.to_string(), b[name].zeros_like().unwrap());
    candle_core::safetensors::save(&a, m.join("model-1.safetensors")).unwrap();
    let o = arborist(
        &[
            "eval",
            "--model",
            &p(&m),
            "--ppl",
            &p(&m.join("config.json")),
        ],
        &[],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(name) && err.contains("is in both"), "{err}");
}

// A config cut to fewer blocks than the weights hold runs (as in transformers), with a
// warning naming what it leaves out; a complete one says nothing.
#[test]
fn weights_the_config_does_not_use_are_named() {
    let d = tmp();
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let m = d.path().join("m");
    write_model_dir(&m, TINY_QWEN3, 1, DType::F32);
    let (_, quiet) = ppl(&p(&m), &p(&txt));
    assert!(!quiet.contains("warning"), "{quiet}");
    let cut = TINY_QWEN3.replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":1");
    assert_ne!(cut, TINY_QWEN3);
    std::fs::write(m.join("config.json"), cut).unwrap();
    let (_, warned) = ppl(&p(&m), &p(&txt));
    let line = warned
        .lines()
        .find(|l| l.starts_with("warning:"))
        .unwrap_or("");
    assert!(
        line.contains("tensor(s)") && line.contains("num_hidden_layers 1"),
        "{warned}"
    );
    assert!(line.contains("model.layers.1."), "{warned}");
}

// A config naming custom modeling code (`auto_map`, transformers' trust_remote_code) runs
// as the standard architecture, with a warning that says so and names the code.
#[test]
fn custom_modeling_code_in_auto_map_is_warned_about() {
    let d = tmp();
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let m = d.path().join("m");
    write_model_dir(&m, TINY_QWEN3, 1, DType::F32);
    let (plain, quiet) = ppl(&p(&m), &p(&txt));
    assert!(!quiet.contains("warning"), "{quiet}");
    let mut cfg: serde_json::Value = serde_json::from_str(TINY_QWEN3).unwrap();
    cfg["auto_map"] = serde_json::json!({
        "AutoConfig": "configuration_x.XConfig",
        "AutoModelForCausalLM": "modeling_x.XForCausalLM"
    });
    std::fs::write(m.join("config.json"), cfg.to_string()).unwrap();
    let (same, warned) = ppl(&p(&m), &p(&txt));
    assert_eq!(same, plain);
    let w: Vec<&str> = warned
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(w.len(), 1, "{warned}");
    for needle in [
        "`auto_map`",
        "(modeling_x.XForCausalLM)",
        "standard `qwen3`",
    ] {
        assert!(w[0].contains(needle), "{needle}: {warned}");
    }
}

// A session says what `eval` says: weights its config leaves out, and windows longer than
// the model's context (TINY_QWEN3 has max_position_embeddings 256).
#[test]
fn a_session_warns_as_eval_does() {
    let d = tmp();
    let txt = d.path().join("text.txt");
    std::fs::write(&txt, text(6000)).unwrap();
    let m = d.path().join("m");
    write_model_dir(&m, TINY_QWEN3, 1, DType::F32);
    let cut = TINY_QWEN3.replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":1");
    std::fs::write(m.join("config.json"), cut).unwrap();
    let session = d.path().join("s.yaml");
    let (m, txt, session) = (p(&m), p(&txt), p(&session));
    let run = |seqlen: &str| {
        let _ = std::fs::remove_file(&session);
        let o = arborist(
            &[
                "run",
                "--headless",
                "--auto-approve",
                "--model",
                &m,
                "--calib",
                &txt,
                "--eval",
                &txt,
                "--seqlen",
                seqlen,
                "--calib-windows",
                "1",
                "--eval-windows",
                "1",
                "--grad-windows",
                "1",
                "--max-iters",
                "1",
                "--session",
                &session,
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let warnings = |err: &str| -> Vec<String> {
        err.lines()
            .filter(|l| l.starts_with("warning:"))
            .map(String::from)
            .collect()
    };
    let within = run("64");
    let w = warnings(&within);
    assert_eq!(w.len(), 1, "{within}");
    assert!(w[0].contains("num_hidden_layers 1"), "{within}");
    let beyond = run("300");
    let w = warnings(&beyond);
    assert_eq!(w.len(), 2, "{beyond}");
    assert!(
        w[1].contains("--seqlen 300") && w[1].contains("max_position_embeddings 256"),
        "{beyond}"
    );
}

#[test]
fn a_relative_path_taken_for_a_hub_id_says_so() {
    let d = tmp();
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let o = arborist(
        &["eval", "--model", "no-such-dir/pruned50", "--ppl", &p(&txt)],
        &[
            ("HF_HUB_OFFLINE", "1"),
            ("HF_HOME", "/nonexistent-arborist-test"),
        ],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no local directory has that name"), "{err}");
}

// A directory with weights in another layout said only "weights are missing": it now says
// what it found and what to do.
#[test]
fn weights_in_another_layout_are_named() {
    let d = tmp();
    let dir = d.path().join("m");
    write_model_dir(&dir, TINY_QWEN3, 3, DType::F32);
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let err = |want: &[&str]| {
        let o = arborist(&["eval", "--model", &p(&dir), "--ppl", &p(&txt)], &[]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        for w in want {
            assert!(e.contains(w), "`{w}` not in: {e}");
        }
    };
    std::fs::rename(
        dir.join("model.safetensors"),
        dir.join("model-00001-of-00001.safetensors"),
    )
    .unwrap();
    err(&[
        "weights are missing",
        "model-00001-of-00001.safetensors",
        "no model.safetensors.index.json",
    ]);
    std::fs::rename(
        dir.join("model-00001-of-00001.safetensors"),
        dir.join("consolidated.safetensors"),
    )
    .unwrap();
    err(&["consolidated.safetensors is Mistral's own layout"]);
    std::fs::write(dir.join("pytorch_model.bin"), b"not read").unwrap();
    err(&["PyTorch pickle weights", "save them as safetensors"]);
}

// A base model's weights (AutoModel's `layers.0…`, no head) were only "missing": the
// error now names the name it is stored under.
#[test]
fn weights_under_another_prefix_are_named() {
    let d = tmp();
    let dir = d.path().join("m");
    write_model_dir(&dir, TINY_QWEN3, 3, DType::F32);
    let single = dir.join("model.safetensors");
    let all = candle_core::safetensors::load(&single, &Device::Cpu).unwrap();
    let base: HashMap<String, Tensor> = all
        .into_iter()
        .map(|(k, t)| (k.strip_prefix("model.").unwrap_or(&k).to_string(), t))
        .collect();
    candle_core::safetensors::save(&base, &single).unwrap();
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let o = arborist(&["eval", "--model", &p(&dir), "--ppl", &p(&txt)], &[]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("is missing from the weights"), "{e}");
    assert!(e.contains("it is stored as `embed_tokens.weight`"), "{e}");
}

// `--force` replaces the whole --out directory: one that holds the model or the
// calibration text is refused before anything is pruned, and keeps its files.
#[test]
fn an_out_directory_holding_an_input_is_refused() {
    let prune = |m: &Path, calib: &Path, out: &Path| {
        let (m, calib, out) = (p(m), p(calib), p(out));
        arborist(
            &[
                "prune",
                "--model",
                &m,
                "--method",
                "wanda",
                "--sparsity",
                "0.5",
                "--calib",
                &calib,
                "--seqlen",
                "64",
                "--calib-windows",
                "2",
                "--out",
                &out,
                "--force",
            ],
            &[],
        )
    };
    let d = tmp();
    let m = d.path().join("m");
    write_model_dir(&m, TINY_QWEN3, 1, DType::F32);
    let calib = m.join("calib.txt");
    std::fs::write(&calib, text(3000)).unwrap();
    let list = |dir: &Path| -> Vec<_> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    let before = list(&m);
    for (out, what) in [
        (m.clone(), "the model's config"),
        (d.path().to_path_buf(), "the model's"),
    ] {
        let o = prune(&m, &calib, &out);
        let err = stderr(&o);
        assert!(!o.status.success(), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(what) && err.contains("would delete"), "{err}");
    }
    assert_eq!(before, list(&m));
    // The calibration text alone inside --out is refused too.
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::copy(&calib, out.join("calib.txt")).unwrap();
    let o = prune(&m, &out.join("calib.txt"), &out);
    assert!(stderr(&o).contains("holds --calib"), "{}", stderr(&o));
    assert!(out.join("calib.txt").is_file());
    // So is an allocation file (until 2026-12-02 --force deleted it with the old --out).
    let alloc = out.join("a.yaml");
    std::fs::write(&alloc, "model.layers.0.mlp.down_proj: 0.5\n").unwrap();
    let o = arborist(
        &[
            "prune",
            "--model",
            &p(&m),
            "--method",
            "magnitude",
            "--allocation",
            &p(&alloc),
            "--out",
            &p(&out),
            "--force",
        ],
        &[],
    );
    assert!(stderr(&o).contains("holds --allocation"), "{}", stderr(&o));
    assert!(alloc.is_file());
}

// A tokenizer.json saved with truncation or padding on encodes the whole text as
// transformers does (it turns both off unless asked): the same windows and perplexity.
#[test]
fn truncation_and_padding_in_tokenizer_json_are_ignored() {
    let d = tmp();
    let plain = d.path().join("plain");
    write_model_dir(&plain, TINY_QWEN3, 7, DType::F32);
    let txt = d.path().join("t.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let (want, _) = ppl(&p(&plain), &p(&txt));
    let tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(plain.join("tokenizer.json")).unwrap()).unwrap();
    let settings = [
        (
            "truncation",
            serde_json::json!({"direction": "Right", "max_length": 100,
            "strategy": "LongestFirst", "stride": 0}),
        ),
        (
            "padding",
            serde_json::json!({"strategy": {"Fixed": 9000}, "direction": "Right",
            "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "A"}),
        ),
    ];
    for (key, value) in settings {
        let dir = d.path().join(key);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(plain.join(f), dir.join(f)).unwrap();
        }
        let mut t = tok.clone();
        t[key] = value;
        std::fs::write(dir.join("tokenizer.json"), t.to_string()).unwrap();
        // The setting is live in the file: the tokenizers crate applies it as loaded.
        let raw = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let n = raw.encode(text(3000), false).unwrap().get_ids().len();
        assert!(n == 100 || n == 9000, "{key}: {n} tokens");
        let (got, _) = ppl(&p(&dir), &p(&txt));
        assert_eq!(got.to_bits(), want.to_bits(), "{key}: {got} against {want}");
    }
}

// transformers ties lm_head to the embedding only when the checkpoint's copy is identical;
// a different stored head is used untied, with a warning naming the field and the tensor.
#[test]
fn a_tied_config_with_a_different_stored_head_uses_the_head() {
    let d = tmp();
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let m = d.path().join("m");
    write_model_dir(&m, TINY_QWEN3, 3, DType::F32);
    let (tied, quiet) = ppl(&p(&m), &p(&txt));
    assert!(!quiet.contains("warning"), "{quiet}");
    let weights = m.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    let embed = t["model.embed_tokens.weight"].clone();
    // An identical copy: tied as before, nothing said.
    t.insert("lm_head.weight".into(), embed.copy().unwrap());
    candle_core::safetensors::save(&t, &weights).unwrap();
    let (copy, quiet) = ppl(&p(&m), &p(&txt));
    assert_eq!(copy, tied);
    assert!(!quiet.contains("warning"), "{quiet}");
    // A different head: used, as if the config said tie_word_embeddings false.
    let head = (embed.affine(-0.5, 0.01).unwrap()).contiguous().unwrap();
    t.insert("lm_head.weight".into(), head);
    candle_core::safetensors::save(&t, &weights).unwrap();
    let (used, warned) = ppl(&p(&m), &p(&txt));
    let w: Vec<&str> = warned
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(w.len(), 1, "{warned}");
    assert!(
        w[0].contains("tie_word_embeddings") && w[0].contains("`lm_head.weight`"),
        "{warned}"
    );
    // Exported, the head is written and the config says it is untied: with the source's
    // `true` kept, transformers 4 and vLLM tied the head again and computed other logits.
    let out = d.path().join("pruned");
    let o = arborist(
        &[
            "prune",
            "--model",
            &p(&m),
            "--method",
            "magnitude",
            "--sparsity",
            "0.1",
            "--out",
            &p(&out),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["tie_word_embeddings"], false, "{cfg}");
    let saved =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(saved.contains_key("lm_head.weight"));
    std::fs::write(
        m.join("config.json"),
        TINY_QWEN3.replace(
            "\"tie_word_embeddings\":true",
            "\"tie_word_embeddings\":false",
        ),
    )
    .unwrap();
    let (untied, quiet) = ppl(&p(&m), &p(&txt));
    assert!(!quiet.contains("warning"), "{quiet}");
    assert_ne!(used, tied);
    assert_eq!(used, untied);
}

/// One `eval` of `dir` on a short text with `extra` flags: its exit code and stderr.
fn eval_error(dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let txt = dir.parent().unwrap().join("eval.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let mut args = vec![
        "eval",
        "--model",
        dir.to_str().unwrap(),
        "--ppl",
        txt.to_str().unwrap(),
    ];
    args.extend(extra);
    let o = arborist(&args, &[]);
    (o.status.code(), stderr(&o))
}

// The model-format audit of 2026-12-03: a tensor of the wrong shape or a missing head
// whose cause is a field config.json leaves out named only the tensor.
#[test]
fn a_shape_a_default_caused_names_the_default() {
    let d = tmp();
    let dir = d.path().join("m");
    write_model_dir(&dir, TINY_QWEN3, 3, DType::F32);
    let cfg = TINY_QWEN3.replace("\"head_dim\":8,", "");
    std::fs::write(dir.join("config.json"), &cfg).unwrap();
    let (code, e) = eval_error(&dir, &[]);
    assert_eq!(code, Some(1), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("but the config implies")
            && e.contains("(config.json leaves out head_dim, taken as Qwen3Config's default 128)"),
        "{e}"
    );
    // Full rotary only: a partial one was computed as full, silently.
    let partial = TINY_QWEN3.replace(
        "\"head_dim\":8,",
        "\"head_dim\":8,\"partial_rotary_factor\":0.5,",
    );
    std::fs::write(dir.join("config.json"), &partial).unwrap();
    let (_, e) = eval_error(&dir, &[]);
    assert!(
        e.contains(
            "field `partial_rotary_factor` is 0.5: only full rotary embeddings (1.0) are supported"
        ),
        "{e}"
    );
}

// A directory where the weights file belongs, and an index naming a shard outside the
// model's directory, are said as what they are.
#[test]
fn odd_weight_paths_are_named() {
    let d = tmp();
    let dir = d.path().join("m");
    write_model_dir(&dir, TINY_QWEN3, 3, DType::F32);
    let single = dir.join("model.safetensors");
    std::fs::rename(&single, d.path().join("elsewhere.safetensors")).unwrap();
    std::fs::create_dir(&single).unwrap();
    let (code, e) = eval_error(&dir, &[]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains(&format!("weights file {} is not a file", single.display())),
        "{e}"
    );
    std::fs::remove_dir(&single).unwrap();
    let index = serde_json::json!({"weight_map": {"model.embed_tokens.weight": "../elsewhere.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let (code, e) = eval_error(&dir, &[]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains(
            "weight_map names shard `../elsewhere.safetensors` outside the model's directory"
        ),
        "{e}"
    );
}

// A weight finite in the file but beyond f16's range is infinite once converted for
// `--dtype f16`: the error says so (it read as a corrupt checkpoint).
#[test]
fn a_weight_beyond_f16s_range_is_blamed_on_the_conversion() {
    let d = tmp();
    let dir = d.path().join("m");
    write_model_dir(&dir, TINY_QWEN3, 3, DType::F32);
    let single = dir.join("model.safetensors");
    let mut all = candle_core::safetensors::load(&single, &Device::Cpu).unwrap();
    let name = "model.layers.1.mlp.up_proj.weight";
    let t = &all[name];
    let big = (t.ones_like().unwrap() * 1e5).unwrap();
    all.insert(name.to_string(), big);
    candle_core::safetensors::save(&all, &single).unwrap();
    let (code, e) = eval_error(&dir, &["--dtype", "f16"]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains(&format!(
            "tensor {name} holds NaN or infinite values in f16"
        )) && e.contains("beyond f16's range of ±65504"),
        "{e}"
    );
    let (code, e) = eval_error(&dir, &[]);
    assert_eq!(code, Some(0), "f32 keeps it: {e}");
}

// A wrong head_dim reads as a wrong tensor; the error names the fields the shape comes
// from (real-scale audit: `head_dim: 64` for Qwen3-4B named only q_proj's shape).
#[test]
fn a_misshapen_projection_names_the_fields_its_shape_comes_from() {
    let d = tmp();
    let dir = d.path().join("m");
    write_model_dir(&dir, TINY_QWEN3, 3, DType::F32);
    let cfg = TINY_QWEN3.replace("\"head_dim\":8,", "\"head_dim\":4,");
    assert_ne!(cfg, TINY_QWEN3);
    std::fs::write(dir.join("config.json"), &cfg).unwrap();
    let (code, e) = eval_error(&dir, &[]);
    assert_eq!(code, Some(1), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("self_attn.q_proj.weight")
            && e.contains("but the config implies")
            && e.contains("; config.json: hidden_size ")
            && e.contains(" × head_dim 4 = "),
        "{e}"
    );
    // The embedding's (found by tests/model_files_random: it named no field).
    let cfg = TINY_QWEN3.replace("\"vocab_size\":260,", "\"vocab_size\":300,");
    assert_ne!(cfg, TINY_QWEN3);
    std::fs::write(dir.join("config.json"), &cfg).unwrap();
    let (code, e) = eval_error(&dir, &[]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("model.embed_tokens.weight")
            && e.contains("; config.json: vocab_size 300, hidden_size "),
        "{e}"
    );
}
