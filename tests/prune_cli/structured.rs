//! The baselines: ShortGPT and width pruning export loadable models, SparseGPT prunes to
//! its target and updates the kept weights.

use super::*;

/// `prune --method METHOD --sparsity 0.3` of `model` on the fixture text (seqlen 32, 4
/// calibration windows) into `out`, then `eval` of the export with the same protocol: the
/// prune summary and the export's evaluation.
fn structured_prune_and_eval(
    model: &str,
    method: &str,
    out: &std::path::Path,
) -> (serde_json::Value, serde_json::Value) {
    let text = fx("eval.txt");
    let o = arborist(
        &[
            "prune",
            "--model",
            model,
            "--method",
            method,
            "--sparsity",
            "0.3",
            "--calib",
            &text,
            "--seqlen",
            "32",
            "--calib-windows",
            "4",
            "--eval",
            &text,
            "--out",
            &p(out),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{method}: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = arborist(
        &[
            "eval",
            "--model",
            &p(out),
            "--ppl",
            &text,
            "--seqlen",
            "32",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    (v, serde_json::from_slice(&o.stdout).unwrap())
}

#[test]
fn structured_baselines_export_loadable_models() {
    for (method, layers) in [("shortgpt", 2), ("width", 3)] {
        let d = tmp();
        let out = d.path().join(method);
        let (v, e) = structured_prune_and_eval(&fx("llama"), method, &out);
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["num_hidden_layers"], layers, "{method}");
        // Removed blocks count as pruned: one of three equal blocks is a third of the weights.
        let global = v["result"]["global_sparsity"].as_f64().unwrap();
        if method == "shortgpt" {
            assert_eq!(global, 1.0 / 3.0, "{method}");
        } else {
            assert!(global > 0.0 && global <= 0.3, "{method}: {global}");
        }
        assert_eq!(e["ppl"]["value"], v["result"]["ppl"]["value"], "{method}");
        // No mask pattern: `structured` says what went.
        assert_eq!(v["result"]["pattern"], serde_json::Value::Null, "{method}");
        assert!(v["result"]["structured"].is_object(), "{method}: {v}");
    }
}

/// Zero the output projections (o_proj, down_proj) of `blocks` in the weights file `w`:
/// each such block passes its input through unchanged, its Block Influence 0.
fn make_identities(w: &std::path::Path, blocks: std::ops::Range<usize>) {
    let edited: std::collections::HashMap<String, Tensor> =
        candle_core::safetensors::load(w, &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let identity = blocks.clone().any(|b| {
                    k == format!("model.layers.{b}.self_attn.o_proj.weight")
                        || k == format!("model.layers.{b}.mlp.down_proj.weight")
                });
                let v = if identity { v.zeros_like().unwrap() } else { v };
                (k, v)
            })
            .collect();
    candle_core::safetensors::save(&edited, w).unwrap();
}

// A Qwen3 whose sliding blocks are set by `max_window_layers` (no `layer_types`): after
// ShortGPT removes a block, the export still evaluates to the perplexity prune reported,
// so each remaining block keeps its attention window.
#[test]
fn shortgpt_export_keeps_each_blocks_sliding_window() {
    for mwl in [1, 2] {
        let d = tmp();
        let src = d.path().join("swa");
        std::fs::create_dir_all(&src).unwrap();
        for e in std::fs::read_dir(fx("qwen3")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), src.join(e.file_name())).unwrap();
        }
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        let obj = cfg.as_object_mut().unwrap();
        obj.remove("layer_types");
        obj.insert("use_sliding_window".into(), true.into());
        obj.insert("sliding_window".into(), 4.into());
        obj.insert("max_window_layers".into(), mwl.into());
        std::fs::write(src.join("config.json"), cfg.to_string()).unwrap();
        // Block 0 made an identity: the block of least influence, so ShortGPT removes it
        // and the sliding blocks after it move down.
        make_identities(&src.join("model.safetensors"), 0..1);
        let out = d.path().join("out");
        let (v, e) = structured_prune_and_eval(&p(&src), "shortgpt", &out);
        let removed = v["result"]["structured"]["removed_blocks"].clone();
        assert_eq!(removed, serde_json::json!([0]), "block 0 is the identity");
        // Blocks at or past max_window_layers slide (transformers' rule); each moved down
        // one, so the boundary moves with them.
        let exported: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(exported["max_window_layers"], mwl - 1, "{exported}");
        assert_eq!(
            e["ppl"]["value"], v["result"]["ppl"]["value"],
            "max_window_layers {mwl}, removed {removed}"
        );
    }
}

#[test]
fn sparsegpt_prunes_to_target_and_updates_kept_weights() {
    let (mut m, w) = load("llama");
    let dense = m.decoder.clone();
    let plan = uniform(&m.decoder, Pattern::Unstructured(0.5));
    prune_sequential(
        &mut m.decoder,
        Some(&w),
        &plan,
        &OneShotOptions::new(Method::Sparsegpt),
        |_, _| {},
    )
    .unwrap();
    assert!(
        (m.decoder.global_sparsity() - 0.5).abs() < 1e-3,
        "{}",
        m.decoder.global_sparsity()
    );
    // Kept weights change (the OBS update); pruned ones are exactly zero.
    let id = LinearId {
        block: 1,
        kind: LinearKind::Down,
    };
    let before = dense
        .linear(id)
        .weight()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let after = m
        .decoder
        .linear(id)
        .weight()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mask = m.decoder.linear(id).mask().unwrap();
    let cols = m.decoder.linear(id).in_features();
    let mut changed = 0;
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        if mask.is_pruned(i / cols, i % cols) {
            assert_eq!(*b, 0.0);
        } else if a != b {
            changed += 1;
        }
    }
    assert!(
        changed > before.len() / 4,
        "only {changed} kept weights were updated"
    );
}

// The same without `max_window_layers` in the config: transformers' default (28) applies,
// so in a 30-block model blocks 28 and 29 slide. ShortGPT removes nine blocks before
// them, and the export must write the boundary they moved to, not leave the default.
#[test]
fn shortgpt_export_writes_the_moved_default_window_boundary() {
    let d = tmp();
    let src = d.path().join("deep");
    let config = TINY_QWEN3
        .replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":30")
        .replace(
            "\"rms_norm_eps\":1e-6}",
            "\"rms_norm_eps\":1e-6,\"use_sliding_window\":true,\"sliding_window\":4}",
        );
    write_model_dir(&src, &config, 11, DType::F32);
    // Blocks 0-8 made identities: the least influence.
    make_identities(&src.join("model.safetensors"), 0..9);
    let out = d.path().join("out");
    let (v, e) = structured_prune_and_eval(&p(&src), "shortgpt", &out);
    let removed = v["result"]["structured"]["removed_blocks"].clone();
    assert_eq!(removed, serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7, 8]));
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(exported["max_window_layers"], 19, "{exported}");
    assert_eq!(e["ppl"]["value"], v["result"]["ppl"]["value"]);
}
