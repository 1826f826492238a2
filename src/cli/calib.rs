//! Calibration flags shared by every subcommand that calibrates.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

use crate::data::{CalibSample, Windows};
use crate::model::LoadedModel;

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
    /// How windows are taken from the text: sequential (the first ones), random (seeded
    /// offsets) or documents (JSON lines such as C4's json.gz, drawn as Wanda's get_c4
    /// draws) [default: sequential].
    #[arg(long)]
    pub calib_sample: Option<CalibSample>,
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
        if self.seed.is_some() && !self.sample().is_seeded() {
            bail!(SEED_NEEDS_RANDOM);
        }
        Ok(())
    }

    fn sample(&self) -> CalibSample {
        self.calib_sample.unwrap_or_default()
    }

    fn seed(&self) -> u64 {
        self.seed.unwrap_or(0)
    }

    /// The sample's name, and the seed when the sample draws at random.
    pub fn sample_and_seed(&self) -> (CalibSample, Option<u64>) {
        let sample = self.sample();
        (sample, sample.is_seeded().then(|| self.seed()))
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
        let w = crate::data::for_flag(
            crate::data::documents::calibration_windows(
                path,
                self.sample(),
                (seqlen, count, self.seed()),
                |t| m.encode(t),
                |t| m.encode_document(t),
            ),
            "--calib",
        )?;
        // Said when asked for: the default of 128 is more than most small texts hold.
        w.warn_if_fewer("--calib-windows", self.calib_windows, &name);
        Ok(Some(w))
    }

    /// The calibration of `prune`'s arborist.json; a seed only where windows were drawn.
    pub fn protocol(&self, w: &Windows) -> serde_json::Value {
        let (sample, seed) = self.sample_and_seed();
        serde_json::json!({
            "calib": (self.calib.as_ref())
                .map(|p| crate::prune::metadata::absolute(&p.display().to_string())),
            "seqlen": w.seqlen, "windows": w.len(), "sample": sample, "seed": seed,
        })
    }
}
