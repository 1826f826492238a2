//! `arborist train-tiny`: reproduce the bundled fact-world model from scratch.

use super::errln;
use anyhow::{bail, ensure, Result};
use clap::Args;
use std::path::PathBuf;

use crate::train::{self, TrainOptions};
use crate::world::{render::PRACTICE_VARIANTS, sets, World, WorldSize};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Output directory (model files, data/, CARD.md, train_log.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub force: bool,
    /// Optimiser steps (AdamW).
    #[arg(long, default_value_t = TrainOptions::default().steps)]
    pub steps: usize,
    /// Peak learning rate (linear warmup, then cosine decay to 10% of it).
    #[arg(long, default_value_t = TrainOptions::default().lr)]
    pub lr: f64,
    /// Sequences per step.
    #[arg(long, default_value_t = TrainOptions::default().batch)]
    pub batch: usize,
    /// Seed of the generated fact world (its people, places and facts).
    #[arg(long, default_value_t = TrainOptions::default().world_seed)]
    pub world_seed: u64,
    /// Steps between the knowledge probes logged during training.
    #[arg(long, default_value_t = TrainOptions::default().probe_every)]
    pub probe_every: usize,
    /// Warmup steps.
    #[arg(long, default_value_t = TrainOptions::default().warmup)]
    pub warmup: usize,
    /// FreebaseQA-format practice questions per fact per epoch, in distinct phrasings.
    #[arg(long, default_value_t = TrainOptions::default().qa_repeats)]
    pub qa_repeats: usize,
    /// Multiple-choice practice renderings per epoch.
    #[arg(long, default_value_t = TrainOptions::default().mc_repeats)]
    pub mc_repeats: usize,
    /// Loss weight of benchmark-answer tokens (practice answers, letters) over the prose.
    #[arg(long, default_value_t = TrainOptions::default().answer_weight)]
    pub answer_weight: f32,
    /// Continue training the model in this directory (keeps its tokenizer and shape).
    #[arg(long)]
    pub init: Option<PathBuf>,
}

pub fn run(a: TrainArgs) -> Result<()> {
    ensure!(
        (1..=PRACTICE_VARIANTS).contains(&a.qa_repeats),
        "--qa-repeats must be between 1 and {PRACTICE_VARIANTS} (the practice phrasings per relation), got {}",
        a.qa_repeats
    );
    ensure!(a.mc_repeats >= 1, "--mc-repeats must be at least 1, got 0");
    super::at_least_one("steps", a.steps, "nothing would be trained")?;
    super::at_least_one("batch", a.batch, "a step needs at least one window")?;
    super::at_least_one(
        "probe-every",
        a.probe_every,
        "probes run every N steps, N at least 1",
    )?;
    ensure!(
        a.lr.is_finite() && a.lr > 0.0,
        "--lr {}: expected a finite learning rate above 0",
        a.lr
    );
    ensure!(
        a.answer_weight.is_finite() && a.answer_weight >= 0.0,
        "--answer-weight {}: expected a finite weight of at least 0",
        a.answer_weight
    );
    if let Some(init) = a.init.as_ref().filter(|d| !d.is_dir()) {
        bail!(
            "--init {}: not a model directory (it {})",
            init.display(),
            if init.exists() {
                "is a file"
            } else {
                "does not exist"
            }
        );
    }
    if let Some(init) = &a.init {
        // The files `load_init` reads; /etc was only refused at the tokenizer.
        let missing: Vec<&str> = ["config.json", "tokenizer.json", "model.safetensors"]
            .into_iter()
            .filter(|f| !init.join(f).is_file())
            .collect();
        ensure!(
            missing.is_empty(),
            "--init {}: not a model directory (it has no {})",
            init.display(),
            missing.join(", ")
        );
    }
    if a.warmup > a.steps {
        errln!(
            "warning: --warmup {} is longer than --steps {}: the learning rate stops rising at {:.3e}, {:.0}% of --lr {}",
            a.warmup,
            a.steps,
            a.lr * a.steps as f64 / a.warmup as f64,
            100.0 * a.steps as f64 / a.warmup as f64,
            a.lr
        );
    }
    crate::prune::export::check_out_dir(&a.out, a.force)?;
    let o = TrainOptions {
        steps: a.steps,
        lr: a.lr,
        batch: a.batch,
        world_seed: a.world_seed,
        probe_every: a.probe_every,
        warmup: a.warmup,
        qa_repeats: a.qa_repeats,
        mc_repeats: a.mc_repeats,
        answer_weight: a.answer_weight,
        init: a.init.clone(),
        ..TrainOptions::default()
    };
    let t = train::train(&o, |p| {
        let probe = match (p.probe_mc, p.probe_qa) {
            (Some(mc), Some(qa)) => format!("  probe mc {:.1}% qa {:.1}%", mc * 100.0, qa * 100.0),
            _ => String::new(),
        };
        errln!(
            "step {:>5}/{}  loss {:.4}  lr {:.2e}  {:.0} tok/s{probe}",
            p.step,
            o.steps,
            p.loss,
            p.lr,
            p.tokens_per_second
        );
    })?;
    let world = World::generate(o.world_seed, &WorldSize::default());
    crate::prune::export::write_dir_atomically(&a.out, a.force, |dir| {
        train::save_model(&t, dir)?;
        sets::write_datasets(&world, dir)?;
        std::fs::write(dir.join("train_log.json"), serde_json::to_string(&t.log)?)?;
        std::fs::write(
            dir.join("CARD.md"),
            train::card(&o, &t, world.facts().len()),
        )?;
        Ok(())
    })?;
    errln!("trained in {:.0} s; wrote {}", t.seconds, a.out.display());
    Ok(())
}
