//! One prunable linear layer: the dense weight, its mask, and the effective (masked) weight.

use anyhow::{ensure, Result};
use candle_core::Tensor;
use std::sync::Arc;

use super::mask::Mask;

pub use super::kind::{LinearId, LinearKind};

/// Re-reads a layer's unmasked weight (from its memory-mapped file) when a mask shrinks,
/// so the unmasked copy need not stay resident next to the masked one.
pub trait DenseSource: Send + Sync {
    /// The unmasked weight of layer `name` (its module path), of shape `shape`.
    fn load(&self, name: &str, shape: &[usize]) -> Result<Tensor>;
}

/// Identifies a layer's unmasked values; a new id whenever new values are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin(u64);

impl Origin {
    fn fresh() -> Origin {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Origin(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

#[derive(Clone)]
pub struct Linear {
    pub name: String,
    /// The module path the source files hold this layer's weight under: kept when blocks
    /// are removed and the rest renumbered (a streamed layer read the removed block's
    /// weight under its new name).
    source_name: String,
    /// [out, in].
    shape: [usize; 2],
    dtype: candle_core::DType,
    /// The unmasked weight, resident only while it cannot be re-read from a source.
    dense: Option<Tensor>,
    source: Option<Arc<dyn DenseSource>>,
    origin: Origin,
    bias: Option<Tensor>,
    /// The weight the forward uses: the unmasked weight with the mask applied. None when
    /// streamed: every use re-reads the unmasked weight from the source and masks it.
    active: Option<Tensor>,
    mask: Option<Arc<Mask>>,
}

impl Linear {
    pub fn new(name: String, weight: Tensor, bias: Option<Tensor>) -> Self {
        let (o, i) = weight.dims2().expect("a linear weight is a matrix");
        Linear {
            source_name: name.clone(),
            name,
            shape: [o, i],
            dtype: weight.dtype(),
            origin: Origin::fresh(),
            active: Some(weight.clone()),
            dense: Some(weight),
            source: None,
            bias,
            mask: None,
        }
    }

    /// A layer with no weight in memory: read from `source` (and masked) at each use.
    pub fn streamed(
        name: String,
        shape: [usize; 2],
        dtype: candle_core::DType,
        bias: Option<Tensor>,
        source: Arc<dyn DenseSource>,
    ) -> Self {
        Linear {
            source_name: name.clone(),
            name,
            shape,
            dtype,
            origin: Origin::fresh(),
            active: None,
            dense: None,
            source: Some(source),
            bias,
            mask: None,
        }
    }

    /// y = x Wᵀ + b for x of shape [tokens, in].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = super::matmul::matmul(x, &self.weight()?.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// The weight the forward uses: the unmasked weight with the mask applied (read from
    /// the source when the layer is streamed).
    pub fn weight(&self) -> Result<Tensor> {
        match &self.active {
            Some(a) => Ok(a.clone()),
            None => masked(self.dense()?, self.mask.as_deref()),
        }
    }
    /// Identifies the unmasked values: equal origins and masks compute the same function.
    pub fn origin(&self) -> Origin {
        self.origin
    }
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    pub fn mask(&self) -> Option<&Arc<Mask>> {
        self.mask.as_ref()
    }
    pub fn out_features(&self) -> usize {
        self.shape[0]
    }
    pub fn in_features(&self) -> usize {
        self.shape[1]
    }
    pub fn sparsity(&self) -> f64 {
        self.mask.as_ref().map_or(0.0, |m| m.sparsity())
    }
    /// Whether the unmasked weight is held in memory (false: re-read from its source).
    pub fn dense_resident(&self) -> bool {
        self.dense.is_some()
    }
    /// Whether the weight the forward uses is held in memory (false: streamed).
    pub fn weight_resident(&self) -> bool {
        self.active.is_some()
    }

    /// Hold the weight the forward uses in memory (a streamed layer reads it once here).
    pub fn make_resident(&mut self) -> Result<()> {
        if self.active.is_none() {
            self.active = Some(self.weight()?);
        }
        Ok(())
    }

    /// Re-read the unmasked weight from `source` when needed, instead of keeping it.
    pub fn attach_source(&mut self, source: Arc<dyn DenseSource>) {
        self.source = Some(source);
        self.dense = None;
    }

    fn dense(&self) -> Result<Tensor> {
        match (&self.dense, &self.source) {
            (Some(d), _) => Ok(d.clone()),
            (None, Some(s)) => s.load(&self.source_name, &self.shape),
            (None, None) => anyhow::bail!("{}: the unmasked weight is gone", self.name),
        }
    }

    /// A growing mask only zeroes more of the active weight (bit-identical to masking the
    /// unmasked weight); any other change starts from the unmasked weight. A streamed
    /// layer only records the mask.
    pub fn set_mask(&mut self, mask: Option<Arc<Mask>>) -> Result<()> {
        if let Some(m) = &mask {
            ensure!(
                m.rows() == self.out_features() && m.cols() == self.in_features(),
                "mask {}x{} does not fit {} ({}x{})",
                m.rows(),
                m.cols(),
                self.name,
                self.out_features(),
                self.in_features()
            );
        }
        if let Some(active) = &self.active {
            let grows = match (&self.mask, &mask) {
                (None, _) => true,
                (Some(old), Some(new)) => old.is_subset_of(new),
                (Some(_), None) => false,
            };
            let base = if grows { active.clone() } else { self.dense()? };
            self.active = Some(masked(base, mask.as_deref())?);
        }
        self.mask = mask;
        Ok(())
    }

    /// Replace the weight values and the mask together (SparseGPT updates kept weights).
    /// The new values become the layer's unmasked weight, held in memory from now on.
    pub fn set_weight_and_mask(&mut self, weight: Tensor, mask: Arc<Mask>) -> Result<()> {
        ensure!(
            weight.dims() == self.shape,
            "new weight for {} has shape {:?}, expected {:?}",
            self.name,
            weight.dims(),
            self.shape
        );
        let weight = weight.to_dtype(self.dtype)?;
        self.origin = Origin::fresh();
        self.active = Some(weight.clone());
        self.dense = Some(weight);
        self.source = None;
        self.mask = None;
        self.set_mask(Some(mask))
    }

    /// Swap the effective weight (used to make it a gradient variable).
    pub(crate) fn replace_active(&mut self, t: Tensor) {
        self.active = Some(t);
    }
}

/// `w` with the weights the mask prunes set to zero.
fn masked(w: Tensor, mask: Option<&Mask>) -> Result<Tensor> {
    Ok(match mask {
        None => w,
        Some(m) if super::kernels::fused(&w) => {
            let w = w.contiguous()?;
            let (storage, layout) = w.storage_and_layout();
            let v = super::kernels::storage_f32(&storage, layout, "weight")?;
            ensure!(
                v.len() == m.len(),
                "mask of {} weights for {}",
                m.len(),
                v.len()
            );
            let out = m.apply(v);
            Tensor::from_vec(out, (m.rows(), m.cols()), w.device())?
        }
        Some(m) => {
            let keep = Tensor::from_vec(m.keep_flags(), (m.rows(), m.cols()), w.device())?;
            keep.where_cond(&w, &w.zeros_like()?)?
        }
    })
}
