//! One-shot pruning with sequential calibration, as Wanda's and SparseGPT's code do:
//! each block's calibration inputs are the outputs of the blocks before it, already pruned.

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;

use super::alloc::Plan;
use super::scores::{magnitude, wanda, weight_f32};
use super::select::{select, select_layerwide, Pattern};
use super::sparsegpt::{sparsegpt, Target};
use crate::data::Windows;
use crate::model::{BlockStats, Decoder, LinearId, LinearKind, Mask};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Magnitude,
    Wanda,
    Sparsegpt,
    /// Depth pruning: drop whole blocks with the lowest Block Influence.
    Shortgpt,
    /// Width pruning: attention heads (KV groups) and MLP channels.
    Width,
}

impl std::fmt::Display for Method {
    /// The name `--method` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let v = self.to_possible_value().expect("every method has a name");
        f.write_str(v.get_name())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OneShotOptions {
    pub method: Method,
    /// Calibrate every block on the dense model's activations instead of the pruned ones.
    pub dense_activations: bool,
    /// Magnitude only: one threshold per layer (the Wanda repository's baseline) instead of per row.
    pub magnitude_layerwide: bool,
    /// Windows per forward pass during calibration.
    pub batch: usize,
    pub percdamp: f64,
    pub blocksize: usize,
}

impl OneShotOptions {
    pub fn new(method: Method) -> Self {
        OneShotOptions {
            method,
            dense_activations: false,
            magnitude_layerwide: false,
            batch: 4,
            percdamp: 0.01,
            blocksize: 128,
        }
    }

    /// The options as arborist.json records them: one that did not act is null (magnitude
    /// pruning with no windows read recorded `batch`, and every method SparseGPT's damping).
    pub fn recorded(&self, windows_read: bool) -> serde_json::Value {
        let sparsegpt = self.method == Method::Sparsegpt;
        serde_json::json!({
            "method": self.method,
            "dense_activations": self.dense_activations,
            "magnitude_layerwide": self.magnitude_layerwide,
            "batch": windows_read.then_some(self.batch),
            "percdamp": sparsegpt.then_some(self.percdamp),
            "blocksize": sparsegpt.then_some(self.blocksize),
        })
    }
}

/// Token batches of the calibration windows, embedded.
pub fn embed_batches(d: &Decoder, calib: &Windows, batch: usize) -> Result<Vec<Tensor>> {
    calib
        .windows
        .chunks(batch.max(1))
        .map(|c| d.embed(&crate::data::ids_tensor(c, &d.device)?))
        .collect()
}

/// What pruning one layer changes: its mask, and for SparseGPT the kept weights too.
pub enum LayerUpdate {
    Mask(Mask),
    WeightAndMask(Tensor, Mask),
}

/// Prune one layer in place to `pattern`, growing its current mask.
pub fn prune_layer(
    d: &mut Decoder,
    id: LinearId,
    pattern: Pattern,
    opts: &OneShotOptions,
    stats: Option<&BlockStats>,
) -> Result<()> {
    let update = layer_update(d, id, pattern, opts, stats)?;
    apply_update(d, id, update)
}

/// Install an update computed by `layer_update`.
pub fn apply_update(d: &mut Decoder, id: LinearId, update: LayerUpdate) -> Result<()> {
    match update {
        LayerUpdate::Mask(m) => d.set_mask(id, Some(Arc::new(m))),
        LayerUpdate::WeightAndMask(w, m) => d.linear_mut(id).set_weight_and_mask(w, Arc::new(m)),
    }
}

/// The new mask (and weights) of one layer pruned to `pattern`; the model is only read, so
/// the layers of a block can be computed at once.
pub fn layer_update(
    d: &Decoder,
    id: LinearId,
    pattern: Pattern,
    opts: &OneShotOptions,
    stats: Option<&BlockStats>,
) -> Result<LayerUpdate> {
    let lin = d.linear(id);
    let (rows, cols) = (lin.out_features(), lin.in_features());
    let prior = lin.mask().cloned();
    // The active weight: zero where pruned earlier, which the prior mask keeps pruned.
    let w = weight_f32(&lin.weight()?)?;
    let need_stats = || -> Result<&BlockStats> {
        match stats {
            Some(s) => Ok(s),
            None => bail!(
                "{}: {:?} needs calibration statistics",
                id.name(),
                opts.method
            ),
        }
    };
    let mask = match opts.method {
        Method::Magnitude if opts.magnitude_layerwide => {
            let Pattern::Unstructured(s) = pattern else {
                bail!("layer-wide magnitude pruning supports only unstructured sparsity");
            };
            select_layerwide(&magnitude(&w), rows, cols, s, prior.as_deref())?
        }
        Method::Magnitude => select(&magnitude(&w), rows, cols, pattern, prior.as_deref())?,
        Method::Wanda => {
            let st = need_stats()?.get(id.kind);
            select(&wanda(&w, cols, st), rows, cols, pattern, prior.as_deref())?
        }
        Method::Shortgpt | Method::Width => {
            bail!(
                "{:?} is structured; it prunes whole blocks or units, not single layers",
                opts.method
            )
        }
        Method::Sparsegpt => {
            let st = need_stats()?;
            let Some(gram) = &st.grams[id.kind as usize] else {
                bail!("{}: SparseGPT needs the input Gram matrix", id.name());
            };
            let gram: Vec<f64> = gram
                .to_dtype(candle_core::DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?;
            let target = match pattern {
                Pattern::Unstructured(s) => Target::Sparsity(s),
                Pattern::NM { n, m } => Target::NM { n, m },
            };
            let r = sparsegpt(
                &w,
                rows,
                cols,
                &gram,
                &target,
                prior.as_deref(),
                opts.percdamp,
                opts.blocksize,
            )?;
            let t = Tensor::from_vec(r.weight, (rows, cols), &d.device)?;
            return Ok(LayerUpdate::WeightAndMask(t, r.mask));
        }
    };
    Ok(LayerUpdate::Mask(mask))
}

/// Prune the given layers, computing their masks in parallel on the compute threads, as
/// many at once as memory allows (each mask depends only on its own layer and the
/// statistics, so the result does not depend on the thread count). SparseGPT runs one
/// layer at a time (each holds an in×in Hessian), and so does a list naming a layer twice
/// (the second grows the first's mask).
/// `stats` gives a block's statistics. Errors name the layer.
pub fn prune_layers<'s>(
    d: &mut Decoder,
    layers: &[(LinearId, Pattern)],
    opts: &OneShotOptions,
    stats: &(dyn Fn(usize) -> Option<&'s BlockStats> + Sync),
) -> Result<()> {
    let distinct = layers
        .iter()
        .map(|(id, _)| id)
        .collect::<BTreeSet<_>>()
        .len()
        == layers.len();
    if opts.method == Method::Sparsegpt || !distinct {
        for &(id, p) in layers {
            prune_layer(d, id, p, opts, stats(id.block))
                .with_context(|| format!("pruning {}", id.name()))?;
        }
        return Ok(());
    }
    // Each layer in flight holds its weight in f32 and a score per weight (on host memory,
    // whatever the device): hundreds of MB for one layer of an 8B model, so no more run at
    // once than half the available memory holds.
    let largest = layers
        .iter()
        .map(|(id, _)| d.linear(*id))
        .map(|l| 9 * l.out_features() * l.in_features())
        .max()
        .unwrap_or(0);
    let width = crate::model::device::batch_parallelism(&candle_core::Device::Cpu, largest);
    prune_layers_at(d, layers, opts, stats, width)
}

/// `prune_layers` with at most `width` masks computed at once.
fn prune_layers_at<'s>(
    d: &mut Decoder,
    layers: &[(LinearId, Pattern)],
    opts: &OneShotOptions,
    stats: &(dyn Fn(usize) -> Option<&'s BlockStats> + Sync),
    width: usize,
) -> Result<()> {
    let dec = &*d;
    let one = |&(id, p): &(LinearId, Pattern)| {
        layer_update(dec, id, p, opts, stats(id.block))
            .with_context(|| format!("pruning {}", id.name()))
    };
    let updates: Vec<LayerUpdate> = if width >= rayon::current_num_threads() {
        // rayon runs at most one layer per thread and balances them as they finish.
        use rayon::prelude::*;
        layers.par_iter().map(one).collect::<Result<_>>()?
    } else {
        crate::runtime::map_collect(layers, width, |_, l| one(l))?
    };
    for (&(id, _), u) in layers.iter().zip(updates) {
        apply_update(d, id, u)?;
    }
    Ok(())
}

/// Prune every layer in `plan`, block by block with sequential calibration.
pub fn prune_sequential(
    d: &mut Decoder,
    calib: Option<&Windows>,
    plan: &Plan,
    opts: &OneShotOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<()> {
    let nblocks = d.blocks.len();
    if opts.method == Method::Magnitude {
        let layers: Vec<(LinearId, Pattern)> = plan.iter().map(|(id, p)| (*id, *p)).collect();
        prune_layers(d, &layers, opts, &|_| None)?;
        progress(nblocks, nblocks);
        return Ok(());
    }
    let Some(calib) = calib else {
        bail!("{} needs calibration data (--calib FILE)", opts.method);
    };
    let mut xs = embed_batches(d, calib, opts.batch)?;
    for b in 0..nblocks {
        let last = b + 1 == nblocks;
        let (stats, dense_out) = calibrate_block(d, b, &xs, opts, !last)?;
        let layers: Vec<(LinearId, Pattern)> = LinearKind::ALL
            .into_iter()
            .map(|kind| LinearId { block: b, kind })
            .filter_map(|id| plan.get(&id).map(|p| (id, *p)))
            .collect();
        prune_layers(d, &layers, opts, &|_| Some(&stats))?;
        // The last block's outputs feed nothing.
        xs = if last {
            Vec::new()
        } else if opts.dense_activations {
            dense_out
        } else {
            let dec = &*d;
            crate::runtime::map_collect(&xs, calib_parallelism(dec, &xs), |_, x| {
                dec.block_forward(b, x, None)
            })?
        };
        progress(b + 1, nblocks);
    }
    Ok(())
}

/// How many calibration batches (hidden states [windows, seqlen, hidden]) run at once.
fn calib_parallelism(d: &Decoder, xs: &[Tensor]) -> usize {
    let (w, t) = xs
        .first()
        .map_or((1, 1), |x| (x.dim(0).unwrap_or(1), x.dim(1).unwrap_or(1)));
    crate::model::device::batch_parallelism(&d.device, d.batch_bytes(w, t))
}

/// Block `b`'s input statistics over every batch, and its dense outputs when calibrating on
/// dense activations. Batches run in parallel on the compute threads; their statistics are
/// merged in batch order, so the result does not depend on the thread count.
fn calibrate_block(
    d: &Decoder,
    b: usize,
    xs: &[Tensor],
    opts: &OneShotOptions,
    want_out: bool,
) -> Result<(BlockStats, Vec<Tensor>)> {
    let dense = opts.dense_activations && want_out;
    let one = |x: &Tensor, st: &mut BlockStats| -> Result<Option<Tensor>> {
        if dense {
            Ok(Some(d.block_forward(b, x, Some(st))?))
        } else {
            d.block_stats(b, x, st)?;
            Ok(None)
        }
    };
    // SparseGPT's Gram matrices (in² per layer) are summed into one accumulator instead.
    if opts.method == Method::Sparsegpt {
        let mut stats = BlockStats::with_gram();
        let mut outs = Vec::new();
        for x in xs {
            outs.extend(one(x, &mut stats)?);
        }
        return Ok((stats, outs));
    }
    let mut stats = BlockStats::default();
    let mut outs = Vec::new();
    crate::runtime::map_in_order(
        xs,
        calib_parallelism(d, xs),
        |_, x| {
            let mut st = BlockStats::default();
            let out = one(x, &mut st)?;
            Ok((st, out))
        },
        |_, (st, out)| {
            outs.extend(out);
            stats.absorb(st)
        },
    )?;
    Ok((stats, outs))
}

/// Per-layer sparsity after pruning, by HF name.
pub fn layer_sparsities(d: &Decoder) -> Vec<(String, f64)> {
    d.linear_ids()
        .map(|id| {
            (
                id.name(),
                d.linear(id)
                    .mask()
                    .map_or(0.0, |m: &Arc<Mask>| m.sparsity()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{random::random_decoder, ModelConfig};
    use candle_core::{DType, Device};

    const CFG: &str = r#"{"model_type":"qwen3","vocab_size":61,"hidden_size":32,
      "intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
      "head_dim":8,"attention_bias":false,"max_position_embeddings":64,"sliding_window":null,
      "max_window_layers":2,"tie_word_embeddings":true,"rope_theta":10000.0,"rms_norm_eps":1e-6,
      "use_sliding_window":false,"hidden_act":"silu"}"#;

    // Masks computed together on the compute threads are the ones computed one layer at a
    // time, for each per-layer method, pruning twice so that prior masks are grown.
    #[test]
    fn parallel_layer_masks_equal_one_at_a_time() {
        let cfg = ModelConfig::from_json(CFG).unwrap();
        let base = random_decoder(&cfg, 5, DType::F32, &Device::Cpu).unwrap();
        let x = base
            .embed(
                &Tensor::from_vec((0..24u32).collect::<Vec<_>>(), (2, 12), &Device::Cpu).unwrap(),
            )
            .unwrap();
        let mut stats = BlockStats::default();
        base.block_stats(1, &x, &mut stats).unwrap();
        let layers: Vec<(LinearId, Pattern)> = LinearKind::ALL
            .into_iter()
            .map(|kind| (LinearId { block: 1, kind }, Pattern::Unstructured(0.3)))
            .collect();
        for method in [Method::Magnitude, Method::Wanda] {
            let opts = OneShotOptions::new(method);
            let (mut par, mut seq, mut one) = (base.clone(), base.clone(), base.clone());
            for s in [0.3, 0.6] {
                let step: Vec<_> = layers
                    .iter()
                    .map(|(id, _)| (*id, Pattern::Unstructured(s)))
                    .collect();
                prune_layers(&mut par, &step, &opts, &|_| Some(&stats)).unwrap();
                // One at a time in groups: the path taken when memory is short.
                prune_layers_at(&mut one, &step, &opts, &|_| Some(&stats), 1).unwrap();
                for (id, p) in &step {
                    prune_layer(&mut seq, *id, *p, &opts, Some(&stats)).unwrap();
                }
            }
            for (id, _) in &layers {
                let (p, q) = (
                    par.linear(*id).mask().unwrap(),
                    seq.linear(*id).mask().unwrap(),
                );
                assert!(p.sparsity() > 0.5, "{method:?} {}", id.name());
                assert_eq!(p.words(), q.words(), "{method:?} {}", id.name());
                let o = one.linear(*id).mask().unwrap();
                assert_eq!(o.words(), q.words(), "{method:?} {}, width 1", id.name());
            }
        }
    }

    // Batches calibrated in parallel and merged give the bits of one accumulator fed batch
    // after batch, so the thread count cannot change a mask.
    #[test]
    fn parallel_calibration_equals_sequential_bits() {
        let cfg = ModelConfig::from_json(CFG).unwrap();
        let d = random_decoder(&cfg, 3, DType::F32, &Device::Cpu).unwrap();
        let xs: Vec<Tensor> = (0..5u32)
            .map(|k| {
                let v: Vec<u32> = (0..24).map(|i| (i * 37 + k * 13 + 11) % 61).collect();
                d.embed(&Tensor::from_vec(v, (2, 12), &Device::Cpu).unwrap())
                    .unwrap()
            })
            .collect();
        for dense in [false, true] {
            let mut opts = OneShotOptions::new(Method::Wanda);
            opts.dense_activations = dense;
            let (par, outs) = calibrate_block(&d, 0, &xs, &opts, true).unwrap();
            let mut seq = BlockStats::default();
            for x in &xs {
                d.block_stats(0, x, &mut seq).unwrap();
            }
            for kind in LinearKind::ALL {
                let (p, s) = (par.get(kind), seq.get(kind));
                assert_eq!(p.tokens, 5 * 24, "{kind:?}");
                assert_eq!(p.tokens, s.tokens, "{kind:?}");
                assert!(!p.sumsq.is_empty(), "{kind:?}");
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&p.sumsq), bits(&s.sumsq), "{kind:?}");
            }
            assert_eq!(outs.len(), if dense { xs.len() } else { 0 });
            for (o, x) in outs.iter().zip(&xs) {
                let want = d.block_forward(0, x, None).unwrap();
                let diff = (o - &want).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
            }
        }
    }
}
