//! Perplexity under the Wanda/SparseGPT protocol.

use anyhow::Result;
use candle_core::{DType, Tensor, D};
use serde::Serialize;

use crate::data::Windows;
use crate::model::Decoder;

#[derive(Debug, Clone, Serialize)]
pub struct Perplexity {
    pub value: f64,
    pub seqlen: usize,
    pub windows: usize,
    /// Tokens in the whole tokenized text (windows use `windows * seqlen` of them).
    pub tokens: usize,
    pub dataset: String,
    pub dtype: String,
    /// Mean next-token cross-entropy of each window, in nats.
    pub window_loss: Vec<f64>,
}

/// Mean cross-entropy over shifted targets per window: logits [B, T, V], ids [B, T] → [B].
/// Differentiable; computed in f32 (or f64 for f64 logits).
pub fn window_loss(logits: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (_, t, _) = logits.dims3()?;
    let wide = crate::model::decoder::wide_dtype(logits.dtype());
    let lp = candle_nn::ops::log_softmax(&logits.narrow(1, 0, t - 1)?.to_dtype(wide)?, D::Minus1)?;
    let target = ids.narrow(1, 1, t - 1)?.unsqueeze(2)?;
    let picked = lp.gather(&target.contiguous()?, 2)?.squeeze(2)?;
    Ok(picked.neg()?.mean(1)?)
}

/// Losses of a batch of windows, as f64.
pub fn batch_losses(model: &Decoder, windows: &[Vec<u32>]) -> Result<Vec<f64>> {
    let ids = crate::data::ids_tensor(windows, &model.device)?;
    let logits = model.forward(&ids, None)?;
    Ok(window_loss(&logits, &ids)?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?)
}

/// ppl = exp(Σ loss_i · L / (n · L)) over the windows, `batch` windows per forward (on CPU,
/// several forwards at once; each window's loss is its own, so the thread count changes
/// nothing).
pub fn perplexity(
    model: &Decoder,
    w: &Windows,
    batch: usize,
    dataset: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    if model.is_streamed() {
        // Block-major, so each streamed block is read once (same numbers, bit for bit).
        let mut inc = super::incremental::IncrementalPpl::new(w.clone(), batch, dataset, 0);
        return Ok(inc.evaluate(model, progress)?.0);
    }
    let mut losses = Vec::with_capacity(w.len());
    let chunks: Vec<&[Vec<u32>]> = w.windows.chunks(batch.max(1)).collect();
    crate::runtime::map_in_order(
        &chunks,
        crate::runtime::batch_parallelism(&model.device, model.batch_bytes(batch.max(1), w.seqlen)),
        |_, chunk| batch_losses(model, chunk),
        |_, l| {
            losses.extend(l);
            progress(losses.len(), w.len());
            Ok(())
        },
    )?;
    Ok(Perplexity {
        value: ppl_from_losses(&losses, w.seqlen),
        seqlen: w.seqlen,
        windows: w.len(),
        tokens: w.tokens,
        dataset: dataset.to_string(),
        dtype: crate::runtime::dtype_name(model.dtype).to_string(),
        window_loss: losses,
    })
}

pub fn ppl_from_losses(losses: &[f64], seqlen: usize) -> f64 {
    let nll: f64 = losses.iter().map(|l| l * seqlen as f64).sum();
    (nll / (losses.len() * seqlen) as f64).exp()
}
