//! The profile's calibration statistics recomputed only from the first block that changed
//! since the last profile, starting from hidden states cached at block boundaries. The
//! statistics of earlier blocks are the cached ones: their inputs have not changed.
//!
//! Bit-exact with `input_stats`: the same chunks go through the same ops, and each block's
//! sums accumulate the chunks in the same order.

use anyhow::Result;

use super::{GradSpec, Profile};
use crate::data::Windows;
use crate::model::boundaries::{self, Boundaries, Reuse};
use crate::model::{BlockStats, Decoder};

pub struct IncrementalStats {
    windows: Windows,
    batch: usize,
    budget_bytes: usize,
    last: Option<(Boundaries, Vec<BlockStats>)>,
}

impl IncrementalStats {
    /// `budget_bytes` bounds the cached hidden states.
    pub fn new(windows: Windows, batch: usize, budget_bytes: usize) -> Self {
        IncrementalStats {
            windows,
            batch: batch.max(1),
            budget_bytes,
            last: None,
        }
    }

    /// Wanda statistics of every linear input of the model as it is now, and what was reused.
    pub fn input_stats(&mut self, model: &Decoder) -> Result<(Vec<BlockStats>, Reuse)> {
        let w = &self.windows;
        let keep = boundaries::kept(model, w.len(), w.seqlen, self.budget_bytes, 1);
        let chunks: Vec<&[Vec<u32>]> = w.windows.chunks(self.batch).collect();
        let base = self.last.as_ref();
        let mut stats = vec![BlockStats::default(); model.blocks.len()];
        let (b, reuse) =
            boundaries::stats_pass(model, base.map(|l| &l.0), &chunks, &keep, &mut stats)?;
        if let Some((_, old)) = base {
            stats[..reuse.start_block].clone_from_slice(&old[..reuse.start_block]);
        }
        self.last = Some((b, stats.clone()));
        Ok((stats, reuse))
    }

    /// The profile of the model as it is now: the calibration statistics as `input_stats`
    /// gives them, then the gradient pass over the first `grad_windows` calibration windows,
    /// which takes the states entering each block from this pass's cache where it kept them
    /// (bit for bit what it would recompute; `tests/incremental_eval.rs`).
    pub fn profile(
        &mut self,
        model: &Decoder,
        grads: GradSpec,
        calib_name: &str,
    ) -> Result<(Profile, Vec<BlockStats>, Reuse)> {
        let start = std::time::Instant::now();
        let (stats, reuse) = self.input_stats(model)?;
        let calibration = start.elapsed().as_secs_f64();
        let gw = super::grad_window_count(&self.windows, grads.windows);
        let known = match &self.last {
            Some((b, _)) => b.window_states(model, self.batch, gw)?,
            None => Vec::new(),
        };
        let mut p = super::compute_from(model, &stats, &self.windows, grads, calib_name, &known)?;
        p.seconds.calibration = calibration;
        Ok((p, stats, reuse))
    }

    /// Bytes held in cached hidden states.
    pub fn cached_bytes(&self) -> usize {
        boundaries::cached_bytes(self.last.iter().map(|l| &l.0))
    }
}
