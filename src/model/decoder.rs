//! Our own Llama-family decoder on candle tensors: stateless full-sequence forward,
//! Wanda input statistics, differentiable end to end, and per-linear masks.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::HashMap;
use std::sync::Arc;

use super::config::{ModelConfig, RopeScaling};
use super::linear::{DenseSource, Linear, LinearId, LinearKind};
use super::mask::Mask;
use super::phases;
use super::save::Stored;
use super::stats::BlockStats;

#[derive(Clone)]
pub struct Block {
    pub input_norm: Tensor,
    pub post_norm: Tensor,
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    /// Indexed by `LinearKind as usize`.
    pub linears: Vec<Linear>,
    pub window: Option<usize>,
}

/// Logits held at once (per thread) where the head runs a slice of positions at a time: a
/// window's logits at Qwen3's vocabulary are 1.2 GB at 2048 tokens in f32.
pub const HEAD_SLICE_BYTES: usize = 16 << 20;
/// Fewest positions in a slice: gemm rounds a one-row product (gemv) or a product of at most
/// 256 elements differently, and a slice must give the bits of the whole product.
pub const HEAD_SLICE_MIN_ROWS: usize = 16;

/// `n` positions cut into slices of at most `rows` (at least `HEAD_SLICE_MIN_ROWS`) and of
/// nearly equal size, as (start, length).
pub fn head_slices(n: usize, rows: usize) -> impl Iterator<Item = (usize, usize)> {
    let parts = n.div_ceil(rows.max(HEAD_SLICE_MIN_ROWS));
    (0..parts).map(move |k| (k * n / parts, (k + 1) * n / parts - k * n / parts))
}

/// See `Decoder::block_signature`. Holding the masks keeps their addresses from being reused.
#[derive(Clone)]
pub struct BlockSignature(Vec<(super::linear::Origin, Option<Arc<Mask>>)>);

impl PartialEq for BlockSignature {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| {
                a.0 == b.0
                    && match (&a.1, &b.1) {
                        (None, None) => true,
                        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                        _ => false,
                    }
            })
    }
}

#[derive(Clone)]
pub struct Decoder {
    pub cfg: ModelConfig,
    pub embed: Tensor,
    pub blocks: Vec<Block>,
    pub norm: Tensor,
    pub lm_head: Tensor,
    pub dtype: DType,
    pub device: Device,
    /// Use only ops that carry gradients (candle's fused CPU ops drop them silently).
    differentiable: bool,
}

impl Decoder {
    /// Build from a name → tensor map with Hugging Face names (see `weights::expected_tensors`).
    pub fn from_tensors(cfg: ModelConfig, t: HashMap<String, Tensor>) -> Result<Self> {
        Self::build(cfg, t, None)
    }

    /// A decoder whose linear weights stay in `source` (`t` holds everything else): each
    /// block reads its weights when it computes and drops them after (`--stream-layers`).
    pub fn streamed(
        cfg: ModelConfig,
        t: HashMap<String, Tensor>,
        source: Arc<dyn DenseSource>,
    ) -> Result<Self> {
        Self::build(cfg, t, Some(source))
    }

    fn build(
        cfg: ModelConfig,
        mut t: HashMap<String, Tensor>,
        source: Option<Arc<dyn DenseSource>>,
    ) -> Result<Self> {
        let mut take = |n: &str| {
            t.remove(n)
                .with_context(|| format!("tensor `{n}` is missing"))
        };
        let embed = take("model.embed_tokens.weight")?;
        let dtype = embed.dtype();
        let device = embed.device().clone();
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for b in 0..cfg.num_layers {
            let p = format!("model.layers.{b}");
            let mut linears = Vec::with_capacity(7);
            for kind in LinearKind::ALL {
                let name = format!("{p}.{}", kind.path());
                let bias = if kind.has_bias(&cfg) {
                    Some(take(&format!("{name}.bias"))?)
                } else {
                    None
                };
                linears.push(match &source {
                    None => Linear::new(name.clone(), take(&format!("{name}.weight"))?, bias),
                    Some(src) => {
                        let shape = kind.shape(&cfg);
                        Linear::streamed(name, shape, dtype, bias, src.clone())
                    }
                });
            }
            let (q_norm, k_norm) = if cfg.qk_norm {
                (
                    Some(take(&format!("{p}.self_attn.q_norm.weight"))?),
                    Some(take(&format!("{p}.self_attn.k_norm.weight"))?),
                )
            } else {
                (None, None)
            };
            blocks.push(Block {
                input_norm: take(&format!("{p}.input_layernorm.weight"))?,
                post_norm: take(&format!("{p}.post_attention_layernorm.weight"))?,
                q_norm,
                k_norm,
                linears,
                window: cfg.sliding_window[b],
            });
        }
        let norm = take("model.norm.weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            take("lm_head.weight")?
        };
        Ok(Decoder {
            cfg,
            embed,
            blocks,
            norm,
            lm_head,
            dtype,
            device,
            differentiable: false,
        })
    }

    pub fn linear(&self, id: LinearId) -> &Linear {
        &self.blocks[id.block].linears[id.kind as usize]
    }

    pub fn linear_ids(&self) -> impl Iterator<Item = LinearId> + '_ {
        (0..self.blocks.len()).flat_map(|block| {
            LinearKind::ALL
                .into_iter()
                .map(move |kind| LinearId { block, kind })
        })
    }

    pub fn find_linear(&self, name: &str) -> Option<LinearId> {
        self.linear_ids().find(|id| self.linear(*id).name == name)
    }

    /// Whether any linear weight is streamed from the files rather than held.
    pub fn is_streamed(&self) -> bool {
        self.blocks
            .iter()
            .flat_map(|b| &b.linears)
            .any(|l| !l.weight_resident())
    }

    /// A copy in which block `b`'s weights are read once and held (everything else shared),
    /// so that many chunks of windows can pass through that block with one read.
    pub fn with_resident_block(&self, b: usize) -> Result<Decoder> {
        let mut d = self.clone();
        for lin in d.blocks[b].linears.iter_mut() {
            lin.make_resident()?;
        }
        Ok(d)
    }

    /// Replace one layer's mask; only that layer's effective weight is rebuilt.
    pub fn set_mask(&mut self, id: LinearId, mask: Option<Arc<Mask>>) -> Result<()> {
        self.blocks[id.block].linears[id.kind as usize].set_mask(mask)
    }

    /// A copy whose linear weights are fresh gradient variables (the current masked
    /// weights); everything else is shared. Returns the variables in `linear_ids` order.
    pub fn with_grad_vars(&self) -> Result<(Decoder, Vec<Var>)> {
        let mut d = self.differentiable();
        let mut vars = Vec::new();
        for b in 0..d.blocks.len() {
            vars.extend(d.make_block_vars(b)?);
        }
        Ok((d, vars))
    }

    /// A copy that computes with the differentiable ops only. Nothing in it is a variable,
    /// so its passes keep no graph.
    pub fn differentiable(&self) -> Decoder {
        let mut d = self.clone();
        d.differentiable = true;
        d
    }

    /// A differentiable copy whose block `b` linears are fresh gradient variables (the
    /// current masked weights), in `LinearKind::ALL` order; no other weight is copied.
    pub fn with_block_grad_vars(&self, b: usize) -> Result<(Decoder, Vec<Var>)> {
        let mut d = self.differentiable();
        let vars = d.make_block_vars(b)?;
        Ok((d, vars))
    }

    /// Turn block `b`'s linear weights into gradient variables, in `LinearKind::ALL` order.
    fn make_block_vars(&mut self, b: usize) -> Result<Vec<Var>> {
        self.blocks[b]
            .linears
            .iter_mut()
            .map(|lin| {
                let v = Var::from_tensor(&lin.weight()?)?;
                lin.replace_active(v.as_tensor().clone());
                Ok(v)
            })
            .collect()
    }

    /// Token embeddings for `ids` of shape [batch, seq].
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        Ok(self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            t,
            self.cfg.hidden_size,
        ))?)
    }

    /// One decoder block over hidden states [batch, seq, hidden], positions from 0.
    pub fn block_forward(
        &self,
        i: usize,
        x: &Tensor,
        rec: Option<&mut BlockStats>,
    ) -> Result<Tensor> {
        let (rope, mask) = self.block_tables(i, x)?;
        self.block_forward_with(i, x, &rope, &mask, rec, None)
    }

    /// Rotary tables and causal mask for block `i` over hidden states x, positions from 0.
    pub fn block_tables(&self, i: usize, x: &Tensor) -> Result<((Tensor, Tensor), Tensor)> {
        let (_, t, _) = x.dims3()?;
        let mask = causal_mask(
            t,
            self.blocks[i].window,
            wide_dtype(self.dtype),
            &self.device,
        )?;
        Ok((self.rope_tables(t)?, mask))
    }

    /// Only the Wanda statistics of block `i` over `x`: the block runs up to the input of
    /// its down projection, whose output nobody needs (one-shot pruning recomputes the
    /// block once its layers are pruned).
    pub fn block_stats(&self, i: usize, x: &Tensor, rec: &mut BlockStats) -> Result<()> {
        let (rope, mask) = self.block_tables(i, x)?;
        self.block_pass(i, x, &rope, &mask, Some(rec), None, true)?;
        Ok(())
    }

    /// One block over new positions that attend to earlier ones through `kv`: the keys
    /// (after rotary embedding) and values [batch, kv_heads, past, head_dim] of the past
    /// positions, extended in place. `rope` holds the new positions' rows and `mask` is
    /// [new, past + new]; `generate::forward_cached` builds both.
    pub fn block_forward_cached(
        &self,
        i: usize,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        mask: &Tensor,
        kv: &mut Option<(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        self.block_forward_with(i, x, rope, mask, None, Some(kv))
    }

    fn block_forward_with(
        &self,
        i: usize,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        mask: &Tensor,
        rec: Option<&mut BlockStats>,
        kv: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        match self.block_pass(i, x, rope, mask, rec, kv, false)? {
            Some(y) => Ok(y),
            None => anyhow::bail!("block {i}: a full pass returned no output"),
        }
    }

    /// The block; with `stats_only` it stops once the last statistics are recorded and
    /// returns None.
    #[allow(clippy::too_many_arguments)]
    fn block_pass(
        &self,
        i: usize,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        mask: &Tensor,
        mut rec: Option<&mut BlockStats>,
        kv: Option<&mut Option<(Tensor, Tensor)>>,
        stats_only: bool,
    ) -> Result<Option<Tensor>> {
        let blk = &self.blocks[i];
        let cfg = &self.cfg;
        let (b, t, h) = x.dims3()?;
        let lin = |k: LinearKind| &blk.linears[k as usize];

        let dev = &self.device;
        let xn = self.rms(x, &blk.input_norm)?.reshape((b * t, h))?;
        phases::mark(dev, "norms")?;
        if let Some(r) = rec.as_deref_mut() {
            r.record_shared(&[LinearKind::Q, LinearKind::K, LinearKind::V], &xn)?;
        }
        let hd = cfg.head_dim;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let (q, k, v) = (
            lin(LinearKind::Q).forward(&xn)?,
            lin(LinearKind::K).forward(&xn)?,
            lin(LinearKind::V).forward(&xn)?,
        );
        phases::mark(dev, "q, k, v projections")?;
        let mut q = heads(q, cfg.num_heads)?;
        let mut k = heads(k, cfg.num_kv_heads)?;
        let v = heads(v, cfg.num_kv_heads)?;
        phases::mark(dev, "layout copies")?;
        if let (Some(qn), Some(kn)) = (&blk.q_norm, &blk.k_norm) {
            q = self.rms(&q, qn)?;
            k = self.rms(&k, kn)?;
            phases::mark(dev, "norms")?;
        }
        let (cos, sin) = rope;
        let (q, k) = if self.differentiable {
            (
                candle_nn::rotary_emb::rope_slow(&q, cos, sin)?,
                candle_nn::rotary_emb::rope_slow(&k, cos, sin)?,
            )
        } else {
            (
                candle_nn::rotary_emb::rope(&q, cos, sin)?,
                candle_nn::rotary_emb::rope(&k, cos, sin)?,
            )
        };
        phases::mark(dev, "rotary")?;
        let (k, v) = match kv {
            Some(cache) => {
                let (k, v) = match cache.take() {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                    None => (k, v),
                };
                *cache = Some((k.clone(), v.clone()));
                (k, v)
            }
            None => (k, v),
        };
        // `tiled` takes CPU f32 only; a gradient graph needs candle's ops.
        let tiled = if self.differentiable {
            None
        } else {
            super::attention::tiled(&q, &k, &v, mask, 1.0 / (hd as f64).sqrt())?
        };
        let ctx = match tiled {
            Some(ctx) => {
                phases::mark(dev, "attention: tiled")?;
                ctx.reshape((b * t, cfg.num_heads * hd))?
            }
            None => self.attention(q, k, v, mask)?,
        };
        if let Some(r) = rec.as_deref_mut() {
            r.record_shared(&[LinearKind::O], &ctx)?;
        }
        let attn = lin(LinearKind::O).forward(&ctx)?.reshape((b, t, h))?;
        phases::mark(dev, "o projection")?;
        let x = self.residual(x, &attn)?;
        phases::mark(dev, "residual adds")?;

        let xn = self.rms(&x, &blk.post_norm)?.reshape((b * t, h))?;
        phases::mark(dev, "norms")?;
        if let Some(r) = rec.as_deref_mut() {
            r.record_shared(&[LinearKind::Gate, LinearKind::Up], &xn)?;
        }
        let gate = lin(LinearKind::Gate).forward(&xn)?;
        let up = lin(LinearKind::Up).forward(&xn)?;
        phases::mark(dev, "gate, up projections")?;
        let act = if self.differentiable {
            (gate.silu()? * up)?
        } else {
            super::kernels::silu_mul(&gate, &up)?
        };
        phases::mark(dev, "silu(gate)·up")?;
        if let Some(r) = rec {
            r.record_shared(&[LinearKind::Down], &act)?;
        }
        if stats_only {
            return Ok(None);
        }
        let mlp = lin(LinearKind::Down).forward(&act)?.reshape((b, t, h))?;
        phases::mark(dev, "down projection")?;
        let y = self.residual(&x, &mlp)?;
        phases::mark(dev, "residual adds")?;
        Ok(Some(y))
    }

    /// Attention with repeated kv heads and full [t, s] scores, through candle's ops where
    /// a gradient graph or a half dtype needs them: q [b, heads, t, d], k and v [b, kv, s,
    /// d] → [b·t, heads·d].
    fn attention(&self, q: Tensor, k: Tensor, v: Tensor, mask: &Tensor) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, _, t, hd) = q.dims4()?;
        let groups = cfg.num_heads / cfg.num_kv_heads;
        let k = candle_transformers::utils::repeat_kv(k, groups)?;
        let v = candle_transformers::utils::repeat_kv(v, groups)?;
        let scale = 1.0 / (hd as f64).sqrt();
        phases::mark(&self.device, "attention: kv heads repeated")?;
        let raw = super::matmul::matmul(&q, &k.t()?)?;
        phases::mark(&self.device, "attention: q·kᵀ")?;
        let wide = wide_dtype(self.dtype);
        let probs = if self.differentiable {
            let scores = (raw * scale)?.to_dtype(wide)?.broadcast_add(mask)?;
            candle_nn::ops::softmax(&scores, D::Minus1)?.to_dtype(self.dtype)?
        } else {
            super::kernels::masked_softmax(&raw, scale, mask, wide)?
        };
        phases::mark(&self.device, "attention: masked softmax")?;
        let ctx = super::matmul::matmul(&probs, &v)?;
        phases::mark(&self.device, "attention: probabilities·v")?;
        let ctx = ctx.transpose(1, 2)?.reshape((b * t, cfg.num_heads * hd))?;
        phases::mark(&self.device, "layout copies")?;
        Ok(ctx)
    }

    /// Rough peak working memory of `windows` windows of `seqlen` tokens through one block
    /// and the head (scores and probabilities, MLP activations, hidden states, one slice of
    /// logits with the log-softmax's copies): what bounds how many batches run at once.
    pub fn batch_bytes(&self, windows: usize, seqlen: usize) -> usize {
        let c = &self.cfg;
        let el = self.dtype.size_in_bytes();
        let tokens = windows * seqlen;
        let attn = windows * c.num_heads * seqlen * seqlen * (el + 4) * 2;
        let mlp = tokens * c.intermediate_size * el * 3;
        let hidden = tokens * c.hidden_size * el * 4;
        let wide = wide_dtype(self.dtype);
        let logits =
            self.head_slice_rows(wide).min(seqlen) * c.vocab_size * wide.size_in_bytes() * 4;
        attn + mlp + hidden + logits
    }

    /// Positions per slice when the head's logits are computed a slice at a time (the
    /// perplexity's losses, the gradient pass's head): `HEAD_SLICE_BYTES` of logits in
    /// `dtype`, at least `HEAD_SLICE_MIN_ROWS`.
    pub fn head_slice_rows(&self, dtype: DType) -> usize {
        let width = self.cfg.vocab_size * dtype.size_in_bytes();
        (HEAD_SLICE_BYTES / width.max(1)).max(HEAD_SLICE_MIN_ROWS)
    }

    /// Final norm and LM head: hidden [batch, seq, hidden] → logits [batch, seq, vocab].
    pub fn head(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let xn = self.rms(x, &self.norm)?.reshape((b * t, h))?;
        Ok(super::matmul::matmul(&xn, &self.lm_head.t()?)?.reshape((b, t, self.cfg.vocab_size))?)
    }

    /// Clean full-sequence forward: logits for every position, no state kept.
    /// With `rec`, the Wanda statistics of every linear input are accumulated.
    pub fn forward(&self, ids: &Tensor, rec: Option<&mut [BlockStats]>) -> Result<Tensor> {
        let x = self.embed(ids)?;
        phases::mark(&self.device, "embedding")?;
        let x = self.run_blocks(x, 0, self.blocks.len(), rec, |_, _| {})?;
        let y = self.head(&x)?;
        phases::mark(&self.device, "final norm and head")?;
        Ok(y)
    }

    /// Blocks `from..to` over hidden states `x` (the state entering block `from`), exactly as
    /// `forward` runs them. `at(b, x)` sees the state entering each block b in from+1..=to.
    /// `rec` accumulates the Wanda statistics of blocks from..to (indexed by block).
    pub fn blocks_forward(
        &self,
        x: Tensor,
        from: usize,
        to: usize,
        rec: Option<&mut [BlockStats]>,
        at: impl FnMut(usize, &Tensor),
    ) -> Result<Tensor> {
        self.run_blocks(x, from, to, rec, at)
    }

    /// The one block loop: rotary tables and causal masks (one per attention window) are
    /// built once per call and shared by the blocks.
    fn run_blocks(
        &self,
        mut x: Tensor,
        from: usize,
        to: usize,
        mut rec: Option<&mut [BlockStats]>,
        mut at: impl FnMut(usize, &Tensor),
    ) -> Result<Tensor> {
        let (_, t, _) = x.dims3()?;
        let rope = self.rope_tables(t)?;
        let mut masks: HashMap<Option<usize>, Tensor> = HashMap::new();
        for i in from..to {
            let w = self.blocks[i].window;
            let mask = match masks.entry(w) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(causal_mask(t, w, wide_dtype(self.dtype), &self.device)?)
                }
            };
            let r = rec.as_deref_mut().map(|s| &mut s[i]);
            x = self.block_forward_with(i, &x, &rope, mask, r, None)?;
            at(i + 1, &x);
        }
        Ok(x)
    }

    /// What block `i` computes with: each linear's weight tensor and mask. Two equal
    /// signatures compute the same function (norms never change after loading).
    pub fn block_signature(&self, i: usize) -> BlockSignature {
        BlockSignature(
            self.blocks[i]
                .linears
                .iter()
                .map(|l| (l.origin(), l.mask().cloned()))
                .collect(),
        )
    }

    /// x + y; without a gradient graph, in parallel where candle would add half types in
    /// one thread (the same bits).
    fn residual(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        if self.differentiable {
            return Ok((x + y)?);
        }
        super::half_kernels::add(x, y)
    }

    /// RMSNorm as Hugging Face computes it: in f32 (or wider), cast back, then scale.
    fn rms(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        if !self.differentiable {
            if let Some(y) = super::norm::rms_norm_half(x, w, self.cfg.rms_norm_eps)? {
                return Ok(y);
            }
        }
        let xf = x.to_dtype(wide_dtype(x.dtype()))?;
        if xf.dtype() == x.dtype() {
            return super::norm::rms_norm(&xf, w, self.cfg.rms_norm_eps, self.differentiable);
        }
        let (y, _) = super::norm::normalized(&xf, self.cfg.rms_norm_eps, self.differentiable)?;
        Ok(y.to_dtype(x.dtype())?.broadcast_mul(w)?)
    }

    /// cos/sin tables [seq, head_dim/2] in the compute dtype, computed in f32 as HF does.
    pub fn rope_tables(&self, seq: usize) -> Result<(Tensor, Tensor)> {
        let inv = inv_freq(&self.cfg);
        let half = inv.len();
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for p in 0..seq {
            for f in &inv {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        // HF computes the tables in f32 and casts them to the activation dtype.
        let mk = |v: Vec<f32>| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, (seq, half), &self.device)?.to_dtype(self.dtype)?)
        };
        Ok((mk(cos)?, mk(sin)?))
    }
}

/// The dtype softmax and norms run in: f32 for half types, the dtype itself otherwise.
pub fn wide_dtype(dt: DType) -> DType {
    match dt {
        DType::F16 | DType::BF16 => DType::F32,
        d => d,
    }
}

/// Inverse rotary frequencies, following transformers' rope initialisers in f32.
pub fn inv_freq(cfg: &ModelConfig) -> Vec<f32> {
    let dim = cfg.head_dim;
    let base = cfg.rope_theta as f32;
    let plain: Vec<f32> = (0..dim / 2)
        .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
        .collect();
    match &cfg.rope_scaling {
        RopeScaling::None => plain,
        RopeScaling::Linear { factor } => plain.iter().map(|f| f / *factor as f32).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let (factor, lo, hi, old) = (
                *factor as f32,
                *low_freq_factor as f32,
                *high_freq_factor as f32,
                *original_max_position_embeddings as f32,
            );
            let low_wavelen = old / lo;
            let high_wavelen = old / hi;
            plain
                .iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    let scaled = if wavelen > low_wavelen { f / factor } else { f };
                    // HF: neither short (< high_wavelen) nor long (> low_wavelen).
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    if medium {
                        let smooth = (old / wavelen - lo) / (hi - lo);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    }
                })
                .collect()
        }
    }
}

/// Additive attention mask [seq, seq]: 0 where allowed, -inf elsewhere.
pub fn causal_mask(
    seq: usize,
    window: Option<usize>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut m = vec![0f32; seq * seq];
    for q in 0..seq {
        for k in 0..seq {
            let future = k > q;
            let too_far = window.is_some_and(|w| q >= k + w);
            if future || too_far {
                m[q * seq + k] = f32::NEG_INFINITY;
            }
        }
    }
    Ok(Tensor::from_vec(m, (seq, seq), device)?.to_dtype(dtype)?)
}

impl Decoder {
    /// Every tensor with its Hugging Face name, linear layers as masked (effective) weights
    /// made when they are written.
    /// Blocks are numbered by position, so a model with removed blocks exports densely.
    pub fn named_tensors(&self) -> Vec<(String, Stored<'_>)> {
        let t = |x: &Tensor| Stored::Tensor(x.clone());
        let mut out = vec![("model.embed_tokens.weight".to_string(), t(&self.embed))];
        for (b, blk) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{b}");
            out.push((format!("{p}.input_layernorm.weight"), t(&blk.input_norm)));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                t(&blk.post_norm),
            ));
            if let (Some(q), Some(k)) = (&blk.q_norm, &blk.k_norm) {
                out.push((format!("{p}.self_attn.q_norm.weight"), t(q)));
                out.push((format!("{p}.self_attn.k_norm.weight"), t(k)));
            }
            for (kind, lin) in LinearKind::ALL.iter().zip(&blk.linears) {
                out.push((format!("{p}.{}.weight", kind.path()), Stored::Linear(lin)));
                if let Some(bias) = lin.bias() {
                    out.push((format!("{p}.{}.bias", kind.path()), t(bias)));
                }
            }
        }
        out.push(("model.norm.weight".to_string(), t(&self.norm)));
        if !self.cfg.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), t(&self.lm_head)));
        }
        out
    }

    /// Bytes of every weight in the compute dtype, resident or streamed.
    pub fn weight_bytes(&self) -> usize {
        let bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        let mut n = bytes(&self.embed) + bytes(&self.norm);
        if !self.cfg.tie_word_embeddings {
            n += bytes(&self.lm_head);
        }
        for blk in &self.blocks {
            n += bytes(&blk.input_norm) + bytes(&blk.post_norm);
            n += blk
                .q_norm
                .iter()
                .chain(&blk.k_norm)
                .map(bytes)
                .sum::<usize>();
            for lin in &blk.linears {
                n += lin.out_features() * lin.in_features() * self.dtype.size_in_bytes();
                n += lin.bias().map_or(0, bytes);
            }
        }
        n
    }

    /// Drop whole blocks (depth pruning); the rest keep their order.
    pub fn remove_blocks(&mut self, remove: &[usize]) {
        let mut i = 0;
        self.blocks.retain(|_| {
            let keep = !remove.contains(&i);
            i += 1;
            keep
        });
        self.cfg.sliding_window = self.blocks.iter().map(|b| b.window).collect();
        self.cfg.num_layers = self.blocks.len();
        for (b, blk) in self.blocks.iter_mut().enumerate() {
            for (kind, lin) in LinearKind::ALL.iter().zip(blk.linears.iter_mut()) {
                lin.name = format!("model.layers.{b}.{}", kind.path());
            }
        }
    }

    pub fn linear_mut(&mut self, id: LinearId) -> &mut Linear {
        &mut self.blocks[id.block].linears[id.kind as usize]
    }

    /// Fraction of pruned weights over all linear layers of the blocks.
    pub fn global_sparsity(&self) -> f64 {
        let (pruned, total) = self.linear_counts();
        pruned as f64 / total.max(1) as f64
    }

    /// (pruned, all) weights of the blocks' linear layers.
    pub fn linear_counts(&self) -> (usize, usize) {
        let (mut pruned, mut total) = (0usize, 0usize);
        for id in self.linear_ids() {
            let l = self.linear(id);
            total += l.out_features() * l.in_features();
            pruned += l.mask().map_or(0, |m| m.pruned_count());
        }
        (pruned, total)
    }
}
