//! Calibration flags shared by every subcommand that calibrates.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

use crate::data::Windows;
use crate::model::LoadedModel;

#[derive(Debug, Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sample {
    /// The first K non-overlapping windows (deterministic).
    Sequential,
    /// K windows at seeded random offsets into the whole text.
    Random,
    /// K windows drawn from JSON-lines documents (C4's json.gz) as Wanda's and SparseGPT's
    /// get_c4 draws them, with Python's generator: the same windows for the same seed.
    Documents,
}

impl Sample {
    pub fn name(self) -> &'static str {
        match self {
            Sample::Sequential => "sequential",
            Sample::Random => "random",
            Sample::Documents => "documents",
        }
    }
}

/// Said wherever a seed would draw nothing (sequential windows).
pub const SEED_NEEDS_RANDOM: &str =
    "--seed draws random calibration windows: it needs --calib-sample random or documents";

/// Wanda's and SparseGPT's `nsamples`.
const DEFAULT_CALIB_WINDOWS: usize = 128;

#[derive(Args, Debug, Clone)]
pub struct CalibArgs {
    /// Calibration text (UTF-8), or JSON-lines documents (C4's json.gz) for --calib-sample documents.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Tokens per window (default: 2048, capped at the model's max_position_embeddings).
    #[arg(long)]
    pub seqlen: Option<usize>,
    /// Calibration windows [default: 128, as Wanda and SparseGPT].
    #[arg(long)]
    pub calib_windows: Option<usize>,
    /// How windows are taken from the text [default: sequential].
    #[arg(long, value_enum)]
    pub calib_sample: Option<Sample>,
    /// Seed of --calib-sample random or documents [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
}

impl CalibArgs {
    /// Flags that tune calibration windows nobody asked for are refused before anything
    /// loads: silently ignored, they would be recorded as a protocol that did not run.
    pub fn check(&self) -> Result<()> {
        if self.calib.is_none() {
            let given = [
                ("--calib-windows", self.calib_windows.is_some()),
                ("--calib-sample", self.calib_sample.is_some()),
                ("--seed", self.seed.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                bail!("{flag} tunes the calibration windows: it needs --calib FILE");
            }
        }
        if self.seed.is_some() && matches!(self.sample(), Sample::Sequential) {
            bail!(SEED_NEEDS_RANDOM);
        }
        Ok(())
    }

    fn sample(&self) -> Sample {
        self.calib_sample.unwrap_or(Sample::Sequential)
    }

    fn seed(&self) -> u64 {
        self.seed.unwrap_or(0)
    }

    /// The sample's name, and the seed when the sample draws at random.
    pub fn sample_and_seed(&self) -> (Option<String>, Option<u64>) {
        let sample = self.sample();
        let seed = (!matches!(sample, Sample::Sequential)).then(|| self.seed());
        (Some(sample.name().to_string()), seed)
    }

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
        let name = path.display().to_string();
        let seqlen = super::seqlen_warned(self.seqlen, m);
        let w = crate::data::documents::calibration_windows(
            path,
            self.sample().name(),
            (seqlen, count, self.seed()),
            |t| m.encode(t),
            |t| m.encode_document(t),
        )?;
        // Said when asked for: the default of 128 is more than most small texts hold.
        w.warn_if_fewer("--calib-windows", self.calib_windows, &name);
        Ok(Some(w))
    }

    /// The calibration of `prune`'s arborist.json; a seed only where windows were drawn.
    pub fn protocol(&self, w: &Windows) -> serde_json::Value {
        let (sample, seed) = self.sample_and_seed();
        serde_json::json!({
            "calib": self.calib.as_ref().map(|p| p.display().to_string()),
            "seqlen": w.seqlen, "windows": w.len(), "sample": sample, "seed": seed,
        })
    }
}
