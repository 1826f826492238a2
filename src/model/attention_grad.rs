//! The backward of `attention::tiled` (CPU, f32), tile by tile as its forward runs: each
//! tile of query rows recomputes its probabilities from q and k over the keys its mask
//! rows allow, then takes dP = dO·vᵀ, dS = P ∘ (dP − Σ dP ∘ P) · scale, dq = dS·k and adds
//! Pᵀ·dO and dSᵀ·q into dv and dk. Neither P nor dP ever has the window's [T, T] shape.
//! One task per (batch, kv head) owns that head's dk and dv and the dq of the query heads
//! that share it, and sums their tiles in a fixed order, so results do not depend on the
//! thread count.

use anyhow::{bail, Result};
use candle_core::Tensor;
use rayon::prelude::*;

use super::attention::{gemm_f32, row_ends, TILE};
use super::kernels::{fused, softmax_row, storage_f32};

/// Gradients of q [b, heads, t, d], k and v [b, kv, s, d] for the forward
/// `attention::tiled(q, k, v, mask, scale)`, given `dctx`, the gradient of its output
/// [b, t, heads · d]. None when the inputs are not CPU f32.
pub(super) fn tiled_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
    dctx: &Tensor,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    if ![q, k, v, mask, dctx].iter().all(|t| fused(t)) {
        return Ok(None);
    }
    let (b, heads, t, d) = q.dims4()?;
    let (_, kv, s, _) = k.dims4()?;
    if k.dims() != [b, kv, s, d]
        || v.dims() != k.dims()
        || mask.dims() != [t, s]
        || dctx.elem_count() != b * t * heads * d
        || heads % kv != 0
    {
        bail!(
            "attention backward: q {:?}, k {:?}, v {:?}, mask {:?}, dctx {:?} do not fit",
            q.dims(),
            k.dims(),
            v.dims(),
            mask.dims(),
            dctx.dims()
        );
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let (mask, dctx) = (mask.contiguous()?, dctx.contiguous()?);
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (ms, ml) = mask.storage_and_layout();
    let (ds, dl) = dctx.storage_and_layout();
    let qv = storage_f32(&qs, ql, "queries")?;
    let kvv = storage_f32(&ks, kl, "keys")?;
    let vv = storage_f32(&vs, vl, "values")?;
    let mv = storage_f32(&ms, ml, "attention mask")?;
    let dov = storage_f32(&ds, dl, "context gradient")?;
    let ends = row_ends(mv, s);
    let g = heads / kv;
    let row = heads * d;
    let scale = scale as f32;
    let mut dq = vec![0f32; b * heads * t * d];
    let mut dk = vec![0f32; b * kv * s * d];
    let mut dv = vec![0f32; b * kv * s * d];
    dq.par_chunks_mut(g * t * d)
        .zip(dk.par_chunks_mut(s * d).zip(dv.par_chunks_mut(s * d)))
        .enumerate()
        .for_each_init(
            || (vec![0f32; TILE * s], vec![0f32; TILE * s], vec![0f32; s]),
            |(p, dp, raw), (task, (dq, (dk, dv)))| {
                let (bi, kh) = (task / kv, task % kv);
                let kp = &kvv[task * s * d..];
                let vp = &vv[task * s * d..];
                for j in 0..g {
                    let h = kh * g + j;
                    for r0 in (0..t).step_by(TILE) {
                        let rows = TILE.min(t - r0);
                        let keys = ends[r0..r0 + rows].iter().copied().max().unwrap_or(0);
                        if keys == 0 {
                            continue;
                        }
                        let qp = &qv[((bi * heads + h) * t + r0) * d..];
                        let dop = &dov[(bi * t + r0) * row + h * d..];
                        let dqp = &mut dq[(j * t + r0) * d..];
                        let (p, dp) = (&mut p[..rows * keys], &mut dp[..rows * keys]);
                        // SAFETY (every gemm below): each operand covers its rows and
                        // columns with the strides given inside live slices, and the
                        // destinations (p, dp, dv, dqp, dk) do not overlap the operands.
                        unsafe {
                            gemm_f32(
                                (rows, keys, d),
                                (p.as_mut_ptr(), keys, 1),
                                false,
                                (qp.as_ptr(), d, 1),
                                (kp.as_ptr(), 1, d),
                            );
                            gemm_f32(
                                (rows, keys, d),
                                (dp.as_mut_ptr(), keys, 1),
                                false,
                                (dop.as_ptr(), row, 1),
                                (vp.as_ptr(), 1, d),
                            );
                        }
                        for (i, (pr, dpr)) in
                            p.chunks_mut(keys).zip(dp.chunks_mut(keys)).enumerate()
                        {
                            let n = ends[r0 + i];
                            let m = &mv[(r0 + i) * s..(r0 + i) * s + n];
                            raw[..n].copy_from_slice(&pr[..n]);
                            softmax_row(&raw[..n], m, scale, &mut pr[..n]);
                            pr[n..].fill(0.0);
                            let dot: f32 = pr[..n].iter().zip(&dpr[..n]).map(|(a, b)| a * b).sum();
                            for (x, pv) in dpr[..n].iter_mut().zip(&pr[..n]) {
                                *x = (*x - dot) * pv * scale;
                            }
                            dpr[n..].fill(0.0);
                        }
                        unsafe {
                            gemm_f32(
                                (keys, d, rows),
                                (dv.as_mut_ptr(), d, 1),
                                true,
                                (p.as_ptr(), 1, keys),
                                (dop.as_ptr(), row, 1),
                            );
                            gemm_f32(
                                (rows, d, keys),
                                (dqp.as_mut_ptr(), d, 1),
                                false,
                                (dp.as_ptr(), keys, 1),
                                (kp.as_ptr(), d, 1),
                            );
                            gemm_f32(
                                (keys, d, rows),
                                (dk.as_mut_ptr(), d, 1),
                                true,
                                (dp.as_ptr(), 1, keys),
                                (qp.as_ptr(), d, 1),
                            );
                        }
                    }
                }
            },
        );
    let dev = q.device();
    Ok(Some((
        Tensor::from_vec(dq, (b, heads, t, d), dev)?,
        Tensor::from_vec(dk, (b, kv, s, d), dev)?,
        Tensor::from_vec(dv, (b, kv, s, d), dev)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decoder::causal_mask;
    use crate::model::testing::{bits, hashed, max_abs_diff};
    use candle_core::{DType, Device, Var, D};

    /// Eager attention in f64 candle ops, differentiated by candle's autograd.
    fn reference(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Tensor,
        scale: f64,
        dctx: &Tensor,
    ) -> [Tensor; 3] {
        let f = |t: &Tensor| Var::from_tensor(&t.to_dtype(DType::F64).unwrap()).unwrap();
        let (qv, kv, vv) = (f(q), f(k), f(v));
        let (b, heads, t, d) = q.dims4().unwrap();
        let g = heads / k.dim(1).unwrap();
        let kr = candle_transformers::utils::repeat_kv(kv.as_tensor().clone(), g).unwrap();
        let vr = candle_transformers::utils::repeat_kv(vv.as_tensor().clone(), g).unwrap();
        let scores = (qv.as_tensor().matmul(&kr.t().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(&mask.to_dtype(DType::F64).unwrap())
            .unwrap();
        let p = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        let ctx = p
            .matmul(&vr)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, heads * d))
            .unwrap();
        let loss = (ctx * dctx.to_dtype(DType::F64).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        [qv, kv, vv].map(|x| grads.get(x.as_tensor()).unwrap().clone())
    }

    // Against autograd on eager attention: causal windows shorter and longer than a tile
    // and not a multiple of it, grouped kv heads, a sliding window.
    #[test]
    fn tiled_gradients_match_autograd() {
        let cases = [
            (2, 4, 2, 150, 8, None),
            (1, 2, 2, 13, 16, None),
            (1, 4, 1, 200, 8, Some(70)),
            (1, 2, 1, 64, 32, None),
        ];
        for (n, &(b, heads, kv, t, d, window)) in cases.iter().enumerate() {
            let sd = 5 * n as u64;
            let q = hashed(&[b, heads, t, d], sd, -1.0, 1.0);
            let k = hashed(&[b, kv, t, d], sd + 1, -1.0, 1.0);
            let v = hashed(&[b, kv, t, d], sd + 2, -1.0, 1.0);
            let dctx = hashed(&[b, t, heads * d], sd + 3, -1.0, 1.0);
            let mask = causal_mask(t, window, DType::F32, &Device::Cpu).unwrap();
            let scale = 1.0 / (d as f64).sqrt();
            let (dq, dk, dv) = tiled_backward(&q, &k, &v, &mask, scale, &dctx)
                .unwrap()
                .unwrap();
            let want = reference(&q, &k, &v, &mask, scale, &dctx);
            for (name, got, want) in [
                ("dq", dq, &want[0]),
                ("dk", dk, &want[1]),
                ("dv", dv, &want[2]),
            ] {
                assert_eq!(got.dims(), want.dims(), "case {n} {name}");
                let err = max_abs_diff(&got, want);
                let size = want
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                assert!(
                    err <= 1e-5 * size.max(1.0),
                    "case {n} {name}: {err:e} of {size:e}"
                );
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (q, k, v) = (
            hashed(&[2, 4, 100, 8], 1, -1.0, 1.0),
            hashed(&[2, 2, 100, 8], 2, -1.0, 1.0),
            hashed(&[2, 2, 100, 8], 3, -1.0, 1.0),
        );
        let dctx = hashed(&[2, 100, 32], 4, -1.0, 1.0);
        let mask = causal_mask(100, None, DType::F32, &Device::Cpu).unwrap();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                tiled_backward(&q, &k, &v, &mask, 0.3, &dctx)
                    .unwrap()
                    .unwrap()
            })
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(bits(&a.0), bits(&b.0));
        assert_eq!(bits(&a.1), bits(&b.1));
        assert_eq!(bits(&a.2), bits(&b.2));
    }
}
