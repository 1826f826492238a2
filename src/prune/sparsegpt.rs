//! SparseGPT (Frantar & Alistarh, 2023): prune a layer column block by column block and update the
//! kept weights with the inverse Hessian so the layer output moves as little as possible.
//! Follows IST-DASLab `SparseGPT.fasterprune`, computed in f64.

use anyhow::{anyhow, ensure, Result};
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Accum, Mat, MatRef, Par, Side};

use crate::model::Mask;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Fraction of weights pruned in every block of columns, in [0, 1).
    Sparsity(f64),
    /// Keep `n` of every `m` consecutive inputs in each row (prune `m - n`).
    NM { n: usize, m: usize },
}

#[derive(Debug, Clone)]
pub struct SparseGptResult {
    /// Row-major [rows, cols]; pruned weights are exactly 0.0.
    pub weight: Vec<f32>,
    pub mask: Mask,
}

/// Prunes `weight` (row-major [rows, cols], output x input) to `target` with the OBS update.
/// `gram` is row-major [cols, cols], the sum of x xᵀ over calibration tokens (scale is irrelevant:
/// damping is relative). Weights pruned in `prior` stay pruned and count toward the target.
#[allow(clippy::too_many_arguments)]
pub fn sparsegpt(
    weight: &[f32],
    rows: usize,
    cols: usize,
    gram: &[f64],
    target: &Target,
    prior: Option<&Mask>,
    percdamp: f64,
    blocksize: usize,
) -> Result<SparseGptResult> {
    let (nw, ng) = (weight.len(), gram.len());
    ensure!(
        nw == rows * cols,
        "weight has {nw} values, not {rows}x{cols}"
    );
    ensure!(ng == cols * cols, "gram has {ng} values, not {cols}x{cols}");
    let pshape = prior.map(|p| (p.rows(), p.cols()));
    ensure!(
        pshape.is_none_or(|s| s == (rows, cols)),
        "prior mask shape {pshape:?} differs from weight {rows}x{cols}"
    );
    match *target {
        Target::Sparsity(s) => ensure!((0.0..1.0).contains(&s), "sparsity {s} outside [0, 1)"),
        Target::NM { n, m } => {
            ensure!(n > 0 && n < m, "N:M target {n}:{m} needs 0 < n < m");
            ensure!(
                cols.is_multiple_of(m),
                "N:M {n}:{m}: {cols} input columns not divisible by {m}"
            );
        }
    }
    ensure!(
        (0.0..f64::INFINITY).contains(&percdamp),
        "percdamp {percdamp} must be finite and >= 0"
    );
    ensure!(blocksize > 0, "blocksize must be positive");
    ensure!(
        weight.iter().all(|x| x.is_finite()),
        "weight has non-finite values"
    );
    ensure!(
        gram.iter().all(|x| x.is_finite()),
        "gram has non-finite values"
    );

    let mut mask = prior.cloned().unwrap_or_else(|| Mask::empty(rows, cols));

    let mut h = Mat::<f64>::from_fn(cols, cols, |i, j| gram[i * cols + j]);
    let mut w = Mat::<f64>::from_fn(rows, cols, |r, c| weight[r * cols + c] as f64);
    // An input that never fires carries no information: drop its weights, keep H invertible.
    for i in 0..cols {
        if h[(i, i)] == 0.0 {
            h[(i, i)] = 1.0;
            for r in 0..rows {
                w[(r, i)] = 0.0;
            }
        }
    }
    let damp = percdamp * (0..cols).map(|i| h[(i, i)]).sum::<f64>() / cols.max(1) as f64;
    for i in 0..cols {
        h[(i, i)] += damp;
    }
    let par = faer::get_global_parallelism();
    let minv = inverse_reversed_cholesky(h, par)?;
    let hinv = minv.as_ref().reverse_rows_and_cols(); // upper U with H⁻¹ = UᵀU

    // N:M groups must not straddle blocks, so round the block up to a multiple of m.
    let bs = match *target {
        Target::NM { m, .. } => blocksize.div_ceil(m) * m,
        Target::Sparsity(_) => blocksize,
    };
    let mut e = vec![0.0f64; rows];
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + bs).min(cols);
        let bc = i2 - i1;
        let mut w1 = w.submatrix(0, i1, rows, bc).to_owned();
        let mut err1 = Mat::<f64>::zeros(rows, bc);
        let h1 = hinv.submatrix(i1, i1, bc, bc);
        if let Target::Sparsity(s) = *target {
            select_block(w1.as_ref(), h1, s, i1, &mut mask);
        }
        for i in 0..bc {
            if let Target::NM { n, m } = *target {
                if i.is_multiple_of(m) {
                    select_group(w1.as_ref(), h1, i..i + m, m - n, i1, &mut mask);
                }
            }
            // Column i becomes q (pruned entries exactly 0); the error moves to later columns.
            let d = h1[(i, i)];
            for (r, er) in e.iter_mut().enumerate() {
                *er = 0.0;
                if mask.is_pruned(r, i1 + i) {
                    *er = w1[(r, i)] / d;
                    w1[(r, i)] = 0.0;
                }
            }
            for j in i + 1..bc {
                let hij = h1[(i, j)];
                let col = w1.col_as_slice_mut(j);
                for (x, er) in col.iter_mut().zip(&e) {
                    *x -= er * hij;
                }
            }
            err1.col_as_slice_mut(i).copy_from_slice(&e);
        }
        w.submatrix_mut(0, i1, rows, bc).copy_from(&w1);
        if i2 < cols {
            faer::linalg::matmul::matmul(
                w.submatrix_mut(0, i2, rows, cols - i2),
                Accum::Add,
                &err1,
                hinv.submatrix(i1, i2, bc, cols - i2),
                -1.0,
                par,
            );
        }
        i1 = i2;
    }

    // Finished columns are never touched again, so pruned entries are still exactly 0.
    let weight = (0..rows * cols)
        .map(|k| w[(k / cols, k % cols)] as f32)
        .collect();
    Ok(SparseGptResult { weight, mask })
}

/// The reference's Hinv = `cholesky(cholesky_inverse(cholesky(H)), upper=True)`, the upper U with
/// H⁻¹ = UᵀU. With J the reversal and JHJ = MMᵀ, H = (JMJ)(JMJ)ᵀ, so U = J M⁻¹ J: one Cholesky and
/// one triangular inverse (half the n³ work of the reference, and no second factorisation to fail).
/// Returns M⁻¹; the caller views it reversed. H is dropped early: for wide layers each is ~1 GB.
fn inverse_reversed_cholesky(h: Mat<f64>, par: Par) -> Result<Mat<f64>> {
    let m = h
        .as_ref()
        .reverse_rows_and_cols()
        .llt(Side::Lower)
        .map_err(|e| {
            anyhow!("Hessian is not positive definite after damping ({e:?}); raise percdamp")
        })?;
    drop(h);
    let mut minv = Mat::zeros(m.L().nrows(), m.L().ncols());
    invert_lower_triangular(minv.as_mut(), m.L(), par);
    Ok(minv)
}

/// OBS saliency w² / [H⁻¹]ᵢᵢ² with the reference's Cholesky-factor diagonal.
#[inline]
fn score(w: f64, d: f64) -> f64 {
    w * w / (d * d)
}

/// Orders by score, then by index, so selections are deterministic and exact in count.
fn by_score(a: &(f64, usize), b: &(f64, usize)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// Unstructured: prune floor(numel · s) of the block at once; prior-pruned entries count first.
fn select_block(w1: MatRef<'_, f64>, h1: MatRef<'_, f64>, s: f64, i1: usize, mask: &mut Mask) {
    let (rows, bc) = (w1.nrows(), w1.ncols());
    let quota = ((rows * bc) as f64 * s) as usize;
    let mut already = 0;
    let mut cand = Vec::with_capacity(rows * bc);
    for r in 0..rows {
        for j in 0..bc {
            if mask.is_pruned(r, i1 + j) {
                already += 1;
            } else {
                cand.push((score(w1[(r, j)], h1[(j, j)]), r * bc + j));
            }
        }
    }
    let need = quota.saturating_sub(already).min(cand.len());
    if need == 0 {
        return;
    }
    if need < cand.len() {
        cand.select_nth_unstable_by(need - 1, by_score);
    }
    for &(_, f) in &cand[..need] {
        mask.prune(f / bc, i1 + f % bc);
    }
}

/// N:M: in each row prune the `k` lowest-scoring block columns of `group`, scored on the
/// already-updated weights as the reference does; prior-pruned entries count first.
fn select_group(
    w1: MatRef<'_, f64>,
    h1: MatRef<'_, f64>,
    group: std::ops::Range<usize>,
    k: usize,
    i1: usize,
    mask: &mut Mask,
) {
    let mut cand = Vec::with_capacity(group.len());
    for r in 0..w1.nrows() {
        cand.clear();
        let mut already = 0;
        for j in group.clone() {
            if mask.is_pruned(r, i1 + j) {
                already += 1;
            } else {
                cand.push((score(w1[(r, j)], h1[(j, j)]), j));
            }
        }
        let need = k.saturating_sub(already);
        cand.sort_by(by_score);
        for &(_, j) in cand.iter().take(need) {
            mask.prune(r, i1 + j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};

    type R = SparseGptResult;

    fn normal(rng: &mut StdRng, n: usize) -> Vec<f64> {
        let d = Normal::new(0.0, 1.0).unwrap();
        (0..n).map(|_| d.sample(rng)).collect()
    }

    /// Random weights [rows, cols] and the gram XᵀX of inputs X = Z·A [tokens, cols], whose
    /// features are correlated through the random mixing A.
    fn setup(seed: u64, tokens: usize, rows: usize, cols: usize) -> (Vec<f32>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let w = normal(&mut rng, rows * cols);
        let z = normal(&mut rng, tokens * cols);
        let a = normal(&mut rng, cols * cols);
        let mut g = vec![0.0; cols * cols];
        for zt in z.chunks(cols) {
            let x = |j: usize| (0..cols).map(|k| zt[k] * a[k * cols + j]).sum::<f64>();
            let x: Vec<f64> = (0..cols).map(x).collect();
            for (i, gi) in g.chunks_mut(cols).enumerate() {
                gi.iter_mut().zip(&x).for_each(|(v, xj)| *v += x[i] * xj);
            }
        }
        (w.iter().map(|&v| v as f32).collect(), g)
    }

    fn run(w: &[f32], rows: usize, g: &[f64], t: Target, p: Option<&Mask>, bs: usize) -> R {
        sparsegpt(w, rows, w.len() / rows, g, &t, p, 0.01, bs).unwrap()
    }

    /// ‖X Wᵀ − X W'ᵀ‖_F = sqrt(Σ_r d_r G d_rᵀ) with d = W − W', G = XᵀX.
    fn out_err(g: &[f64], w: &[f32], w2: &[f32], cols: usize) -> f64 {
        let d: Vec<f64> = w.iter().zip(w2).map(|(a, b)| (a - b) as f64).collect();
        let mut s = 0.0;
        for dr in d.chunks(cols) {
            for i in 0..cols {
                for j in 0..cols {
                    s += dr[i] * g[i * cols + j] * dr[j];
                }
            }
        }
        s.sqrt()
    }

    fn identity(n: usize, c: f64) -> Vec<f64> {
        let mut g = vec![0.0; n * n];
        g.iter_mut().step_by(n + 1).for_each(|v| *v = c);
        g
    }

    fn random_mask(seed: u64, rows: usize, cols: usize, p: f64) -> Mask {
        let mut rng = StdRng::seed_from_u64(seed);
        let idx: Vec<usize> = (0..rows * cols).filter(|_| rng.gen_bool(p)).collect();
        Mask::from_pruned_indices(rows, cols, &idx).unwrap()
    }

    fn count(m: &Mask, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> usize {
        rows.map(|r| cols.clone().filter(|&c| m.is_pruned(r, c)).count())
            .sum()
    }

    /// `w` with the weights pruned in `m` zeroed, no update.
    fn apply(w: &[f32], m: &Mask) -> Vec<f32> {
        let mut v = w.to_vec();
        m.pruned_indices().into_iter().for_each(|i| v[i] = 0.0);
        v
    }

    #[test]
    fn unstructured_prunes_exact_count_per_block() {
        let (rows, cols, bs) = (8, 100, 32);
        let (w, g) = setup(1, 128, rows, cols);
        for s in [0.0, 0.37, 0.5, 0.9] {
            let res = run(&w, rows, &g, Target::Sparsity(s), None, bs);
            let mut total = 0;
            for c0 in (0..cols).step_by(bs) {
                let c1 = (c0 + bs).min(cols);
                let want = ((rows * (c1 - c0)) as f64 * s) as usize;
                assert_eq!(count(&res.mask, 0..rows, c0..c1), want, "{s} {c0}");
                total += want;
            }
            assert_eq!(res.mask.pruned_count(), total);
            assert!((res.mask.sparsity() - s).abs() < 0.02);
            assert_eq!(apply(&res.weight, &res.mask), res.weight);
        }
    }

    #[test]
    fn nm_every_group_has_m_minus_n_pruned() {
        let (rows, cols) = (6, 48);
        let (w, g) = setup(2, 96, rows, cols);
        let prior = random_mask(20, rows, cols, 0.3);
        // Blocksize 10 is not a multiple of 4: groups must still align to columns 4k.
        for (n, m, bs) in [(2, 4, 128), (2, 4, 10), (1, 4, 16), (4, 8, 16)] {
            let res = run(&w, rows, &g, Target::NM { n, m }, None, bs);
            let rp = run(&w, rows, &g, Target::NM { n, m }, Some(&prior), bs);
            assert!(prior.is_subset_of(&rp.mask));
            for r in 0..rows {
                for c0 in (0..cols).step_by(m) {
                    let k = |mk: &Mask| count(mk, r..r + 1, c0..c0 + m);
                    assert_eq!(k(&res.mask), m - n, "{n}:{m} bs {bs} row {r} group {c0}");
                    assert_eq!(k(&rp.mask), (m - n).max(k(&prior)));
                }
            }
        }
    }

    /// A diagonal gram makes Hinv diagonal: no compensation, and the mask keeps the largest
    /// |w|·sqrt(H_jj + damp) per block (per group for N:M); plain magnitude for identity·c.
    #[test]
    fn diagonal_gram_means_scaled_magnitude_and_no_update() {
        let (rows, cols, bs) = (5, 40, 16);
        let (w, _) = setup(3, 1, rows, cols);
        for scaled in [false, true] {
            let d: Vec<f64> = (0..cols)
                .map(|j| if scaled { 1.0 + (j % 5) as f64 } else { 3.0 })
                .collect();
            let mut g = vec![0.0; cols * cols];
            (0..cols).for_each(|j| g[j * cols + j] = d[j]);
            let damp = 0.01 * d.iter().sum::<f64>() / cols as f64;
            let score = |i: usize| w[i].abs() as f64 * (d[i % cols] + damp).sqrt();
            let mut groups: Vec<(Vec<usize>, usize)> = vec![];
            for c0 in (0..cols).step_by(bs) {
                let c1 = (c0 + bs).min(cols);
                let v = (0..rows * cols)
                    .filter(|i| (c0..c1).contains(&(i % cols)))
                    .collect();
                groups.push((v, rows * (c1 - c0) / 2));
            }
            let quads = (0..rows * cols)
                .step_by(4)
                .map(|i| ((i..i + 4).collect(), 2))
                .collect();
            for (t, groups) in [
                (Target::Sparsity(0.5), groups),
                (Target::NM { n: 2, m: 4 }, quads),
            ] {
                let mut want = Mask::empty(rows, cols);
                for (mut v, k) in groups {
                    v.sort_by(|&a, &b| score(a).total_cmp(&score(b)));
                    v[..k].iter().for_each(|&i| want.prune(i / cols, i % cols));
                }
                let res = run(&w, rows, &g, t, None, bs);
                assert_eq!(res.mask, want, "{t:?} scaled {scaled}");
                for (i, (&a, &b)) in apply(&w, &want).iter().zip(&res.weight).enumerate() {
                    assert!((a - b).abs() <= 1e-6 * a.abs(), "{i}: {a} -> {b}");
                }
            }
        }
    }

    #[test]
    fn reconstruction_beats_magnitude_and_wanda() {
        let (rows, cols) = (32, 64);
        let (w, g) = setup(4, 256, rows, cols);
        let res = run(&w, rows, &g, Target::Sparsity(0.5), None, 16);
        let k = res.mask.pruned_count();
        assert_eq!(k, rows * cols / 2);
        let e_sgpt = out_err(&g, &w, &res.weight, cols);

        let mut order: Vec<usize> = (0..rows * cols).collect();
        order.sort_by(|&a, &b| w[a].abs().total_cmp(&w[b].abs()));
        let mag = Mask::from_pruned_indices(rows, cols, &order[..k]).unwrap();
        let e_mag = out_err(&g, &w, &apply(&w, &mag), cols);

        let mut wanda = Mask::empty(rows, cols);
        for r in 0..rows {
            let s = |c: usize| w[r * cols + c].abs() as f64 * g[c * cols + c].sqrt();
            let mut cs: Vec<usize> = (0..cols).collect();
            cs.sort_by(|&a, &b| s(a).total_cmp(&s(b)));
            cs[..cols / 2].iter().for_each(|&c| wanda.prune(r, c));
        }
        let e_wanda = out_err(&g, &w, &apply(&w, &wanda), cols);
        let e_own = out_err(&g, &w, &apply(&w, &res.mask), cols);
        assert!(e_sgpt < e_mag, "sparsegpt {e_sgpt} vs magnitude {e_mag}");
        assert!(e_sgpt < e_wanda, "sparsegpt {e_sgpt} vs wanda {e_wanda}");
        assert!(e_sgpt < 0.9 * e_own, "{e_sgpt} vs no update {e_own}");
    }

    /// Pruning a column prefix fixes nothing else before it, so the sequential OBS update must
    /// reach the least-squares optimum: (W' - W)·H vanishes on kept columns (H damped).
    #[test]
    fn prefix_pruning_reaches_least_squares_optimum() {
        let (rows, cols, p) = (3, 24, 10);
        let (w, g) = setup(7, 128, rows, cols);
        let idx: Vec<usize> = (0..rows * cols).filter(|i| i % cols < p).collect();
        let prior = Mask::from_pruned_indices(rows, cols, &idx).unwrap();
        let res = run(&w, rows, &g, Target::Sparsity(0.0), Some(&prior), 4);
        assert_eq!(res.mask, prior);
        let damp = 0.01 * (0..cols).map(|i| g[i * cols + i]).sum::<f64>() / cols as f64;
        for r in 0..rows {
            for c in p..cols {
                let h = |j: usize| g[j * cols + c] + if j == c { damp } else { 0.0 };
                let d = |j: usize| (res.weight[r * cols + j] - w[r * cols + j]) as f64;
                let grad: f64 = (0..cols).map(|j| d(j) * h(j)).sum();
                assert!(grad.abs() < 1e-5 * g[c * cols + c], "{r} {c}: {grad}");
            }
        }
    }

    #[test]
    fn prior_mask_stays_pruned_and_target_is_reached() {
        let (rows, cols, bs) = (8, 64, 32);
        let (w, g) = setup(5, 128, rows, cols);
        for p in [0.2, 0.7] {
            let prior = random_mask(50, rows, cols, p);
            let res = run(&w, rows, &g, Target::Sparsity(0.5), Some(&prior), bs);
            assert!(prior.is_subset_of(&res.mask), "prior {p}: unpruned");
            for c0 in (0..cols).step_by(bs) {
                let want = (rows * bs / 2).max(count(&prior, 0..rows, c0..c0 + bs));
                assert_eq!(count(&res.mask, 0..rows, c0..c0 + bs), want, "{p}");
            }
            assert_eq!(apply(&res.weight, &res.mask), res.weight);
        }
    }

    #[test]
    fn dead_input_gives_no_nan() {
        let (rows, cols) = (4, 16);
        let (w, mut g) = setup(6, 64, rows, cols);
        // Feature 3 always 0: its row and column of XᵀX vanish.
        (0..cols).for_each(|j| (g[3 * cols + j], g[j * cols + 3]) = (0.0, 0.0));
        // Undamped, the dead input alone would make H singular; unpruned, its weights must be 0.
        let nm = Target::NM { n: 2, m: 4 };
        for (t, pd) in [
            (Target::Sparsity(0.0), 0.01),
            (Target::Sparsity(0.5), 0.0),
            (nm, 0.0),
        ] {
            let res = sparsegpt(&w, rows, cols, &g, &t, None, pd, 8).unwrap();
            assert!(res.weight.iter().all(|v| v.is_finite()), "{t:?}");
            assert!((0..rows).all(|r| res.weight[r * cols + 3] == 0.0));
        }
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let (rows, cols) = (2, 8);
        let (w, g) = (vec![1.0f32; rows * cols], identity(cols, 1.0));
        let err = |w: &[f32], g: &[f64], t: Target, p: Option<&Mask>| {
            let r = sparsegpt(w, rows, cols, g, &t, p, 0.01, 4);
            r.unwrap_err().to_string()
        };
        let s = Target::Sparsity(0.5);
        for bad in [1.0, -0.1, f64::NAN] {
            assert!(err(&w, &g, Target::Sparsity(bad), None).contains("sparsity"));
        }
        assert!(err(&w, &g[1..], s, None).contains("gram"));
        assert!(err(&w[1..], &g, s, None).contains("weight"));
        assert!(err(&w, &g, s, Some(&Mask::empty(3, cols))).contains("prior"));
        for (n, m) in [(0, 4), (4, 4), (5, 4), (1, 3)] {
            let e = err(&w, &g, Target::NM { n, m }, None);
            assert!(e.contains("N:M"), "{n}:{m}: {e}");
        }
        let e = err(&w, &identity(cols, -1.0), s, None);
        assert!(e.contains("positive definite"), "{e}");
        assert!(sparsegpt(&[], 0, 0, &[], &s, None, 0.01, 4).is_ok());
    }

    /// The reversal shortcut must give the reference's `cholesky(cholesky_inverse(cholesky(H)))`.
    #[test]
    fn hinv_matches_reference_cholesky_route() {
        use faer::linalg::solvers::DenseSolveCore;
        let n = 40;
        let (_, g) = setup(8, 64, 1, n);
        let h = Mat::<f64>::from_fn(n, n, |i, j| g[i * n + j]);
        let inv = h.llt(Side::Lower).unwrap().inverse();
        let reference = inv.llt(Side::Lower).unwrap();
        let minv = inverse_reversed_cholesky(h, Par::Seq).unwrap();
        let u = minv.as_ref().reverse_rows_and_cols();
        for i in 0..n {
            for j in 0..n {
                let want = reference.L()[(j, i)];
                assert!((u[(i, j)] - want).abs() < 1e-9 * u[(0, 0)].abs(), "{i} {j}");
            }
        }
    }
}
