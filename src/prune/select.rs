//! Choosing which weights of one layer to prune, given a score per weight (low = prune).
//! Masks only grow: weights pruned before stay pruned and count toward the target.

use anyhow::{bail, ensure, Result};

use crate::model::Mask;

/// How many weights to prune within a layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Per output row, prune the lowest `floor(cols · s)` scores (Wanda's comparison group).
    Unstructured(f64),
    /// Keep the `n` highest of every `m` consecutive inputs of each row.
    NM { n: usize, m: usize },
}

use serde::{Deserialize, Serialize};

impl Pattern {
    pub fn validate(&self, cols: usize) -> Result<()> {
        match *self {
            Pattern::Unstructured(s) => {
                ensure!((0.0..1.0).contains(&s), "sparsity {s} is outside [0, 1)")
            }
            Pattern::NM { n, m } => {
                ensure!(n >= 1 && n < m, "N:M pattern {n}:{m} must have 1 <= N < M");
                ensure!(
                    cols.is_multiple_of(m),
                    "N:M pattern {n}:{m} needs the input size {cols} to be a multiple of {m}"
                );
            }
        }
        Ok(())
    }

    /// The fraction of weights the pattern prunes.
    pub fn sparsity(&self) -> f64 {
        match *self {
            Pattern::Unstructured(s) => s,
            Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
        }
    }
}

/// Parse "2:4" into an N:M pattern.
pub fn parse_nm(s: &str) -> Result<Pattern> {
    let Some((n, m)) = s.split_once(':') else {
        bail!("--nm {s}: expected N:M such as 2:4");
    };
    let (Ok(n), Ok(m)) = (n.trim().parse::<usize>(), m.trim().parse::<usize>()) else {
        bail!("--nm {s}: expected N:M with whole numbers, such as 2:4");
    };
    if n == 0 || n >= m {
        bail!("--nm {s}: N must be at least 1 and smaller than M");
    }
    Ok(Pattern::NM { n, m })
}

/// Stable ascending order of `idx` by score, ties by position (torch.sort(stable=True)).
fn sort_by_score(idx: &mut [usize], score: &[f32]) {
    idx.sort_by(|&a, &b| score[a].total_cmp(&score[b]).then(a.cmp(&b)));
}

/// An unsigned key ordered as `f32::total_cmp` orders the floats.
fn total_order_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Score then position, packed so that plain integer order is the stable sort's order.
fn packed_key(score: f32, col: usize) -> u64 {
    (u64::from(total_order_key(score)) << 32) | col as u64
}

/// The mask for `pattern` over a [rows, cols] score matrix, grown from `prior`.
pub fn select(
    score: &[f32],
    rows: usize,
    cols: usize,
    pattern: Pattern,
    prior: Option<&Mask>,
) -> Result<Mask> {
    ensure!(
        score.len() == rows * cols,
        "score has {} entries for a {rows}x{cols} layer",
        score.len()
    );
    pattern.validate(cols)?;
    let mut mask = match prior {
        Some(p) => {
            ensure!(
                p.rows() == rows && p.cols() == cols,
                "prior mask {}x{} does not fit {rows}x{cols}",
                p.rows(),
                p.cols()
            );
            p.clone()
        }
        None => Mask::empty(rows, cols),
    };
    match pattern {
        Pattern::Unstructured(s) => {
            let k = (cols as f64 * s) as usize;
            let mut keys: Vec<u64> = Vec::with_capacity(cols);
            for r in 0..rows {
                let row = &score[r * cols..(r + 1) * cols];
                let already = mask.pruned_in_row(r);
                if already >= k {
                    continue;
                }
                // The first k - already of the active weights in stable-sort order: a
                // selection, not a sort (the keys are distinct, so the set is the same).
                keys.clear();
                keys.extend(
                    (0..cols)
                        .filter(|&c| !mask.is_pruned(r, c))
                        .map(|c| packed_key(row[c], c)),
                );
                let take = k - already;
                if take < keys.len() {
                    keys.select_nth_unstable(take);
                }
                for &key in &keys[..take] {
                    mask.prune(r, (key & 0xFFFF_FFFF) as usize);
                }
            }
        }
        Pattern::NM { n, m } => {
            let drop = m - n;
            let mut idx: Vec<usize> = Vec::with_capacity(m);
            for r in 0..rows {
                for g in (0..cols).step_by(m) {
                    let already = (g..g + m).filter(|&c| mask.is_pruned(r, c)).count();
                    if already >= drop {
                        continue;
                    }
                    idx.clear();
                    idx.extend((g..g + m).filter(|&c| !mask.is_pruned(r, c)));
                    let row = &score[r * cols..(r + 1) * cols];
                    sort_by_score(&mut idx, row);
                    for &c in idx.iter().take(drop - already) {
                        mask.prune(r, c);
                    }
                }
            }
        }
    }
    Ok(mask)
}

/// One threshold for the whole layer, as the Wanda repository's magnitude baseline does:
/// prune every weight whose score is <= the value at index floor(numel · s) of the sorted scores.
pub fn select_layerwide(
    score: &[f32],
    rows: usize,
    cols: usize,
    s: f64,
    prior: Option<&Mask>,
) -> Result<Mask> {
    Pattern::Unstructured(s).validate(cols)?;
    let mut mask = prior.cloned().unwrap_or_else(|| Mask::empty(rows, cols));
    let mut sorted = score.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let k = (score.len() as f64 * s) as usize;
    if k == 0 {
        return Ok(mask);
    }
    let thresh = sorted[k.min(sorted.len() - 1)];
    for (i, v) in score.iter().enumerate() {
        if *v <= thresh {
            mask.prune(i / cols, i % cols);
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| ((i * 7919) % 1013) as f32)
            .collect()
    }

    #[test]
    fn every_row_prunes_exactly_its_share() {
        let s = scores(5, 40);
        let m = select(&s, 5, 40, Pattern::Unstructured(0.3), None).unwrap();
        for r in 0..5 {
            assert_eq!(m.pruned_in_row(r), 12);
            // Every pruned score is <= every kept score in the row.
            let max_pruned = (0..40)
                .filter(|&c| m.is_pruned(r, c))
                .map(|c| s[r * 40 + c])
                .fold(f32::MIN, f32::max);
            let min_kept = (0..40)
                .filter(|&c| !m.is_pruned(r, c))
                .map(|c| s[r * 40 + c])
                .fold(f32::MAX, f32::min);
            assert!(max_pruned <= min_kept);
        }
    }

    #[test]
    fn nm_groups_keep_exactly_n() {
        let s = scores(3, 16);
        let m = select(&s, 3, 16, Pattern::NM { n: 2, m: 4 }, None).unwrap();
        for r in 0..3 {
            for g in (0..16).step_by(4) {
                assert_eq!((g..g + 4).filter(|&c| m.is_pruned(r, c)).count(), 2);
            }
        }
        let m48 = select(&s, 3, 16, Pattern::NM { n: 4, m: 8 }, None).unwrap();
        assert_eq!(m48.pruned_count(), 3 * 8);
    }

    #[test]
    fn masks_only_grow() {
        let s = scores(4, 50);
        let a = select(&s, 4, 50, Pattern::Unstructured(0.2), None).unwrap();
        // Different scores at the second step: the earlier choice must survive.
        let s2: Vec<f32> = s.iter().rev().copied().collect();
        let b = select(&s2, 4, 50, Pattern::Unstructured(0.5), Some(&a)).unwrap();
        assert!(a.is_subset_of(&b));
        for r in 0..4 {
            assert_eq!(b.pruned_in_row(r), 25);
        }
        // Asking for less than is already pruned keeps the prior.
        let c = select(&s2, 4, 50, Pattern::Unstructured(0.1), Some(&b)).unwrap();
        assert_eq!(c, b);
    }

    #[test]
    fn packed_keys_order_as_total_cmp_then_position() {
        let xs = [-2.5f32, -0.0, 0.0, 1e-30, 0.5, 0.5, 3.0, f32::INFINITY];
        for (i, a) in xs.iter().enumerate() {
            for (j, b) in xs.iter().enumerate() {
                let want = a.total_cmp(b).then(i.cmp(&j));
                assert_eq!(
                    packed_key(*a, i).cmp(&packed_key(*b, j)),
                    want,
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn ties_break_by_position() {
        let s = vec![1.0f32; 8];
        let m = select(&s, 1, 8, Pattern::Unstructured(0.5), None).unwrap();
        assert_eq!(m.pruned_indices(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(parse_nm("2-4").is_err());
        assert!(parse_nm("4:4").is_err());
        assert!(parse_nm("0:4").is_err());
        assert!(parse_nm("a:b").is_err());
        assert_eq!(parse_nm("2:4").unwrap(), Pattern::NM { n: 2, m: 4 });
        let s = scores(1, 10);
        assert!(select(&s, 1, 10, Pattern::NM { n: 2, m: 4 }, None).is_err());
        assert!(select(&s, 1, 10, Pattern::Unstructured(1.0), None).is_err());
        assert!(select(&s, 1, 10, Pattern::Unstructured(-0.1), None).is_err());
    }

    #[test]
    fn layerwide_threshold_prunes_at_least_the_share() {
        // Distinct scores: every one <= the 51st lowest goes, 51 of 100 (the reference's
        // `<=` takes one more than the share).
        let s = scores(4, 25);
        let m = select_layerwide(&s, 4, 25, 0.5, None).unwrap();
        assert_eq!(m.pruned_count(), 51);
        let mut sorted = s.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        for (i, v) in s.iter().enumerate() {
            assert_eq!(m.is_pruned(i / 25, i % 25), *v <= sorted[50], "weight {i}");
        }
    }
}
