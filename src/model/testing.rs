//! Inputs and comparisons shared by the model's unit tests.

use candle_core::{DType, Device, Tensor};

/// A CPU f32 tensor of values in [lo, hi), spread by a hash of each index and `seed`.
pub fn hashed(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| {
            let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
            lo + ((h >> 40) as f32 / (1u64 << 24) as f32) * (hi - lo)
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The bit patterns of a float tensor's values, in order, widened to f64 (exact for every
/// narrower float, so equal patterns mean equal values in the tensor's own dtype).
pub fn bits(t: &Tensor) -> Vec<u64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// max |a − b|, computed in f64.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let f = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    (f(a) - f(b))
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}
