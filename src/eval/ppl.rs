//! Perplexity under the Wanda/SparseGPT protocol.

use anyhow::Result;
use candle_core::{DType, Tensor, D};
use serde::Serialize;

use crate::data::Windows;
use crate::model::decoder::head_slices;
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

/// `window_loss(head(x), ids)` as f64 for the last block's states x [B, T, H], one window and
/// one slice of positions (`Decoder::head_slice_rows`) at a time: a batch's logits at
/// Qwen3's vocabulary are 1.2 GB per 2048-token window in f32, and the log-softmax makes
/// several copies. The bits are `window_loss`'s: each row's log-probabilities depend on
/// that row alone, the head's product on the row and the weights, and the mean runs over
/// the same contiguous values.
pub fn hidden_losses(model: &Decoder, x: &Tensor, ids: &Tensor) -> Result<Vec<f64>> {
    let rows = model.head_slice_rows(crate::model::decoder::wide_dtype(model.dtype));
    losses_in_rows(model, x, ids, rows)
}

/// `hidden_losses` with the logits of at most `rows` positions at a time (at least
/// `HEAD_SLICE_MIN_ROWS`), in slices of nearly equal size.
fn losses_in_rows(model: &Decoder, x: &Tensor, ids: &Tensor, rows: usize) -> Result<Vec<f64>> {
    let (b, t, _) = x.dims3()?;
    anyhow::ensure!(
        t >= 2,
        "perplexity: windows of {t} tokens have no next token to predict"
    );
    let wide = crate::model::decoder::wide_dtype(model.dtype);
    let mut out = Vec::with_capacity(b);
    for w in 0..b {
        let (xw, idw) = (x.narrow(0, w, 1)?, ids.narrow(0, w, 1)?);
        let mut picked = Vec::new();
        for (r, n) in head_slices(t - 1, rows) {
            let logits = model.head(&xw.narrow(1, r, n)?)?.to_dtype(wide)?;
            let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let target = idw.narrow(1, r + 1, n)?.unsqueeze(2)?;
            picked.push(lp.gather(&target.contiguous()?, 2)?.squeeze(2)?);
        }
        let loss = Tensor::cat(&picked, 1)?.neg()?.mean(1)?;
        out.extend(loss.to_dtype(DType::F64)?.to_vec1::<f64>()?);
    }
    Ok(out)
}

/// Losses of a batch of windows, as f64.
pub fn batch_losses(model: &Decoder, windows: &[Vec<u32>]) -> Result<Vec<f64>> {
    let ids = crate::data::ids_tensor(windows, &model.device)?;
    let x = model.blocks_forward(model.embed(&ids)?, 0, model.blocks.len(), None, |_, _| {})?;
    hidden_losses(model, &x, &ids)
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
        crate::model::device::batch_parallelism(
            &model.device,
            model.batch_bytes(batch.max(1), w.seqlen),
        ),
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
        dtype: crate::model::device::dtype_name(model.dtype).to_string(),
        window_loss: losses,
    })
}

pub fn ppl_from_losses(losses: &[f64], seqlen: usize) -> f64 {
    let nll: f64 = losses.iter().map(|l| l * seqlen as f64).sum();
    (nll / (losses.len() * seqlen) as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{random::random_decoder, ModelConfig};
    use candle_core::Device;

    const CFG: &str = r#"{"model_type":"qwen3","vocab_size":97,"hidden_size":32,
      "intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
      "head_dim":8,"max_position_embeddings":64,"tie_word_embeddings":false,"rope_theta":10000.0,
      "rms_norm_eps":1e-6}"#;

    // Whatever slices of rows the head runs over, each window's loss has the bits of the
    // loss over the whole batch's logits.
    #[test]
    fn losses_in_row_slices_equal_the_whole_batch_bits() {
        let cfg = ModelConfig::from_json(CFG).unwrap();
        for dtype in [DType::F32, DType::BF16] {
            let d = random_decoder(&cfg, 5, dtype, &Device::Cpu).unwrap();
            let v: Vec<u32> = (0..3 * 50u32).map(|i| (i * 31 + 7) % 97).collect();
            let ids = Tensor::from_vec(v, (3, 50), &Device::Cpu).unwrap();
            let x = d
                .blocks_forward(d.embed(&ids).unwrap(), 0, 2, None, |_, _| {})
                .unwrap();
            let whole = window_loss(&d.head(&x).unwrap(), &ids).unwrap();
            let whole = whole
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            // 49 positions a window: 4, 3, 2 and 1 slices.
            for rows in 1..50 {
                let got = losses_in_rows(&d, &x, &ids, rows).unwrap();
                assert_eq!(bits(&got), bits(&whole), "{dtype:?}, {rows} rows");
            }
            assert_eq!(bits(&hidden_losses(&d, &x, &ids).unwrap()), bits(&whole));
            assert_eq!(
                bits(&batch_losses(&d, &[ids.get(1).unwrap().to_vec1().unwrap()]).unwrap()),
                bits(&whole[1..2])
            );
        }
    }

    #[test]
    fn a_window_without_a_next_token_is_refused() {
        let cfg = ModelConfig::from_json(CFG).unwrap();
        let d = random_decoder(&cfg, 5, DType::F32, &Device::Cpu).unwrap();
        let ids = Tensor::from_vec(vec![3u32, 4], (2, 1), &Device::Cpu).unwrap();
        let x = d.embed(&ids).unwrap();
        let e = hidden_losses(&d, &x, &ids).unwrap_err().to_string();
        assert!(e.contains("windows of 1 tokens"), "{e}");
    }
}
