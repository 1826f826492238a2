//! Fused CPU kernels for the graph-free forward. On CPU, f32, the attention softmax and
//! the SwiGLU product spend most of their time in scalar `expf`; these compute the same
//! formulas in one pass with a vectorised exp (`vexp`, AVX2 where the CPU has it) and skip the masked
//! (−∞) tail of causal rows. Anything else (another device or dtype, a graph that needs
//! gradients) takes the plain candle ops, so results depend only on device and dtype.

#[cfg(target_arch = "x86_64")]
use super::vexp::avx2::exp8;
use super::vexp::exp;
use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

/// True where the fused kernels apply: a CPU tensor in f32.
pub(super) fn fused(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32
}

/// The values of a contiguous CPU storage of `T` (an error names `what` otherwise).
pub(super) fn contiguous<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    let s = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    contiguous(s, l, what)
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
/// AVX2 intrinsics where the CPU has them, the same operations lane by lane elsewhere:
/// the same bits either way (a test compares them).
pub(super) fn softmax_row(src: &[f32], mask: &[f32], scale: f32, dst: &mut [f32]) {
    assert!(src.len() == dst.len() && mask.len() == dst.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, the only feature the function enables.
        return unsafe { softmax_row_avx2(src, mask, scale, dst) };
    }
    softmax_row_lanes(src, mask, scale, dst)
}

fn softmax_row_lanes(src: &[f32], mask: &[f32], scale: f32, dst: &mut [f32]) {
    // Eight running maxima (a max is exact in any order).
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

/// `softmax_row_lanes` with whole chunks of eight in AVX2 registers; the tail chunk runs
/// the scalar steps into the same lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn softmax_row_avx2(src: &[f32], mask: &[f32], scale: f32, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = dst.len();
    let full = n / 8 * 8;
    let load = |v: &[f32], i: usize| -> __m256 {
        // SAFETY: i + 8 <= full <= v.len().
        unsafe { _mm256_loadu_ps(v.as_ptr().add(i)) }
    };
    let store = |v: &mut [f32], i: usize, x: __m256| {
        // SAFETY: i + 8 <= full <= v.len().
        unsafe { _mm256_storeu_ps(v.as_mut_ptr().add(i), x) }
    };
    let vscale = _mm256_set1_ps(scale);
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    for i in (0..full).step_by(8) {
        let d = _mm256_add_ps(_mm256_mul_ps(load(src, i), vscale), load(mask, i));
        store(dst, i, d);
        // Returns the second operand when d is NaN, as f32::max(lane, d) keeps the lane.
        vmax = _mm256_max_ps(d, vmax);
    }
    let mut lanes = [0f32; 8];
    // SAFETY: lanes holds eight f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), vmax) };
    for j in full..n {
        dst[j] = src[j] * scale + mask[j];
        lanes[j - full] = lanes[j - full].max(dst[j]);
    }
    let max = lanes.into_iter().fold(f32::NEG_INFINITY, f32::max);
    let bmax = _mm256_set1_ps(max);
    let mut vacc = _mm256_setzero_ps();
    for i in (0..full).step_by(8) {
        let e = exp8(_mm256_sub_ps(load(dst, i), bmax));
        store(dst, i, e);
        vacc = _mm256_add_ps(vacc, e);
    }
    let mut acc = [0f32; 8];
    // SAFETY: acc holds eight f32.
    unsafe { _mm256_storeu_ps(acc.as_mut_ptr(), vacc) };
    for j in full..n {
        dst[j] = exp(dst[j] - max);
        acc[j - full] += dst[j];
    }
    let sum: f32 = acc.iter().sum();
    let vsum = _mm256_set1_ps(sum);
    for i in (0..full).step_by(8) {
        store(dst, i, _mm256_div_ps(load(dst, i), vsum));
    }
    for d in &mut dst[full..] {
        *d /= sum;
    }
}

/// out = silu(gate) · up = gate / (1 + e^−gate) · up.
fn silu_mul_slice(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(gate.len() == out.len() && up.len() == out.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, the only feature the function enables.
        return unsafe { silu_mul_avx2(gate, up, out) };
    }
    silu_mul_lanes(gate, up, out)
}

fn silu_mul_lanes(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = *g / (1.0 + exp(-*g)) * *u;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn silu_mul_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let full = out.len() / 8 * 8;
    let (one, sign) = (_mm256_set1_ps(1.0), _mm256_set1_ps(-0.0));
    for i in (0..full).step_by(8) {
        // SAFETY: i + 8 <= full <= the length of all three slices.
        unsafe {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let u = _mm256_loadu_ps(up.as_ptr().add(i));
            let e = exp8(_mm256_xor_ps(g, sign));
            let o = _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), o);
        }
    }
    silu_mul_lanes(&gate[full..], &up[full..], &mut out[full..]);
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
        let (t, s) = mask_dims(l1, l2)?;
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

/// The [t, s] of a mask, which must be the last two dimensions of the scores.
pub(super) fn mask_dims(scores: &Layout, mask: &Layout) -> candle_core::Result<(usize, usize)> {
    let (t, s) = mask.shape().dims2()?;
    let dims = scores.shape().dims();
    if dims.len() < 2 || dims[dims.len() - 2] != t || dims[dims.len() - 1] != s {
        candle_core::bail!("scores {:?} do not match a {t}x{s} mask", dims);
    }
    Ok((t, s))
}

/// softmax(scores · scale + mask) over the last dimension, the mask broadcast over leading
/// dimensions: scaled in the scores' dtype, then widened to `wide` (the mask's dtype) for
/// the sum and softmax, and narrowed back to the scores' dtype, as Hugging Face's eager
/// attention does.
pub fn masked_softmax(scores: &Tensor, scale: f64, mask: &Tensor, wide: DType) -> Result<Tensor> {
    if fused(scores) && wide == DType::F32 && mask.dtype() == DType::F32 && mask.rank() == 2 {
        let op = MaskedSoftmax {
            scale: scale as f32,
        };
        return Ok(scores
            .contiguous()?
            .apply_op2_no_bwd(&mask.contiguous()?, &op)?);
    }
    if wide == DType::F32 {
        if let Some(p) = super::half_kernels::masked_softmax(scores, scale, mask)? {
            return Ok(p);
        }
    }
    let narrow = scores.dtype();
    let scores = (scores * scale)?.to_dtype(wide)?.broadcast_add(mask)?;
    Ok(candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(narrow)?)
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
    if let Some(p) = super::half_kernels::silu_mul(gate, up)? {
        return Ok(p);
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

    // The AVX2 paths must give the lane-by-lane paths' bits (which non-AVX2 CPUs run), at
    // every length mod 8, with masked (−∞) entries, large and tiny scores.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_softmax_and_silu_equal_the_lane_paths_bit_for_bit() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2 on this CPU: the lane paths are the only ones");
            return;
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for n in (1..40).chain([64, 255, 256, 513]) {
            for (k, spread) in [0.5f32, 8.0, 120.0].into_iter().enumerate() {
                let src = hashed(&[n], (n * 3 + k) as u64, -spread, spread)
                    .to_vec1::<f32>()
                    .unwrap();
                let mut mask = hashed(&[n], n as u64 + 77, -1.0, 0.0)
                    .to_vec1::<f32>()
                    .unwrap();
                for (i, m) in mask.iter_mut().enumerate() {
                    if i % 5 == 3 {
                        *m = f32::NEG_INFINITY;
                    }
                }
                let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                // SAFETY: the CPU has AVX2.
                unsafe { softmax_row_avx2(&src, &mask, 0.17, &mut a) };
                softmax_row_lanes(&src, &mask, 0.17, &mut b);
                assert_eq!(bits(&a), bits(&b), "softmax, n {n}, spread {spread}");
                let up = hashed(&[n], n as u64 + 5, -3.0, 3.0)
                    .to_vec1::<f32>()
                    .unwrap();
                // SAFETY: the CPU has AVX2.
                unsafe { silu_mul_avx2(&src, &up, &mut a) };
                silu_mul_lanes(&src, &up, &mut b);
                assert_eq!(bits(&a), bits(&b), "silu, n {n}, spread {spread}");
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
