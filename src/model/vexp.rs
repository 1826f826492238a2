//! e^x in f32: lane by lane (`exp`), and eight lanes in AVX2 registers (`avx2::exp8`).
//! The steps are those of the `wide` crate's `f32x8::exp` on a build without FMA (each
//! multiply and add rounded on its own), which the fused kernels used before: same bits,
//! and the same bits on every instruction set (tests sweep `exp` against `wide` and `exp8`
//! against `exp`). Only plain IEEE operations, so AVX2 and SSE2 code agree exactly.

const P0: f32 = 1.0 / 2.0;
const P1: f32 = 1.0 / 6.0;
const P2: f32 = 1.0 / 24.0;
const P3: f32 = 1.0 / 120.0;
const P4: f32 = 1.0 / 720.0;
const P5: f32 = 1.0 / 5040.0;
// ln 2 split in two (fdlibm's range reduction), written as published.
#[allow(clippy::excessive_precision)]
const LN2_HI: f32 = 0.693359375;
#[allow(clippy::excessive_precision)]
const LN2_LO: f32 = -2.12194440e-4;
const MAX_X: f32 = 88.723;
const MIN_X: f32 = -103.63;

/// 2^n for an integral n, subnormals included.
#[inline(always)]
fn pow2n(n: f32) -> f32 {
    let normal = f32::from_bits((n + (127.0 + 8388608.0)).to_bits() << 23);
    if n < -126.0 {
        if n >= -149.0 {
            // SAFETY: n + 149 is integral and in [0, 23) here, so the cast is exact (an
            // unchecked cast, unlike `as`, vectorises).
            let shift = unsafe { (n + 149.0).to_int_unchecked::<u32>() };
            f32::from_bits(1u32 << shift)
        } else {
            0.0
        }
    } else {
        normal
    }
}

/// e^x: +inf above ln(f32::MAX), 0 below the smallest subnormal, NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let r = (x * std::f32::consts::LOG2_E).round_ties_even();
    let big = r > 127.0;
    let r_safe = if big { 127.0 } else { r };
    let scale = pow2n(if big { r - 127.0 } else { 0.0 });
    let y = x - r * LN2_HI;
    let y = y - r * LN2_LO;
    let y2 = y * y;
    let y4 = y2 * y2;
    let z = (P3 * y + P2) * y2 + ((P5 * y + P4) * y4 + (P1 * y + P0));
    let z = z * y2 + y;
    let z = (z + 1.0) * scale * pow2n(r_safe);
    // ±inf fall in the ranges below; NaN fails both tests and carries through as NaN.
    let z = if x > MAX_X { f32::INFINITY } else { z };
    if x < MIN_X {
        0.0
    } else {
        z
    }
}

/// `exp` on eight lanes with AVX2 intrinsics: the same operations in the same order (each
/// multiply and add rounded on its own, no FMA), so the same bits as the scalar `exp`. The
/// loops that call the scalar one vectorise, but with the constants reloaded and spilled
/// each step; this keeps them in registers.
#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// 2^n for integral lanes n, subnormals included (`pow2n`).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pow2n8(n: __m256) -> __m256 {
        let normal = pow2n8_normal(n);
        // n + 149 is integral; below 0 (n < -149) or NaN the shift count reads as >= 32
        // unsigned, which gives 0, as the scalar code does.
        let shift = _mm256_cvttps_epi32(_mm256_add_ps(n, _mm256_set1_ps(149.0)));
        let sub = _mm256_castsi256_ps(_mm256_sllv_epi32(_mm256_set1_epi32(1), shift));
        let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(n, _mm256_set1_ps(-126.0));
        _mm256_blendv_ps(normal, sub, tiny)
    }

    /// a · y + b, rounded twice.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lin(a: f32, y: __m256, b: f32) -> __m256 {
        _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(a), y), _mm256_set1_ps(b))
    }

    /// 2^n for integral lanes n in [-126, 127] (the normal half of `pow2n8`).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pow2n8_normal(n: __m256) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(_mm256_add_ps(
            n,
            _mm256_set1_ps(127.0 + 8388608.0),
        ))))
    }

    /// e^x on eight lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn exp8(x: __m256) -> __m256 {
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let c127 = _mm256_set1_ps(127.0);
        let big = _mm256_cmp_ps::<_CMP_GT_OQ>(r, c127);
        let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(r, _mm256_set1_ps(-126.0));
        let y = _mm256_sub_ps(x, _mm256_mul_ps(r, _mm256_set1_ps(LN2_HI)));
        let y = _mm256_sub_ps(y, _mm256_mul_ps(r, _mm256_set1_ps(LN2_LO)));
        let y2 = _mm256_mul_ps(y, y);
        let y4 = _mm256_mul_ps(y2, y2);
        let z = _mm256_add_ps(
            _mm256_mul_ps(lin(P3, y, P2), y2),
            _mm256_add_ps(_mm256_mul_ps(lin(P5, y, P4), y4), lin(P1, y, P0)),
        );
        let z = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(z, y2), y), _mm256_set1_ps(1.0));
        let z = if _mm256_movemask_ps(_mm256_or_ps(big, tiny)) == 0 {
            // No lane overflows or goes subnormal (softmax scores, most activations): the
            // extra scale is 2^0 = 1, a product that changes no bit, and 2^r is normal.
            _mm256_mul_ps(z, pow2n8_normal(r))
        } else {
            let r_safe = _mm256_blendv_ps(r, c127, big);
            let scale = pow2n8(_mm256_and_ps(_mm256_sub_ps(r, c127), big));
            _mm256_mul_ps(_mm256_mul_ps(z, scale), pow2n8(r_safe))
        };
        let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(MAX_X));
        let z = _mm256_blendv_ps(z, _mm256_set1_ps(f32::INFINITY), over);
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(MIN_X));
        _mm256_andnot_ps(under, z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wide::f32x8;

    fn wide_exp(x: f32) -> f32 {
        f32x8::splat(x).exp().to_array()[0]
    }

    /// The inputs the sweeps use: edge values, a fine sweep of the useful range, then
    /// random bit patterns.
    fn sweep() -> Vec<f32> {
        let mut xs = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            88.72,
            88.723,
            88.73,
            89.0,
            -87.0,
            -100.0,
            -103.6,
            -103.63,
            -103.7,
            -149.0,
            1e30,
            -1e30,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        // A fine sweep of the whole useful range, then random bit patterns.
        let mut x = -110.0f32;
        while x < 92.0 {
            xs.push(x);
            x += 0.000731;
        }
        let mut h = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            xs.push(f32::from_bits((h >> 32) as u32));
        }
        xs
    }

    #[test]
    fn bits_match_wide_f32x8_exp() {
        let xs = sweep();
        let mut checked = 0;
        for &x in &xs {
            let (a, b) = (exp(x), wide_exp(x));
            if x.is_nan() {
                assert!(a.is_nan() && b.is_nan(), "{x}");
            } else {
                assert_eq!(a.to_bits(), b.to_bits(), "exp({x:e}) = {a:e}, wide {b:e}");
            }
            checked += 1;
        }
        assert!(checked > 400_000);
        assert_eq!(exp(0.0), 1.0);
        assert!((exp(1.0) - std::f32::consts::E).abs() < 1e-6);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_lanes_match_the_scalar_exp() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2 on this CPU: the scalar exp is the only path");
            return;
        }
        let xs = sweep();
        for c in xs.chunks_exact(8) {
            let mut out = [0f32; 8];
            // SAFETY: the CPU has AVX2; c and out hold eight f32.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), avx2::exp8(_mm256_loadu_ps(c.as_ptr()))) };
            for (x, y) in c.iter().zip(out) {
                let want = exp(*x);
                if x.is_nan() {
                    assert!(y.is_nan(), "{x}");
                } else {
                    assert_eq!(
                        y.to_bits(),
                        want.to_bits(),
                        "exp8({x:e}) = {y:e}, exp {want:e}"
                    );
                }
            }
        }
    }
}
