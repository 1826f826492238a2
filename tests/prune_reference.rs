//! Our one-shot pruning against the published algorithms' semantics, computed with PyTorch
//! on the same checkpoints by tests/fixtures/hf/make_prune_reference.py (Wanda, magnitude)
//! and make_sparsegpt_owl_reference.py (SparseGPT, OWL): mask agreement, SparseGPT's
//! updated weights, OWL's allocation and the perplexity of the pruned model.

mod common;

use arborist::data::{read_text, Windows};
use arborist::eval::perplexity;
use arborist::model::{LoadedModel, Mask};
use arborist::prune::alloc::{outlier_ratio, owl_sparsities, uniform};
use arborist::prune::oneshot::{prune_sequential, Method, OneShotOptions};
use arborist::prune::scores::{wanda, weight_f32};
use arborist::prune::select::Pattern;
use candle_core::{DType, Device};
use std::collections::BTreeSet;
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

// ---------------------------------------------------------------------------------------
// SparseGPT and OWL against tests/fixtures/hf/make_sparsegpt_owl_reference.py: SparseGPT
// (IST-DASLab sparsegpt.py fasterprune / add_batch, llama.py llama_sequential) in float64,
// OWL (luuyin/OWL lib/prune_all.py prune_wanda_outlier, check_outlier_mean) in float32.

fn reference(model: &str, method: &str) -> serde_json::Value {
    let path = fixtures().join(format!("prune_ref/{model}_{method}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ref_shape(reference: &serde_json::Value, name: &str) -> (usize, usize) {
    let s = &reference["shapes"][name];
    (
        s[0].as_u64().unwrap() as usize,
        s[1].as_u64().unwrap() as usize,
    )
}

fn ref_mask(reference: &serde_json::Value, name: &str) -> Mask {
    let (r, c) = ref_shape(reference, name);
    hex_mask(r, c, reference["masks_hex"][name].as_str().unwrap())
}

fn ref_f64s(v: &serde_json::Value) -> Vec<f64> {
    let a = v.as_array().unwrap();
    a.iter().map(|x| x.as_f64().unwrap()).collect()
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The model, the token ids of eval.txt and the calibration windows (the first 4 of 32 tokens).
fn load_calibrated(model: &str, dtype: DType) -> (LoadedModel, Vec<u32>, Windows) {
    let dir = fixtures().join(model);
    let lm = LoadedModel::load(dir.to_str().unwrap(), &Device::Cpu, dtype).unwrap();
    let ids = lm
        .encode(&read_text(&fixtures().join("eval.txt")).unwrap())
        .unwrap();
    let calib = Windows::sequential(&ids, 32, Some(4), "eval.txt").unwrap();
    (lm, ids, calib)
}

/// Perplexity over every 32-token window of eval.txt, the reference files' protocol.
fn ppl_all_windows(lm: &LoadedModel, ids: &[u32], batch: usize) -> f64 {
    let w = Windows::sequential(ids, 32, None, "eval.txt").unwrap();
    perplexity(&lm.decoder, &w, batch, "eval.txt", |_, _| {})
        .unwrap()
        .value
}

/// Mask entries that differ from the reference over all layers, all entries, and the near
/// ties the reference records.
fn mask_flips(lm: &LoadedModel, reference: &serde_json::Value) -> (usize, usize, usize) {
    let (mut flips, mut total, mut near) = (0, 0, 0);
    for id in lm.decoder.linear_ids() {
        let name = id.name();
        let want = ref_mask(reference, &name);
        let got = lm.decoder.linear(id).mask().unwrap();
        for i in 0..want.rows() {
            for j in 0..want.cols() {
                flips += (got.is_pruned(i, j) != want.is_pruned(i, j)) as usize;
            }
        }
        total += want.len();
        near += reference["near_tie_units"][&name].as_u64().unwrap() as usize;
    }
    (flips, total, near)
}

#[derive(Debug)]
struct SparseGptAgreement {
    flips: usize,
    total: usize,
    near_ties: usize,
    kept: usize,
    /// Kept weights whose f32 value differs from the reference's, by at most `max_ulps`.
    differ: usize,
    max_ulps: u32,
    max_rel: f64,
    /// Differing weights that the reference does not list as within 1e-11 of an f32 midpoint.
    unlisted: usize,
    ppl: f64,
    ref_ppl: f64,
}

impl SparseGptAgreement {
    fn ppl_rel(&self) -> f64 {
        (self.ppl - self.ref_ppl).abs() / self.ref_ppl
    }
}

/// Arborist's SparseGPT (sequential, one window per batch, the default percdamp 0.01 and
/// blocksize 128, which the reference also used) against the float64 reference: masks, the
/// kept weights (the f32 values both store), perplexity.
fn sparsegpt_agreement(
    model: &str,
    method: &str,
    pattern: Pattern,
    dtype: DType,
) -> SparseGptAgreement {
    let reference = reference(model, method);
    let (mut lm, ids, calib) = load_calibrated(model, dtype);
    let mut opts = OneShotOptions::new(Method::Sparsegpt);
    assert_eq!(reference["percdamp"].as_f64(), Some(opts.percdamp));
    assert_eq!(reference["blocksize"].as_u64(), Some(opts.blocksize as u64));
    opts.batch = 1;
    let plan = uniform(&lm.decoder, pattern);
    prune_sequential(&mut lm.decoder, Some(&calib), &plan, &opts, |_, _| {}).unwrap();

    let (flips, total, near_ties) = mask_flips(&lm, &reference);
    let (mut kept, mut differ, mut max_ulps, mut max_rel, mut unlisted) = (0, 0, 0u32, 0f64, 0);
    for id in lm.decoder.linear_ids() {
        let name = id.name();
        let want_mask = ref_mask(&reference, &name);
        let want: Vec<f32> = hex_bytes(reference["kept_weights_f32_hex"][&name].as_str().unwrap())
            .chunks(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let hazards: BTreeSet<u64> = reference["f32_rounding_hazard_at"][&name]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        let lin = lm.decoder.linear(id);
        let got = weight_f32(&lin.weight().unwrap()).unwrap();
        let got_mask = lin.mask().unwrap();
        let cols = want_mask.cols();
        let mut k = 0;
        for (i, &g) in got.iter().enumerate() {
            let (r, c) = (i / cols, i % cols);
            let pruned = got_mask.is_pruned(r, c);
            assert!(
                !pruned || g == 0.0,
                "{model} {method} {name}: pruned {i} is {g}"
            );
            if want_mask.is_pruned(r, c) {
                continue;
            }
            let w = want[k];
            if g != w && !pruned {
                differ += 1;
                let ulps = if g.signum() == w.signum() {
                    g.to_bits().abs_diff(w.to_bits())
                } else {
                    u32::MAX
                };
                max_ulps = max_ulps.max(ulps);
                max_rel = max_rel.max(((g as f64 - w as f64) / w as f64).abs());
                unlisted += !hazards.contains(&(k as u64)) as usize;
            }
            k += 1;
        }
        assert_eq!(k, want.len(), "{model} {method} {name}: kept count");
        kept += k;
    }
    SparseGptAgreement {
        flips,
        total,
        near_ties,
        kept,
        differ,
        max_ulps,
        max_rel,
        unlisted,
        ppl: ppl_all_windows(&lm, &ids, 16),
        ref_ppl: reference["ppl"]["value"].as_f64().unwrap(),
    }
}

/// In f64, our SparseGPT must be the reference's to the last bit of the stored f32 weights:
/// the same masks, each kept weight equal or (only where the reference's float64 value lies
/// within 1e-11 of an f32 rounding midpoint) one ulp off, and the same perplexity.
fn check_sparsegpt(model: &str, method: &str, pattern: Pattern) {
    let a = sparsegpt_agreement(model, method, pattern, DType::F64);
    eprintln!(
        "{model} {method} (f64): {} of {} mask entries differ ({} near ties); {} of {} kept \
         weights differ (max {} ulp, rel {:.1e}, {} unlisted); ppl {:.12} vs {:.12} (rel {:.1e})",
        a.flips,
        a.total,
        a.near_ties,
        a.differ,
        a.kept,
        a.max_ulps,
        a.max_rel,
        a.unlisted,
        a.ppl,
        a.ref_ppl,
        a.ppl_rel()
    );
    // A flipped SparseGPT mask entry changes every later update of its row, so the reference
    // must have no near tie at all (it records none under 1e-9 relative).
    assert_eq!(a.near_ties, 0, "{model} {method}: reference has near ties");
    assert_eq!(a.flips, 0, "{model} {method}: mask entries differ");
    assert!(
        a.max_ulps <= 1 && a.unlisted == 0,
        "{model} {method}: kept weights differ: {a:?}"
    );
    assert!(a.ppl_rel() < 1e-12, "{model} {method}: {a:?}");
}

#[test]
fn sparsegpt_50_matches_float64_reference() {
    check_sparsegpt("qwen3", "sparsegpt_50", Pattern::Unstructured(0.5));
    check_sparsegpt("llama", "sparsegpt_50", Pattern::Unstructured(0.5));
}

#[test]
fn sparsegpt_2_4_matches_float64_reference() {
    check_sparsegpt("qwen3", "sparsegpt_2_4", Pattern::NM { n: 2, m: 4 });
    check_sparsegpt("llama", "sparsegpt_2_4", Pattern::NM { n: 2, m: 4 });
}

/// The f32 run (the CLI's default dtype) against the same float64 reference.
#[test]
fn sparsegpt_f32_run_stays_close_to_float64_reference() {
    for (model, method, pattern) in [
        ("qwen3", "sparsegpt_50", Pattern::Unstructured(0.5)),
        ("llama", "sparsegpt_50", Pattern::Unstructured(0.5)),
        ("qwen3", "sparsegpt_2_4", Pattern::NM { n: 2, m: 4 }),
        ("llama", "sparsegpt_2_4", Pattern::NM { n: 2, m: 4 }),
    ] {
        let a = sparsegpt_agreement(model, method, pattern, DType::F32);
        eprintln!(
            "{model} {method} (f32): {} of {} mask entries differ; {} of {} kept weights \
             differ (max rel {:.1e}); ppl {:.6} vs {:.6} (rel {:.1e})",
            a.flips,
            a.total,
            a.differ,
            a.kept,
            a.max_rel,
            a.ppl,
            a.ref_ppl,
            a.ppl_rel()
        );
        assert!(a.flips * 1000 <= a.total, "{model} {method}: {a:?}");
        assert!(a.ppl_rel() < 1e-5, "{model} {method}: {a:?}");
    }
}

const OWL_LAMBDA: f64 = 0.08;
const OWL_M: f64 = 5.0;

/// OWL + Wanda, as `arborist prune --allocation owl` does it (src/cli/prune.rs owl_plan:
/// outlier ratios of the Wanda scores on the dense model, then `owl_sparsities`, then
/// sequential Wanda), against the reference; then the CLI itself on the same inputs.
fn check_owl(model: &str, target: f64) {
    let method = format!("owl_wanda_{}", (target * 100.0).round());
    let reference = reference(model, &method);
    assert_eq!(reference["owl_lambda"].as_f64(), Some(OWL_LAMBDA));
    assert_eq!(reference["owl_m"].as_f64(), Some(OWL_M));
    let (mut lm, ids, calib) = load_calibrated(model, DType::F32);

    let stats = arborist::profile::input_stats(&lm.decoder, &calib, 1).unwrap();
    let d = &lm.decoder;
    let ratios: Vec<f64> = (0..d.blocks.len())
        .map(|b| {
            let mut all = Vec::new();
            for id in d.linear_ids().filter(|id| id.block == b) {
                let lin = d.linear(id);
                let w = weight_f32(&lin.weight().unwrap()).unwrap();
                all.extend(wanda(&w, lin.in_features(), stats[b].get(id.kind)));
            }
            outlier_ratio(&all, OWL_M)
        })
        .collect();
    let sparsity = owl_sparsities(&ratios, target, OWL_LAMBDA);
    let max_diff = |a: &[f64], b: &[f64]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let ratio_diff = max_diff(&ratios, &ref_f64s(&reference["outlier_ratio"]));
    let sparsity_diff = max_diff(&sparsity, &ref_f64s(&reference["block_sparsity"]));

    let plan = d
        .linear_ids()
        .map(|id| (id, Pattern::Unstructured(sparsity[id.block])))
        .collect();
    let opts = OneShotOptions {
        batch: 1,
        ..OneShotOptions::new(Method::Wanda)
    };
    prune_sequential(&mut lm.decoder, Some(&calib), &plan, &opts, |_, _| {}).unwrap();
    let (flips, total, near) = mask_flips(&lm, &reference);
    let ppl = ppl_all_windows(&lm, &ids, 1);
    let ref_ppl = reference["ppl"]["value"].as_f64().unwrap();
    let rel = (ppl - ref_ppl).abs() / ref_ppl;
    eprintln!(
        "{model} {method}: outlier ratios {ratios:?} (max diff {ratio_diff:.1e}), sparsities \
         {sparsity:?} (max diff {sparsity_diff:.1e}); {flips} of {total} mask entries differ \
         ({near} near ties); ppl {ppl:.6} vs {ref_ppl:.6} (rel {rel:.1e})"
    );
    assert!(ratio_diff < 1e-12, "{model} {method}: outlier ratios");
    assert!(sparsity_diff < 1e-12, "{model} {method}: sparsities");
    // A flip at a near tie flips two entries (one kept, one pruned).
    assert!(flips <= 2 * near, "{model} {method}: {flips} differ");
    assert!(
        rel < if flips == 0 { 1e-5 } else { 5e-3 },
        "{model} {method}: ppl"
    );

    // The command line: the same masks (its export's zeros) and the same perplexity.
    let tmp = common::tmp();
    let out = tmp.path().join("owl");
    let (m, e) = (fixtures().join(model), fixtures().join("eval.txt"));
    let s = target.to_string();
    let o = common::arborist(
        &[
            "prune",
            "--model",
            m.to_str().unwrap(),
            "--method",
            "wanda",
            "--sparsity",
            &s,
            "--allocation",
            "owl",
            "--calib",
            e.to_str().unwrap(),
            "--seqlen",
            "32",
            "--calib-windows",
            "4",
            "--batch",
            "1",
            "--eval",
            e.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        j["result"]["ppl"]["value"].as_f64(),
        Some(ppl),
        "{model} {method}"
    );
    let exported = LoadedModel::load(out.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap();
    for id in lm.decoder.linear_ids() {
        let ours = lm.decoder.linear(id).mask().unwrap();
        let w = weight_f32(&exported.decoder.linear(id).weight().unwrap()).unwrap();
        let zeros: Vec<usize> = (0..w.len()).filter(|&i| w[i] == 0.0).collect();
        assert_eq!(
            zeros,
            ours.pruned_indices(),
            "{model} {method} {}",
            id.name()
        );
    }
}

#[test]
fn owl_wanda_50_matches_reference() {
    check_owl("qwen3", 0.5);
    check_owl("llama", 0.5);
}

#[test]
fn owl_wanda_70_matches_reference() {
    check_owl("qwen3", 0.7);
    check_owl("llama", 0.7);
}
