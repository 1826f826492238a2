//! `arborist eval`: perplexity under the Wanda/SparseGPT protocol.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

use super::ModelArgs;
use crate::data::{read_text, Windows};
use crate::eval::perplexity;
use crate::model::LoadedModel;
use crate::runtime::{parse_device, parse_dtype};

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file for perplexity (UTF-8).
    #[arg(long)]
    pub ppl: Option<PathBuf>,
    /// Tokens per window (default: 2048, capped at the model's max_position_embeddings).
    #[arg(long)]
    pub seqlen: Option<usize>,
    /// Use only the first K windows.
    #[arg(long)]
    pub max_windows: Option<usize>,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let Some(ppl_path) = &a.ppl else {
        bail!("nothing to evaluate: pass --ppl FILE");
    };
    let device = parse_device(&a.model.device)?;
    let dtype = parse_dtype(&a.model.dtype)?;
    // Read the text before loading weights so a bad file fails fast.
    let text = read_text(ppl_path)?;
    let model = LoadedModel::load(&a.model.model, &device, dtype)?;
    let seqlen = a.seqlen.unwrap_or(crate::data::default_seqlen(
        model.cfg.max_position_embeddings,
    ));
    let ids = model.encode(&text)?;
    let windows =
        Windows::sequential(&ids, seqlen, a.max_windows, &ppl_path.display().to_string())?;
    let dataset = ppl_path.display().to_string();
    let res = perplexity(&model.decoder, &windows, a.batch, &dataset, |d, t| {
        super::progress("evaluating windows", d, t)
    })?;
    if a.json {
        let out = serde_json::json!({
            "model": model.files.id,
            "ppl": {
                "value": res.value, "seqlen": res.seqlen, "windows": res.windows,
                "tokens": res.tokens, "dataset": res.dataset, "dtype": res.dtype,
            }
        });
        println!("{out}");
    } else {
        println!(
            "perplexity {:.4}  ({}, seqlen {}, {} windows of {} tokens, {})",
            res.value, res.dataset, res.seqlen, res.windows, res.tokens, res.dtype
        );
    }
    Ok(())
}
