//! A model directory with a missing, cut or misshapen file, or an unsupported
//! architecture: one line naming the file or tensor.

use super::*;

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
    let lie = |entry: &str, field: &str, value: serde_json::Value| {
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        header[entry][field] = value;
        let mut text = serde_json::to_vec(&header).unwrap();
        text.resize(text.len().div_ceil(8) * 8, b' ');
        let mut lied = (text.len() as u64).to_le_bytes().to_vec();
        lied.extend(&text);
        lied.extend(&bytes[8 + n..]);
        std::fs::write(&w, &lied).unwrap();
    };
    lie("model.norm.weight", "dtype", "BF16".into());
    assert_one_line_error(
        &eval(&m, &t),
        &["tensor model.norm.weight: BF16 [", "data_offsets ["],
    );
    // A shape whose size does not fit in 64 bits (the product overflowed: a panic in a
    // debug build, a wrapped size in a release one; found by tests/model_files_random).
    let e = "model.embed_tokens.weight";
    lie(e, "shape", serde_json::json!([1u64 << 40, 1u64 << 40]));
    assert_one_line_error(&eval(&m, &t), &[e, "is too large"]);
    // A shape that is not whole numbers was read without its bad dimension.
    lie(e, "shape", serde_json::json!([-1, 32]));
    assert_one_line_error(
        &eval(&m, &t),
        &[e, "[-1,32] is not a list of whole numbers"],
    );
    // A header length that points past the end of the file.
    let mut bad = bytes.clone();
    bad[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(&w, &bad).unwrap();
    let o = eval(&m, &t);
    assert_one_line_error(&o, &["model.safetensors", "(header too large)"]);
    // The path once, not again as candle's `path: "..."`.
    assert_eq!(
        stderr(&o).matches("model.safetensors").count(),
        1,
        "{}",
        stderr(&o)
    );
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

// The tokenizers crate panics on a JSON cut inside `decoder` and on a bad precompiled
// charsmap; an empty vocabulary drops every character and was blamed on the text (all
// three found by tests/model_files_random).
#[test]
fn a_malformed_tokenizer_is_one_line_naming_it() {
    let (_d, m, t) = setup();
    let path = std::path::Path::new(&m).join("tokenizer.json");
    let good = std::fs::read_to_string(&path).unwrap();
    let cut = good.find("\"decoder\"").unwrap() + 20;
    std::fs::write(&path, &good[..cut]).unwrap();
    assert_one_line_error(
        &eval(&m, &t),
        &["cannot load tokenizer", "tokenizer.json", "not valid JSON"],
    );
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["normalizer"] = serde_json::json!({"type": "Precompiled", "precompiled_charsmap": "AAAA"});
    std::fs::write(&path, v.to_string()).unwrap();
    assert_one_line_error(
        &eval(&m, &t),
        &[
            "cannot load tokenizer",
            "tokenizer.json",
            "the tokenizers crate failed",
        ],
    );
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["model"]["vocab"] = serde_json::json!({});
    std::fs::write(&path, v.to_string()).unwrap();
    assert_one_line_error(
        &eval(&m, &t),
        &[
            "tokenizer.json",
            "into no tokens",
            "vocabulary has 0 entries",
        ],
    );
}
