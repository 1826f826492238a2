//! The heatmap's data: every linear layer placed at (block, kind), with the numbers each
//! metric reads. Built from the machine state on every frame (a few hundred cells).

use std::collections::HashMap;

use crate::agent::{LayerRow, LayerTarget};
use crate::session::Machine;

pub use crate::agent::context::{place, KINDS};

/// `layers.12.mlp.up_proj`: the name without the leading `model.`.
pub fn short_name(name: &str) -> &str {
    name.strip_prefix("model.").unwrap_or(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    WandaZ,
    GradZ,
    Combined,
    Sparsity,
    Proposed,
    SinceDense,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::WandaZ,
        Metric::GradZ,
        Metric::Combined,
        Metric::Sparsity,
        Metric::Proposed,
        Metric::SinceDense,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Metric::WandaZ => "Wanda z (z_s)",
            Metric::GradZ => "gradient z (z_g)",
            Metric::Combined => "combined z (z_s+z_g)",
            Metric::Sparsity => "current sparsity",
            Metric::Proposed => "proposed change",
            Metric::SinceDense => "change since dense",
        }
    }

    pub fn step(self, by: isize) -> Metric {
        let n = Metric::ALL.len() as isize;
        let i = Metric::ALL.iter().position(|m| *m == self).unwrap_or(0) as isize;
        Metric::ALL[(i + by).rem_euclid(n) as usize]
    }

    /// Fractions anchor their scale at 0; z-scores span what is there.
    fn anchored_at_zero(self) -> bool {
        !self.from_profile()
    }

    /// A z-score, as old as the latest profile (the others are current).
    pub fn from_profile(self) -> bool {
        matches!(self, Metric::WandaZ | Metric::GradZ | Metric::Combined)
    }
}

#[derive(Debug, Clone)]
pub struct Cell<'a> {
    pub name: &'a str,
    pub params: u64,
    pub profile: Option<&'a LayerRow>,
    pub sparsity: f64,
    pub dense: f64,
    pub proposed: Option<f64>,
}

impl Cell<'_> {
    pub fn value(&self, m: Metric) -> Option<f64> {
        let p = self.profile;
        match m {
            Metric::WandaZ => p.map(|r| r.z_s),
            Metric::GradZ => p.map(|r| r.z_g),
            Metric::Combined => p.map(|r| r.z_s + r.z_g),
            Metric::Sparsity => Some(self.sparsity),
            Metric::Proposed => Some(self.proposed.map_or(0.0, |to| to - self.sparsity)),
            Metric::SinceDense => Some(self.sparsity - self.dense),
        }
    }
}

pub struct Grid<'a> {
    pub blocks: usize,
    cells: Vec<Option<Cell<'a>>>,
    /// The iteration the z-scores were profiled at.
    pub profiled_at: Option<usize>,
}

impl<'a> Grid<'a> {
    /// Layers of the baseline at the current checkpoint, with the latest profile and the
    /// targets under review (the agent's, or the editor's while editing).
    pub fn build(m: &'a Machine, targets: &[LayerTarget]) -> Grid<'a> {
        let placed: Vec<_> = m
            .layers
            .iter()
            .filter_map(|l| place(&l.name).map(|p| (l, p)))
            .collect();
        let blocks = placed.iter().map(|(_, (b, _))| b + 1).max().unwrap_or(0);
        let profile: HashMap<&str, &LayerRow> =
            m.profile.iter().map(|r| (r.name.as_str(), r)).collect();
        let ckpt = m.checkpoint();
        let mut cells: Vec<Option<Cell<'a>>> = vec![None; blocks * KINDS.len()];
        for (l, (b, k)) in placed {
            cells[b * KINDS.len() + k] = Some(Cell {
                name: &l.name,
                params: l.params,
                profile: profile.get(l.name.as_str()).copied(),
                sparsity: ckpt
                    .and_then(|c| c.sparsity.get(&l.name).copied())
                    .unwrap_or(l.sparsity),
                dense: l.sparsity,
                proposed: targets
                    .iter()
                    .find(|t| t.name == l.name)
                    .map(|t| t.sparsity),
            });
        }
        Grid {
            blocks,
            cells,
            profiled_at: m.profiled_at,
        }
    }

    pub fn cell(&self, block: usize, kind: usize) -> Option<&Cell<'a>> {
        if kind >= KINDS.len() {
            return None;
        }
        self.cells.get(block * KINDS.len() + kind)?.as_ref()
    }

    /// The colour scale of a metric over all cells.
    pub fn range(&self, m: Metric) -> (f64, f64) {
        let vals = self.cells.iter().flatten().filter_map(|c| c.value(m));
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in vals.filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        if m.anchored_at_zero() {
            lo = lo.min(0.0);
        }
        if hi - lo < 1e-9 {
            hi = lo + if m.anchored_at_zero() { 0.1 } else { 1.0 };
        }
        (lo, hi)
    }
}
