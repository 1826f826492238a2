//! Seeded random weights for any config: benchmarks and tests of shapes the repo does not ship.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;

use super::{weights::expected_tensors, Decoder, ModelConfig};

/// Tensors with HF names: norms near 1, everything else N(0, std²).
pub fn random_tensors(
    cfg: &ModelConfig,
    seed: u64,
    std: f32,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    if !device.is_cpu() {
        return device_random_tensors(cfg, seed, std, dtype, device);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0).expect("valid normal");
    let mut out = HashMap::new();
    for (name, shape) in expected_tensors(cfg) {
        let n: usize = shape.iter().product();
        let is_norm = name.ends_with("norm.weight");
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let z = normal.sample(&mut rng);
                if is_norm {
                    1.0 + 0.1 * z
                } else {
                    std * z
                }
            })
            .collect();
        let t = Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// The same distributions drawn by the device's own generator: a 4B-shaped model is
/// billions of draws, minutes on one host thread and seconds on a GPU. (Seeded, but not the
/// host's numbers.)
fn device_random_tensors(
    cfg: &ModelConfig,
    seed: u64,
    std: f32,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    device.set_seed(seed)?;
    let mut out = HashMap::new();
    for (name, shape) in expected_tensors(cfg) {
        let t = if name.ends_with("norm.weight") {
            Tensor::randn(1.0f32, 0.1, shape, device)?
        } else {
            Tensor::randn(0.0f32, std, shape, device)?
        };
        out.insert(name, t.to_dtype(dtype)?);
    }
    Ok(out)
}

pub fn random_decoder(
    cfg: &ModelConfig,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Decoder> {
    Decoder::from_tensors(cfg.clone(), random_tensors(cfg, seed, 0.05, dtype, device)?)
}
