//! The sensitivity profile against PyTorch: transformers' own modules and torch.autograd on
//! the same checkpoints (tests/fixtures/hf/make_profile_reference.py), dense and with masks,
//! under both gradient averages. Every row (s, s_mean, s_median, g, g_mean_abs, z_s, z_g)
//! and gradient entries at fixed positions of every layer are compared; f32 on both sides.

use arborist::data::{read_text, Windows};
use arborist::model::{LoadedModel, Mask};
use arborist::profile::{self, GradAverage, GradSpec};
use candle_core::{DType, Device};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// Measured agreement is within 7.1e-7 relative (rows) and 1.8e-6 (z-scores); the bounds
/// leave room for other CPUs' rounding, and still catch a wrong term.
const ROW_REL: f64 = 1e-5;
const Z_ABS: f64 = 1e-5;
const G_REL_TO_MAX: f64 = 1e-5;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn reference(model: &str) -> Value {
    let path = fixtures().join(format!("profile_ref/{model}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The script's mask rule: (31·row + 17·col + 7·i) mod 10 < 3 pruned, i the layer's index.
fn rule_mask(i: usize, rows: usize, cols: usize) -> Mask {
    let idx: Vec<usize> = (0..rows * cols)
        .filter(|k| (31 * (k / cols) + 17 * (k % cols) + 7 * i) % 10 < 3)
        .collect();
    Mask::from_pruned_indices(rows, cols, &idx).unwrap()
}

fn average(key: &str) -> GradAverage {
    match key {
        "mean-of-abs" => GradAverage::MeanOfAbs,
        "abs-of-mean" => GradAverage::AbsOfMean,
        other => panic!("unknown average {other}"),
    }
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: ours {got} vs PyTorch {want} (tolerance {tol:e})"
    );
}

/// Rows as the profile serialises them (`Profile`'s JSON, which `profile --json` prints).
/// Returns the largest relative difference of a row value and the largest z-score one.
fn compare_rows(label: &str, got: &Value, want: &[Value]) -> (f64, f64) {
    let (mut worst_rel, mut worst_z) = (0f64, 0f64);
    let got = got["layers"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{label}: layer count");
    for (l, r) in got.iter().zip(want) {
        let name = l["name"].as_str().unwrap();
        assert_eq!(name, r["name"].as_str().unwrap(), "{label}: layer order");
        let ours = |k: &str| l[k].as_f64().unwrap();
        let theirs = |k: &str| r[k].as_f64().unwrap();
        close(
            &format!("{label} {name} sparsity"),
            ours("sparsity"),
            theirs("sparsity"),
            1e-12,
        );
        for k in ["s", "s_mean", "s_median", "g", "g_mean_abs"] {
            let tol = ROW_REL * theirs(k).abs();
            close(&format!("{label} {name} {k}"), ours(k), theirs(k), tol);
            worst_rel = worst_rel.max((ours(k) - theirs(k)).abs() / theirs(k).abs());
        }
        for k in ["z_s", "z_g"] {
            close(&format!("{label} {name} {k}"), ours(k), theirs(k), Z_ABS);
            worst_z = worst_z.max((ours(k) - theirs(k)).abs());
        }
    }
    (worst_rel, worst_z)
}

fn check(model: &str) {
    let reference = reference(model);
    let cal = &reference["calibration"];
    let (windows, seqlen, grad_windows) = (
        cal["windows"].as_u64().unwrap() as usize,
        cal["seqlen"].as_u64().unwrap() as usize,
        cal["grad_windows"].as_u64().unwrap() as usize,
    );
    let mut lm = LoadedModel::load(
        fixtures().join(model).to_str().unwrap(),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let ids = lm
        .encode(&read_text(&fixtures().join("eval.txt")).unwrap())
        .unwrap();
    let calib = Windows::sequential(&ids, seqlen, Some(windows), "eval.txt").unwrap();
    assert_eq!(calib.len(), windows);
    let masked = reference["masked_layers"].as_object().unwrap();
    assert!(!masked.is_empty());

    for state in ["dense", "masked"] {
        if state == "masked" {
            let ids: Vec<_> = lm.decoder.linear_ids().collect();
            for (name, i) in masked {
                let i = i.as_u64().unwrap() as usize;
                let id = ids[i];
                assert_eq!(&id.name(), name, "the script's layer index {i}");
                let (rows, cols) = {
                    let lin = lm.decoder.linear(id);
                    (lin.out_features(), lin.in_features())
                };
                let mask = rule_mask(i, rows, cols);
                lm.decoder.set_mask(id, Some(Arc::new(mask))).unwrap();
            }
        }
        for (avg_key, want) in reference[state].as_object().unwrap() {
            let label = format!("{model} {state} {avg_key}");
            let spec = GradSpec {
                windows: grad_windows,
                average: average(avg_key),
            };
            let got = profile::compute(&lm.decoder, &calib, spec, 4, "eval.txt").unwrap();
            let want = want.as_array().unwrap();
            let (rel, z) = compare_rows(&label, &serde_json::to_value(&got).unwrap(), want);
            eprintln!("{label}: rows within {rel:.2e} relative, z-scores within {z:.2e}");
            // Gradient entries at the script's positions, relative to the layer's largest.
            let grads = profile::mean_gradients_from(
                &lm.decoder,
                &calib.windows[..grad_windows],
                &[],
                spec.average,
            )
            .unwrap();
            for (g, r) in grads.iter().zip(want) {
                let flat = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let max = r["g_max"].as_f64().unwrap();
                assert!(max > 0.0, "{label}: a layer with no gradient");
                for (pos, v) in r["g_at"].as_object().unwrap() {
                    let p: usize = pos.parse().unwrap();
                    close(
                        &format!("{label} {} G[{p}]", r["name"]),
                        (flat[p] as f64).abs(),
                        v.as_f64().unwrap(),
                        G_REL_TO_MAX * max,
                    );
                }
            }
        }
    }
}

#[test]
fn llama_profile_matches_pytorch() {
    check("llama");
}

#[test]
fn mistral_profile_matches_pytorch() {
    check("mistral");
}

#[test]
fn qwen2_profile_matches_pytorch() {
    check("qwen2");
}

#[test]
fn qwen3_profile_matches_pytorch() {
    check("qwen3");
}

/// The `profile` command prints the same rows (dense, the default average).
#[test]
fn profile_command_json_matches_pytorch() {
    let reference = reference("llama");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"))
        .args(["profile", "--model"])
        .arg(fixtures().join("llama"))
        .arg("--calib")
        .arg(fixtures().join("eval.txt"))
        .args([
            "--seqlen",
            "32",
            "--calib-windows",
            "8",
            "--grad-windows",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let protocol = &got["protocol"];
    assert_eq!(protocol["grad_average"], "mean-of-abs");
    assert_eq!(protocol["calib_windows"], 8);
    assert_eq!(protocol["grad_windows"], 4);
    assert_eq!(protocol["dtype"], "f32");
    let (rel, z) = compare_rows(
        "profile --json llama",
        &got,
        reference["dense"]["mean-of-abs"].as_array().unwrap(),
    );
    eprintln!("profile --json llama: rows within {rel:.2e} relative, z-scores within {z:.2e}");
}
