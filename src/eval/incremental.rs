//! Perplexity that recomputes only from the first block that changed since the last
//! committed state, starting from hidden states cached at block boundaries.
//!
//! Bit-exact with `perplexity`: the same window chunks go through the same ops in the same
//! dtype on the same device; a cached state is the very tensor the full pass produced.

use anyhow::Result;

use super::ppl::{hidden_losses, ppl_from_losses, Perplexity};
use crate::data::Windows;
pub use crate::model::boundaries::Reuse;
use crate::model::boundaries::{self, Boundaries};
use crate::model::Decoder;

#[derive(Clone)]
struct State {
    boundaries: Boundaries,
    losses: Vec<f64>,
}

pub struct IncrementalPpl {
    windows: Windows,
    batch: usize,
    dataset: String,
    budget_bytes: usize,
    committed: Option<State>,
    pending: Option<State>,
}

impl IncrementalPpl {
    /// `budget_bytes` bounds the cached hidden states, committed and pending together.
    pub fn new(windows: Windows, batch: usize, dataset: &str, budget_bytes: usize) -> Self {
        IncrementalPpl {
            windows,
            batch: batch.max(1),
            dataset: dataset.to_string(),
            budget_bytes,
            committed: None,
            pending: None,
        }
    }

    /// Perplexity of the model as it is now, and what was reused. The result becomes the
    /// committed state only through `commit`.
    pub fn evaluate(
        &mut self,
        model: &Decoder,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(Perplexity, Reuse)> {
        let n = self.windows.len();
        let keep = boundaries::kept(model, n, self.windows.seqlen, self.budget_bytes, 2);
        let chunks: Vec<&[Vec<u32>]> = self.windows.windows.chunks(self.batch).collect();
        let base = self.committed.as_ref();
        let mut losses = Vec::with_capacity(n);
        let (b, reuse) = boundaries::pass(
            model,
            base.map(|c| &c.boundaries),
            &chunks,
            &keep,
            None,
            |x, ids| hidden_losses(model, x, ids),
            |_, l| {
                losses.extend(l);
                progress(losses.len(), n);
                Ok(())
            },
        )?;
        if reuse.start_block == reuse.blocks {
            losses = base.expect("nothing changed since the base").losses.clone();
            progress(n, n);
        }
        let p = Perplexity {
            value: ppl_from_losses(&losses, self.windows.seqlen),
            seqlen: self.windows.seqlen,
            windows: n,
            tokens: self.windows.tokens,
            dataset: self.dataset.clone(),
            dtype: crate::model::device::dtype_name(model.dtype).to_string(),
            window_loss: losses.clone(),
        };
        self.pending = Some(State {
            boundaries: b,
            losses,
        });
        Ok((p, reuse))
    }

    /// The last evaluated state becomes the base of the next evaluation (a step was accepted).
    pub fn commit(&mut self) {
        if let Some(p) = self.pending.take() {
            self.committed = Some(p);
        }
    }

    /// Forget the last evaluation (a step was rolled back); the committed state stays.
    pub fn discard(&mut self) {
        self.pending = None;
    }

    /// Bytes held in cached hidden states (committed and pending, shared tensors once).
    pub fn cached_bytes(&self) -> usize {
        boundaries::cached_bytes(
            self.committed
                .iter()
                .chain(self.pending.iter())
                .map(|s| &s.boundaries),
        )
    }
}
