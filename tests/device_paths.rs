//! The accelerator paths against the CPU, on the bundled model. They need a GPU and a
//! `--features cuda` build, so they are ignored by default (CI has no GPU):
//!
//!     ARBORIST_TEST_DEVICE=cuda:0 cargo test --release --features cuda --test device_paths -- --ignored
//!
//! `benches/gpu_check.sh` runs them. `ARBORIST_TEST_DEVICE=cpu` runs them against the CPU
//! itself, which checks the tests, not a device.

mod common;

use arborist::data::Windows;
use arborist::eval::incremental::IncrementalPpl;
use arborist::eval::perplexity;
use arborist::model::{LinearId, LinearKind, LoadedModel, Mask};
use arborist::prune::{alloc, oneshot, select::Pattern};
use candle_core::{DType, Device};
use std::sync::Arc;

fn device() -> Device {
    let spec = std::env::var("ARBORIST_TEST_DEVICE").unwrap_or_else(|_| "cuda:0".into());
    arborist::model::device::parse_device(&spec).unwrap()
}

fn load(dev: &Device, dtype: DType, stream: bool) -> LoadedModel {
    LoadedModel::load_with("bundled", dev, dtype, stream).unwrap()
}

fn windows(m: &LoadedModel, file: &str, seqlen: usize, n: usize) -> Windows {
    let dir = arborist::model::bundled::data_dir().unwrap();
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    Windows::sequential(&m.encode(&text).unwrap(), seqlen, Some(n), file).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

fn loss_bits(m: &LoadedModel, w: &Windows) -> Vec<u64> {
    common::loss_bits(&m.decoder, w, 4)
}

/// Every `stride`-th weight of each row pruned, starting at the row's index mod `stride`.
fn mask(m: &LoadedModel, id: LinearId, stride: usize) -> Arc<Mask> {
    let cols = m.decoder.linear(id).in_features();
    common::mask_where(&m.decoder, id, |i| {
        (i / cols) % stride == (i % cols) % stride
    })
}

#[test]
#[ignore = "needs a GPU: see the file's header"]
fn perplexity_on_the_device_matches_the_cpu() {
    let dev = device();
    for (dtype, tol) in [(DType::F32, 1e-4), (DType::BF16, 2e-2)] {
        let cpu = load(&Device::Cpu, dtype, false);
        let acc = load(&dev, dtype, false);
        let w = windows(&cpu, "eval.txt", 512, 8);
        let a = perplexity(&cpu.decoder, &w, 4, "eval.txt", |_, _| {}).unwrap();
        let b = perplexity(&acc.decoder, &w, 4, "eval.txt", |_, _| {}).unwrap();
        assert!(a.value.is_finite() && b.value.is_finite());
        assert!(
            rel(b.value, a.value) < tol,
            "{dtype:?}: device {} vs cpu {}",
            b.value,
            a.value
        );
    }
}

#[test]
#[ignore = "needs a GPU: see the file's header"]
fn incremental_evaluation_on_the_device_is_bit_exact() {
    let dev = device();
    for dtype in [DType::BF16, DType::F32] {
        let mut m = load(&dev, dtype, false);
        let w = windows(&m, "eval.txt", 256, 8);
        let mut inc = IncrementalPpl::new(w.clone(), 4, "eval.txt", usize::MAX / 4);
        inc.evaluate(&m.decoder, |_, _| {}).unwrap();
        inc.commit();
        let id = LinearId {
            block: 3,
            kind: LinearKind::Down,
        };
        let k = mask(&m, id, 3);
        m.decoder.set_mask(id, Some(k)).unwrap();
        let (p, reuse) = inc.evaluate(&m.decoder, |_, _| {}).unwrap();
        assert_eq!(reuse.start_block, 3, "{dtype:?}");
        let bits: Vec<u64> = p.window_loss.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, loss_bits(&m, &w), "{dtype:?}");
    }
}

#[test]
#[ignore = "needs a GPU: see the file's header"]
fn streamed_layers_equal_resident_ones_on_the_device() {
    let dev = device();
    let resident = load(&dev, DType::BF16, false);
    let streamed = load(&dev, DType::BF16, true);
    let w = windows(&resident, "eval.txt", 256, 8);
    assert_eq!(loss_bits(&streamed, &w), loss_bits(&resident, &w));
}

#[test]
#[ignore = "needs a GPU: see the file's header"]
fn profile_on_the_device_matches_the_cpu() {
    let dev = device();
    let cpu = load(&Device::Cpu, DType::F32, false);
    let acc = load(&dev, DType::F32, false);
    let w = windows(&cpu, "calib.txt", 256, 4);
    let a = arborist::profile::compute(
        &cpu.decoder,
        &w,
        arborist::profile::GradSpec::paper(2),
        4,
        "calib.txt",
    )
    .unwrap();
    let b = arborist::profile::compute(
        &acc.decoder,
        &w,
        arborist::profile::GradSpec::paper(2),
        4,
        "calib.txt",
    )
    .unwrap();
    for (x, y) in a.layers.iter().zip(&b.layers) {
        assert!(rel(y.s, x.s) < 1e-3, "{}: s {} vs {}", x.name, y.s, x.s);
        assert!(rel(y.g, x.g) < 1e-3, "{}: g {} vs {}", x.name, y.g, x.g);
        assert!((y.z_s - x.z_s).abs() < 1e-3 && (y.z_g - x.z_g).abs() < 1e-3);
    }
    // Half precision takes candle's autograd: every score must come out finite.
    let half = load(&dev, DType::BF16, false);
    let p = arborist::profile::compute(
        &half.decoder,
        &w,
        arborist::profile::GradSpec::paper(2),
        4,
        "calib.txt",
    )
    .unwrap();
    assert!(p.layers.iter().all(|l| l.s.is_finite() && l.g.is_finite()));
}

#[test]
#[ignore = "needs a GPU: see the file's header"]
fn wanda_masks_on_the_device_agree_with_the_cpu() {
    let dev = device();
    let mut cpu = load(&Device::Cpu, DType::F32, false);
    let mut acc = load(&dev, DType::F32, false);
    let w = windows(&cpu, "calib.txt", 256, 8);
    let opts = oneshot::OneShotOptions::new(oneshot::Method::Wanda);
    for m in [&mut cpu, &mut acc] {
        let plan = alloc::uniform(&m.decoder, Pattern::Unstructured(0.5));
        oneshot::prune_sequential(&mut m.decoder, Some(&w), &plan, &opts, |_, _| {}).unwrap();
    }
    let (mut same, mut total) = (0usize, 0usize);
    for id in cpu.decoder.linear_ids() {
        let a = cpu.decoder.linear(id).mask().unwrap().clone();
        let b = acc.decoder.linear(id).mask().unwrap().clone();
        for r in 0..a.rows() {
            for c in 0..a.cols() {
                same += (a.is_pruned(r, c) == b.is_pruned(r, c)) as usize;
                total += 1;
            }
        }
    }
    let agreement = same as f64 / total as f64;
    assert!(agreement >= 0.999, "mask agreement {agreement}");
}
