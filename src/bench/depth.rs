//! What the evaluation cache saves by the depth of a step's first change, whatever layers an
//! agent happens to pick: for each block b, one layer of b gets a mask and the incremental
//! evaluation (from the cached boundary at b) is timed against a full pass over the same
//! state. Both must give the same losses bit for bit.

use anyhow::{ensure, Result};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

use super::median;
use crate::data::Windows;
use crate::eval::incremental::IncrementalPpl;
use crate::model::{Decoder, LinearId, LinearKind, Mask};

#[derive(Debug, Serialize)]
pub struct Depth {
    /// The block whose down projection changed.
    pub block: usize,
    /// The block the incremental pass started from.
    pub start_block: usize,
    pub incremental_seconds: f64,
    pub full_seconds: f64,
    pub ratio: f64,
}

/// Every `stride`-th weight of the layer pruned: any change will do.
fn some_mask(d: &Decoder, id: LinearId) -> Arc<Mask> {
    let l = d.linear(id);
    let mut m = Mask::empty(l.out_features(), l.in_features());
    for r in 0..m.rows() {
        for c in (r % 7..m.cols()).step_by(7) {
            m.prune(r, c);
        }
    }
    Arc::new(m)
}

/// Medians over `iters` timings per block; the model is left as it came (dense masks
/// restored), the cache budget is the session's.
pub fn by_block(
    d: &mut Decoder,
    w: &Windows,
    batch: usize,
    budget_bytes: usize,
    iters: usize,
) -> Result<Vec<Depth>> {
    let mut inc = IncrementalPpl::new(w.clone(), batch, "eval", budget_bytes);
    inc.evaluate(d, |_, _| {})?;
    inc.commit();
    let mut out = Vec::new();
    for block in 0..d.blocks.len() {
        let id = LinearId {
            block,
            kind: LinearKind::Down,
        };
        let before = d.linear(id).mask().cloned();
        d.set_mask(id, Some(some_mask(d, id)))?;
        let (mut inc_s, mut full_s) = (Vec::new(), Vec::new());
        let mut start_block = 0;
        for _ in 0..iters.max(1) {
            let t = Instant::now();
            let (p, reuse) = inc.evaluate(d, |_, _| {})?;
            inc_s.push(t.elapsed().as_secs_f64());
            start_block = reuse.start_block;
            let t = Instant::now();
            let f = crate::eval::perplexity(d, w, batch, "eval", |_, _| {})?;
            full_s.push(t.elapsed().as_secs_f64());
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            ensure!(
                bits(&p.window_loss) == bits(&f.window_loss),
                "block {block}: the incremental evaluation differs from the full pass"
            );
        }
        inc.discard();
        d.set_mask(id, before)?;
        let (a, b) = (median(inc_s), median(full_s));
        out.push(Depth {
            block,
            start_block,
            incremental_seconds: a,
            full_seconds: b,
            ratio: a / b,
        });
    }
    Ok(out)
}
