//! Wanda input statistics: per linear layer, the sum over tokens of each input feature squared.

use anyhow::Result;
use candle_core::Tensor;

use super::linear::LinearKind;

#[derive(Debug, Clone, Default)]
pub struct InputStats {
    /// Σ over tokens of x_j², per input feature j, accumulated in f64.
    pub sumsq: Vec<f64>,
    pub tokens: u64,
}

impl InputStats {
    /// Add per-feature sums of squares over `tokens` more tokens.
    fn add(&mut self, sumsq: &[f64], tokens: u64) {
        if self.sumsq.is_empty() {
            self.sumsq = vec![0.0; sumsq.len()];
        }
        for (a, c) in self.sumsq.iter_mut().zip(sumsq) {
            *a += c;
        }
        self.tokens += tokens;
    }

    /// ‖X_j‖₂ per input feature: the column norms Wanda multiplies |W| by.
    pub fn norms(&self) -> Vec<f64> {
        self.sumsq.iter().map(|s| s.sqrt()).collect()
    }
}

/// Statistics of the seven linear layers of one block, indexed by `LinearKind as usize`.
#[derive(Debug, Clone, Default)]
pub struct BlockStats {
    pub linears: [InputStats; 7],
    /// When set, also accumulate Σ x xᵀ per layer (SparseGPT's Hessian), on the device.
    pub want_gram: bool,
    pub grams: [Option<Tensor>; 7],
}

impl BlockStats {
    /// Add the statistics of `x` ([tokens, in]) to every layer in `kinds` (they share the input).
    pub fn record_shared(&mut self, kinds: &[LinearKind], x: &Tensor) -> Result<()> {
        let (n, _) = x.dims2()?;
        let col = super::kernels::column_sumsq(x)?;
        let gram = if self.want_gram {
            let xf = super::kernels::stats_dtype(x)?;
            Some(xf.t()?.matmul(&xf)?)
        } else {
            None
        };
        for k in kinds {
            if let Some(g) = &gram {
                add_gram(&mut self.grams[*k as usize], g.clone())?;
            }
            self.linears[*k as usize].add(&col, n as u64);
        }
        Ok(())
    }

    /// Add `other`'s sums to these. Merging per-batch statistics in batch order gives the
    /// same bits as recording the batches one after another into one accumulator.
    pub fn absorb(&mut self, other: BlockStats) -> Result<()> {
        for (mine, theirs) in self.linears.iter_mut().zip(other.linears) {
            mine.add(&theirs.sumsq, theirs.tokens);
        }
        for (mine, theirs) in self.grams.iter_mut().zip(other.grams) {
            if let Some(g) = theirs {
                add_gram(mine, g)?;
            }
        }
        Ok(())
    }

    pub fn with_gram() -> Self {
        BlockStats {
            want_gram: true,
            ..Default::default()
        }
    }

    pub fn get(&self, kind: LinearKind) -> &InputStats {
        &self.linears[kind as usize]
    }
}

/// acc += g, where an empty accumulator takes g as it is.
fn add_gram(acc: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *acc = Some(match acc.take() {
        Some(a) => (a + g)?,
        None => g,
    });
    Ok(())
}
