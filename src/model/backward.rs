//! The gradient of one block, written out by hand: the forward is recomputed keeping what
//! the backward needs, then each op's derivative is applied in reverse. Same maths as
//! candle's autograd over `block_forward` (a test compares the two), without its per-node
//! zero-filled accumulators and graph: the gradient pass is the largest cost of a session
//! iteration. Used for f32 and f64 models; half types keep the autograd path.

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Tensor, Var, D};

use super::matmul::matmul;
use super::{Decoder, LinearKind};

/// RMS norm forward with what its backward needs: (x / rms(x)) · w and x / rms(x), 1 / rms(x).
struct Norm {
    xhat: Tensor,
    inv: Tensor,
}

impl Norm {
    /// `Decoder::rms` (f32/f64 only, so no widening), keeping x̂ and 1 / rms(x).
    fn forward(x: &Tensor, w: &Tensor, eps: f64) -> Result<(Tensor, Norm)> {
        let (xhat, rms) = super::norm::normalized(x, eps, false)?;
        let y = xhat.broadcast_mul(w)?;
        Ok((
            y,
            Norm {
                xhat,
                inv: rms.recip()?,
            },
        ))
    }

    /// dx = (g − x̂ · mean(g · x̂)) / rms(x), with g = dy · w.
    fn backward(&self, dy: &Tensor, w: &Tensor) -> Result<Tensor> {
        let g = dy.broadcast_mul(w)?;
        let dot = (&g * &self.xhat)?.mean_keepdim(D::Minus1)?;
        Ok((g - self.xhat.broadcast_mul(&dot)?)?.broadcast_mul(&self.inv)?)
    }
}

/// Rotary embedding's backward is the same rotation by the opposite angle.
fn rope_back(dy: &Tensor, cos: &Tensor, neg_sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope(
        &dy.contiguous()?,
        cos,
        neg_sin,
    )?)
}

/// [b, n·g, t, d] → [b, n, t, d]: the gradient of `repeat_kv` sums each group's copies.
fn sum_groups(x: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.clone());
    }
    let (b, h, t, d) = x.dims4()?;
    Ok(x.reshape((b, h / groups, groups, t, d))?.sum(2)?)
}

impl Decoder {
    /// Whether `block_grads` handles this model's dtype (half types use candle's autograd).
    pub fn manual_grads(&self) -> bool {
        matches!(self.dtype, DType::F32 | DType::F64)
    }

    /// For block `i` with input `x` [b, t, h] and `dy` = dL/d(block output): dL/dW of each
    /// linear (the weight the forward uses, masked), in `LinearKind::ALL` order, and dL/dx.
    /// `rope` and `mask` are `block_tables`; dL/dx only when `input_grad`.
    pub fn block_grads(
        &self,
        i: usize,
        x: &Tensor,
        dy: &Tensor,
        (rope, mask): &((Tensor, Tensor), Tensor),
        input_grad: bool,
    ) -> Result<(Vec<Tensor>, Option<Tensor>)> {
        ensure!(self.manual_grads(), "block_grads runs in f32 or f64");
        // No graph: a tracked input (a gradient from autograd) would make every tensor
        // below record its inputs and keep them alive, and take candle's slower matmul.
        let (x, dy) = (&x.detach(), &dy.detach());
        let blk = &self.blocks[i];
        let cfg = &self.cfg;
        let eps = cfg.rms_norm_eps;
        let (b, t, h) = x.dims3()?;
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let groups = nh / nkv;
        let lin = |k: LinearKind| &blk.linears[k as usize];
        let w: Vec<Tensor> = blk
            .linears
            .iter()
            .map(|l| l.weight())
            .collect::<Result<_>>()?;
        let wk = |k: LinearKind| &w[k as usize];
        let (cos, sin) = rope;
        let neg_sin = sin.neg()?;

        // Forward, as `Decoder::block_pass` computes it.
        let (xn1, n1) = Norm::forward(x, &blk.input_norm, eps)?;
        let xn1 = xn1.reshape((b * t, h))?;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let q0 = heads(lin(LinearKind::Q).forward(&xn1)?, nh)?;
        let k0 = heads(lin(LinearKind::K).forward(&xn1)?, nkv)?;
        let v = heads(lin(LinearKind::V).forward(&xn1)?, nkv)?;
        let qk_norm = match (&blk.q_norm, &blk.k_norm) {
            (Some(qn), Some(kn)) => Some((qn, kn)),
            _ => None,
        };
        let (q1, k1, norms) = match qk_norm {
            Some((qn, kn)) => {
                let (q1, nq) = Norm::forward(&q0, qn, eps)?;
                let (k1, nk) = Norm::forward(&k0, kn, eps)?;
                (q1, k1, Some((nq, nk)))
            }
            None => (q0, k0, None),
        };
        let q = candle_nn::rotary_emb::rope(&q1.contiguous()?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k1.contiguous()?, cos, sin)?;
        let scale = 1.0 / (hd as f64).sqrt();
        // CPU f32: the tiled attention, whose backward recomputes its probabilities tile by
        // tile; otherwise repeated kv heads and the full probabilities, kept for the backward.
        let (ctx, untiled) = match super::attention::tiled(&q, &k, &v, mask, scale)? {
            Some(ctx) => (ctx.reshape((b * t, nh * hd))?, None),
            None => {
                let kr = candle_transformers::utils::repeat_kv(k.clone(), groups)?;
                let vr = candle_transformers::utils::repeat_kv(v.clone(), groups)?;
                let p = super::kernels::masked_softmax(
                    &matmul(&q, &kr.t()?)?,
                    scale,
                    mask,
                    self.dtype,
                )?;
                let ctx = matmul(&p, &vr)?
                    .transpose(1, 2)?
                    .reshape((b * t, nh * hd))?;
                (ctx, Some((p, kr, vr)))
            }
        };
        let x2 = (x + lin(LinearKind::O).forward(&ctx)?.reshape((b, t, h))?)?;
        let (xn2, n2) = Norm::forward(&x2, &blk.post_norm, eps)?;
        let xn2 = xn2.reshape((b * t, h))?;
        let gate = lin(LinearKind::Gate).forward(&xn2)?;
        let up = lin(LinearKind::Up).forward(&xn2)?;
        let sig = candle_nn::ops::sigmoid(&gate)?;
        let silu = (&gate * &sig)?;
        let act = (&silu * &up)?;

        // Backward. dW = dYᵀ · X for y = x Wᵀ; dX = dY · W.
        let dw = |dy: &Tensor, x: &Tensor| matmul(&dy.t()?, x);
        let dout = dy.reshape((b * t, h))?;
        let d_down = dw(&dout, &act)?;
        let dact = matmul(&dout, wk(LinearKind::Down))?;
        // silu'(g) = σ(g) · (1 + g · (1 − σ(g))).
        let dsilu = (sig.affine(-1.0, 1.0)? * &gate)?.affine(1.0, 1.0)?;
        let dgate = ((&dact * &up)? * (&sig * dsilu)?)?;
        let dup = (&dact * &silu)?;
        let d_gate = dw(&dgate, &xn2)?;
        let d_up = dw(&dup, &xn2)?;
        let dxn2 = (matmul(&dgate, wk(LinearKind::Gate))? + matmul(&dup, wk(LinearKind::Up))?)?;
        let dx2 = (dy + n2.backward(&dxn2.reshape((b, t, h))?, &blk.post_norm)?)?;

        let dattn = dx2.reshape((b * t, h))?;
        let d_o = dw(&dattn, &ctx)?;
        let dctx = matmul(&dattn, wk(LinearKind::O))?;
        let (dq, dk, dv) = match &untiled {
            None => super::attention_grad::tiled_backward(&q, &k, &v, mask, scale, &dctx)?
                .context("the tiled attention's backward needs CPU f32 tensors")?,
            Some((p, kr, vr)) => {
                let dctx = dctx
                    .reshape((b, t, nh, hd))?
                    .transpose(1, 2)?
                    .contiguous()?;
                let dp = matmul(&dctx, &vr.t()?)?;
                let dv = sum_groups(&matmul(&p.t()?, &dctx)?, groups)?;
                // softmax: ds = p · (dp − Σ dp · p), then through the scale.
                let dot = (&dp * p)?.sum_keepdim(D::Minus1)?;
                let ds = ((dp.broadcast_sub(&dot)? * p)? * scale)?;
                let dq = matmul(&ds, kr)?;
                let dk = sum_groups(&matmul(&ds.t()?, &q)?, groups)?;
                (dq, dk, dv)
            }
        };
        let dq = rope_back(&dq, cos, &neg_sin)?;
        let dk = rope_back(&dk, cos, &neg_sin)?;
        let (dq, dk) = match (norms, qk_norm) {
            (Some((nq, nk)), Some((qn, kn))) => (nq.backward(&dq, qn)?, nk.backward(&dk, kn)?),
            _ => (dq, dk),
        };
        let flat = |d: Tensor, n: usize| -> Result<Tensor> {
            Ok(d.transpose(1, 2)?.contiguous()?.reshape((b * t, n * hd))?)
        };
        let (dq, dk, dv) = (flat(dq, nh)?, flat(dk, nkv)?, flat(dv, nkv)?);
        let grads = vec![
            dw(&dq, &xn1)?,
            dw(&dk, &xn1)?,
            dw(&dv, &xn1)?,
            d_o,
            d_gate,
            d_up,
            d_down,
        ];
        if !input_grad {
            return Ok((grads, None));
        }
        let dxn1 = ((matmul(&dq, wk(LinearKind::Q))? + matmul(&dk, wk(LinearKind::K))?)?
            + matmul(&dv, wk(LinearKind::V))?)?;
        let dx = (dx2 + n1.backward(&dxn1.reshape((b, t, h))?, &blk.input_norm)?)?;
        Ok((grads, Some(dx)))
    }

    /// d(scale · Σ window losses)/dx for the last hidden states `x` [b, t, h] of windows
    /// `ids` [b, t], the loss being `eval::window_loss` of `head(x)`: the mean next-token
    /// cross-entropy over the t − 1 shifted targets. Its logits gradient is
    /// (softmax − one-hot) · scale / (t − 1), zero at the last position. Computed over
    /// slices of positions (`Decoder::head_slice_rows`), as the perplexity is: one 2048-token
    /// window's logits at Qwen3's vocabulary are 1.2 GB, and this held four such buffers.
    pub fn head_grad(&self, x: &Tensor, ids: &Tensor, scale: f64) -> Result<Tensor> {
        self.head_grad_in_rows(x, ids, scale, self.head_slice_rows(self.dtype))
    }

    /// `head_grad` with the logits of at most `rows` positions at a time (at least
    /// `HEAD_SLICE_MIN_ROWS`, in slices of nearly equal size). Each row's gradient depends
    /// on that row alone.
    fn head_grad_in_rows(
        &self,
        x: &Tensor,
        ids: &Tensor,
        scale: f64,
        rows: usize,
    ) -> Result<Tensor> {
        ensure!(self.manual_grads(), "head_grad runs in f32 or f64");
        let x = x.detach();
        let (b, t, h) = x.dims3()?;
        ensure!(t > 1, "a window needs two tokens for a next-token loss");
        let (xn, norm) = Norm::forward(&x, &self.norm, self.cfg.rms_norm_eps)?;
        let xn = xn
            .narrow(1, 0, t - 1)?
            .contiguous()?
            .reshape((b * (t - 1), h))?;
        let target = ids
            .narrow(1, 1, t - 1)?
            .flatten_all()?
            .unsqueeze(1)?
            .contiguous()?;
        let head_t = self.lm_head.t()?;
        let mut dxn = Vec::new();
        for (r, n) in super::decoder::head_slices(b * (t - 1), rows) {
            let logits = matmul(&xn.narrow(0, r, n)?, &head_t)?;
            let p = candle_nn::ops::softmax_last_dim(&logits)?;
            let minus_one = Tensor::full(-1f64, (n, 1), &self.device)?.to_dtype(p.dtype())?;
            let at = target.narrow(0, r, n)?;
            let dlogits = (p.scatter_add(&at, &minus_one, 1)? * (scale / (t - 1) as f64))?;
            dxn.push(matmul(&dlogits, &self.lm_head)?);
        }
        let dxn = Tensor::cat(&dxn, 0)?.reshape((b, t - 1, h))?;
        let last = Tensor::zeros((b, 1, h), dxn.dtype(), &self.device)?;
        norm.backward(&Tensor::cat(&[&dxn, &last], 1)?, &self.norm)
    }

    /// `block_grads` by candle's autograd, on a decoder from `with_block_grad_vars(i)`
    /// whose block-`i` linears are `vars`.
    pub fn block_grads_autograd(
        &self,
        vars: &[Var],
        i: usize,
        x: &Tensor,
        dy: &Tensor,
        input_grad: bool,
    ) -> Result<(Vec<Tensor>, Option<Tensor>)> {
        let x = Var::from_tensor(x)?;
        let out = self.block_forward(i, x.as_tensor(), None)?;
        let grads = (out * dy)?.sum_all()?.backward()?;
        let gw: Vec<Tensor> = vars
            .iter()
            .map(|v| match grads.get(v.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => v.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<_>>()?;
        let gx = input_grad
            .then(|| {
                grads
                    .get(x.as_tensor())
                    .cloned()
                    .with_context(|| format!("no gradient reached the input of block {i}"))
            })
            .transpose()?;
        Ok((gw, gx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{random::random_decoder, testing::bits, ModelConfig};
    use candle_core::Device;

    fn cfg(model_type: &str, extra: serde_json::Value) -> ModelConfig {
        let mut v = serde_json::json!({
            "model_type": model_type, "vocab_size": 40, "hidden_size": 16,
            "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "max_position_embeddings": 64
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        ModelConfig::from_json(&v.to_string()).unwrap()
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
        let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
        let scale = b.abs().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max(0).unwrap();
        diff.to_scalar::<f64>().unwrap() / scale.max(1e-30)
    }

    #[test]
    fn hand_written_head_gradient_matches_autograd() {
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
            let c = cfg("qwen3", serde_json::json!({"head_dim": 8}));
            let d = random_decoder(&c, 3, dtype, &Device::Cpu).unwrap();
            let x = Tensor::randn(0f64, 1.0, (2, 7, c.hidden_size), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let ids = Tensor::new(
                &[[1u32, 5, 9, 2, 39, 0, 7], [3, 3, 8, 1, 2, 6, 4]],
                &Device::Cpu,
            )
            .unwrap();
            let fast = d.head_grad(&x, &ids, 0.25).unwrap();
            let v = Var::from_tensor(&x).unwrap();
            let dd = d.differentiable();
            let loss = crate::eval::ppl::window_loss(&dd.head(v.as_tensor()).unwrap(), &ids)
                .unwrap()
                .sum_all()
                .unwrap();
            let g = (loss * 0.25).unwrap().backward().unwrap();
            let e = max_rel(&fast, g.get(v.as_tensor()).unwrap());
            assert!(e < tol, "{dtype:?}: {e:e}");
        }
    }

    // Slices of positions give the bits of one product over all of them.
    #[test]
    fn head_gradient_in_slices_keeps_the_bits() {
        for dtype in [DType::F64, DType::F32] {
            let c = cfg("qwen3", serde_json::json!({"head_dim": 8}));
            let d = random_decoder(&c, 3, dtype, &Device::Cpu).unwrap();
            let x = Tensor::randn(0f64, 1.0, (2, 40, c.hidden_size), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let v: Vec<u32> = (0..80u32)
                .map(|i| (i * 7 + 3) % c.vocab_size as u32)
                .collect();
            let ids = Tensor::from_vec(v, (2, 40), &Device::Cpu).unwrap();
            let whole = d.head_grad_in_rows(&x, &ids, 0.25, usize::MAX).unwrap();
            // 78 positions: 5, 4, 3 and 2 slices.
            for rows in [1, 20, 26, 39] {
                let sliced = d.head_grad_in_rows(&x, &ids, 0.25, rows).unwrap();
                assert_eq!(bits(&sliced), bits(&whole), "{dtype:?}, {rows} rows");
            }
            assert_eq!(bits(&d.head_grad(&x, &ids, 0.25).unwrap()), bits(&whole));
        }
    }

    /// The hand-written gradients against candle's autograd, every architecture's branch:
    /// q/k norms (qwen3), biases (qwen2), grouped heads, a sliding window (mistral), a
    /// masked layer, in f64 (tight) and f32.
    #[test]
    fn hand_written_block_gradients_match_autograd() {
        let models = [
            ("qwen3", serde_json::json!({"head_dim": 8})),
            ("qwen2", serde_json::json!({})),
            ("llama", serde_json::json!({"num_key_value_heads": 4})),
            ("mistral", serde_json::json!({"sliding_window": 5})),
        ];
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
            for (ty, extra) in &models {
                let c = cfg(ty, extra.clone());
                let mut d = random_decoder(&c, 7, dtype, &Device::Cpu).unwrap();
                // Prune some of block 1's gate so a masked weight is differentiated too.
                let id = d
                    .linear_ids()
                    .find(|i| i.block == 1 && i.kind == LinearKind::Gate);
                let id = id.unwrap();
                let (o, n) = (d.linear(id).out_features(), d.linear(id).in_features());
                let mut mask = crate::model::Mask::empty(o, n);
                for k in (0..o * n).step_by(3) {
                    mask.prune(k / n, k % n);
                }
                d.set_mask(id, Some(std::sync::Arc::new(mask))).unwrap();
                let t = 9;
                let x = Tensor::randn(0f64, 1.0, (2, t, c.hidden_size), &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let dy = Tensor::randn(0f64, 1.0, (2, t, c.hidden_size), &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                for b in 0..2 {
                    let tables = d.block_tables(b, &x).unwrap();
                    let (gw, gx) = d.block_grads(b, &x, &dy, &tables, true).unwrap();
                    let (bd, vars) = d.with_block_grad_vars(b).unwrap();
                    let (rw, rx) = bd.block_grads_autograd(&vars, b, &x, &dy, true).unwrap();
                    assert_eq!((gw.len(), rw.len()), (7, 7));
                    for (k, (a, r)) in gw.iter().zip(&rw).enumerate() {
                        let e = max_rel(a, r);
                        assert!(e < tol, "{ty} {dtype:?} block {b} linear {k}: {e:e}");
                    }
                    let e = max_rel(gx.as_ref().unwrap(), rx.as_ref().unwrap());
                    assert!(e < tol, "{ty} {dtype:?} block {b} input: {e:e}");
                }
            }
        }
    }
}
