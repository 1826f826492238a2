//! Incremental perplexity (recompute from the first changed block, cached block-boundary
//! states) must equal a full pass bit for bit, through accepts, rollbacks and any budget.

mod common;

use arborist::data::Windows;
use arborist::eval::incremental::IncrementalPpl;
use arborist::model::{Decoder, LinearId, LinearKind, LoadedModel, Mask};
use candle_core::{DType, Device};
use std::sync::Arc;

fn setup(dtype: DType) -> (LoadedModel, Windows) {
    let m = LoadedModel::load("bundled", &Device::Cpu, dtype).unwrap();
    let dir = arborist::model::bundled::data_dir().unwrap();
    let text = std::fs::read_to_string(dir.join("eval.txt")).unwrap();
    let ids = m.encode(&text).unwrap();
    let w = Windows::sequential(&ids, 128, Some(6), "eval.txt").unwrap();
    (m, w)
}

/// A mask pruning every `stride`-th weight, offset by `phase`.
fn mask(d: &Decoder, block: usize, kind: LinearKind, stride: usize, phase: usize) -> Arc<Mask> {
    common::mask_where(d, LinearId { block, kind }, |i| {
        (i + phase).is_multiple_of(stride)
    })
}

fn full(d: &Decoder, w: &Windows) -> Vec<u64> {
    common::loss_bits(d, w, 4)
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every boundary cached: a pass starts at the first changed block; none cached: at 0.
const ALL: usize = usize::MAX / 4;

fn check_session(dtype: DType, budget: usize) {
    let (mut m, w) = setup(dtype);
    let blocks = m.decoder.blocks.len();
    let mut inc = IncrementalPpl::new(w.clone(), 4, "eval.txt", budget);
    // The boundaries the budget keeps (two sets: the checkpoint's and a step's): a pass
    // starts at the nearest one at or before the first changed block.
    let keep = arborist::model::boundaries::kept(&m.decoder, w.len(), w.seqlen, budget, 2);
    let kept: Vec<usize> = (1..blocks).filter(|&b| keep[b]).collect();
    match budget {
        ALL => assert_eq!(kept, (1..blocks).collect::<Vec<_>>()),
        0 => assert!(kept.is_empty()),
        _ => assert_eq!(kept, [blocks / 2], "one boundary, mid-depth"),
    }
    let starts_right = |r: &arborist::model::boundaries::Reuse| {
        let nearest = (kept.iter().copied())
            .filter(|&b| b <= r.first_changed)
            .max()
            .unwrap_or(0);
        assert_eq!(
            r.start_block, nearest,
            "first change in block {}",
            r.first_changed
        );
    };
    let set = |m: &mut LoadedModel, b: usize, k: LinearKind, s: usize, p: usize| {
        let mk = mask(&m.decoder, b, k, s, p);
        m.decoder
            .set_mask(LinearId { block: b, kind: k }, Some(mk))
            .unwrap();
    };

    // Baseline: a full pass, committed.
    let (p, r) = inc.evaluate(&m.decoder, |_, _| {}).unwrap();
    assert_eq!(r.start_block, 0);
    assert_eq!(bits(&p.window_loss), full(&m.decoder, &w));
    inc.commit();

    // Accepted step in block 5: starts there (with its boundary cached), equals a full pass.
    set(&mut m, 5, LinearKind::Down, 3, 0);
    set(&mut m, 6, LinearKind::Q, 2, 1);
    let (p, r) = inc.evaluate(&m.decoder, |_, _| {}).unwrap();
    assert_eq!(r.first_changed, 5);
    starts_right(&r);
    assert_eq!(bits(&p.window_loss), full(&m.decoder, &w));
    inc.commit();

    // Rejected step in block 2, rolled back: the committed cache stays valid.
    set(&mut m, 2, LinearKind::Gate, 2, 0);
    let (p, r) = inc.evaluate(&m.decoder, |_, _| {}).unwrap();
    assert_eq!(r.first_changed, 2);
    starts_right(&r);
    assert_eq!(bits(&p.window_loss), full(&m.decoder, &w));
    inc.discard();
    m.decoder
        .set_mask(
            LinearId {
                block: 2,
                kind: LinearKind::Gate,
            },
            None,
        )
        .unwrap();

    // Next step grows block 5's mask (a superset of the accepted one, as a session step
    // does) and adds one in block 7: recomputed from block 5 (or the nearest kept boundary).
    let down5 = LinearId {
        block: 5,
        kind: LinearKind::Down,
    };
    let grown = common::mask_where(&m.decoder, down5, |i| i % 3 == 0 || i % 5 == 0);
    m.decoder.set_mask(down5, Some(grown)).unwrap();
    set(&mut m, 7, LinearKind::Up, 2, 0);
    let (p, r) = inc.evaluate(&m.decoder, |_, _| {}).unwrap();
    assert_eq!(r.first_changed, 5);
    starts_right(&r);
    assert_eq!(bits(&p.window_loss), full(&m.decoder, &w));
    inc.commit();

    // Then only block 7 changes again.
    set(&mut m, 7, LinearKind::Gate, 3, 1);
    let (p, r) = inc.evaluate(&m.decoder, |_, _| {}).unwrap();
    assert_eq!(r.first_changed, 7);
    starts_right(&r);
    assert_eq!(bits(&p.window_loss), full(&m.decoder, &w));
    inc.commit();

    // Nothing changed: nothing recomputed, same numbers.
    let (p, r) = inc.evaluate(&m.decoder, |_, _| {}).unwrap();
    assert_eq!(r.start_block, blocks);
    assert_eq!(bits(&p.window_loss), full(&m.decoder, &w));
}

#[test]
fn incremental_equals_full_pass_with_every_boundary_cached() {
    check_session(DType::F32, ALL);
}

#[test]
fn incremental_equals_full_pass_in_bf16() {
    check_session(DType::BF16, ALL);
}

#[test]
fn incremental_equals_full_pass_with_a_one_boundary_budget() {
    let (m, w) = setup(DType::F32);
    let per = w.len() * w.seqlen * m.decoder.cfg.hidden_size * 4;
    check_session(DType::F32, 2 * per);
    check_session(DType::F32, 0);
}

#[test]
fn budget_bounds_the_cache_and_reuse_skips_blocks() {
    let (mut m, w) = setup(DType::F32);
    let per = w.len() * w.seqlen * m.decoder.cfg.hidden_size * 4;
    let mut inc = IncrementalPpl::new(w.clone(), 4, "eval.txt", 2 * 3 * per);
    inc.evaluate(&m.decoder, |_, _| {}).unwrap();
    inc.commit();
    assert!(inc.cached_bytes() <= 2 * 3 * per);
    assert!(inc.cached_bytes() >= per);
    let id = LinearId {
        block: 7,
        kind: LinearKind::O,
    };
    let mk = mask(&m.decoder, 7, LinearKind::O, 2, 0);
    m.decoder.set_mask(id, Some(mk)).unwrap();
    let (_, r) = inc.evaluate(&m.decoder, |_, _| {}).unwrap();
    assert_eq!(r.first_changed, 7);
    assert!(r.start_block >= 4, "started at {}", r.start_block);
    assert!(inc.cached_bytes() <= 2 * 3 * per);
}

// ---- The profile's calibration statistics ----

use arborist::model::BlockStats;
use arborist::profile::incremental::IncrementalStats;

/// The statistics as one full forward per chunk gathers them (the reference).
fn full_stats(d: &Decoder, w: &Windows, batch: usize) -> Vec<BlockStats> {
    let mut stats = vec![BlockStats::default(); d.blocks.len()];
    for chunk in w.windows.chunks(batch) {
        let ids = arborist::data::ids_tensor(chunk, &d.device).unwrap();
        d.forward(&ids, Some(&mut stats)).unwrap();
    }
    stats
}

fn stats_bits(s: &[BlockStats]) -> Vec<(u64, Vec<u64>)> {
    s.iter()
        .flat_map(|b| b.linears.iter())
        .map(|l| (l.tokens, bits(&l.sumsq)))
        .collect()
}

fn check_stats(dtype: DType, budget: usize) {
    let (mut m, w) = setup(dtype);
    let blocks = m.decoder.blocks.len();
    let mut inc = IncrementalStats::new(w.clone(), 4, budget);
    let mut step = |m: &LoadedModel, first: usize| {
        let (s, r) = inc.input_stats(&m.decoder).unwrap();
        assert_eq!(r.first_changed, first);
        assert!(r.start_block <= first);
        assert_eq!(stats_bits(&s), stats_bits(&full_stats(&m.decoder, &w, 4)));
        r
    };
    assert_eq!(step(&m, 0).start_block, 0);
    let id = |block, kind| LinearId { block, kind };
    let mk = mask(&m.decoder, 5, LinearKind::Down, 3, 0);
    m.decoder
        .set_mask(id(5, LinearKind::Down), Some(mk))
        .unwrap();
    step(&m, 5);
    // A step in block 2, then its rollback: back to the state profiled before it.
    let mk = mask(&m.decoder, 2, LinearKind::Gate, 2, 0);
    m.decoder
        .set_mask(id(2, LinearKind::Gate), Some(mk))
        .unwrap();
    step(&m, 2);
    m.decoder.set_mask(id(2, LinearKind::Gate), None).unwrap();
    step(&m, 2);
    let mk = mask(&m.decoder, 7, LinearKind::Up, 2, 0);
    m.decoder.set_mask(id(7, LinearKind::Up), Some(mk)).unwrap();
    let r = step(&m, 7);
    if budget > 0 {
        assert!(r.start_block > 0, "a cached boundary was used");
    }
    assert_eq!(step(&m, blocks).start_block, blocks);
}

#[test]
fn incremental_calibration_statistics_equal_a_full_pass() {
    check_stats(DType::F32, usize::MAX / 4);
    check_stats(DType::BF16, usize::MAX / 4);
    check_stats(DType::F32, 0);
}

use arborist::model::boundaries;
use arborist::profile::{mean_abs_gradients, mean_gradients, mean_gradients_from};
use arborist::profile::{GradAverage, GradSpec};

/// Widened to f64 (exact), so equal bits mean equal values in either dtype.
fn tensor_bits(ts: &[candle_core::Tensor]) -> Vec<Vec<u64>> {
    ts.iter()
        .map(|t| {
            let v = t.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
            bits(&v.to_vec1::<f64>().unwrap())
        })
        .collect()
}

/// The gradient pass may start from the calibration pass's cached states (windows taken
/// four at a time there, one at a time here): the gradients must be the recomputed ones.
fn check_grads_from_cache(dtype: DType, budget: usize, kept: usize) {
    let (mut m, w) = setup(dtype);
    let d = &m.decoder;
    let blocks = d.blocks.len();
    let chunks: Vec<&[Vec<u32>]> = w.windows.chunks(4).collect();
    let keep = boundaries::kept(d, w.len(), w.seqlen, budget, 1);
    let mut stats = vec![BlockStats::default(); blocks];
    let (b, _) = boundaries::stats_pass(d, None, &chunks, &keep, &mut stats).unwrap();
    // Six windows: a whole chunk of four and a partial one of two.
    let known = b.window_states(d, 4, w.len()).unwrap();
    assert_eq!(known.iter().flatten().count(), kept);
    for (average, full) in [
        (
            GradAverage::AbsOfMean,
            mean_gradients(d, &w.windows).unwrap(),
        ),
        (
            GradAverage::MeanOfAbs,
            mean_abs_gradients(d, &w.windows).unwrap(),
        ),
    ] {
        let from_cache = mean_gradients_from(d, &w.windows, &known, average).unwrap();
        assert_eq!(tensor_bits(&from_cache), tensor_bits(&full));
    }

    // The session engine's profile takes that path; the reference recomputes every state.
    let mut inc = IncrementalStats::new(w.clone(), 4, budget);
    let (session, _, _) = inc
        .profile(d, GradSpec::paper(w.len()), "eval.txt")
        .unwrap();
    let st = arborist::profile::input_stats(d, &w, 4).unwrap();
    let spec = GradSpec::paper(w.len());
    let reference = arborist::profile::compute_from(d, &st, &w, spec, "eval.txt", &[]).unwrap();
    let rows = |p: &arborist::profile::Profile| -> Vec<[u64; 4]> {
        p.layers
            .iter()
            .map(|l| [l.s, l.s_mean, l.g, l.g_mean_abs].map(f64::to_bits))
            .collect()
    };
    assert_eq!(rows(&session), rows(&reference));

    // After a change in block 3, states past it are stale and not offered.
    let mk = mask(&m.decoder, 3, LinearKind::Q, 2, 0);
    let id = LinearId {
        block: 3,
        kind: LinearKind::Q,
    };
    m.decoder.set_mask(id, Some(mk)).unwrap();
    let stale = b.window_states(&m.decoder, 4, w.len()).unwrap();
    for (i, s) in stale.iter().enumerate() {
        assert_eq!(s.is_some(), i <= 3 && keep[i], "boundary {i}");
    }
}

#[test]
fn gradient_pass_from_cached_states_equals_a_recomputed_one() {
    check_grads_from_cache(DType::F32, usize::MAX / 4, 7);
    check_grads_from_cache(DType::F64, usize::MAX / 4, 7);
    // A budget of one boundary of six windows keeps the middle one.
    check_grads_from_cache(DType::F32, 6 * 128 * 128 * 4, 1);
}
