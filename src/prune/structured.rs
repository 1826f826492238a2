//! Structured-pruning baselines: ShortGPT depth pruning (Block Influence) and width pruning of
//! whole KV groups and MLP channels scored by activation-weighted magnitude.

use anyhow::{ensure, Result};
use candle_core::{DType, Tensor, D};
use serde::Serialize;
use std::ops::Range;
use std::sync::Arc;

use super::scores::weight_f32;
use crate::model::{BlockStats, Decoder, LinearId, LinearKind, Mask};

/// Run every batch through all blocks in order; `step(i, x)` runs block i on its input x.
fn sequential(
    batches: &[Tensor],
    nblocks: usize,
    mut step: impl FnMut(usize, &Tensor) -> Result<Tensor>,
) -> Result<()> {
    ensure!(!batches.is_empty(), "calibration needs at least one batch");
    for x0 in batches {
        let mut x = x0.clone();
        for i in 0..nblocks {
            x = step(i, &x)?;
        }
    }
    Ok(())
}

/// Block Influence of every block: mean over calibration tokens of 1 − cos(block input, block
/// output) (hidden-state vectors per token), computed on the dense model in one sequential pass.
pub fn block_influence(d: &Decoder, batches: &[Tensor]) -> Result<Vec<f64>> {
    let mut sum = vec![0f64; d.blocks.len()];
    sequential(batches, d.blocks.len(), |i, x| {
        let y = d.block_forward(i, x, None)?;
        sum[i] += one_minus_cos(x, &y)?;
        Ok(y)
    })?;
    let tokens: usize = batches.iter().map(|x| x.dims()[0] * x.dims()[1]).sum();
    Ok(sum.into_iter().map(|s| s / tokens as f64).collect())
}

/// Σ over tokens of 1 − cos(x_t, y_t); the division runs in f64 on the host.
fn one_minus_cos(x: &Tensor, y: &Tensor) -> Result<f64> {
    let (x, y) = (x.to_dtype(DType::F32)?, y.to_dtype(DType::F32)?);
    let sum = |t: Tensor| -> Result<Vec<f32>> { Ok(t.sum(D::Minus1)?.flatten_all()?.to_vec1()?) };
    let (xy, xx, yy) = (sum((&x * &y)?)?, sum(x.sqr()?)?, sum(y.sqr()?)?);
    let norms = |i: usize| (xx[i] as f64 * yy[i] as f64).sqrt().max(f64::MIN_POSITIVE);
    Ok((0..xy.len()).map(|i| 1.0 - xy[i] as f64 / norms(i)).sum())
}

/// Blocks to remove: lowest influence first, until removed linear parameters reach `fraction`
/// of all blocks' linear parameters. Returned sorted ascending.
pub fn shortgpt_plan(influence: &[f64], fraction: f64) -> Result<Vec<usize>> {
    let l = influence.len();
    ensure!(l > 0, "depth pruning needs at least one block");
    let ok = (0.0..1.0).contains(&fraction);
    ensure!(ok, "depth fraction must be in [0, 1), got {fraction}");
    let finite = influence.iter().all(|v| v.is_finite());
    ensure!(finite, "block influence is not finite");
    // All blocks have the same linear parameters, so it takes ceil(f·L) blocks; the tolerance
    // keeps e.g. 0.3·10 = 3.0000000000000004 from rounding up to 4.
    let n = (fraction * l as f64 - 1e-9).ceil().max(0.0) as usize;
    ensure!(n < l, "removing {fraction} of {l} blocks leaves none");
    Ok(lowest(influence, n))
}

/// Input statistics of every block on the model as it is, in one sequential pass.
pub fn dense_stats(d: &Decoder, batches: &[Tensor]) -> Result<Vec<BlockStats>> {
    let mut stats = vec![BlockStats::default(); d.blocks.len()];
    sequential(batches, d.blocks.len(), |i, x| {
        d.block_forward(i, x, Some(&mut stats[i]))
    })?;
    Ok(stats)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WidthPlan {
    /// (block, removed KV groups): a key/value head with the query heads that share it.
    pub heads_removed: Vec<(usize, Vec<usize>)>,
    /// (block, removed MLP intermediate channels).
    pub channels_removed: Vec<(usize, Vec<usize>)>,
}

/// Whether a unit occupies output rows of this layer; o and down lose input columns instead.
fn by_rows(k: LinearKind) -> bool {
    !matches!(k, LinearKind::O | LinearKind::Down)
}

/// Where a unit lives. KV group `g`: head g of k/v and its query heads, contiguous in q and o
/// (repeat_kv maps query head h to kv head h / rep). Channel `c`: gate/up row c, down column c.
fn unit_slices(d: &Decoder, head: bool, u: usize) -> Vec<(LinearKind, Range<usize>)> {
    use LinearKind::*;
    if !head {
        return vec![(Gate, u..u + 1), (Up, u..u + 1), (Down, u..u + 1)];
    }
    let hd = d.cfg.head_dim;
    let span = d.cfg.num_heads / d.cfg.num_kv_heads * hd;
    let (q, kv) = (u * span..(u + 1) * span, u * hd..(u + 1) * hd);
    vec![(Q, q.clone()), (K, kv.clone()), (V, kv), (O, q)]
}

/// One layer's effective weight with its input norms ‖X_j‖.
struct Scored {
    w: Vec<f32>,
    cols: usize,
    norms: Vec<f64>,
}

impl Scored {
    fn new(d: &Decoder, st: &BlockStats, block: usize, kind: LinearKind) -> Result<Self> {
        let lin = d.linear(LinearId { block, kind });
        let norms = st.get(kind).norms();
        let (ok, k) = (norms.len() == lin.in_features(), kind.short());
        ensure!(ok, "block {block}: no calibration statistics for {k}");
        // Effective weights, so weights pruned earlier no longer count.
        let w = weight_f32(&lin.weight()?)?;
        let cols = lin.in_features();
        Ok(Scored { w, cols, norms })
    }
    /// Σ |W[r, c]|·‖X_c‖ over rows `idx` (all columns) or over columns `idx` (all rows).
    fn score(&self, rows: bool, idx: Range<usize>) -> f64 {
        let all = (0..self.w.len() / self.cols, 0..self.cols);
        let (rs, cs) = if rows { (idx, all.1) } else { (all.0, idx) };
        rs.flat_map(|r| cs.clone().map(move |c| (r, c)))
            .map(|(r, c)| self.w[r * self.cols + c].abs() as f64 * self.norms[c])
            .sum()
    }
}

/// Whole units removed for `fraction` of `units` equal units: rounded down, one always kept.
fn units_to_remove(fraction: f64, units: usize) -> usize {
    ((fraction * units as f64 + 1e-9).floor() as usize).min(units.saturating_sub(1))
}

/// Indices of the `n` lowest scores (ties: lower index first), ascending by index.
fn lowest(scores: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut out = order[..n].to_vec();
    out.sort_unstable();
    out
}

/// Remove the lowest-scoring units in every block (uniform per block) so that `fraction` of each
/// block's attention and MLP parameters are removed (whole units, rounded down, one of each kept).
pub fn width_plan(d: &Decoder, stats: &[BlockStats], fraction: f64) -> Result<WidthPlan> {
    let ok = (0.0..1.0).contains(&fraction);
    ensure!(ok, "width fraction must be in [0, 1), got {fraction}");
    let (nb, ns) = (d.blocks.len(), stats.len());
    ensure!(nb == ns, "{nb} blocks but statistics for {ns}");
    let (nkv, inter) = (d.cfg.num_kv_heads, d.cfg.intermediate_size);
    let mut plan = WidthPlan::default();
    for (b, st) in stats.iter().enumerate() {
        let l: Vec<Scored> = LinearKind::ALL
            .iter()
            .map(|&k| Scored::new(d, st, b, k))
            .collect::<Result<_>>()?;
        let score = |head: bool, u: usize| -> f64 {
            let sl = unit_slices(d, head, u).into_iter();
            sl.map(|(k, r)| l[k as usize].score(by_rows(k), r)).sum()
        };
        let pick = |head: bool, n: usize| {
            let s: Vec<f64> = (0..n).map(|u| score(head, u)).collect();
            lowest(&s, units_to_remove(fraction, n))
        };
        plan.heads_removed.push((b, pick(true, nkv)));
        plan.channels_removed.push((b, pick(false, inter)));
    }
    Ok(plan)
}

/// Apply as structured masks (shapes unchanged, so the export stays Hugging Face-loadable):
/// whole rows of q/k/v and columns of o for removed groups, rows of gate/up and columns of down
/// for removed channels. Masks grow from any existing mask.
pub fn apply_width(d: &mut Decoder, plan: &WidthPlan) -> Result<()> {
    let (nb, nkv, inter) = (d.blocks.len(), d.cfg.num_kv_heads, d.cfg.intermediate_size);
    let (hr, cr) = (&plan.heads_removed, &plan.channels_removed);
    let lists = [(hr, true, nkv), (cr, false, inter)];
    // Check the whole plan first so a bad plan leaves the model untouched.
    for (list, _, n) in lists {
        for (b, us) in list {
            ensure!(*b < nb, "width plan names block {b} of {nb}");
            let ok = us.iter().all(|&u| u < n);
            ensure!(ok, "block {b}: unit index out of range (< {n})");
        }
    }
    for (list, head, _) in lists {
        for (b, us) in list {
            // One mask update per layer: cloning a mask per unit would be quadratic.
            let mut idx: [Vec<usize>; 7] = Default::default();
            for (k, r) in us.iter().flat_map(|&u| unit_slices(d, head, u)) {
                idx[k as usize].extend(r);
            }
            for kind in LinearKind::ALL {
                if !idx[kind as usize].is_empty() {
                    grow(d, LinearId { block: *b, kind }, &idx[kind as usize])?;
                }
            }
        }
    }
    Ok(())
}

/// Prune whole rows (or, for o and down, columns) `idx` of one layer on top of its mask.
fn grow(d: &mut Decoder, id: LinearId, idx: &[usize]) -> Result<()> {
    let lin = d.linear(id);
    let (r, c) = (lin.out_features(), lin.in_features());
    let mut m = lin
        .mask()
        .map_or_else(|| Mask::empty(r, c), |m| (**m).clone());
    for &i in idx {
        if by_rows(id.kind) {
            (0..c).for_each(|j| m.prune(i, j));
        } else {
            (0..r).for_each(|j| m.prune(j, i));
        }
    }
    d.set_mask(id, Some(Arc::new(m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{random::random_tensors, ModelConfig};
    use candle_core::Device;
    use std::collections::HashMap;
    use LinearKind::*;

    // 4 query heads over 2 kv heads of dim 8: kv group g owns q rows 16g..16g+16.
    const CFG: &str = r#"{"model_type":"qwen3","vocab_size":61,"hidden_size":32,
      "intermediate_size":24,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,
      "head_dim":8,"attention_bias":false,"max_position_embeddings":64,"sliding_window":null,
      "max_window_layers":4,"tie_word_embeddings":true,"rope_theta":10000.0,"rms_norm_eps":1e-6,
      "use_sliding_window":false,"hidden_act":"silu"}"#;
    type Map = HashMap<String, Tensor>;

    fn setup() -> (ModelConfig, Map) {
        let cfg = ModelConfig::from_json(CFG).unwrap();
        let t = random_tensors(&cfg, 7, 0.05, DType::F32, &Device::Cpu).unwrap();
        (cfg, t)
    }
    fn ids(k: u32) -> Tensor {
        let v: Vec<u32> = (0..24).map(|i| (i * 37 + k * 13 + 11) % 61).collect();
        Tensor::from_vec(v, (2, 12), &Device::Cpu).unwrap()
    }
    fn batches(d: &Decoder) -> Vec<Tensor> {
        (0..2).map(|k| d.embed(&ids(k)).unwrap()).collect()
    }
    /// Rows (q/k/v/gate/up) or columns (o/down) of the given groups and channels, written out
    /// independently of `unit_slices`.
    fn slices(gs: &[usize], cs: &[usize]) -> Vec<(LinearKind, Vec<usize>, bool)> {
        let q: Vec<usize> = gs.iter().flat_map(|&g| 16 * g..16 * g + 16).collect();
        let kv: Vec<usize> = gs.iter().flat_map(|&g| 8 * g..8 * g + 8).collect();
        let mut v = vec![(O, q.clone(), false), (Down, cs.to_vec(), false)];
        v.extend([Q].map(|k| (k, q.clone(), true)));
        v.extend([K, V].map(|k| (k, kv.clone(), true)));
        v.extend([Gate, Up].map(|k| (k, cs.to_vec(), true)));
        v
    }
    /// Multiply rows (or columns) `idx` of a weight by `f`.
    fn scale(t: &mut Map, b: usize, k: LinearKind, idx: &[usize], rows: bool, f: f32) {
        let name = format!("model.layers.{b}.{}.weight", k.path());
        let (r, c) = t[&name].dims2().unwrap();
        let mut v = t[&name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (i, x) in v.iter_mut().enumerate() {
            if idx.contains(&if rows { i / c } else { i % c }) {
                *x *= f;
            }
        }
        t.insert(name, Tensor::from_vec(v, (r, c), &Device::Cpu).unwrap());
    }
    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap();
        d.max_all().unwrap().to_scalar().unwrap()
    }

    #[test]
    fn identity_block_has_zero_influence_and_goes_first() {
        let (cfg, mut t) = setup();
        let all: Vec<usize> = (0..32).collect();
        scale(&mut t, 1, O, &all, true, 0.0);
        scale(&mut t, 1, Down, &all, true, 0.0);
        let mut d = Decoder::from_tensors(cfg, t).unwrap();
        let inf = block_influence(&d, &batches(&d)).unwrap();
        assert!(inf[1].abs() < 1e-6, "{inf:?}");
        assert!([0, 2, 3].iter().all(|&i| inf[i] > 1e-3), "{inf:?}");
        assert_eq!(shortgpt_plan(&inf, 0.25).unwrap(), vec![1]);
        let before = d.forward(&ids(0), None).unwrap();
        d.remove_blocks(&[1]);
        assert!(max_diff(&d.forward(&ids(0), None).unwrap(), &before) < 1e-5);
    }

    #[test]
    fn shortgpt_plan_counts_order_and_errors() {
        let inf = [0.5, 0.1, 0.9, 0.1, 0.3];
        assert!(shortgpt_plan(&inf, 0.0).unwrap().is_empty());
        assert_eq!(shortgpt_plan(&inf, 0.2).unwrap(), vec![1]);
        assert_eq!(shortgpt_plan(&inf, 0.21).unwrap(), vec![1, 3]);
        assert_eq!(shortgpt_plan(&inf, 0.5).unwrap(), vec![1, 3, 4]);
        assert_eq!(shortgpt_plan(&inf, 0.8).unwrap(), vec![0, 1, 3, 4]);
        assert_eq!(shortgpt_plan(&[1.0; 10], 0.3).unwrap().len(), 3);
        for f in [-0.1, 1.0, f64::NAN, 0.81] {
            assert!(shortgpt_plan(&inf, f).is_err(), "{f}"); // 0.81 would remove all five
        }
        assert!(shortgpt_plan(&[], 0.1).is_err());
        assert!(shortgpt_plan(&[0.1, f64::NAN], 0.1).is_err());
    }

    #[test]
    fn removed_units_are_fully_masked_and_contribute_nothing() {
        let (cfg, t) = setup();
        let mut d = Decoder::from_tensors(cfg.clone(), t.clone()).unwrap();
        let plan = width_plan(&d, &dense_stats(&d, &batches(&d)).unwrap(), 0.5).unwrap();
        // A weight pruned earlier in a kept channel must stay pruned.
        let kept = (0..24)
            .find(|c| !plan.channels_removed[0].1.contains(c))
            .unwrap();
        let mut prior = Mask::empty(24, 32);
        prior.prune(kept, 3);
        let up0 = LinearId { block: 0, kind: Up };
        d.set_mask(up0, Some(Arc::new(prior.clone()))).unwrap();
        apply_width(&mut d, &plan).unwrap();
        assert!(prior.is_subset_of(d.linear(up0).mask().unwrap()));

        // Hand model: zero only the output rows. With q, k, v of a group at zero its heads read
        // zero values, so it matches the masks only if the query heads map to the right kv head.
        let mut hand = t.clone();
        let units = plan.heads_removed.iter().zip(&plan.channels_removed);
        for ((b, gs), (_, cs)) in units {
            assert_eq!((gs.len(), cs.len()), (1, 12));
            for (k, idx, rows) in slices(gs, cs) {
                let id = LinearId { block: *b, kind: k };
                let m = d.linear(id).mask().unwrap();
                let whole = |&i: &usize| match rows {
                    true => m.pruned_in_row(i) == m.cols(),
                    false => (0..m.rows()).all(|r| m.is_pruned(r, i)),
                };
                assert!(idx.iter().all(whole), "block {b} {}", k.short());
                if rows {
                    scale(&mut hand, *b, k, &idx, true, 0.0);
                }
            }
        }
        let mut hand = Decoder::from_tensors(cfg.clone(), hand).unwrap();
        hand.set_mask(up0, Some(Arc::new(prior))).unwrap();
        let dense = Decoder::from_tensors(cfg, t).unwrap();
        let got = d.forward(&ids(0), None).unwrap();
        assert!(max_diff(&got, &hand.forward(&ids(0), None).unwrap()) < 1e-6);
        assert!(max_diff(&got, &dense.forward(&ids(0), None).unwrap()) > 1e-4);
    }

    #[test]
    fn width_fraction_within_one_unit_and_errors() {
        let (cfg, t) = setup();
        let d0 = Decoder::from_tensors(cfg.clone(), t).unwrap();
        let stats = dense_stats(&d0, &batches(&d0)).unwrap();
        let (attn, mlp) = (3 * 32 * 32, 3 * 32 * 24);
        assert_eq!(attn + mlp, cfg.linear_params_per_block());
        let (g_unit, c_unit) = (attn / 2, 3 * 32);
        for f in [0.0, 0.3, 0.5, 0.7, 0.99] {
            let mut d = d0.clone();
            apply_width(&mut d, &width_plan(&d0, &stats, f).unwrap()).unwrap();
            for b in 0..4 {
                let n = |kind| d.linear(LinearId { block: b, kind }).mask().cloned();
                let pruned = |ks: &[LinearKind]| -> usize {
                    ks.iter()
                        .map(|&k| n(k).map_or(0, |m| m.pruned_count()))
                        .sum()
                };
                let (a, m) = (pruned(&[Q, K, V, O]), pruned(&[Gate, Up, Down]));
                assert!((a as f64 - f * attn as f64).abs() <= g_unit as f64);
                assert!((m as f64 - f * mlp as f64).abs() <= c_unit as f64);
                assert!(a < attn && m < mlp);
            }
        }
        assert!(width_plan(&d0, &stats, 1.0).is_err());
        assert!(width_plan(&d0, &stats[..2], 0.5).is_err());
        assert!(width_plan(&d0, &vec![BlockStats::default(); 4], 0.5).is_err());
        let mut bad = WidthPlan::default();
        bad.heads_removed.push((0, vec![2]));
        assert!(apply_width(&mut d0.clone(), &bad).is_err());
    }

    #[test]
    fn strong_channel_and_group_are_kept() {
        let (cfg, mut t) = setup();
        // Unit 0 would go first on a tie, so scaling it tests the score, not the order.
        for b in 0..4 {
            for (k, idx, rows) in slices(&[0], &[0]) {
                scale(&mut t, b, k, &idx, rows, 100.0);
            }
        }
        let d = Decoder::from_tensors(cfg, t).unwrap();
        let plan = width_plan(&d, &dense_stats(&d, &batches(&d)).unwrap(), 0.9).unwrap();
        // Every block has a plan (the loop below passed on empty ones).
        assert_eq!(
            (plan.heads_removed.len(), plan.channels_removed.len()),
            (4, 4)
        );
        for ((_, gs), (_, cs)) in plan.heads_removed.iter().zip(&plan.channels_removed) {
            assert_eq!((gs, cs.len()), (&vec![1], 21));
            assert!(!cs.contains(&0));
        }
    }

    #[test]
    fn large_input_norms_keep_a_unit() {
        let (cfg, t) = setup();
        let d = Decoder::from_tensors(cfg, t).unwrap();
        let mut stats = dense_stats(&d, &batches(&d)).unwrap();
        let plan = width_plan(&d, &stats, 0.5).unwrap();
        let (g, c) = (plan.heads_removed[2].1[0], plan.channels_removed[2].1[0]);
        // Same weights, larger activations: ‖X‖ must enter the score.
        stats[2].linears[O as usize].sumsq[16 * g..16 * g + 16]
            .iter_mut()
            .for_each(|s| *s *= 1e8);
        stats[2].linears[Down as usize].sumsq[c] *= 1e8;
        let after = width_plan(&d, &stats, 0.5).unwrap();
        assert!(!after.heads_removed[2].1.contains(&g));
        assert!(!after.channels_removed[2].1.contains(&c));
        assert_eq!(after.heads_removed[1], plan.heads_removed[1]);
    }
}
