//! The graph-free forward's element-wise steps on CPU in bf16 and f16, bit for bit what
//! candle's ops compute, in parallel: the residual add, silu(gate)·up, and the attention's
//! softmax chain (scale, widen, add the mask, softmax, narrow), which candle runs as five
//! passes, most in one thread (RMSNorm's half rows are in `norm.rs`). Each value goes
//! through the `half` arithmetic candle's ops use (`a + b` rounds the f32 sum to the dtype;
//! the scale is the dtype's), and the softmax takes candle's steps in candle's order
//! (`candle_sum`): the f32 path's own softmax differs from it in the last bit of some rows.

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::kernels::contiguous;

/// Elements per parallel task of an element-wise op.
const CHUNK: usize = 1 << 15;

fn on_cpu_half(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::BF16 | DType::F16)
}

/// A half type and the two casts candle's `to_dtype` makes between it and f32, as static
/// calls that inline. half's operators are these casts around the f32 operation
/// (`a * b` is `narrow(a.widen() * b.widen())`), and the kernels spell them so: called as
/// operators they did not inline, and a kernel ran no faster in two threads than candle's
/// pass in one.
pub(super) trait Half: WithDType {
    fn narrow(v: f32) -> Self;
    fn widen(self) -> f32;
}

impl Half for half::bf16 {
    #[inline(always)]
    fn narrow(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

impl Half for half::f16 {
    #[inline(always)]
    fn narrow(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

/// x + y: on CPU in bf16 or f16 with equal shapes, added in parallel; else candle's add.
pub fn add(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    match elementwise(x, y, Sum)? {
        Some(t) => Ok(t),
        None => Ok((x + y)?),
    }
}

/// silu(gate) · up for bf16 or f16 on CPU, in parallel: `gate.silu()? * up` bit for bit
/// (candle's silu is `v / (1 + exp(−v))` with each operator of the dtype rounding, then
/// the product rounds). None where it does not apply.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Option<Tensor>> {
    elementwise(gate, up, SiluTimes)
}

/// An element-wise op of two half operands, each value as candle's ops compute it.
trait Pairwise: Copy + Send + Sync + 'static {
    const NAME: &'static str;
    fn apply<T: Half>(a: T, b: T) -> T;
}

#[derive(Clone, Copy)]
struct Sum;

impl Pairwise for Sum {
    const NAME: &'static str = "arborist-half-add";
    #[inline(always)]
    fn apply<T: Half>(a: T, b: T) -> T {
        T::narrow(a.widen() + b.widen())
    }
}

#[derive(Clone, Copy)]
struct SiluTimes;

impl Pairwise for SiluTimes {
    const NAME: &'static str = "arborist-half-silu-mul";
    #[inline(always)]
    fn apply<T: Half>(g: T, u: T) -> T {
        // `v / (ONE + (-v).exp())` then `* up`, each operator rounding to the dtype as
        // half's do (`exp` is f32's, through half's `Float`).
        let (g, u) = (g.widen(), u.widen());
        let e = T::narrow((-g).exp()).widen();
        let silu = T::narrow(g / T::narrow(1.0 + e).widen()).widen();
        T::narrow(silu * u)
    }
}

/// `P` over two CPU tensors of one half dtype and shape, in parallel; None otherwise.
fn elementwise<P: Pairwise>(a: &Tensor, b: &Tensor, op: P) -> Result<Option<Tensor>> {
    if !on_cpu_half(a) || a.dtype() != b.dtype() || a.shape() != b.shape() {
        return Ok(None);
    }
    Ok(Some(
        a.contiguous()?
            .apply_op2_no_bwd(&b.contiguous()?, &Elementwise(op))?,
    ))
}

struct Elementwise<P>(P);

impl<P: Pairwise> CustomOp2 for Elementwise<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        fn each<T: Half, P: Pairwise>(a: &[T], b: &[T]) -> Vec<T> {
            let mut out = vec![T::zero(); a.len()];
            out.par_chunks_mut(CHUNK)
                .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                .for_each(|(o, (a, b))| {
                    for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                        *o = P::apply(*a, *b);
                    }
                });
            out
        }
        let out = match (s1, s2) {
            (CpuStorage::BF16(_), CpuStorage::BF16(_)) => CpuStorage::BF16(each::<_, P>(
                contiguous(s1, l1, "lhs")?,
                contiguous(s2, l2, "rhs")?,
            )),
            (CpuStorage::F16(_), CpuStorage::F16(_)) => CpuStorage::F16(each::<_, P>(
                contiguous(s1, l1, "lhs")?,
                contiguous(s2, l2, "rhs")?,
            )),
            _ => candle_core::bail!("{}: bf16 or f16 operands of one dtype", P::NAME),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// softmax(scores · scale + mask) taken in f32 and narrowed to the scores' dtype, for
/// scores [.., t, s] in bf16 or f16 on CPU and a [t, s] f32 mask: what
/// `(scores * scale).to_dtype(F32).broadcast_add(mask)`, `softmax_last_dim`, then
/// `to_dtype` back give, bit for bit. x86-64 only, where the order of candle's sum is
/// known (`candle_sum`); None where it does not apply.
pub fn masked_softmax(scores: &Tensor, scale: f64, mask: &Tensor) -> Result<Option<Tensor>> {
    if !cfg!(target_arch = "x86_64")
        || !on_cpu_half(scores)
        || mask.dtype() != DType::F32
        || mask.rank() != 2
    {
        return Ok(None);
    }
    let op = MaskedSoftmax { scale };
    Ok(Some(
        scores
            .contiguous()?
            .apply_op2_no_bwd(&mask.contiguous()?, &op)?,
    ))
}

/// Σ xs in the order of candle's f32 `vec_reduce_sum` on x86-64: with AVX2, 32 elements a
/// step into four registers of eight lanes, the registers and lanes combined as its
/// `vec_reduce` does, then the tail one by one; without, one by one.
fn candle_sum(xs: &[f32], avx2: bool) -> f32 {
    if !avx2 {
        return xs.iter().fold(0.0, |a, x| a + x);
    }
    let body = xs.len() / 32 * 32;
    let mut acc = [[0f32; 8]; 4];
    for step in xs[..body].chunks_exact(32) {
        for (reg, part) in acc.iter_mut().zip(step.chunks_exact(8)) {
            for (a, x) in reg.iter_mut().zip(part) {
                *a += x;
            }
        }
    }
    let x: [f32; 8] = std::array::from_fn(|l| (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]));
    let t: [f32; 4] = std::array::from_fn(|l| x[l] + x[l + 4]);
    let mut sum = (t[0] + t[1]) + (t[2] + t[3]);
    for x in &xs[body..] {
        sum += x;
    }
    sum
}

struct MaskedSoftmax {
    scale: f64,
}

impl MaskedSoftmax {
    fn rows<T: Half>(&self, scores: &[T], mask: &[f32], (t, s): (usize, usize)) -> Vec<T> {
        // As candle's affine: the multiplier and the addend in the dtype, `v * mul + add`.
        let (mul, add) = (T::from_f64(self.scale).widen(), T::from_f64(0.0).widen());
        let avx2 = is_avx2();
        let mut out = vec![T::zero(); scores.len()];
        out.par_chunks_mut(s)
            .zip(scores.par_chunks(s))
            .enumerate()
            .for_each_init(
                || vec![0f32; s],
                |row, (r, (dst, src))| {
                    let m = &mask[(r % t) * s..(r % t + 1) * s];
                    for ((d, x), m) in row.iter_mut().zip(src).zip(m) {
                        *d = T::narrow(T::narrow(x.widen() * mul).widen() + add).widen() + m;
                    }
                    // As candle's softmax: the max from the first element on, exp, the sum,
                    // a division. Masked keys are exp(−∞) = 0 and still counted, so that
                    // each term falls in the lane candle's sum gives it.
                    let max = row[1..].iter().fold(row[0], |a, x| a.max(*x));
                    // exp(−∞ − max) is 0 for any finite max: a causal row's masked half
                    // skips the call (a row with no finite score keeps candle's NaN).
                    let finite = max.is_finite();
                    for d in row.iter_mut() {
                        *d = if finite && *d == f32::NEG_INFINITY {
                            0.0
                        } else {
                            (*d - max).exp()
                        };
                    }
                    let sum = candle_sum(row, avx2);
                    // The cast back rounds each f32 quotient, as `to_dtype` does.
                    for (d, p) in dst.iter_mut().zip(row.iter()) {
                        *d = T::narrow(p / sum);
                    }
                },
            );
        out
    }
}

#[cfg(target_arch = "x86_64")]
fn is_avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn is_avx2() -> bool {
    false
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "arborist-half-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let mask = contiguous::<f32>(s2, l2, "attention mask")?;
        let (t, s) = super::kernels::mask_dims(l1, l2)?;
        if t == 0 || s == 0 {
            candle_core::bail!("half masked softmax: an empty {t}x{s} mask");
        }
        let out = match s1 {
            CpuStorage::BF16(_) => {
                CpuStorage::BF16(self.rows(contiguous(s1, l1, "scores")?, mask, (t, s)))
            }
            CpuStorage::F16(_) => {
                CpuStorage::F16(self.rows(contiguous(s1, l1, "scores")?, mask, (t, s)))
            }
            _ => candle_core::bail!("half masked softmax: bf16 or f16 scores"),
        };
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// n normal values of spread `std`, in `dtype`.
    fn randn(std: f32, n: usize, dtype: DType) -> Tensor {
        (Tensor::randn(0f32, std, (n,), &Device::Cpu).unwrap())
            .to_dtype(dtype)
            .unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let t = t.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
        t.to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    // Against candle's ops, bit for bit: every row length mod 8 (the softmax's lanes), a
    // causal, a sliding-window and a cached-generation mask, large and tiny scores.
    #[test]
    fn the_masked_softmax_is_candles_chain_bit_for_bit() {
        let dev = Device::Cpu;
        for dtype in [DType::BF16, DType::F16] {
            for s in [1usize, 7, 8, 9, 31, 32, 64, 70, 100, 257] {
                let causal = crate::model::decoder::causal_mask(s, None, DType::F32, &dev);
                let window = crate::model::decoder::causal_mask(s, Some(5), DType::F32, &dev);
                // Three new positions after s − 3 cached ones: row q sees keys 0..=s−3+q.
                let cached: Vec<f32> = (0..3 * s)
                    .map(|i| {
                        if i % s <= s.saturating_sub(3) + i / s {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                    .collect();
                let cached = Tensor::from_vec(cached, (3, s), &dev).unwrap();
                for (mask, spread) in [
                    (causal.unwrap(), 3.0),
                    (window.unwrap(), 40.0),
                    (cached, 0.01),
                ] {
                    let t = mask.dim(0).unwrap();
                    let raw = Tensor::randn(0f32, spread, (2, 3, t, s), &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    let scale = 1.0 / 128f64.sqrt();
                    let got = masked_softmax(&raw, scale, &mask).unwrap().unwrap();
                    let scores = (&raw * scale)
                        .unwrap()
                        .to_dtype(DType::F32)
                        .unwrap()
                        .broadcast_add(&mask)
                        .unwrap();
                    let want = candle_nn::ops::softmax_last_dim(&scores)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap();
                    assert_eq!(got.dtype(), dtype);
                    assert_eq!(bits(&got), bits(&want), "{dtype:?} s {s} t {t}");
                }
            }
        }
    }

    // Gates of spread 10 take f16's exp(−g) past its largest value (∞, so silu is −0).
    #[test]
    fn silu_mul_is_candles_bit_for_bit() {
        let dev = Device::Cpu;
        for dtype in [DType::BF16, DType::F16] {
            for n in [1usize, 999, 2 * CHUNK + 5] {
                let (g, u) = (randn(10.0, n, dtype), randn(2.0, n, dtype));
                let got = silu_mul(&g, &u).unwrap().unwrap();
                let want = (g.silu().unwrap() * &u).unwrap();
                assert_eq!(got.dtype(), dtype);
                assert_eq!(bits(&got), bits(&want), "{dtype:?} {n}");
            }
        }
        let f = Tensor::ones((4,), DType::F32, &dev).unwrap();
        assert!(silu_mul(&f, &f).unwrap().is_none());
    }

    #[test]
    fn the_add_is_candles_bit_for_bit() {
        let dev = Device::Cpu;
        for dtype in [DType::BF16, DType::F16] {
            for n in [1usize, 1000, 3 * CHUNK + 17] {
                let (a, b) = (randn(5.0, n, dtype), randn(0.01, n, dtype));
                let got = add(&a, &b).unwrap();
                assert_eq!(got.dtype(), dtype);
                assert_eq!(bits(&got), bits(&(&a + &b).unwrap()), "{dtype:?} {n}");
            }
        }
        // Another dtype or shape takes candle's add.
        let a = Tensor::ones((2, 3), DType::F32, &dev).unwrap();
        let b = Tensor::ones((3,), DType::F32, &dev).unwrap();
        assert_eq!(
            add(&a, &a).unwrap().to_vec2::<f32>().unwrap(),
            vec![vec![2.0; 3]; 2]
        );
        assert!(add(&a, &b).is_err());
    }
}
