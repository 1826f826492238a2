//! Fused CPU kernels for the graph-free forward. On CPU, f32, the attention softmax and
//! the SwiGLU product spend most of their time in scalar `expf`; these compute the same
//! formulas in one pass with a vectorised exp (`vexp`, AVX2 where the CPU has it) and skip the masked
//! (−∞) tail of causal rows. Anything else (another device or dtype, a graph that needs
//! gradients) takes the plain candle ops, so results depend only on device and dtype.

use super::vexp::{exp, with_best_simd};
use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

/// True where the fused kernels apply: a CPU tensor in f32.
pub(super) fn fused(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let s = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// The f32 values of a contiguous CPU tensor, from its `Tensor::storage_and_layout`.
pub(super) fn storage_f32<'a>(
    s: &'a candle_core::Storage,
    l: &Layout,
    what: &str,
) -> Result<&'a [f32]> {
    let candle_core::Storage::Cpu(c) = s else {
        anyhow::bail!("{what}: expected a CPU tensor");
    };
    Ok(contiguous_f32(c, l, what)?)
}

/// dst = softmax(src · scale + mask) for one row. The sum is taken in eight interleaved
/// partial sums, then those in order (the lanes of the 8-wide version this replaced).
pub(super) fn softmax_row(src: &[f32], mask: &[f32], scale: f32, dst: &mut [f32]) {
    with_best_simd!(
        softmax_row_simd,
        (src: &[f32], mask: &[f32], scale: f32, dst: &mut [f32]),
        {
            // Eight running maxima, so the loop vectorises (a max is exact in any order).
            let mut lanes = [f32::NEG_INFINITY; 8];
            for ((d, x), m) in dst.chunks_mut(8).zip(src.chunks(8)).zip(mask.chunks(8)) {
                for (((l, d), x), m) in lanes.iter_mut().zip(d).zip(x).zip(m) {
                    *d = *x * scale + *m;
                    *l = l.max(*d);
                }
            }
            let max = lanes.into_iter().fold(f32::NEG_INFINITY, f32::max);
            let mut acc = [0f32; 8];
            for c in dst.chunks_mut(8) {
                for (a, d) in acc.iter_mut().zip(c) {
                    *d = exp(*d - max);
                    *a += *d;
                }
            }
            let sum: f32 = acc.iter().sum();
            for d in dst.iter_mut() {
                *d /= sum;
            }
        }
    )
}

/// out = silu(gate) · up = gate / (1 + e^−gate) · up.
fn silu_mul_slice(gate: &[f32], up: &[f32], out: &mut [f32]) {
    with_best_simd!(
        silu_mul_simd,
        (gate: &[f32], up: &[f32], out: &mut [f32]),
        {
            for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
                *o = *g / (1.0 + exp(-*g)) * *u;
            }
        }
    )
}

/// softmax(scores · scale + mask) over the last dimension: scores [.., t, s], mask [t, s].
struct MaskedSoftmax {
    scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "arborist-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let scores = contiguous_f32(s1, l1, "attention scores")?;
        let mask = contiguous_f32(s2, l2, "attention mask")?;
        let (t, s) = l2.shape().dims2()?;
        let dims = l1.shape().dims();
        if dims.len() < 2 || dims[dims.len() - 2] != t || dims[dims.len() - 1] != s {
            candle_core::bail!("scores {:?} do not match a {t}x{s} mask", dims);
        }
        // Past the last allowed key of a mask row every term is exp(−∞) = 0.
        let lens: Vec<usize> = mask
            .chunks(s)
            .map(|m| {
                m.iter()
                    .rposition(|x| *x != f32::NEG_INFINITY)
                    .map_or(0, |i| i + 1)
            })
            .collect();
        let mut out = vec![0f32; scores.len()];
        out.par_chunks_mut(s)
            .zip(scores.par_chunks(s))
            .enumerate()
            .for_each(|(r, (dst, src))| {
                let row = r % t;
                let n = lens[row];
                softmax_row(
                    &src[..n],
                    &mask[row * s..row * s + n],
                    self.scale,
                    &mut dst[..n],
                );
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// softmax(scores · scale + mask) over the last dimension, the mask broadcast over leading
/// dimensions: scaled in the scores' dtype, then widened to `wide` (the mask's dtype) for
/// the sum and softmax, as Hugging Face's eager attention does.
pub fn masked_softmax(scores: &Tensor, scale: f64, mask: &Tensor, wide: DType) -> Result<Tensor> {
    if fused(scores) && wide == DType::F32 && mask.dtype() == DType::F32 && mask.rank() == 2 {
        let op = MaskedSoftmax {
            scale: scale as f32,
        };
        return Ok(scores
            .contiguous()?
            .apply_op2_no_bwd(&mask.contiguous()?, &op)?);
    }
    let scores = (scores * scale)?.to_dtype(wide)?.broadcast_add(mask)?;
    Ok(candle_nn::ops::softmax_last_dim(&scores)?)
}

/// The dtype Wanda's statistics are taken in: f32 (its hook casts the input to float32),
/// or f64 when the activations already are.
pub fn stats_dtype(x: &Tensor) -> Result<Tensor> {
    Ok(if x.dtype() == DType::F64 {
        x.clone()
    } else {
        x.to_dtype(DType::F32)?
    })
}

/// silu(gate) · up, elementwise.
struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "arborist-silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let gate = contiguous_f32(s1, l1, "gate")?;
        let up = contiguous_f32(s2, l2, "up")?;
        if l1.shape() != l2.shape() {
            candle_core::bail!("gate {:?} and up {:?} differ", l1.shape(), l2.shape());
        }
        let mut out = vec![0f32; gate.len()];
        const CHUNK: usize = 4096;
        out.par_chunks_mut(CHUNK)
            .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
            .for_each(|(o, (g, u))| silu_mul_slice(g, u, o));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// silu(gate) · up, as `gate.silu() * up` computes it.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if fused(gate) && up.dtype() == DType::F32 {
        return Ok(gate
            .contiguous()?
            .apply_op2_no_bwd(&up.contiguous()?, &SiluMul)?);
    }
    Ok((gate.silu()? * up)?)
}

/// Σ over rows of x², per column of a matrix [n, cols], in f64. The CPU path reads the
/// f32 values once and accumulates in f64; elsewhere the device squares and sums in f32.
pub fn column_sumsq(x: &Tensor) -> Result<Vec<f64>> {
    let (_, cols) = x.dims2()?;
    if fused(x) {
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let v = storage_f32(&storage, layout, "activations")?;
        let mut acc = vec![0f64; cols];
        for row in v.chunks(cols) {
            for (a, x) in acc.iter_mut().zip(row) {
                let x = *x as f64;
                *a += x * x;
            }
        }
        return Ok(acc);
    }
    let xf = stats_dtype(x)?;
    Ok(xf.sqr()?.sum(0)?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{hashed, max_abs_diff};

    #[test]
    fn masked_softmax_matches_the_unfused_ops() {
        let t = 13;
        let scores = hashed(&[2, 3, t, t], 1, -4.0, 4.0);
        for window in [None, Some(4)] {
            let mask =
                crate::model::decoder::causal_mask(t, window, DType::F32, &Device::Cpu).unwrap();
            let fast = masked_softmax(&scores, 0.125, &mask, DType::F32).unwrap();
            let plain = candle_nn::ops::softmax_last_dim(
                &(&scores * 0.125).unwrap().broadcast_add(&mask).unwrap(),
            )
            .unwrap();
            assert!(max_abs_diff(&fast, &plain) < 1e-6, "window {window:?}");
            // Masked entries are exactly zero and every row sums to one.
            let rows = fast.flatten_to(2).unwrap().to_vec2::<f32>().unwrap();
            for (r, row) in rows.iter().enumerate() {
                let q = r % t;
                assert_eq!(row[q + 1..].iter().filter(|x| **x != 0.0).count(), 0);
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn silu_mul_matches_the_unfused_ops() {
        let g = hashed(&[5, 37], 2, -4.0, 4.0);
        let u = hashed(&[5, 37], 3, -4.0, 4.0);
        let fast = silu_mul(&g, &u).unwrap();
        let plain = (g.silu().unwrap() * &u).unwrap();
        assert!(max_abs_diff(&fast, &plain) < 1e-5);
    }

    #[test]
    fn column_sumsq_matches_the_tensor_reduction() {
        let x = hashed(&[9, 6], 4, -4.0, 4.0);
        let fast = column_sumsq(&x).unwrap();
        let plain: Vec<f64> = x
            .sqr()
            .unwrap()
            .sum(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        for (a, b) in fast.iter().zip(&plain) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}
