//! RMS normalisation. On CPU in f32 it runs as one pass per row that repeats candle's
//! operations bit for bit (the row sum goes through candle's own `vec_reduce_sum`, then
//! the same roundings as `mean_keepdim`, `+ eps`, `sqrt`, `/` and `* w`); the op chain it
//! replaces read and wrote the activations five times. Elsewhere the candle ops run.

use anyhow::Result;
use candle_core::cpu::kernels::VecOps;
use candle_core::{CpuStorage, DType, Tensor, D};
use half::{bf16, f16};
use rayon::prelude::*;

use super::half_kernels::Half;
use super::kernels::{contiguous, fused, storage_f32};

/// x / rms(x) over the last dimension, and rms(x) = sqrt(mean(x²) + eps): the unscaled
/// half of RMSNorm (the block backward keeps rms(x) for its derivative). `graph` keeps
/// to candle's ops so that autograd can follow them.
pub fn normalized(x: &Tensor, eps: f64, graph: bool) -> Result<(Tensor, Tensor)> {
    if fused(x) && !graph {
        return fused_rows(x, None, eps);
    }
    let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    Ok((x.broadcast_div(&rms)?, rms))
}

/// x / rms(x) · w: RMSNorm with weight `w` over the last dimension, in x's dtype.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64, graph: bool) -> Result<Tensor> {
    if fused(x) && !graph && w.dtype() == DType::F32 && w.rank() == 1 {
        return Ok(fused_rows(x, Some(w), eps)?.0);
    }
    Ok(normalized(x, eps, graph)?.0.broadcast_mul(w)?)
}

/// Rows of a CPU f32 tensor normalised (and scaled by `w`), with each row's rms.
fn fused_rows(x: &Tensor, w: Option<&Tensor>, eps: f64) -> Result<(Tensor, Tensor)> {
    let h = x.dim(D::Minus1)?;
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let xs = storage_f32(&storage, layout, "norm input")?;
    let w = match w {
        Some(w) => {
            anyhow::ensure!(
                w.dim(0)? == h,
                "norm weight {:?} does not fit rows of {h}",
                w.dims()
            );
            Some(w.to_vec1::<f32>()?)
        }
        None => None,
    };
    let (inv_n, eps) = roundings(h, eps);
    let mut out = vec![0f32; xs.len()];
    let mut rms = vec![0f32; xs.len() / h.max(1)];
    out.par_chunks_mut(h)
        .zip(xs.par_chunks(h))
        .zip(rms.par_iter_mut())
        .for_each_init(
            || vec![0f32; h],
            |sq, ((o, x), r)| {
                *r = row_rms(x, sq, inv_n, eps);
                match &w {
                    Some(w) => {
                        for ((o, v), g) in o.iter_mut().zip(x).zip(w) {
                            *o = (v / *r) * g;
                        }
                    }
                    None => {
                        for (o, v) in o.iter_mut().zip(x) {
                            *o = v / *r;
                        }
                    }
                }
            },
        );
    let mut rshape = x.dims().to_vec();
    if let Some(last) = rshape.last_mut() {
        *last = 1;
    }
    Ok((
        Tensor::from_vec(out, x.shape(), x.device())?,
        Tensor::from_vec(rms, rshape, x.device())?,
    ))
}

/// The roundings of `mean_keepdim` (sum · (1/n as f32) + 0) and of `+ eps` (· 1 + eps):
/// 1/n and eps as f32.
fn roundings(h: usize, eps: f64) -> (f32, f32) {
    ((1f64 / h as f64) as f32, eps as f32)
}

/// rms of one f32 row as candle's chain computes it: squares, candle's `vec_reduce_sum`,
/// mean, `+ eps`, sqrt. `sq` is scratch of the row's length.
fn row_rms(x: &[f32], sq: &mut [f32], inv_n: f32, eps: f32) -> f32 {
    for (s, v) in sq.iter_mut().zip(x) {
        *s = v * v;
    }
    let mut sum = 0f32;
    // SAFETY: `sq` holds x.len() initialised values and `sum` is a valid destination.
    unsafe { f32::vec_reduce_sum(sq.as_ptr(), &mut sum, x.len()) };
    let mean = sum * inv_n + 0.0;
    (mean * 1.0 + eps).sqrt()
}

/// RMSNorm of bf16 or f16 rows on CPU with a weight of the same dtype, in parallel, as
/// Hugging Face's module computes it and `Decoder::rms` writes it in candle's ops: widen
/// to f32, x / rms(x), narrow, then `* w` in the dtype; the same bits. None where it does
/// not apply.
pub fn rms_norm_half(x: &Tensor, w: &Tensor, eps: f64) -> Result<Option<Tensor>> {
    let half = matches!(x.dtype(), DType::BF16 | DType::F16);
    if !half || !x.device().is_cpu() || w.dtype() != x.dtype() || w.rank() != 1 {
        return Ok(None);
    }
    let h = x.dim(D::Minus1)?;
    anyhow::ensure!(
        w.dim(0)? == h,
        "norm weight {:?} does not fit rows of {h}",
        w.dims()
    );
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let candle_core::Storage::Cpu(c) = &*storage else {
        anyhow::bail!("norm input: expected a CPU tensor");
    };
    let (dims, dev, r) = (x.dims(), x.device(), roundings(h, eps));
    let y = match c {
        CpuStorage::BF16(_) => {
            let rows = half_rows::<bf16>(contiguous(c, layout, "norm input")?, &w.to_vec1()?, r);
            Tensor::from_vec(rows, dims, dev)?
        }
        _ => {
            let rows = half_rows::<f16>(contiguous(c, layout, "norm input")?, &w.to_vec1()?, r);
            Tensor::from_vec(rows, dims, dev)?
        }
    };
    Ok(Some(y))
}

fn half_rows<T: Half>(xs: &[T], w: &[T], (inv_n, eps): (f32, f32)) -> Vec<T> {
    let h = w.len();
    let w: Vec<f32> = w.iter().map(|g| g.widen()).collect();
    let mut out = vec![T::narrow(0.0); xs.len()];
    out.par_chunks_mut(h).zip(xs.par_chunks(h)).for_each_init(
        || (vec![0f32; h], vec![0f32; h]),
        |(wide, sq), (o, x)| {
            for (f, v) in wide.iter_mut().zip(x) {
                *f = v.widen();
            }
            let r = row_rms(wide, sq, inv_n, eps);
            // `* w` in the dtype, as half's operator computes it: widen both, multiply,
            // narrow.
            for ((o, v), g) in o.iter_mut().zip(wide.iter()).zip(&w) {
                *o = T::narrow(T::narrow(v / r).widen() * g);
            }
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{bits, hashed};

    // The fused rows must give the candle op chain's exact bits, so that switching paths
    // (a half model, another device, a recorded session) never moves a number. Widths
    // cover candle's 32-wide sum body, its scalar tail and a row shorter than one step.
    #[test]
    fn fused_rows_equal_the_candle_ops_bit_for_bit() {
        for (k, h) in [256usize, 37, 64, 5, 128].into_iter().enumerate() {
            for scale in [1.0f32, 3e-3, 40.0] {
                let x = hashed(&[3, 7, h], k as u64 + 11, -scale, scale);
                let w = hashed(&[h], k as u64 + 99, -2.0, 2.0);
                let want = (x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-6)
                    .unwrap()
                    .sqrt()
                    .unwrap();
                let want_y = x.broadcast_div(&want).unwrap();
                let (y, r) = normalized(&x, 1e-6, false).unwrap();
                assert_eq!(r.dims(), want.dims());
                assert_eq!(bits(&r), bits(&want), "rms, width {h}, scale {scale}");
                assert_eq!(bits(&y), bits(&want_y), "x/rms, width {h}, scale {scale}");
                let scaled = rms_norm(&x, &w, 1e-6, false).unwrap();
                let want_s = want_y.broadcast_mul(&w).unwrap();
                assert_eq!(bits(&scaled), bits(&want_s), "x/rms*w, width {h}");
            }
        }
    }

    // The half rows against the chain `Decoder::rms` runs in candle's ops: widen, x / rms,
    // narrow, `* w` in the dtype.
    #[test]
    fn half_rows_equal_the_candle_ops_bit_for_bit() {
        for dtype in [DType::BF16, DType::F16] {
            for (k, h) in [256usize, 37, 64, 5].into_iter().enumerate() {
                for scale in [1.0f32, 3e-3, 40.0] {
                    let x = hashed(&[3, 7, h], k as u64 + 5, -scale, scale)
                        .to_dtype(dtype)
                        .unwrap();
                    let w = hashed(&[h], k as u64 + 50, -2.0, 2.0)
                        .to_dtype(dtype)
                        .unwrap();
                    let got = rms_norm_half(&x, &w, 1e-6).unwrap().unwrap();
                    let (y, _) = normalized(&x.to_dtype(DType::F32).unwrap(), 1e-6, true).unwrap();
                    let want = y.to_dtype(dtype).unwrap().broadcast_mul(&w).unwrap();
                    assert_eq!(got.dtype(), dtype);
                    assert_eq!(bits(&got), bits(&want), "{dtype:?} width {h} scale {scale}");
                }
            }
        }
        let f = hashed(&[2, 8], 1, -1.0, 1.0);
        assert!(rms_norm_half(&f, &hashed(&[8], 2, -1.0, 1.0), 1e-6)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_weight_of_the_wrong_width_is_refused() {
        let x = hashed(&[2, 8], 1, -1.0, 1.0);
        let w = hashed(&[7], 2, -1.0, 1.0);
        let e = rms_norm(&x, &w, 1e-6, false).unwrap_err().to_string();
        assert!(e.contains("does not fit rows of 8"), "{e}");
    }
}
