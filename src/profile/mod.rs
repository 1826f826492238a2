//! The per-layer sensitivity profile the agent reads: Wanda score statistics over active
//! weights, a gradient (Taylor) importance, the layer's sparsity, and z-scores of both.

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Tensor, Var};
use serde::Serialize;

use crate::data::{CalibSample, Windows};
use crate::eval::ppl::window_loss;
use crate::model::{BlockStats, Decoder, LinearId, LinearKind};

pub mod grad_average;
pub mod incremental;
mod radix;
mod rows;

pub use grad_average::{GradAverage, DEFAULT_GRAD_WINDOWS};

#[derive(Debug, Clone, Serialize)]
pub struct LayerProfile {
    /// Hugging Face module path, e.g. model.layers.3.mlp.down_proj.
    pub name: String,
    pub block: usize,
    pub kind: String,
    pub sparsity: f64,
    /// 10th percentile of S = |W|·‖X‖₂ over active weights (the paper's s_l).
    pub s: f64,
    pub s_mean: f64,
    pub s_median: f64,
    /// Mean over active weights of |W · G| (first-order Taylor importance; the paper's g_l),
    /// G averaged over the gradient windows as `GradAverage` says.
    pub g: f64,
    /// Mean over active weights of |G|.
    pub g_mean_abs: f64,
    pub z_s: f64,
    pub z_g: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileProtocol {
    pub calib: String,
    /// How the windows were taken (`--calib-sample`) and the seed of a random draw; set by
    /// the `profile` command, which alone knows (a session records them in its header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calib_sample: Option<CalibSample>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub seqlen: usize,
    pub calib_windows: usize,
    pub grad_windows: usize,
    pub grad_average: GradAverage,
    pub dtype: String,
    pub z_eps: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub protocol: ProfileProtocol,
    pub layers: Vec<LayerProfile>,
    /// Where the time went (not recorded: times are the machine's, not the profile's).
    #[serde(skip)]
    pub seconds: ProfileSeconds,
}

/// Wall time of a profile's parts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProfileSeconds {
    /// The calibration pass (Wanda's input statistics); 0 where they were given.
    pub calibration: f64,
    /// The gradient pass's forwards and backwards.
    pub gradients: f64,
    /// Reducing each layer's weights, scores and gradients to its row.
    pub rows: f64,
}

pub const Z_EPS: f64 = 1e-8;

/// Quantile with linear interpolation between order statistics (numpy's default), found
/// by selection (linear time; a layer of an 8B model holds tens of millions of scores, which
/// a sort took seconds over). `v` is reordered.
pub fn quantile(v: &mut [f32], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let (_, at, above) = v.select_nth_unstable_by(lo, f32::total_cmp);
    let a = *at;
    // The next order statistic is the least of those above position lo.
    let b = above.iter().copied().min_by(f32::total_cmp).unwrap_or(a);
    let f = pos - lo as f64;
    a as f64 + f * (b as f64 - a as f64)
}

/// (x − mean) / (std + eps) with the population standard deviation.
pub fn zscores(x: &[f64]) -> Vec<f64> {
    let n = x.len().max(1) as f64;
    let mean = x.iter().sum::<f64>() / n;
    let std = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    x.iter().map(|v| (v - mean) / (std + Z_EPS)).collect()
}

/// Progress of a long pass: what is counted, how many are done, of how many.
pub type Report<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// Wanda statistics of every linear input over the calibration windows (current masks).
pub fn input_stats(d: &Decoder, calib: &Windows, batch: usize) -> Result<Vec<BlockStats>> {
    input_stats_reporting(d, calib, batch, &mut |_, _, _| {})
}

/// `input_stats`, reporting the windows done.
pub fn input_stats_reporting(
    d: &Decoder,
    calib: &Windows,
    batch: usize,
    report: Report,
) -> Result<Vec<BlockStats>> {
    let mut stats = vec![BlockStats::default(); d.blocks.len()];
    let batch = batch.max(1);
    let chunks: Vec<&[Vec<u32>]> = calib.windows.chunks(batch).collect();
    let keep = vec![false; d.blocks.len() + 1];
    let n = calib.windows.len();
    crate::model::boundaries::pass(
        d,
        None,
        &chunks,
        &keep,
        Some(&mut stats),
        |_, _| Ok(()),
        |k, _| {
            report("profile: calibration windows", ((k + 1) * batch).min(n), n);
            Ok(())
        },
    )?;
    Ok(stats)
}

/// G = mean over the windows of d(window loss)/dW for every linear, in `linear_ids` order.
///
/// One block at a time: a forward pass keeps the state entering each block for every
/// window; then, from the top, each block is recomputed and back-propagated, window by
/// window, from the gradient of its output. The peak is one block's activations rather
/// than the model's, and only one block's weights are held at a time (a streamed block is
/// read once per pass), for the price of one more forward pass. (The whole-model graph of
/// one 512-token window took 440 MiB on the 1.7M-parameter bundled model; a batch was not
/// faster.)
pub fn mean_gradients(d: &Decoder, windows: &[Vec<u32>]) -> Result<Vec<Tensor>> {
    mean_gradients_from(d, windows, &[], GradAverage::AbsOfMean)
}

/// The mean over `windows` of each window's |d loss / d W| (the paper's G), per linear.
pub fn mean_abs_gradients(d: &Decoder, windows: &[Vec<u32>]) -> Result<Vec<Tensor>> {
    mean_gradients_from(d, windows, &[], GradAverage::MeanOfAbs)
}

/// `mean_gradients` (`AbsOfMean`: the signed mean, whose magnitude the profile takes) or
/// `mean_abs_gradients` (`MeanOfAbs`), where `known[b]` (if Some) already holds the state
/// entering block b of each window as this model's graph-free forward computes it (the
/// profile's cached calibration states): the first forward takes those instead of
/// recomputing them. Only on the f32/f64 path, whose first forward is that same graph-free
/// one.
pub fn mean_gradients_from(
    d: &Decoder,
    windows: &[Vec<u32>],
    known: &[Option<Vec<Tensor>>],
    average: GradAverage,
) -> Result<Vec<Tensor>> {
    let mut per_block = Vec::with_capacity(d.blocks.len());
    gradients_by_block(d, windows, known, average, |_, g| {
        per_block.push(g);
        Ok(())
    })?;
    Ok(per_block.into_iter().rev().flatten().collect())
}

/// `mean_gradients_from`, handing each block's G (in `LinearKind::ALL` order) to `each`
/// as soon as its backward is done, from the top block down, so that only one block's G
/// is held: all of them, in f32, were twice a bf16 model's weights (16 GB for a
/// Qwen3-4B-shaped model, `--stream-layers` or not).
pub fn gradients_by_block(
    d: &Decoder,
    windows: &[Vec<u32>],
    known: &[Option<Vec<Tensor>>],
    average: GradAverage,
    mut each: impl FnMut(usize, Vec<Tensor>) -> Result<()>,
) -> Result<()> {
    ensure!(
        !windows.is_empty(),
        "the gradient pass needs at least one window"
    );
    // f32/f64: the hand-written block backward (`Decoder::block_grads`) on the plain
    // decoder; half types: candle's autograd over the differentiable one.
    let manual = d.manual_grads();
    if d.dtype == DType::F16 {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!(
                "--dtype f16: the profile's gradient pass runs in f16, whose range rounds a large model's small gradients to few bits or zero; bf16 or f32 give a sounder G"
            )
        });
    }
    let differentiable;
    let dd = if manual {
        d
    } else {
        differentiable = d.differentiable();
        &differentiable
    };
    let n = d.blocks.len();
    let m = windows.len() as f64;
    let ids: Vec<Tensor> = windows
        .iter()
        .map(|w| crate::data::ids_tensor(std::slice::from_ref(w), &d.device))
        .collect::<Result<_>>()?;
    // states[b][w]: the state entering block b (b == n: the last hidden state) of window w.
    let mut states: Vec<Vec<Tensor>> =
        vec![ids.iter().map(|i| dd.embed(i)).collect::<Result<_>>()?];
    // Windows are independent until their gradients are summed, which happens in window
    // order: on CPU several run at once and the sums do not depend on the thread count.
    // A window's graph holds its activations and their gradients: about four forwards.
    let seqlen = windows[0].len();
    let width = crate::model::device::batch_parallelism(&d.device, 4 * d.batch_bytes(1, seqlen));
    for b in 0..n {
        if let (true, Some(Some(k))) = (manual, known.get(b + 1)) {
            ensure!(
                k.len() == ids.len(),
                "the gradient pass got {} cached states for {} windows",
                k.len(),
                ids.len()
            );
            states.push(k.clone());
            continue;
        }
        let held = dd.with_resident_block(b)?;
        let next =
            crate::runtime::map_collect(&states[b], width, |_, x| held.block_forward(b, x, None))?;
        states.push(next);
    }
    let mut upstream = crate::runtime::map_collect(&states[n], width, |w, x| {
        if manual {
            return dd.head_grad(x, &ids[w], 1.0 / m);
        }
        let h = Var::from_tensor(x)?;
        let loss = (window_loss(&dd.head(h.as_tensor())?, &ids[w])?.sum_all()? / m)?;
        loss.backward()?
            .get(h.as_tensor())
            .cloned()
            .context("no gradient reached the last hidden state")
    })?;
    for b in (0..n).rev() {
        let mut acc: Vec<Option<Tensor>> = vec![None; LinearKind::ALL.len()];
        let pairs: Vec<(&Tensor, &Tensor)> = states[b].iter().zip(&upstream).collect();
        let mut next_up = Vec::with_capacity(pairs.len());
        let mut sink = |(gw, gx): (Vec<Tensor>, Option<Tensor>)| -> Result<()> {
            for (a, g) in acc.iter_mut().zip(gw) {
                // Summed in f32 for half types: a bf16 running sum rounded every window.
                let g = match g.dtype() {
                    DType::F16 | DType::BF16 => g.to_dtype(DType::F32)?,
                    _ => g,
                };
                // Each window's loss carries 1/m, so these sum to the mean over windows.
                let g = match average {
                    GradAverage::MeanOfAbs => g.abs()?,
                    GradAverage::AbsOfMean => g,
                };
                *a = Some(match a.take() {
                    Some(prev) => (prev + g)?,
                    None => g,
                });
            }
            next_up.extend(gx);
            Ok(())
        };
        if manual {
            let held = d.with_resident_block(b)?;
            let tables = held.block_tables(b, pairs[0].0)?;
            crate::runtime::map_in_order(
                &pairs,
                width,
                |_, (x, up)| held.block_grads(b, x, up, &tables, b > 0),
                |_, r| sink(r),
            )?;
        } else {
            let (bd, vars) = dd.with_block_grad_vars(b)?;
            crate::runtime::map_in_order(
                &pairs,
                width,
                |_, (x, up)| bd.block_grads_autograd(&vars, b, x, up, b > 0),
                |_, r| sink(r),
            )?;
        }
        if b > 0 {
            upstream = next_up;
        }
        states.truncate(b);
        each(
            b,
            acc.into_iter()
                .map(|a| a.expect("one window at least"))
                .collect(),
        )?;
    }
    Ok(())
}

/// One layer's row of the profile, z-scores still 0.
fn layer_profile(
    d: &Decoder,
    id: LinearId,
    g: &Tensor,
    stats: &[BlockStats],
) -> Result<LayerProfile> {
    let lin = d.linear(id);
    let norms = stats[id.block].get(id.kind).norms();
    let r = rows::row_stats(&lin.weight()?, g, &norms, lin.mask().map(|m| &**m))?;
    Ok(LayerProfile {
        name: id.name(),
        block: id.block,
        kind: id.kind.short().to_string(),
        sparsity: lin.sparsity(),
        s: r.s,
        s_mean: r.s_mean,
        s_median: r.s_median,
        g: r.g,
        g_mean_abs: r.g_mean_abs,
        z_s: 0.0,
        z_g: 0.0,
    })
}

/// Profile every linear layer of `d`.
pub fn compute(
    d: &Decoder,
    calib: &Windows,
    grads: GradSpec,
    batch: usize,
    calib_name: &str,
) -> Result<Profile> {
    Ok(compute_with_stats(d, calib, grads, batch, calib_name, &mut |_, _, _| {})?.0)
}

/// The gradient pass's windows (the first ones of the calibration set) and average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradSpec {
    pub windows: usize,
    pub average: GradAverage,
}

impl GradSpec {
    /// The paper's G over the first `windows` windows.
    pub fn paper(windows: usize) -> Self {
        GradSpec {
            windows,
            average: GradAverage::MeanOfAbs,
        }
    }
}

/// The profile and the Wanda input statistics it was computed from (reused for masks).
/// (`report`: the windows of the calibration pass, then the blocks of the gradient pass.)
pub fn compute_with_stats(
    d: &Decoder,
    calib: &Windows,
    grads: GradSpec,
    batch: usize,
    calib_name: &str,
    report: Report,
) -> Result<(Profile, Vec<BlockStats>)> {
    let start = std::time::Instant::now();
    let stats = input_stats_reporting(d, calib, batch, report)?;
    let calibration = start.elapsed().as_secs_f64();
    let mut p = compute_reporting(d, &stats, calib, grads, calib_name, &[], report)?;
    p.seconds.calibration = calibration;
    Ok((p, stats))
}

/// The number of windows the gradient pass takes from `calib`.
pub fn grad_window_count(calib: &Windows, grad_windows: usize) -> usize {
    grad_windows.min(calib.len()).max(1)
}

/// Warn when the gradient pass will take fewer windows than `asked` (None: nothing was
/// asked): it takes the first calibration windows, and there are fewer.
pub fn warn_if_fewer_grad_windows(calib: &Windows, asked: Option<usize>) {
    if let Some(asked) = asked.filter(|a| grad_window_count(calib, *a) < *a) {
        tracing::warn!(
            "--grad-windows {asked}: the gradient takes the first calibration windows, and there are {}; using {}",
            calib.len(),
            grad_window_count(calib, asked)
        );
    }
}

/// The profile from Wanda statistics already gathered over `calib` for the model as it is;
/// `known` as in `mean_gradients_from` (empty: none).
pub fn compute_from(
    d: &Decoder,
    stats: &[BlockStats],
    calib: &Windows,
    spec: GradSpec,
    calib_name: &str,
    known: &[Option<Vec<Tensor>>],
) -> Result<Profile> {
    compute_reporting(d, stats, calib, spec, calib_name, known, &mut |_, _, _| {})
}

/// `compute_from`, reporting the gradient pass's blocks as they are done.
fn compute_reporting(
    d: &Decoder,
    stats: &[BlockStats],
    calib: &Windows,
    spec: GradSpec,
    calib_name: &str,
    known: &[Option<Vec<Tensor>>],
    report: Report,
) -> Result<Profile> {
    let gw = grad_window_count(calib, spec.windows);
    let n = d.blocks.len();
    // Each block's rows as soon as its G is known; its G is dropped then.
    let mut by_block = Vec::with_capacity(n);
    let start = std::time::Instant::now();
    let mut rows_seconds = 0.0;
    gradients_by_block(d, &calib.windows[..gw], known, spec.average, |block, g| {
        let t = std::time::Instant::now();
        let rows = LinearKind::ALL
            .into_iter()
            .zip(&g)
            .map(|(kind, g)| layer_profile(d, LinearId { block, kind }, g, stats))
            .collect::<Result<Vec<_>>>()?;
        rows_seconds += t.elapsed().as_secs_f64();
        by_block.push(rows);
        report("profile: gradient blocks", n - block, n);
        Ok(())
    })?;
    let seconds = ProfileSeconds {
        calibration: 0.0,
        gradients: start.elapsed().as_secs_f64() - rows_seconds,
        rows: rows_seconds,
    };
    let mut layers: Vec<LayerProfile> = by_block.into_iter().rev().flatten().collect();
    let zs = zscores(&layers.iter().map(|l| l.s).collect::<Vec<_>>());
    let zg = zscores(&layers.iter().map(|l| l.g).collect::<Vec<_>>());
    for (l, (a, b)) in layers.iter_mut().zip(zs.into_iter().zip(zg)) {
        l.z_s = a;
        l.z_g = b;
    }
    let profile = Profile {
        protocol: ProfileProtocol {
            calib: calib_name.to_string(),
            calib_sample: None,
            seed: None,
            seqlen: calib.seqlen,
            calib_windows: calib.len(),
            grad_windows: gw,
            grad_average: spec.average,
            dtype: crate::model::device::dtype_name(d.dtype).to_string(),
            z_eps: Z_EPS,
        },
        layers,
        seconds,
    };
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A bf16 model's gradients were summed over windows in bf16, rounding every window;
    // they are summed in f32, and stay near the f32 model's.
    #[test]
    fn half_type_gradients_are_summed_in_f32() {
        use crate::model::random::random_decoder;
        use candle_core::Device;
        let cfg = crate::model::ModelConfig::from_json(
            &serde_json::json!({
                "model_type": "qwen3", "vocab_size": 40, "hidden_size": 16,
                "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 4, "max_position_embeddings": 64
            })
            .to_string(),
        )
        .unwrap();
        let windows: Vec<Vec<u32>> = (0..6u32)
            .map(|w| (0..12).map(|i| (i * 7 + w * 3) % 40).collect())
            .collect();
        let reference = random_decoder(&cfg, 5, DType::F32, &Device::Cpu).unwrap();
        let want = mean_abs_gradients(&reference, &windows).unwrap();
        let half = random_decoder(&cfg, 5, DType::BF16, &Device::Cpu).unwrap();
        let got = mean_abs_gradients(&half, &windows).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.dtype(), DType::F32);
            let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let w = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (num, den) = g.iter().zip(&w).fold((0f64, 0f64), |(n, d), (a, b)| {
                (n + ((a - b) as f64).powi(2), d + (*b as f64).powi(2))
            });
            assert!(
                (num / den).sqrt() < 0.1,
                "relative error {}",
                (num / den).sqrt()
            );
        }
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let mut v = [4.0f32, 1.0, 5.0, 3.0, 2.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert!((quantile(&mut v, 0.1) - 1.4).abs() < 1e-12);
        assert_eq!(quantile(&mut [7.0], 0.1), 7.0);
        assert_eq!(quantile(&mut [], 0.1), 0.0);
    }

    // Selection gives the bits interpolating in the sorted array gives, ties and repeated
    // values included.
    #[test]
    fn selected_quantiles_equal_sorted_ones() {
        let mut h = 0x2545_F491_4F6C_DD1Du64;
        for n in [2usize, 3, 10, 11, 257, 1000] {
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    h ^= h << 13;
                    h ^= h >> 7;
                    h ^= h << 17;
                    ((h >> 40) % 97) as f32 * 0.37
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_unstable_by(f32::total_cmp);
            for q in [0.0, 0.1, 0.5, 0.9, 1.0] {
                let pos = q * (n - 1) as f64;
                let (lo, f) = (pos.floor() as usize, pos - pos.floor());
                let hi = (lo + 1).min(n - 1);
                let want = sorted[lo] as f64 + f * (sorted[hi] as f64 - sorted[lo] as f64);
                let got = quantile(&mut v.clone(), q);
                assert_eq!(got.to_bits(), want.to_bits(), "n {n}, q {q}");
            }
        }
    }

    #[test]
    fn zscores_have_zero_mean_unit_std() {
        let z = zscores(&[1.0, 2.0, 3.0, 4.0]);
        assert!(z.iter().sum::<f64>().abs() < 1e-9);
        let var = z.iter().map(|v| v * v).sum::<f64>() / 4.0;
        assert!((var - 1.0).abs() < 1e-6);
    }
}
