//! Calibration flags shared by every subcommand that calibrates.

use anyhow::Result;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

use crate::data::{read_text, Windows};
use crate::model::LoadedModel;

#[derive(Debug, Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sample {
    /// The first K non-overlapping windows (deterministic).
    Sequential,
    /// K windows at seeded random offsets, as Wanda samples.
    Random,
}

/// Wanda's and SparseGPT's `nsamples`.
const DEFAULT_CALIB_WINDOWS: usize = 128;

#[derive(Args, Debug, Clone)]
pub struct CalibArgs {
    /// Calibration text (UTF-8).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Tokens per window (default: 2048, capped at the model's max_position_embeddings).
    #[arg(long)]
    pub seqlen: Option<usize>,
    /// Calibration windows [default: 128, as Wanda and SparseGPT].
    #[arg(long)]
    pub calib_windows: Option<usize>,
    #[arg(long, value_enum, default_value = "sequential")]
    pub calib_sample: Sample,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl CalibArgs {
    pub fn seqlen(&self, m: &LoadedModel) -> usize {
        m.seqlen_or_default(self.seqlen)
    }

    /// The calibration windows, or None when no --calib was given.
    pub fn windows(&self, m: &LoadedModel) -> Result<Option<Windows>> {
        let Some(path) = &self.calib else {
            return Ok(None);
        };
        let count = self.calib_windows.unwrap_or(DEFAULT_CALIB_WINDOWS);
        super::at_least_one(
            "calib-windows",
            count,
            "calibration needs at least one window",
        )?;
        let ids = m.encode(&read_text(path)?)?;
        let name = path.display().to_string();
        let seqlen = super::seqlen_warned(self.seqlen, m);
        let w = match self.calib_sample {
            Sample::Sequential => Windows::sequential(&ids, seqlen, Some(count), &name)?,
            Sample::Random => Windows::random(&ids, seqlen, count, self.seed, &name)?,
        };
        // Said when asked for: the default of 128 is more than most small texts hold.
        w.warn_if_fewer("--calib-windows", self.calib_windows, &name);
        Ok(Some(w))
    }

    pub fn protocol(&self, w: &Windows) -> serde_json::Value {
        serde_json::json!({
            "calib": self.calib.as_ref().map(|p| p.display().to_string()),
            "seqlen": w.seqlen, "windows": w.len(), "sample": self.calib_sample, "seed": self.seed,
        })
    }
}
