//! A pruning mask stored as bits: one bit per weight, set when the weight is pruned.

use anyhow::{ensure, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    rows: usize,
    cols: usize,
    bits: Vec<u64>,
}

impl Mask {
    pub fn empty(rows: usize, cols: usize) -> Self {
        Mask {
            rows,
            cols,
            bits: vec![0; (rows * cols).div_ceil(64)],
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn is_pruned(&self, row: usize, col: usize) -> bool {
        let i = row * self.cols + col;
        self.bits[i / 64] >> (i % 64) & 1 == 1
    }

    #[inline]
    pub fn prune(&mut self, row: usize, col: usize) {
        let i = row * self.cols + col;
        self.bits[i / 64] |= 1 << (i % 64);
    }

    pub fn pruned_count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn pruned_in_row(&self, row: usize) -> usize {
        (0..self.cols).filter(|&c| self.is_pruned(row, c)).count()
    }

    pub fn sparsity(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.pruned_count() as f64 / self.len() as f64
        }
    }

    /// True when every weight pruned here is pruned in `later` too (masks only grow).
    pub fn is_subset_of(&self, later: &Mask) -> bool {
        self.rows == later.rows
            && self.cols == later.cols
            && self.bits.iter().zip(&later.bits).all(|(a, b)| a & !b == 0)
    }

    /// Row-major keep flags (1 kept, 0 pruned), the condition the decoder selects with.
    pub fn keep_flags(&self) -> Vec<u8> {
        (0..self.len())
            .map(|i| (self.bits[i / 64] >> (i % 64) & 1 == 0) as u8)
            .collect()
    }

    /// `w` with pruned weights set to +0.0, as `W[mask] = 0` does in Wanda's and
    /// SparseGPT's code (a product with 0.0 would leave −0.0 where w was negative, and an
    /// export's bytes would then differ from theirs).
    pub fn apply(&self, w: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(w.len());
        for (chunk, word) in w.chunks(64).zip(&self.bits) {
            out.extend(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| if word >> j & 1 == 1 { 0.0 } else { x }),
            );
        }
        out
    }

    /// Flat row-major indices of pruned weights.
    pub fn pruned_indices(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.bits[i / 64] >> (i % 64) & 1 == 1)
            .collect()
    }

    pub fn from_pruned_indices(rows: usize, cols: usize, idx: &[usize]) -> Result<Mask> {
        let mut m = Mask::empty(rows, cols);
        for &i in idx {
            ensure!(
                i < rows * cols,
                "pruned index {i} outside a {rows}x{cols} mask"
            );
            m.bits[i / 64] |= 1 << (i % 64);
        }
        Ok(m)
    }

    pub fn words(&self) -> &[u64] {
        &self.bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_and_count() {
        let mut m = Mask::empty(3, 70);
        m.prune(0, 0);
        m.prune(2, 69);
        m.prune(1, 5);
        assert_eq!(m.pruned_count(), 3);
        assert!(m.is_pruned(2, 69) && !m.is_pruned(2, 68));
        let back = Mask::from_pruned_indices(3, 70, &m.pruned_indices()).unwrap();
        assert_eq!(back, m);
        let f = m.keep_flags();
        assert_eq!(f.iter().filter(|&&x| x == 0).count(), 3);
        assert_eq!(f[70 + 5], 0);
    }

    // The one-pass apply (f32 on CPU) and the tensor select (other dtypes and devices) give
    // the same bits: +0.0 for every pruned weight, negative or NaN, as `W[mask] = 0` does,
    // and every kept weight untouched, NaN included; across word boundaries and a partial
    // last word.
    #[test]
    fn apply_and_the_tensor_select_set_pruned_weights_to_positive_zero() {
        let (rows, cols) = (3, 70);
        let mut m = Mask::empty(rows, cols);
        for i in (0..rows * cols).filter(|i| i % 3 == 0 || i % 7 == 1) {
            m.prune(i / cols, i % cols);
        }
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| match i {
                5 | 6 => f32::NAN,
                _ => (i as f32 * 0.37).sin() * 3.0 - 0.5,
            })
            .collect();
        let dev = candle_core::Device::Cpu;
        let keep = candle_core::Tensor::from_vec(m.keep_flags(), (rows, cols), &dev).unwrap();
        let wt = candle_core::Tensor::from_vec(w.clone(), (rows, cols), &dev).unwrap();
        let selected: Vec<u32> = keep
            .where_cond(&wt, &wt.zeros_like().unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect();
        let got: Vec<u32> = m.apply(&w).iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, selected);
        assert!(m.is_pruned(0, 6) && !m.is_pruned(0, 5));
        for (i, (g, x)) in got.iter().zip(&w).enumerate() {
            if m.is_pruned(i / cols, i % cols) {
                assert_eq!(*g, 0.0f32.to_bits(), "weight {i} ({x})");
            } else {
                assert_eq!(*g, x.to_bits(), "weight {i}");
            }
        }
        assert!(w
            .iter()
            .enumerate()
            .any(|(i, x)| *x < 0.0 && m.is_pruned(i / cols, i % cols)));
    }

    #[test]
    fn subset_detects_unpruned_weight() {
        let mut a = Mask::empty(2, 2);
        a.prune(0, 1);
        let mut b = a.clone();
        b.prune(1, 1);
        assert!(a.is_subset_of(&b));
        assert!(!b.is_subset_of(&a));
    }
}
