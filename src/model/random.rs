//! Seeded random weights for any config: benchmarks and tests of shapes the repo does not ship.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;

use super::{weights::expected_tensors, Decoder, ModelConfig};

/// Tensors with HF names: norms near 1, everything else N(0, std²). Off the CPU the
/// device's own generator draws them (a 4B-shaped model is billions of draws: minutes on one
/// host thread, seconds on a GPU), seeded but not the host's numbers.
pub fn random_tensors(
    cfg: &ModelConfig,
    seed: u64,
    std: f32,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0).expect("valid normal");
    if !device.is_cpu() {
        device.set_seed(seed)?;
    }
    let mut out = HashMap::new();
    for (name, shape) in expected_tensors(cfg) {
        let is_norm = name.ends_with("norm.weight");
        let t = if !device.is_cpu() {
            let (mean, sd) = if is_norm { (1.0f32, 0.1) } else { (0.0, std) };
            Tensor::randn(mean, sd, shape, device)?
        } else {
            let n: usize = shape.iter().product();
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
            Tensor::from_vec(v, shape, device)?
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
