//! A layer's row of the profile from its weight, its G and its input norms. On the CPU the
//! reduction runs over host slices; on a GPU it runs as tensor ops on the device and only
//! scalars come back: copying every layer to the host and reducing it on one core took
//! nearly all of a profile's time there (`benches/gpu_check.sh`, 2026-12-04).

use anyhow::Result;
use candle_core::{DType, Tensor};

use super::quantile;
use super::radix::order_statistic;
use crate::model::Mask;
use crate::prune::scores::weight_f32;

/// The statistics of one layer's active weights.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct RowStats {
    /// 10th percentile of S = |W|·‖X‖₂.
    pub s: f64,
    pub s_mean: f64,
    pub s_median: f64,
    /// Mean of |W · G|.
    pub g: f64,
    /// Mean of |G|.
    pub g_mean_abs: f64,
}

/// `RowStats` of weight `w` [rows, cols] with gradient `g` and input column norms `norms`,
/// over the weights `mask` keeps, on `w`'s device.
pub(super) fn row_stats(
    w: &Tensor,
    g: &Tensor,
    norms: &[f64],
    mask: Option<&Mask>,
) -> Result<RowStats> {
    if w.device().is_cpu() {
        on_host(w, g, norms, mask)
    } else {
        on_device(w, g, norms, mask)
    }
}

/// The reduction over host slices: S in f32 as Wanda computes it, sums in f64.
pub(super) fn on_host(
    w: &Tensor,
    g: &Tensor,
    norms: &[f64],
    mask: Option<&Mask>,
) -> Result<RowStats> {
    let cols = w.dims2()?.1;
    let w = weight_f32(w)?;
    let g = weight_f32(g)?;
    let active = |i: usize| mask.is_none_or(|m| !m.is_pruned(i / cols, i % cols));
    let mut s: Vec<f32> = Vec::with_capacity(w.len());
    let (mut taylor, mut gabs) = (0f64, 0f64);
    for i in (0..w.len()).filter(|&i| active(i)) {
        s.push(w[i].abs() * norms[i % cols] as f32);
        taylor += (w[i] as f64 * g[i] as f64).abs();
        gabs += (g[i] as f64).abs();
    }
    let nf = s.len().max(1) as f64;
    let s_mean = s.iter().map(|v| *v as f64).sum::<f64>() / nf;
    Ok(RowStats {
        s: quantile(&mut s, 0.1),
        s_mean,
        s_median: quantile(&mut s, 0.5),
        g: taylor / nf,
        g_mean_abs: gabs / nf,
    })
}

/// The same reduction as tensor ops on `w`'s device. S is the same f32 product, and its
/// quantiles come from radix selection (`radix.rs`), so they are the same numbers; the sums
/// are f64 in another order (a few ulps apart).
pub(super) fn on_device(
    w: &Tensor,
    g: &Tensor,
    norms: &[f64],
    mask: Option<&Mask>,
) -> Result<RowStats> {
    let dev = w.device();
    let (rows, cols) = w.dims2()?;
    let n = rows * cols - mask.map_or(0, |m| m.pruned_count());
    if n == 0 {
        return Ok(RowStats::default());
    }
    let w = w.to_dtype(DType::F32)?;
    let g = g.to_dtype(DType::F32)?.reshape((rows, cols))?;
    let norms: Vec<f32> = norms.iter().map(|v| *v as f32).collect();
    let s = w
        .abs()?
        .broadcast_mul(&Tensor::from_vec(norms, (1, cols), dev)?)?;
    let keep = match mask {
        Some(m) => Some(Tensor::from_vec(m.keep_flags(), (rows, cols), dev)?),
        None => None,
    };
    // Pruned weights count as 0 in the sums and as +inf in the order statistics, which
    // then sit above every active one.
    let kept = |t: &Tensor, pruned: f64| -> Result<Tensor> {
        Ok(match &keep {
            Some(k) => k.where_cond(
                t,
                &Tensor::full(pruned, t.shape(), dev)?.to_dtype(t.dtype())?,
            )?,
            None => t.clone(),
        })
    };
    let sum = |t: &Tensor| total(&kept(&t.to_dtype(DType::F64)?, 0.0)?);
    let nf = n as f64;
    let w64 = w.to_dtype(DType::F64)?;
    let g64 = g.to_dtype(DType::F64)?;
    let s_mean = sum(&s)? / nf;
    let taylor = sum(&(w64 * &g64)?.abs()?)? / nf;
    let gabs = sum(&g64.abs()?)? / nf;
    let ordered = kept(&s, f64::INFINITY)?;
    Ok(RowStats {
        s: device_quantile(&ordered, n, 0.1)?,
        s_mean,
        s_median: device_quantile(&ordered, n, 0.5)?,
        g: taylor,
        g_mean_abs: gabs,
    })
}

/// `quantile` of the `n` smallest values of `v` (f32, none negative; the rest +inf).
fn device_quantile(v: &Tensor, n: usize, q: f64) -> Result<f64> {
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let a = order_statistic(v, lo)?;
    let b = if lo + 1 < n {
        order_statistic(v, lo + 1)?
    } else {
        a
    };
    let f = pos - lo as f64;
    Ok(a as f64 + f * (b as f64 - a as f64))
}

/// The sum of every element of `t` [rows, cols], a row at a time and then over the rows:
/// candle's CUDA reduction of a whole tensor to one number runs in one thread block, which
/// made a 99M model's profile 4.36 s on an H200 (1.81 s with host rows, 0.72 s now).
fn total(t: &Tensor) -> Result<f64> {
    Ok(t.sum(1)?.sum_all()?.to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::hashed;
    use candle_core::Device;

    fn layer(rows: usize, cols: usize, seed: u64) -> (Tensor, Tensor, Vec<f64>) {
        let w = hashed(&[rows, cols], seed, -1.0, 1.0);
        let g = hashed(&[rows, cols], seed + 1, -1e-3, 1e-3);
        let norms = (0..cols).map(|c| 0.5 + (c % 7) as f64 * 0.37).collect();
        (w, g, norms)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
    }

    // The device reduction is what a GPU runs; on the CPU it must give the host's numbers:
    // the quantiles exactly (the same f32 values are ordered), the sums to rounding.
    #[test]
    fn the_device_reduction_gives_the_hosts_row() {
        let (rows, cols) = (37, 53);
        let (w, g, norms) = layer(rows, cols, 3);
        let mut pruned = crate::model::Mask::empty(rows, cols);
        for i in (0..rows * cols).filter(|i| i % 3 == 0 || i % 11 == 5) {
            pruned.prune(i / cols, i % cols);
        }
        for mask in [None, Some(&pruned)] {
            let host = on_host(&w, &g, &norms, mask).unwrap();
            let dev = on_device(&w, &g, &norms, mask).unwrap();
            assert_eq!(host.s.to_bits(), dev.s.to_bits(), "{mask:?}");
            assert_eq!(host.s_median.to_bits(), dev.s_median.to_bits());
            assert!(close(host.s_mean, dev.s_mean), "{host:?} {dev:?}");
            assert!(close(host.g, dev.g), "{host:?} {dev:?}");
            assert!(close(host.g_mean_abs, dev.g_mean_abs), "{host:?} {dev:?}");
        }
        let mut all = crate::model::Mask::empty(rows, cols);
        for i in 0..rows * cols {
            all.prune(i / cols, i % cols);
        }
        let host = on_host(&w, &g, &norms, Some(&all)).unwrap();
        assert_eq!(on_device(&w, &g, &norms, Some(&all)).unwrap(), host);
    }

    // Repeated values: the interpolation's two order statistics may be the same number,
    // and the selection must land on a value that is there.
    #[test]
    fn device_quantiles_match_the_sorted_definition_with_repeats() {
        let v: Vec<f32> = (0..101).map(|i| ((i * 37) % 10) as f32 * 0.25).collect();
        let t = Tensor::from_vec(v.clone(), (101,), &Device::Cpu).unwrap();
        for q in [0.0, 0.1, 0.25, 0.5, 0.9, 0.97, 1.0] {
            let want = quantile(&mut v.clone(), q);
            assert_eq!(device_quantile(&t, 101, q).unwrap(), want, "q {q}");
        }
        // The +inf that stand for pruned weights lie above every active one.
        let mut padded = v.clone();
        padded.extend([f32::INFINITY; 20]);
        let t = Tensor::from_vec(padded, (121,), &Device::Cpu).unwrap();
        assert_eq!(
            device_quantile(&t, 101, 0.5).unwrap(),
            quantile(&mut v.clone(), 0.5)
        );
    }
}
