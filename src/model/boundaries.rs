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

impl Boundaries {
    /// Per boundary b (0..=blocks), the states entering block b of the first `count`
    /// windows, each [1, seqlen, hidden], for a pass that took its windows in chunks of
    /// `batch`; None where b was not kept or a block before it differs in `model`.
    pub fn window_states(
        &self,
        model: &Decoder,
        batch: usize,
        count: usize,
    ) -> Result<Vec<Option<Vec<Tensor>>>> {
        let blocks = model.blocks.len();
        let mut out = vec![None; blocks + 1];
        if self.sigs.len() != blocks || batch == 0 || count == 0 {
            return Ok(out);
        }
        for (b, slot) in out.iter_mut().enumerate().skip(1) {
            if self.sigs[b - 1] != model.block_signature(b - 1) {
                break;
            }
            let Some(chunks) = &self.states[b] else {
                continue;
            };
            let mut per_window = Vec::with_capacity(count);
            for w in 0..count {
                match chunks.get(w / batch) {
                    Some(c) if w % batch < c.dim(0)? => {
                        per_window.push(c.narrow(0, w % batch, 1)?)
                    }
                    _ => break,
                }
            }
            if per_window.len() == count {
                *slot = Some(per_window);
            }
        }
        Ok(out)
    }
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
/// depth) to the last block. `rec` accumulates Wanda statistics of blocks start..;
/// `finish(x, ids)` maps chunk k's last hidden states (on the compute threads) and
/// `out(k, r)` receives its result, in chunk order. Returns the new boundaries (reused ones
/// shared, later ones kept where `keep` says) and what was reused.
///
/// On CPU several chunks run at once (`model::device::batch_parallelism`); each keeps its own
/// statistics and boundary states, merged in chunk order, so every number is the one a
/// chunk-after-chunk pass gives.
pub fn pass<R: Send>(
    model: &Decoder,
    base: Option<&Boundaries>,
    chunks: &[&[Vec<u32>]],
    keep: &[bool],
    mut rec: Option<&mut [BlockStats]>,
    finish: impl Fn(&Tensor, &Tensor) -> Result<R> + Sync,
    mut out: impl FnMut(usize, R) -> Result<()>,
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
    let reuse = Reuse {
        first_changed,
        start_block,
        blocks,
    };
    if start_block == blocks {
        return Ok((Boundaries { sigs, states }, reuse));
    }
    // The state entering the start block for chunk k.
    let start = |k: usize, ids: &Tensor| -> Result<Tensor> {
        Ok(match (start_block, base) {
            (0, _) | (_, None) => model.embed(ids)?,
            (s, Some(c)) => c.states[s].as_ref().expect("kept")[k].clone(),
        })
    };
    // Boundaries after the first change that are kept (those up to it are the cached ones).
    let recorded = |b: usize| b > first_changed && keep[b];
    let want_stats = rec.is_some();
    // Blocks from..to of one chunk, with its own statistics and kept boundary states.
    type Run = (Tensor, Option<Vec<BlockStats>>, Vec<(usize, Tensor)>);
    let run = |dec: &Decoder, x: Tensor, from: usize, to: usize| -> Result<Run> {
        let mut st = want_stats.then(|| vec![BlockStats::default(); blocks]);
        let mut seen = Vec::new();
        let y = dec.blocks_forward(x, from, to, st.as_deref_mut(), |b, x| {
            if recorded(b) {
                seen.push((b, x.clone()));
            }
        })?;
        Ok((y, st, seen))
    };
    let width = crate::model::device::batch_parallelism(
        &model.device,
        chunks.first().map_or(0, |c| {
            model.batch_bytes(c.len(), c.first().map_or(0, |w| w.len()))
        }),
    );
    let ids: Vec<Tensor> = chunks
        .iter()
        .map(|c| crate::data::ids_tensor(c, &model.device))
        .collect::<Result<_>>()?;
    let mut merge = |st: Option<Vec<BlockStats>>, seen: Vec<(usize, Tensor)>| -> Result<()> {
        if let (Some(rec), Some(st)) = (rec.as_deref_mut(), st) {
            for (b, s) in st.into_iter().enumerate().skip(start_block) {
                rec[b].absorb(s)?;
            }
        }
        for (b, x) in seen {
            states[b].as_mut().expect("kept").push(x);
        }
        Ok(())
    };
    if model.is_streamed() {
        // Block by block over all chunks, so a streamed block is read once per pass.
        let mut xs: Vec<Tensor> = Vec::with_capacity(chunks.len());
        for (k, id) in ids.iter().enumerate() {
            xs.push(start(k, id)?);
        }
        for b in start_block..blocks {
            let held = model.with_resident_block(b)?;
            let mut next = Vec::with_capacity(xs.len());
            crate::runtime::map_in_order(
                &xs,
                width,
                |_, x| run(&held, x.clone(), b, b + 1),
                |_, (y, st, seen)| {
                    next.push(y);
                    merge(st, seen)
                },
            )?;
            xs = next;
        }
        crate::runtime::map_in_order(&xs, width, |k, x| finish(x, &ids[k]), &mut out)?;
    } else {
        crate::runtime::map_in_order(
            &ids,
            width,
            |k, id| {
                let (x, st, seen) = run(model, start(k, id)?, start_block, blocks)?;
                Ok((finish(&x, id)?, st, seen))
            },
            |k, (r, st, seen)| {
                merge(st, seen)?;
                out(k, r)
            },
        )?;
    }
    Ok((Boundaries { sigs, states }, reuse))
}

/// `pass` for the Wanda statistics alone (the profile's calibration pass).
pub fn stats_pass(
    model: &Decoder,
    base: Option<&Boundaries>,
    chunks: &[&[Vec<u32>]],
    keep: &[bool],
    rec: &mut [BlockStats],
) -> Result<(Boundaries, Reuse)> {
    pass(
        model,
        base,
        chunks,
        keep,
        Some(rec),
        |_, _| Ok(()),
        |_, _| Ok(()),
    )
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
