//! Perplexity that recomputes only from the first block that changed since the last
//! committed state, starting from hidden states cached at block boundaries.
//!
//! Bit-exact with `perplexity`: the same window chunks go through the same ops in the same
//! dtype on the same device; a cached state is the very tensor the full pass produced.

use anyhow::Result;
use candle_core::{DType, Tensor};

use super::ppl::{ppl_from_losses, window_loss, Perplexity};
use crate::data::Windows;
use crate::model::decoder::BlockSignature;
use crate::model::Decoder;

/// What one evaluation reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reuse {
    /// First block whose weights or mask differ from the committed state (= blocks: none).
    pub first_changed: usize,
    /// The block the computation started from (0: from the embeddings).
    pub start_block: usize,
    pub blocks: usize,
}

#[derive(Clone)]
struct State {
    sigs: Vec<BlockSignature>,
    /// `states[b]`: per chunk, the hidden states entering block b (None: not kept).
    states: Vec<Option<Vec<Tensor>>>,
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

    /// Boundaries (1..blocks) whose states are kept, spread evenly within the budget.
    fn kept(&self, model: &Decoder) -> Vec<bool> {
        let blocks = model.blocks.len();
        let per = self.windows.len()
            * self.windows.seqlen
            * model.cfg.hidden_size
            * model.dtype.size_in_bytes();
        let k = (self.budget_bytes / (2 * per.max(1))).min(blocks.saturating_sub(1));
        let mut keep = vec![false; blocks + 1];
        for j in 0..k {
            let b = ((j + 1) * blocks) / (k + 1);
            keep[b.clamp(1, blocks - 1)] = true;
        }
        keep
    }

    /// Perplexity of the model as it is now, and what was reused. The result becomes the
    /// committed state only through `commit`.
    pub fn evaluate(
        &mut self,
        model: &Decoder,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(Perplexity, Reuse)> {
        let blocks = model.blocks.len();
        let sigs: Vec<BlockSignature> = (0..blocks).map(|i| model.block_signature(i)).collect();
        let base = self.committed.as_ref().filter(|c| c.sigs.len() == blocks);
        let first_changed = base.map_or(0, |c| {
            (0..blocks)
                .find(|&i| c.sigs[i] != sigs[i])
                .unwrap_or(blocks)
        });
        let start_block = match base {
            Some(_) if first_changed == blocks => blocks,
            Some(c) => (1..=first_changed)
                .rev()
                .find(|&b| c.states[b].is_some())
                .unwrap_or(0),
            None => 0,
        };
        let reuse = Reuse {
            first_changed,
            start_block,
            blocks,
        };
        let keep = self.kept(model);
        let chunks: Vec<&[Vec<u32>]> = self.windows.windows.chunks(self.batch).collect();
        let mut states: Vec<Option<Vec<Tensor>>> = (0..=blocks)
            .map(|b| match base {
                Some(c) if b <= first_changed => c.states[b].clone(),
                _ if keep[b] => Some(Vec::with_capacity(chunks.len())),
                _ => None,
            })
            .collect();
        let losses = match base {
            Some(c) if first_changed == blocks => {
                progress(self.windows.len(), self.windows.len());
                c.losses.clone()
            }
            _ => {
                let mut losses = Vec::with_capacity(self.windows.len());
                for (k, chunk) in chunks.iter().enumerate() {
                    let ids = crate::data::ids_tensor(chunk, &model.device)?;
                    let x = match (start_block, base) {
                        (0, _) | (_, None) => model.embed(&ids)?,
                        (s, Some(c)) => c.states[s].as_ref().expect("kept")[k].clone(),
                    };
                    let x = model.blocks_forward(x, start_block, blocks, |b, x| {
                        // Boundaries up to the first change are the committed ones.
                        if b > first_changed {
                            if let Some(v) = states[b].as_mut() {
                                v.push(x.clone());
                            }
                        }
                    })?;
                    let l = window_loss(&model.head(&x)?, &ids)?;
                    losses.extend(l.to_dtype(DType::F64)?.to_vec1::<f64>()?);
                    progress(losses.len(), self.windows.len());
                }
                losses
            }
        };
        let p = Perplexity {
            value: ppl_from_losses(&losses, self.windows.seqlen),
            seqlen: self.windows.seqlen,
            windows: self.windows.len(),
            tokens: self.windows.tokens,
            dataset: self.dataset.clone(),
            dtype: crate::runtime::dtype_name(model.dtype).to_string(),
            window_loss: losses.clone(),
        };
        self.pending = Some(State {
            sigs,
            states,
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
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        for s in self.committed.iter().chain(self.pending.iter()) {
            for t in s.states.iter().flatten().flatten() {
                if seen.insert(t.id()) {
                    total += t.elem_count() * t.dtype().size_in_bytes();
                }
            }
        }
        total
    }
}
