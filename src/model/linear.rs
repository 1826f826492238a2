//! One prunable linear layer: the dense weight, its mask, and the effective (masked) weight.

use anyhow::{ensure, Result};
use candle_core::Tensor;
use std::sync::Arc;

use super::config::ModelConfig;
use super::mask::Mask;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearKind {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl LinearKind {
    pub const ALL: [LinearKind; 7] = [
        LinearKind::Q,
        LinearKind::K,
        LinearKind::V,
        LinearKind::O,
        LinearKind::Gate,
        LinearKind::Up,
        LinearKind::Down,
    ];

    /// Module path inside a block, as Hugging Face names it.
    pub fn path(self) -> &'static str {
        match self {
            LinearKind::Q => "self_attn.q_proj",
            LinearKind::K => "self_attn.k_proj",
            LinearKind::V => "self_attn.v_proj",
            LinearKind::O => "self_attn.o_proj",
            LinearKind::Gate => "mlp.gate_proj",
            LinearKind::Up => "mlp.up_proj",
            LinearKind::Down => "mlp.down_proj",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            LinearKind::Q => "q",
            LinearKind::K => "k",
            LinearKind::V => "v",
            LinearKind::O => "o",
            LinearKind::Gate => "gate",
            LinearKind::Up => "up",
            LinearKind::Down => "down",
        }
    }

    pub fn has_bias(self, cfg: &ModelConfig) -> bool {
        match self {
            LinearKind::Q | LinearKind::K | LinearKind::V => cfg.qkv_bias,
            LinearKind::O => cfg.o_bias,
            _ => cfg.mlp_bias,
        }
    }
}

/// Position of a linear layer: block index and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinearId {
    pub block: usize,
    pub kind: LinearKind,
}

impl LinearId {
    pub fn name(self) -> String {
        format!("model.layers.{}.{}", self.block, self.kind.path())
    }
}

#[derive(Clone)]
pub struct Linear {
    pub name: String,
    weight: Tensor,
    bias: Option<Tensor>,
    active: Tensor,
    mask: Option<Arc<Mask>>,
}

impl Linear {
    pub fn new(name: String, weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            name,
            active: weight.clone(),
            weight,
            bias,
            mask: None,
        }
    }

    /// y = x Wᵀ + b for x of shape [tokens, in].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.active.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// The dense weight as loaded, [out, in].
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
    /// The weight the forward uses: dense weight with the mask applied.
    pub fn active(&self) -> &Tensor {
        &self.active
    }
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    pub fn mask(&self) -> Option<&Arc<Mask>> {
        self.mask.as_ref()
    }
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }
    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }
    pub fn sparsity(&self) -> f64 {
        self.mask.as_ref().map_or(0.0, |m| m.sparsity())
    }

    pub fn set_mask(&mut self, mask: Option<Arc<Mask>>) -> Result<()> {
        self.active = match &mask {
            None => self.weight.clone(),
            Some(m) => {
                ensure!(
                    m.rows() == self.out_features() && m.cols() == self.in_features(),
                    "mask {}x{} does not fit {} ({}x{})",
                    m.rows(),
                    m.cols(),
                    self.name,
                    self.out_features(),
                    self.in_features()
                );
                let keep =
                    Tensor::from_vec(m.keep_factors(), (m.rows(), m.cols()), self.weight.device())?
                        .to_dtype(self.weight.dtype())?;
                (&self.weight * keep)?
            }
        };
        self.mask = mask;
        Ok(())
    }

    /// Replace the weight values and the mask together (SparseGPT updates kept weights).
    /// The new values become the layer's weight; the mask still records what was pruned.
    pub fn set_weight_and_mask(&mut self, weight: Tensor, mask: Arc<Mask>) -> Result<()> {
        ensure!(
            weight.dims() == self.weight.dims(),
            "new weight for {} has shape {:?}, expected {:?}",
            self.name,
            weight.dims(),
            self.weight.dims()
        );
        self.weight = weight.to_dtype(self.weight.dtype())?;
        self.set_mask(Some(mask))
    }

    /// Swap the effective weight (used to make it a gradient variable).
    pub(crate) fn replace_active(&mut self, t: Tensor) {
        self.active = t;
    }
}
