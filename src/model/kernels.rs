//! Fused CPU kernels for the graph-free forward. On CPU, f32, the attention softmax and
//! the SwiGLU product spend most of their time in scalar `expf`; these compute the same
//! formulas in one pass with a vectorised exp (the `wide` crate) and skip the masked
//! (−∞) tail of causal rows. Anything else (another device or dtype, a graph that needs
//! gradients) takes the plain candle ops, so results depend only on device and dtype.

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;
use wide::f32x8;

/// True where the fused kernels apply.
fn fused(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let s = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// Eight lanes from `v` (shorter at a row's end), the rest set to `fill`.
#[inline(always)]
fn load8(v: &[f32], fill: f32) -> f32x8 {
    match <[f32; 8]>::try_from(v) {
        Ok(a) => f32x8::from(a),
        Err(_) => {
            let mut buf = [fill; 8];
            buf[..v.len()].copy_from_slice(v);
            f32x8::from(buf)
        }
    }
}

/// Writes the first `d.len()` lanes of `v` into `d`.
#[inline(always)]
fn store8(d: &mut [f32], v: f32x8) {
    let a = v.to_array();
    match <&mut [f32; 8]>::try_from(&mut *d) {
        Ok(full) => *full = a,
        Err(_) => d.copy_from_slice(&a[..d.len()]),
    }
}

/// e^x for every element of a slice, eight at a time.
fn exp_in_place(v: &mut [f32]) {
    for c in v.chunks_mut(8) {
        store8(c, load8(c, 0.0).exp());
    }
}

/// dst = softmax(src · scale + mask) for one row, eight lanes at a time.
fn softmax_row(src: &[f32], mask: &[f32], scale: f32, dst: &mut [f32]) {
    let sc = f32x8::splat(scale);
    let mut maxv = f32x8::splat(f32::NEG_INFINITY);
    for ((d, x), m) in dst.chunks_mut(8).zip(src.chunks(8)).zip(mask.chunks(8)) {
        let v = load8(x, 0.0) * sc + load8(m, f32::NEG_INFINITY);
        maxv = maxv.max(v);
        store8(d, v);
    }
    let max = f32x8::splat(
        maxv.to_array()
            .into_iter()
            .fold(f32::NEG_INFINITY, f32::max),
    );
    let mut sumv = f32x8::ZERO;
    for d in dst.chunks_mut(8) {
        let e = (load8(d, f32::NEG_INFINITY) - max).exp();
        sumv += e;
        store8(d, e);
    }
    let sum: f32 = sumv.to_array().iter().sum();
    for d in dst.iter_mut() {
        *d /= sum;
    }
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
        let mut out: Vec<f32> = gate.iter().map(|g| -g).collect();
        const CHUNK: usize = 4096;
        out.par_chunks_mut(CHUNK)
            .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
            .for_each(|(o, (g, u))| {
                exp_in_place(o);
                for ((o, g), u) in o.iter_mut().zip(g).zip(u) {
                    *o = *g / (1.0 + *o) * *u;
                }
            });
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
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            anyhow::bail!("column_sumsq: expected a CPU tensor");
        };
        let v = contiguous_f32(cpu, layout, "activations")?;
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

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| {
                let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
                ((h >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn masked_softmax_matches_the_unfused_ops() {
        let t = 13;
        let scores = rand(&[2, 3, t, t], 1);
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
        let g = rand(&[5, 37], 2);
        let u = rand(&[5, 37], 3);
        let fast = silu_mul(&g, &u).unwrap();
        let plain = (g.silu().unwrap() * &u).unwrap();
        assert!(max_abs_diff(&fast, &plain) < 1e-5);
    }

    #[test]
    fn column_sumsq_matches_the_tensor_reduction() {
        let x = rand(&[9, 6], 4);
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
