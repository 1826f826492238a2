//! `--stream-layers`: no linear weight stays resident; each block reads its weights from the
//! memory-mapped files when it computes. Every result must equal the resident run bit for bit.

mod common;

use arborist::data::Windows;
use arborist::model::{LinearId, LinearKind, LoadedModel};
use arborist::profile;
use candle_core::{DType, Device};
use common::{arborist_timed, ok_json, tmp, LIMIT, SMALL};

fn load(dtype: DType, stream: bool) -> LoadedModel {
    LoadedModel::load_with("bundled", &Device::Cpu, dtype, stream).unwrap()
}

fn windows(m: &LoadedModel) -> Windows {
    let dir = arborist::model::bundled::data_dir().unwrap();
    let text = std::fs::read_to_string(dir.join("eval.txt")).unwrap();
    Windows::sequential(&m.encode(&text).unwrap(), 128, Some(4), "eval.txt").unwrap()
}

fn loss_bits(m: &LoadedModel, w: &Windows) -> Vec<u64> {
    common::loss_bits(&m.decoder, w, 2)
}

fn check_equal_through_masks(dtype: DType) {
    let resident = &mut load(dtype, false);
    let streamed = &mut load(dtype, true);
    assert!(streamed
        .decoder
        .linear_ids()
        .all(|i| !streamed.decoder.linear(i).weight_resident()));
    assert!(resident
        .decoder
        .linear_ids()
        .all(|i| resident.decoder.linear(i).weight_resident()));
    assert_eq!(
        streamed.decoder.weight_bytes(),
        resident.decoder.weight_bytes()
    );
    let w = windows(resident);
    let dense = loss_bits(resident, &w);
    assert_eq!(loss_bits(streamed, &w), dense, "dense {dtype:?}");

    let ids = [
        LinearId {
            block: 0,
            kind: LinearKind::Q,
        },
        LinearId {
            block: 3,
            kind: LinearKind::Down,
        },
        LinearId {
            block: 7,
            kind: LinearKind::Gate,
        },
    ];
    // A mask, then a larger one (a growing mask multiplies the resident weight), then none
    // (a rollback re-reads the file).
    let steps: [&dyn Fn(usize) -> bool; 2] = [&|i| i % 4 == 0, &|i| i % 4 == 0 || i % 3 == 0];
    for (n, pick) in steps.iter().enumerate() {
        for &id in &ids {
            let k = common::mask_where(&resident.decoder, id, pick);
            resident.decoder.set_mask(id, Some(k.clone())).unwrap();
            streamed.decoder.set_mask(id, Some(k)).unwrap();
        }
        let r = loss_bits(resident, &w);
        assert_ne!(r, dense, "step {n} changes the model");
        assert_eq!(loss_bits(streamed, &w), r, "step {n} {dtype:?}");
    }
    for &id in &ids {
        resident.decoder.set_mask(id, None).unwrap();
        streamed.decoder.set_mask(id, None).unwrap();
    }
    assert_eq!(loss_bits(resident, &w), dense);
    assert_eq!(loss_bits(streamed, &w), dense, "rolled back {dtype:?}");
    assert!(streamed
        .decoder
        .linear_ids()
        .all(|i| !streamed.decoder.linear(i).weight_resident()));
}

#[test]
fn streamed_perplexity_equals_resident_through_masks_and_rollback_f32() {
    check_equal_through_masks(DType::F32);
}

#[test]
fn streamed_perplexity_equals_resident_through_masks_and_rollback_bf16() {
    check_equal_through_masks(DType::BF16);
}

#[test]
fn streamed_profile_equals_resident() {
    let resident = load(DType::F32, false);
    let streamed = load(DType::F32, true);
    let w = windows(&resident);
    let a = profile::compute(
        &resident.decoder,
        &w,
        profile::GradSpec::paper(1),
        2,
        "eval.txt",
    )
    .unwrap();
    let b = profile::compute(
        &streamed.decoder,
        &w,
        profile::GradSpec::paper(1),
        2,
        "eval.txt",
    )
    .unwrap();
    assert_eq!((a.layers.len(), b.layers.len()), (56, 56));
    for (x, y) in a.layers.iter().zip(&b.layers) {
        assert_eq!(
            (x.s.to_bits(), x.g.to_bits(), x.z_s.to_bits()),
            (y.s.to_bits(), y.g.to_bits(), y.z_s.to_bits()),
            "{}",
            x.name
        );
    }
}

/// A whole headless session over the bundled model: same perplexities, steps and sparsity.
#[test]
fn streamed_session_equals_resident_session() {
    let dir = tmp();
    let run = |name: &str, extra: &[&str]| {
        let s = dir.path().join(name);
        let mut args = vec![
            "run",
            "--headless",
            "--auto-approve",
            "--max-iters",
            "3",
            "--json",
            "--session",
            s.to_str().unwrap(),
        ];
        args.extend(SMALL);
        args.extend(extra);
        ok_json(&arborist_timed(&args, &[], dir.path(), LIMIT))
    };
    let a = run("resident.yaml", &[]);
    let b = run("streamed.yaml", &["--stream-layers"]);
    assert_eq!(a["iterations"], 3, "{a}");
    for k in [
        "dense_ppl",
        "ppl",
        "iterations",
        "rollbacks",
        "global_sparsity",
    ] {
        assert!(a[k].is_number(), "{k} missing: {a}");
        assert_eq!(a[k], b[k], "{k}: {a} vs {b}");
    }
    assert!(
        a["global_sparsity"].as_f64().unwrap() > 0.0,
        "nothing pruned: {a}"
    );
    let header = std::fs::read_to_string(dir.path().join("streamed.yaml")).unwrap();
    assert!(header.contains("stream_layers: true"), "{header}");
}

/// `eval --stream-layers` reports exactly the resident numbers.
#[test]
fn eval_cli_streamed_equals_resident() {
    let dir = tmp();
    let text = arborist::model::bundled::data_dir()
        .unwrap()
        .join("eval.txt");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            "bundled",
            "--ppl",
            text.to_str().unwrap(),
            "--seqlen",
            "128",
            "--max-windows",
            "4",
            "--json",
        ];
        args.extend(extra);
        ok_json(&arborist_timed(&args, &[], dir.path(), LIMIT))
    };
    let a = run(&[]);
    let b = run(&["--stream-layers"]);
    assert!(a["ppl"]["value"].as_f64().unwrap() > 1.0, "{a}");
    assert_eq!(a["ppl"], b["ppl"]);
}

/// `prune --stream-layers` writes the same model, byte for byte (Wanda, SparseGPT, and
/// ShortGPT, whose streamed layers read the weights of the blocks' new numbers until
/// 2026-12-02: a removed block's weights were written and the last block's lost).
#[test]
fn prune_cli_streamed_writes_the_same_model() {
    let dir = tmp();
    let calib = arborist::model::bundled::data_dir()
        .unwrap()
        .join("calib.txt");
    for method in ["wanda", "sparsegpt", "shortgpt"] {
        let run = |out: &str, extra: &[&str]| {
            let out = dir.path().join(out);
            let mut args = vec![
                "prune",
                "--model",
                "bundled",
                "--method",
                method,
                "--sparsity",
                "0.5",
                "--calib",
                calib.to_str().unwrap(),
                "--seqlen",
                "128",
                "--calib-windows",
                "4",
                "--out",
                out.to_str().unwrap(),
                "--json",
            ];
            args.extend(extra);
            ok_json(&arborist_timed(&args, &[], dir.path(), LIMIT));
            std::fs::read(out.join("model.safetensors")).unwrap()
        };
        let a = run(&format!("{method}-resident"), &[]);
        let b = run(&format!("{method}-streamed"), &["--stream-layers"]);
        assert!(
            a == b,
            "{method}: the streamed prune wrote different weights"
        );
    }
}
