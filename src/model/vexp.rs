//! e^x in f32, lane by lane, so that the compiler vectorises the loops that call it for
//! the CPU it runs on. The steps are those of the `wide` crate's `f32x8::exp` on a
//! build without FMA (each multiply and add rounded on its own), which the fused kernels
//! used before: same bits, and the same bits on every instruction set (a test sweeps it
//! against `wide`). Only plain IEEE operations, so AVX2 and SSE2 code agree exactly.

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

/// Calls `$body` compiled for AVX2 when the CPU has it (checked once, then cached by std),
/// and as built otherwise. Both give the same bits: the body uses plain IEEE operations.
macro_rules! with_best_simd {
    ($name:ident, ($($arg:ident: $ty:ty),*), $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            unsafe fn $name($($arg: $ty),*) {
                $body
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, the only feature the function enables.
                return unsafe { $name($($arg),*) };
            }
        }
        $body
    }};
}
pub(crate) use with_best_simd;

#[cfg(test)]
mod tests {
    use super::*;
    use wide::f32x8;

    fn wide_exp(x: f32) -> f32 {
        f32x8::splat(x).exp().to_array()[0]
    }

    #[test]
    fn bits_match_wide_f32x8_exp() {
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
}
