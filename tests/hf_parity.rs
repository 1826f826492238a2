//! Parity with Hugging Face transformers on checkpoints it saved itself
//! (tests/fixtures/hf, made by make_fixtures.py): logits within 1e-4 relative error and
//! perplexity within 0.1% under the Wanda/SparseGPT protocol.

use arborist::data::{read_text, Windows};
use arborist::eval::perplexity;
use arborist::model::LoadedModel;
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn reference(name: &str) -> serde_json::Value {
    let path = fixtures().join(name).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check(name: &str) {
    let model = LoadedModel::load(
        fixtures().join(name).to_str().unwrap(),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    check_model(name, &model, &reference(name));
}

/// `model`'s logits and perplexities against `reference` (a fixture's reference.json).
fn check_model(name: &str, model: &LoadedModel, reference: &serde_json::Value) {
    // Logits for every position.
    let tokens: Vec<Vec<u32>> = serde_json::from_value(reference["tokens"].clone()).unwrap();
    let shape: Vec<usize> = serde_json::from_value(reference["logits_shape"].clone()).unwrap();
    let want: Vec<f32> = serde_json::from_value(reference["logits"].clone()).unwrap();
    let want = Tensor::from_vec(want, shape.clone(), &Device::Cpu).unwrap();
    let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
    let ids = Tensor::from_vec(flat, (tokens.len(), tokens[0].len()), &Device::Cpu).unwrap();
    let got = model.decoder.forward(&ids, None).unwrap();
    assert_eq!(got.dims(), shape.as_slice());
    let diff = (&got - &want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        diff / scale < 1e-4,
        "{name}: logits relative error {}",
        diff / scale
    );

    // Perplexity, same protocol and tokenization.
    let text = read_text(&fixtures().join("eval.txt")).unwrap();
    let ids = model.encode(&text).unwrap();
    for r in reference["ppl"].as_array().unwrap() {
        let seqlen = r["seqlen"].as_u64().unwrap() as usize;
        let w = Windows::sequential(&ids, seqlen, None, "eval.txt").unwrap();
        assert_eq!(
            w.tokens as u64,
            r["tokens"].as_u64().unwrap(),
            "{name}: token count"
        );
        assert_eq!(w.len() as u64, r["windows"].as_u64().unwrap());
        let p = perplexity(&model.decoder, &w, 8, "eval.txt", |_, _| {}).unwrap();
        let hf = r["value"].as_f64().unwrap();
        let rel = (p.value - hf).abs() / hf;
        assert!(
            rel < 1e-3,
            "{name} seqlen {seqlen}: ppl {} vs HF {hf}",
            p.value
        );
        let hf_losses: Vec<f64> = serde_json::from_value(r["per_window_loss"].clone()).unwrap();
        for (i, (a, b)) in p.window_loss.iter().zip(&hf_losses).enumerate() {
            assert!(
                (a - b).abs() < 1e-4,
                "{name} seqlen {seqlen} window {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn llama_with_llama3_rope_scaling_and_gqa() {
    check("llama");
}

#[test]
fn llama_sharded_checkpoint() {
    check("llama_sharded");
}

#[test]
fn mistral() {
    check("mistral");
}

#[test]
fn qwen2_with_biases_and_tied_embeddings() {
    check("qwen2");
}

#[test]
fn qwen3_with_qk_norm_and_head_dim() {
    check("qwen3");
}

#[test]
fn qwen3_stored_as_bf16() {
    check("qwen3_bf16");
}

#[test]
fn qwen3_stored_as_f16() {
    check("qwen3_f16");
}

// config.json ties the head, and the file holds the shared matrix as `lm_head.weight`
// only: transformers 5.24 ties symmetrically and uses it for both (make_fixtures.py
// asserts its logits are the in-memory model's, bit for bit).
#[test]
fn qwen3_tied_with_only_lm_head_stored() {
    check("qwen3_head_only");
}

// The same checkpoint with its linears streamed, then exported: the export holds the
// matrix as `model.embed_tokens.weight` only, as transformers' save_pretrained writes a
// tied model (make_fixtures.py checks that too), in the file's bf16, and gives the same
// numbers.
#[test]
fn a_head_only_checkpoint_streams_and_exports_as_save_pretrained_would() {
    let name = "qwen3_head_only";
    let dir = fixtures().join(name);
    let streamed =
        LoadedModel::load_with(dir.to_str().unwrap(), &Device::Cpu, DType::F32, true).unwrap();
    assert!(streamed.decoder.is_streamed());
    check_model(name, &streamed, &reference(name));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    arborist::prune::export::export(
        &streamed.decoder,
        &streamed.files,
        &out,
        false,
        u64::MAX,
        &mut serde_json::json!({}),
    )
    .unwrap();
    let written =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(!written.contains_key("lm_head.weight"));
    assert_eq!(
        written["model.embed_tokens.weight"].dtype(),
        DType::BF16,
        "{:?}",
        written["model.embed_tokens.weight"]
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["tie_word_embeddings"], true);
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    // arborist.json says so beside the f32 the model ran in.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("arborist.json")).unwrap()).unwrap();
    assert_eq!(meta["weights_dtype"], "bf16", "{meta}");
    let exported = LoadedModel::load(out.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap();
    check_model(name, &exported, &reference(name));
}

#[test]
fn half_precision_compute_stays_close() {
    // Not a parity claim: bf16/f16 compute differs from f32 by rounding, but must stay near.
    let dir = fixtures().join("qwen3");
    let text = read_text(&fixtures().join("eval.txt")).unwrap();
    let mut ppl = vec![];
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let m = LoadedModel::load(dir.to_str().unwrap(), &Device::Cpu, dt).unwrap();
        let ids = m.encode(&text).unwrap();
        let w = Windows::sequential(&ids, 64, Some(8), "eval.txt").unwrap();
        ppl.push(
            perplexity(&m.decoder, &w, 8, "eval.txt", |_, _| {})
                .unwrap()
                .value,
        );
    }
    assert!((ppl[1] - ppl[0]).abs() / ppl[0] < 0.01, "{ppl:?}");
    assert!((ppl[2] - ppl[0]).abs() / ppl[0] < 0.03, "{ppl:?}");
}

/// A copy of fixture `name` in `dir` whose config.json has `patch` applied (null removes
/// a key).
fn patched(name: &str, dir: &std::path::Path, patch: serde_json::Value) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            cfg.as_object_mut().unwrap().remove(k);
        } else {
            cfg[k] = v.clone();
        }
    }
    std::fs::write(&path, cfg.to_string()).unwrap();
    dir.display().to_string()
}

// Configs that transformers 5.24 reads in its own way, each measured there
// (AutoModelForCausalLM, f32, eager attention) on the fixture's weights with the config
// patched as here: perplexity at seqlen 32 and 64 within 1e-5.
#[test]
fn configs_read_as_transformers_reads_them() {
    let llama3 = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0});
    let cases = [
        // Tied in the config, but the checkpoint's lm_head.weight differs: not tied.
        (
            "llama",
            serde_json::json!({"tie_word_embeddings": true}),
            [1088.6323474952476, 1070.858455081867],
        ),
        // llama3 scaling without original_max_position_embeddings: max_position_embeddings
        // (512 here), or LlamaConfig's default 2048 when that is absent too.
        (
            "llama",
            serde_json::json!({"rope_scaling": llama3}),
            [1079.0363841457086, 1082.6517520772352],
        ),
        (
            "llama",
            serde_json::json!({"rope_scaling": llama3, "max_position_embeddings": null}),
            [1079.4126876812763, 1090.9603530238853],
        ),
        // A legacy rope_scaling beside rope_parameters: rope_scaling is used.
        (
            "llama",
            serde_json::json!({"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}),
            [1088.6323474952476, 1070.858455081867],
        ),
        // rope_parameters' rope_theta over the top-level one.
        (
            "mistral",
            serde_json::json!({"rope_theta": 10000.0,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}),
            [1039.4012969280752, 1014.4581517034702],
        ),
        // MistralForCausalLM builds no bias, whatever the config says.
        (
            "mistral",
            serde_json::json!({"attention_bias": true, "mlp_bias": true}),
            [1039.4012969280752, 1014.4581517034702],
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let text = read_text(&fixtures().join("eval.txt")).unwrap();
    for (i, (name, patch, hf)) in cases.into_iter().enumerate() {
        let dir = patched(name, &tmp.path().join(i.to_string()), patch.clone());
        let model = LoadedModel::load(&dir, &Device::Cpu, DType::F32)
            .unwrap_or_else(|e| panic!("{name} {patch}: {e:#}"));
        let ids = model.encode(&text).unwrap();
        for (seqlen, hf) in [32, 64].into_iter().zip(hf) {
            let w = Windows::sequential(&ids, seqlen, None, "eval.txt").unwrap();
            let p = perplexity(&model.decoder, &w, 8, "eval.txt", |_, _| {}).unwrap();
            let rel = (p.value - hf).abs() / hf;
            assert!(
                rel < 1e-5,
                "{name} {patch} seqlen {seqlen}: ppl {} vs transformers {hf}",
                p.value
            );
        }
    }
}
