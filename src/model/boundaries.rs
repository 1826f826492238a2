//! Hidden states of a set of windows at block boundaries, cached from an earlier pass over
//! the same windows, and the plan of a new pass that reuses them: every block before the
//! first changed one computes exactly what it computed then, so the pass can start at the
//! nearest cached boundary at or before that block. Shared by the session's perplexity and
//! the profile's calibration statistics.

use anyhow::Result;
use candle_core::Tensor;

use super::decoder::BlockSignature;
use super::stats::BlockStats;
use super::Decoder;

/// What a pass reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reuse {
    /// First block whose weights or mask differ from the cached state (= blocks: none).
    pub first_changed: usize,
    /// The block the computation started from (0: from the embeddings).
    pub start_block: usize,
    pub blocks: usize,
}

/// The block signatures of a model state and, per boundary b, the states entering block b
/// (one tensor per chunk of windows; None where not kept).
#[derive(Clone)]
pub struct Boundaries {
    pub sigs: Vec<BlockSignature>,
    pub states: Vec<Option<Vec<Tensor>>>,
}

/// Boundaries (1..blocks) worth keeping for `windows` windows of `seqlen` tokens when
/// `copies` sets of states share `budget_bytes`, spread evenly over the depth.
pub fn kept(
    model: &Decoder,
    windows: usize,
    seqlen: usize,
    budget_bytes: usize,
    copies: usize,
) -> Vec<bool> {
    let blocks = model.blocks.len();
    let per = windows * seqlen * model.cfg.hidden_size * model.dtype.size_in_bytes();
    let k = (budget_bytes / (copies.max(1) * per.max(1))).min(blocks.saturating_sub(1));
    let mut keep = vec![false; blocks + 1];
    for j in 0..k {
        let b = ((j + 1) * blocks) / (k + 1);
        keep[b.clamp(1, blocks - 1)] = true;
    }
    keep
}

/// One pass over `chunks` of windows from the cached `base` (if it matches this model's
/// depth) to the last block. `rec` accumulates Wanda statistics of blocks start..; `out(k,
/// x, ids)` sees the last hidden states of chunk k. Returns the new boundaries (reused ones
/// shared, later ones kept where `keep` says) and what was reused.
pub fn pass(
    model: &Decoder,
    base: Option<&Boundaries>,
    chunks: &[&[Vec<u32>]],
    keep: &[bool],
    mut rec: Option<&mut [BlockStats]>,
    mut out: impl FnMut(usize, &Tensor, &Tensor) -> Result<()>,
) -> Result<(Boundaries, Reuse)> {
    let blocks = model.blocks.len();
    let sigs: Vec<BlockSignature> = (0..blocks).map(|i| model.block_signature(i)).collect();
    let base = base.filter(|c| c.sigs.len() == blocks);
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
    let mut states: Vec<Option<Vec<Tensor>>> = (0..=blocks)
        .map(|b| match base {
            Some(c) if b <= first_changed => c.states[b].clone(),
            _ if keep[b] => Some(Vec::with_capacity(chunks.len())),
            _ => None,
        })
        .collect();
    // The state entering the start block for chunk k, and the record of later boundaries
    // (those up to the first change are the cached ones).
    let start = |k: usize, ids: &Tensor| -> Result<Tensor> {
        Ok(match (start_block, base) {
            (0, _) | (_, None) => model.embed(ids)?,
            (s, Some(c)) => c.states[s].as_ref().expect("kept")[k].clone(),
        })
    };
    let record = |states: &mut [Option<Vec<Tensor>>], b: usize, x: &Tensor| {
        if b > first_changed {
            if let Some(v) = states[b].as_mut() {
                v.push(x.clone());
            }
        }
    };
    if start_block < blocks && model.is_streamed() {
        // Block by block over all chunks, so a streamed block is read once per pass.
        let ids: Vec<Tensor> = chunks
            .iter()
            .map(|c| crate::data::ids_tensor(c, &model.device))
            .collect::<Result<_>>()?;
        let mut xs: Vec<Tensor> = Vec::with_capacity(chunks.len());
        for (k, id) in ids.iter().enumerate() {
            xs.push(start(k, id)?);
        }
        for b in start_block..blocks {
            let held = model.with_resident_block(b)?;
            for x in xs.iter_mut() {
                *x = held.blocks_forward(x.clone(), b, b + 1, rec.as_deref_mut(), |b, x| {
                    record(&mut states, b, x)
                })?;
            }
        }
        for (k, (x, id)) in xs.iter().zip(&ids).enumerate() {
            out(k, x, id)?;
        }
    } else if start_block < blocks {
        for (k, chunk) in chunks.iter().enumerate() {
            let ids = crate::data::ids_tensor(chunk, &model.device)?;
            let x = start(k, &ids)?;
            let x = model.blocks_forward(x, start_block, blocks, rec.as_deref_mut(), |b, x| {
                record(&mut states, b, x)
            })?;
            out(k, &x, &ids)?;
        }
    }
    let reuse = Reuse {
        first_changed,
        start_block,
        blocks,
    };
    Ok((Boundaries { sigs, states }, reuse))
}

/// Bytes held by the states of several boundary sets, tensors shared between them once.
pub fn cached_bytes<'a>(sets: impl Iterator<Item = &'a Boundaries>) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for s in sets {
        for t in s.states.iter().flatten().flatten() {
            if seen.insert(t.id()) {
                total += t.elem_count() * t.dtype().size_in_bytes();
            }
        }
    }
    total
}
