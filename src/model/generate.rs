//! Incremental decoding with a key/value cache: greedy generation and continuation scoring.
//! Every result equals what `Decoder::forward` gives on the full sequence (tested).

use anyhow::{ensure, Result};
use candle_core::{DType, Device, Tensor, D};
use std::collections::hash_map::{Entry, HashMap};

use super::decoder::wide_dtype;
use super::Decoder;

/// Keys and values of the positions seen so far, one entry per block.
#[derive(Clone)]
pub struct KvCache {
    blocks: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    pub fn new(model: &Decoder) -> Self {
        KvCache {
            blocks: vec![None; model.blocks.len()],
            len: 0,
        }
    }

    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Logits [batch, new, vocab] for `ids` [batch, new] placed after the cached positions;
/// the cache is extended with them. Cloning a cache before a call branches it cheaply
/// (tensors are shared, never written in place).
pub fn forward_cached(model: &Decoder, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
    model.head(&hidden_cached(model, ids, cache)?)
}

/// Logits [batch, vocab] of the last new position only: the LM head over a long prompt
/// would cost seq × vocab floats for one row that is used.
fn last_logits_cached(model: &Decoder, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
    let h = hidden_cached(model, ids, cache)?;
    let t = h.dim(1)?;
    Ok(model.head(&h.narrow(1, t - 1, 1)?)?.squeeze(1)?)
}

/// Hidden states [batch, new, hidden] after the last block, as `forward_cached` sees them.
fn hidden_cached(model: &Decoder, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
    let (_, t) = ids.dims2()?;
    let past = cache.len;
    let (cos, sin) = model.rope_tables(past + t)?;
    let rope = (
        cos.narrow(0, past, t)?.contiguous()?,
        sin.narrow(0, past, t)?.contiguous()?,
    );
    let wide = wide_dtype(model.dtype);
    let mut masks: HashMap<Option<usize>, Tensor> = HashMap::new();
    let mut x = model.embed(ids)?;
    for (i, kv) in cache.blocks.iter_mut().enumerate() {
        let w = model.blocks[i].window;
        let mask = match masks.entry(w) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(offset_mask(t, past, w, wide, &model.device)?),
        };
        x = model.block_forward_cached(i, &x, &rope, mask, kv)?;
    }
    cache.len += t;
    Ok(x)
}

/// Additive mask [new, past + new] for queries at positions past..past+new: 0 where a key
/// is visible (not in the future, within the sliding window), -inf elsewhere.
fn offset_mask(
    new: usize,
    past: usize,
    window: Option<usize>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let total = past + new;
    let mut m = vec![0f32; new * total];
    for qi in 0..new {
        let q = past + qi;
        for k in 0..total {
            if k > q || window.is_some_and(|w| q >= k + w) {
                m[qi * total + k] = f32::NEG_INFINITY;
            }
        }
    }
    Ok(Tensor::from_vec(m, (new, total), device)?.to_dtype(dtype)?)
}

/// Index of the largest value; the first one on ties, as torch.argmax.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding of at most `max_new` tokens after `prompt`; stops after emitting a token
/// of `stop` (not returned). Returns the new tokens only.
pub fn generate_greedy(
    model: &Decoder,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
) -> Result<Vec<u32>> {
    generate_greedy_until(model, prompt, max_new, stop, |_| false)
}

/// As `generate_greedy`, and also stops once `done(new tokens so far)` is true (that last
/// token is kept). Generation never runs past the model's `max_position_embeddings`.
pub fn generate_greedy_until(
    model: &Decoder,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
    mut done: impl FnMut(&[u32]) -> bool,
) -> Result<Vec<u32>> {
    ensure!(!prompt.is_empty(), "generation needs a non-empty prompt");
    // The k-th new token is predicted at position prompt.len() - 1 + k.
    let limit = (model.cfg.max_position_embeddings + 1)
        .saturating_sub(prompt.len())
        .min(max_new);
    let mut cache = KvCache::new(model);
    let mut out = Vec::new();
    let mut input = prompt.to_vec();
    while out.len() < limit {
        let ids = Tensor::new(input.as_slice(), &model.device)?.unsqueeze(0)?;
        let last = last_logits_cached(model, &ids, &mut cache)?
            .get(0)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let next = argmax(&last);
        if stop.contains(&next) {
            break;
        }
        out.push(next);
        if done(&out) {
            break;
        }
        input = vec![next];
    }
    Ok(out)
}

/// Log-probabilities [n, vocab] (f32) of the token after each prompt. Prompts are batched
/// with right padding: a causal model's logits at a prompt's last real position do not
/// depend on the padding after it, so no padding mask is needed.
pub fn next_token_logprobs_batch(model: &Decoder, prompts: &[Vec<u32>]) -> Result<Tensor> {
    ensure!(
        prompts.iter().all(|p| !p.is_empty()),
        "cannot score an empty prompt"
    );
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let padded: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut v = p.clone();
            v.resize(width, 0);
            v
        })
        .collect();
    let ids = crate::data::ids_tensor(&padded, &model.device)?;
    let mut x = model.embed(&ids)?;
    for i in 0..model.blocks.len() {
        x = model.block_forward(i, &x, None)?;
    }
    // The LM head only at each prompt's last position.
    let rows = prompts
        .iter()
        .enumerate()
        .map(|(b, p)| Ok(x.get(b)?.narrow(0, p.len() - 1, 1)?))
        .collect::<Result<Vec<_>>>()?;
    let logits = model.head(&Tensor::stack(&rows, 0)?)?.squeeze(1)?;
    let wide = logits.to_dtype(wide_dtype(model.dtype))?;
    Ok(candle_nn::ops::log_softmax(&wide, D::Minus1)?.to_dtype(DType::F32)?)
}

/// Σ log p(continuation tokens | prompt, earlier continuation tokens) for each
/// continuation, in f64. The prompt runs once; each continuation branches its cache.
pub fn continuation_logprobs(
    model: &Decoder,
    prompt: &[u32],
    conts: &[Vec<u32>],
) -> Result<Vec<f64>> {
    ensure!(!prompt.is_empty(), "cannot score after an empty prompt");
    let mut cache = KvCache::new(model);
    let ids = Tensor::new(prompt, &model.device)?.unsqueeze(0)?;
    let first = log_softmax_rows(&last_logits_cached(model, &ids, &mut cache)?)?;
    conts
        .iter()
        .map(|c| {
            ensure!(!c.is_empty(), "cannot score an empty continuation");
            let mut total = first[0][c[0] as usize] as f64;
            if c.len() > 1 {
                let mut branch = cache.clone();
                let ids = Tensor::new(&c[..c.len() - 1], &model.device)?.unsqueeze(0)?;
                let rows = log_softmax_rows(&forward_cached(model, &ids, &mut branch)?.get(0)?)?;
                for (row, tok) in rows.iter().zip(&c[1..]) {
                    total += row[*tok as usize] as f64;
                }
            }
            Ok(total)
        })
        .collect()
}

/// Row-wise log-softmax of logits [n, vocab], computed in f32 or wider.
fn log_softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let wide = logits.to_dtype(wide_dtype(logits.dtype()))?;
    Ok(candle_nn::ops::log_softmax(&wide, D::Minus1)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?)
}
