//! Matrix products for the graph-free forward on CPU in f32: the gemm call candle makes,
//! with the same arguments (so the same bits), into an output buffer that is not first
//! filled with zeros. candle zero-fills every product's output although gemm overwrites
//! it; that memset was about 5% of one-shot Wanda. Anything else (another device or
//! dtype, an input that carries a gradient graph, an unusual layout) takes candle's matmul.

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use std::mem::{ManuallyDrop, MaybeUninit};

/// Elements between consecutive matrices of a batched operand, as candle's CPU matmul
/// reads its layout; None where candle would refuse the striding.
fn batch_skip(dims: &[usize], stride: &[usize], matrix: usize) -> Option<usize> {
    let rank = stride.len();
    match stride[..rank - 2] {
        [s1, s] if s1 == s * dims[1] => Some(s),
        [_, s] if dims[0] == 1 => Some(s),
        [s, _] if dims[1] == 1 => Some(s),
        [s] => Some(s),
        [] => Some(matrix),
        _ => None,
    }
}

struct MatMulF32;

impl CustomOp2 for MatMulF32 {
    fn name(&self) -> &'static str {
        "arborist-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (ad, bd) = (l1.dims(), l2.dims());
        let rank = ad.len();
        let (m, k, n) = (ad[rank - 2], ad[rank - 1], bd[rank - 1]);
        let batch: usize = ad[..rank - 2].iter().product();
        let lhs = &s1.as_slice::<f32>()?[l1.start_offset()..];
        let rhs = &s2.as_slice::<f32>()?[l2.start_offset()..];
        let (ls, rs) = (l1.stride(), l2.stride());
        let (Some(a_skip), Some(b_skip)) = (batch_skip(ad, ls, m * k), batch_skip(bd, rs, n * k))
        else {
            candle_core::bail!("matmul: unsupported striding {ls:?} x {rs:?}");
        };
        let c_skip = m * n;
        let total = batch * m * n;
        // A batch-invariant rhs stacks the lhs batches into one taller product, as candle does.
        let (steps, rows) = if b_skip == 0 && a_skip == m * k {
            (1, batch * m)
        } else {
            (batch, m)
        };
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        let mut dst: Vec<MaybeUninit<f32>> = Vec::with_capacity(total);
        // SAFETY: MaybeUninit needs no initialisation.
        unsafe { dst.set_len(total) };
        for step in 0..steps {
            let lhs_p = &lhs[step * a_skip..];
            let rhs_p = &rhs[step * b_skip..];
            let dst_p = &mut dst[step * c_skip..];
            // SAFETY: the layouts were checked as candle's matmul checks them; with
            // read_dst false gemm only writes the rows × n block at dst_p.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    k,
                    dst_p.as_mut_ptr() as *mut f32,
                    1,
                    n as isize,
                    false,
                    lhs_p.as_ptr(),
                    ls[rank - 1] as isize,
                    ls[rank - 2] as isize,
                    rhs_p.as_ptr(),
                    rs[rank - 1] as isize,
                    rs[rank - 2] as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                )
            }
        }
        // SAFETY: every element was written by gemm; MaybeUninit<f32> has f32's layout.
        let dst = unsafe {
            let mut d = ManuallyDrop::new(dst);
            Vec::from_raw_parts(d.as_mut_ptr() as *mut f32, d.len(), d.capacity())
        };
        let shape = Shape::from(&ad[..rank - 2]).extend(&[m, n]);
        Ok((CpuStorage::F32(dst), shape))
    }
}

/// a · b over the last two dimensions, batched over the others (as `Tensor::matmul`).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ad, bd) = (a.dims(), b.dims());
    let rank = ad.len();
    let fast = super::kernels::fused(a)
        && super::kernels::fused(b)
        && !a.track_op()
        && !b.track_op()
        && rank >= 2
        && bd.len() == rank
        && ad[rank - 1] == bd[rank - 2]
        && ad[..rank - 2] == bd[..rank - 2]
        && a.elem_count() > 0
        && b.elem_count() > 0
        && batch_skip(ad, a.stride(), 0).is_some()
        && batch_skip(bd, b.stride(), 0).is_some();
    if fast {
        return Ok(a.apply_op2_no_bwd(b, &MatMulF32)?);
    }
    Ok(a.matmul(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::bits;
    use candle_core::Device;

    fn t(shape: &[usize], seed: u32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    // The shapes the decoder multiplies: a linear (x · Wᵀ), attention scores (q · kᵀ) and
    // context (p · v), each against candle's own matmul, bit for bit.
    #[test]
    fn same_bits_as_candle_matmul() {
        let cases = [
            (t(&[37, 24], 1), t(&[40, 24], 2).t().unwrap()),
            (t(&[2, 3, 9, 8], 3), t(&[2, 3, 9, 8], 4).t().unwrap()),
            (t(&[2, 3, 9, 9], 5), t(&[2, 3, 9, 8], 6)),
            (t(&[1, 5, 7], 7), t(&[1, 7, 4], 8)),
        ];
        for (a, b) in cases {
            assert!(!a.track_op());
            let ours = matmul(&a, &b).unwrap();
            let theirs = a.matmul(&b).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert_eq!(
                bits(&ours),
                bits(&theirs),
                "{:?} x {:?}",
                a.dims(),
                b.dims()
            );
        }
        // Mismatched shapes get candle's error.
        assert!(matmul(&t(&[3, 4], 9), &t(&[5, 3], 9)).is_err());
    }
}
