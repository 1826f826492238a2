//! Per-weight importance scores of one layer, row-major [out, in].

use anyhow::Result;
use candle_core::{DType, Tensor};

use crate::model::InputStats;

/// The layer's dense weight as f32, row-major.
pub fn weight_f32(w: &Tensor) -> Result<Vec<f32>> {
    Ok(w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// |W|.
pub fn magnitude(w: &[f32]) -> Vec<f32> {
    w.iter().map(|x| x.abs()).collect()
}

/// Wanda: |W_ij| · ‖X_j‖₂ with the column norms over the calibration tokens.
pub fn wanda(w: &[f32], cols: usize, stats: &InputStats) -> Vec<f32> {
    let norms: Vec<f32> = stats.norms().iter().map(|n| *n as f32).collect();
    w.iter()
        .enumerate()
        .map(|(i, x)| x.abs() * norms[i % cols])
        .collect()
}
