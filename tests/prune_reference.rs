//! Our one-shot pruning against the published algorithms' semantics, computed by
//! tests/fixtures/hf/make_prune_reference.py with PyTorch on the same checkpoints:
//! mask agreement and perplexity of the pruned model.

use arborist::data::{read_text, Windows};
use arborist::eval::perplexity;
use arborist::model::{LoadedModel, Mask};
use arborist::prune::alloc::uniform;
use arborist::prune::oneshot::{prune_sequential, Method, OneShotOptions};
use arborist::prune::select::Pattern;
use candle_core::{DType, Device};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn hex_mask(rows: usize, cols: usize, hex: &str) -> Mask {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let idx: Vec<usize> = (0..rows * cols)
        .filter(|i| bytes[i / 8] >> (i % 8) & 1 == 1)
        .collect();
    Mask::from_pruned_indices(rows, cols, &idx).unwrap()
}

/// Returns (mask agreement over all weights, our ppl, reference ppl, allowed flips).
fn run(
    model: &str,
    method: &str,
    m: Method,
    pattern: Pattern,
    layerwide: bool,
) -> (f64, usize, f64, f64, usize) {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(format!("prune_ref/{model}_{method}.json")))
            .unwrap(),
    )
    .unwrap();
    let mut lm = LoadedModel::load(
        fixtures().join(model).to_str().unwrap(),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let text = read_text(&fixtures().join("eval.txt")).unwrap();
    let ids = lm.encode(&text).unwrap();
    let calib = Windows::sequential(&ids, 32, Some(4), "eval.txt").unwrap();
    let plan = uniform(&lm.decoder, pattern);
    let mut opts = OneShotOptions::new(m);
    opts.magnitude_layerwide = layerwide;
    opts.batch = 1;
    prune_sequential(&mut lm.decoder, Some(&calib), &plan, &opts, |_, _| {}).unwrap();

    let (mut same, mut total, mut allowed) = (0usize, 0usize, 0usize);
    for id in lm.decoder.linear_ids().collect::<Vec<_>>() {
        let name = id.name();
        let shape = &reference["shapes"][&name];
        let (r, c) = (
            shape[0].as_u64().unwrap() as usize,
            shape[1].as_u64().unwrap() as usize,
        );
        let want = hex_mask(r, c, reference["masks_hex"][&name].as_str().unwrap());
        let got = lm.decoder.linear(id).mask().unwrap();
        for i in 0..r {
            for j in 0..c {
                same += (got.is_pruned(i, j) == want.is_pruned(i, j)) as usize;
            }
        }
        total += r * c;
        allowed += reference["near_tie_units"][&name].as_u64().unwrap_or(0) as usize;
    }
    let w = Windows::sequential(&ids, 32, None, "eval.txt").unwrap();
    let ppl = perplexity(&lm.decoder, &w, 16, "eval.txt", |_, _| {})
        .unwrap()
        .value;
    let ref_ppl = reference["ppl"]["value"].as_f64().unwrap();
    (
        same as f64 / total as f64,
        total - same,
        ppl,
        ref_ppl,
        allowed,
    )
}

fn check(model: &str, method: &str, m: Method, pattern: Pattern, layerwide: bool, exact: bool) {
    let (agree, flips, ppl, ref_ppl, allowed) = run(model, method, m, pattern, layerwide);
    let rel = (ppl - ref_ppl).abs() / ref_ppl;
    eprintln!("{model} {method}: agreement {agree:.6} ({flips} differ, {allowed} near ties), ppl {ppl:.4} vs {ref_ppl:.4}");
    if exact {
        assert_eq!(flips, 0, "{model} {method}: {flips} mask entries differ");
    } else {
        assert!(agree >= 0.999, "{model} {method}: agreement {agree}");
        // A flip at a near tie flips two entries (one kept, one pruned).
        assert!(
            flips <= 2 * allowed,
            "{model} {method}: {flips} differ, {allowed} near ties"
        );
    }
    assert!(
        rel < 0.005,
        "{model} {method}: ppl {ppl} vs reference {ref_ppl}"
    );
}

#[test]
fn wanda_50_qwen3() {
    check(
        "qwen3",
        "wanda_50",
        Method::Wanda,
        Pattern::Unstructured(0.5),
        false,
        false,
    );
}

#[test]
fn wanda_50_llama() {
    check(
        "llama",
        "wanda_50",
        Method::Wanda,
        Pattern::Unstructured(0.5),
        false,
        false,
    );
}

#[test]
fn wanda_2_4_qwen3_and_llama() {
    check(
        "qwen3",
        "wanda_2_4",
        Method::Wanda,
        Pattern::NM { n: 2, m: 4 },
        false,
        false,
    );
    check(
        "llama",
        "wanda_2_4",
        Method::Wanda,
        Pattern::NM { n: 2, m: 4 },
        false,
        false,
    );
}

#[test]
fn magnitude_50_per_row_is_exact() {
    check(
        "qwen3",
        "magnitude_50_row",
        Method::Magnitude,
        Pattern::Unstructured(0.5),
        false,
        true,
    );
    check(
        "llama",
        "magnitude_50_row",
        Method::Magnitude,
        Pattern::Unstructured(0.5),
        false,
        true,
    );
}

#[test]
fn magnitude_50_layerwide_is_exact() {
    check(
        "qwen3",
        "magnitude_50_layer",
        Method::Magnitude,
        Pattern::Unstructured(0.5),
        true,
        true,
    );
    check(
        "llama",
        "magnitude_50_layer",
        Method::Magnitude,
        Pattern::Unstructured(0.5),
        true,
        true,
    );
}
