//! `arborist eval`: perplexity (Wanda/SparseGPT), MMLU (Hendrycks) and FreebaseQA (LLM-KICK).

use super::outln;
use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

use super::ModelArgs;
use crate::data::freebaseqa::{read_freebaseqa, FreebaseItem};
use crate::data::mmlu::{read_mmlu, MmluData};
use crate::data::{for_flag, read_ppl_text, Windows};
use crate::eval::freebaseqa::{evaluate_freebaseqa, FreebaseOptions, FreebaseResult};
use crate::eval::mmlu::{evaluate_mmlu, MmluOptions, MmluPrompt, MmluResult};
use crate::eval::{perplexity, Perplexity};
use crate::model::LoadedModel;

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file (UTF-8) or parquet file with a `text` column (rows joined by "\n\n").
    #[arg(long)]
    pub ppl: Option<PathBuf>,
    /// MMLU: the Hendrycks CSV directory, a directory of parquet files, or a parquet file.
    #[arg(long)]
    pub mmlu: Option<PathBuf>,
    /// FreebaseQA JSON file (kelvin-jiang format).
    #[arg(long)]
    pub freebaseqa: Option<PathBuf>,
    /// MMLU few-shot examples taken from the dev split [default: 5].
    #[arg(long)]
    pub shots: Option<usize>,
    /// MMLU protocol: hendrycks (evaluate.py, "about  high school physics.", shots dropped
    /// to fit) or lm-eval (one space, questions stripped, prompts cut from the left to fit)
    /// [default: hendrycks].
    #[arg(long)]
    pub mmlu_prompt: Option<MmluPrompt>,
    /// MMLU: prompt and answer fit this many tokens (default: hendrycks 2048, as his code,
    /// capped at max_position_embeddings; lm-eval max_position_embeddings, its max_length).
    #[arg(long)]
    pub mmlu_max_context: Option<usize>,
    /// Evaluate only the first N items (of each MMLU subject; of the FreebaseQA file).
    #[arg(long)]
    pub limit: Option<usize>,
    /// FreebaseQA: most tokens generated per answer [default: 24].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Tokens per window (default: 2048, capped at the model's max_position_embeddings).
    #[arg(long)]
    pub seqlen: Option<usize>,
    /// Use only the first K windows.
    #[arg(long)]
    pub max_windows: Option<usize>,
    /// Windows (perplexity) or prompts (MMLU) per forward pass [default: 1].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// With --json, include per-item MMLU predictions and FreebaseQA generations.
    #[arg(long)]
    pub per_item: bool,
}

const DEFAULT_SHOTS: usize = 5;
const DEFAULT_MAX_NEW_TOKENS: usize = 24;

fn shots(a: &EvalArgs) -> usize {
    a.shots.unwrap_or(DEFAULT_SHOTS)
}

fn batch(a: &EvalArgs) -> usize {
    a.batch.unwrap_or(1)
}

/// A flag given without the evaluation it tunes is refused: silently ignoring `--shots 0`
/// on a perplexity run would let a user believe they measured something they did not.
fn needs_its_evaluation(a: &EvalArgs) -> Result<()> {
    let (ppl, mmlu, fbqa) = (a.ppl.is_some(), a.mmlu.is_some(), a.freebaseqa.is_some());
    let checks = [
        ("seqlen", a.seqlen.is_some(), ppl, "--ppl FILE"),
        ("max-windows", a.max_windows.is_some(), ppl, "--ppl FILE"),
        ("shots", a.shots.is_some(), mmlu, "--mmlu PATH"),
        ("mmlu-prompt", a.mmlu_prompt.is_some(), mmlu, "--mmlu PATH"),
        (
            "mmlu-max-context",
            a.mmlu_max_context.is_some(),
            mmlu,
            "--mmlu PATH",
        ),
        (
            "max-new-tokens",
            a.max_new_tokens.is_some(),
            fbqa,
            "--freebaseqa FILE",
        ),
        (
            "limit",
            a.limit.is_some(),
            mmlu || fbqa,
            "--mmlu PATH or --freebaseqa FILE",
        ),
        (
            "batch",
            a.batch.is_some(),
            ppl || mmlu,
            "--ppl FILE or --mmlu PATH",
        ),
        (
            "per-item",
            a.per_item,
            mmlu || fbqa,
            "--mmlu PATH or --freebaseqa FILE",
        ),
    ];
    for (flag, given, evaluated, needs) in checks {
        if given && !evaluated {
            bail!("--{flag} tunes an evaluation that was not requested: it needs {needs}");
        }
    }
    Ok(())
}

pub fn run(a: EvalArgs) -> Result<()> {
    if a.ppl.is_none() && a.mmlu.is_none() && a.freebaseqa.is_none() {
        bail!("nothing to evaluate: pass --ppl FILE, --mmlu PATH or --freebaseqa FILE");
    }
    // Only the JSON carries per-item records; without it the flag would do nothing.
    if a.per_item && !a.json {
        bail!("--per-item needs --json (the per-item records are printed only in the JSON)");
    }
    if a.batch == Some(0) {
        bail!("--batch 0: a forward pass needs at least one window");
    }
    super::seqlen_ok(a.seqlen)?;
    if a.max_windows == Some(0) {
        bail!("--max-windows 0: the perplexity needs at least one window");
    }
    if a.mmlu_max_context == Some(0) {
        bail!("--mmlu-max-context 0: no prompt fits");
    }
    if a.limit == Some(0) {
        bail!("--limit 0: nothing would be evaluated");
    }
    if a.max_new_tokens == Some(0) {
        bail!("--max-new-tokens 0: every answer would be empty");
    }
    needs_its_evaluation(&a)?;
    // A bad --device or --dtype fails before anything is read.
    a.model.device()?;
    a.model.dtype()?;
    // Read every data set before loading weights so bad input fails fast.
    let text = a.ppl.as_deref().map(read_ppl_text).transpose();
    let text = for_flag(text, "--ppl")?;
    let mmlu = a
        .mmlu
        .as_deref()
        .map(|p| {
            let n = shots(&a);
            read_mmlu(
                p,
                crate::data::mmlu::Shots {
                    n,
                    option: "--shots",
                },
            )
        })
        .transpose();
    let mmlu = for_flag(mmlu, "--mmlu")?;
    let fbqa = a.freebaseqa.as_deref().map(read_freebaseqa).transpose();
    let fbqa = for_flag(fbqa, "--freebaseqa")?;
    let model = a.model.load()?;
    if a.mmlu.is_some() {
        // Checked before any evaluation runs, so a bad value costs no perplexity pass.
        let style = a.mmlu_prompt.unwrap_or(MmluPrompt::Hendrycks);
        crate::eval::mmlu::context_limit(&model, a.mmlu_max_context, style)?;
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(model.files.id));
    if let Some(c) = &model.files.commit {
        out.insert("model_commit".into(), json!(c));
    }
    if let (Some(path), Some(text)) = (&a.ppl, &text) {
        let res = run_ppl(&a, &model, path, text)?;
        report_ppl(&a, &res, &mut out)?;
    }
    if let (Some(path), Some(data)) = (&a.mmlu, &mmlu) {
        let res = run_mmlu(&a, &model, path, data)?;
        report_mmlu(&a, &res, &mut out)?;
    }
    if let (Some(path), Some(items)) = (&a.freebaseqa, &fbqa) {
        let res = run_fbqa(&a, &model, path, items)?;
        report_fbqa(&a, &res, &mut out)?;
    }
    if a.json {
        outln!("{}", Value::Object(out))?;
    }
    Ok(())
}

fn run_ppl(a: &EvalArgs, model: &LoadedModel, path: &Path, text: &str) -> Result<Perplexity> {
    let seqlen = super::seqlen_warned(a.seqlen, model);
    let dataset = path.display().to_string();
    let ids = model.encode(text)?;
    // Too short for one window is the file's fault: named by its flag, as its read is.
    let windows = for_flag(
        Windows::sequential(&ids, seqlen, a.max_windows, &dataset),
        "--ppl",
    )?;
    windows.warn_if_fewer("--max-windows", a.max_windows, &dataset);
    let p = perplexity(&model.decoder, &windows, batch(a), &dataset, |d, t| {
        super::progress("evaluating windows", d, t)
    })?;
    // NaN from the weights themselves is named; an overflow in a half type is printed.
    if !p.value.is_finite() {
        model.refuse_non_finite()?;
    }
    Ok(p)
}

fn report_ppl(a: &EvalArgs, res: &Perplexity, out: &mut Map<String, Value>) -> Result<()> {
    if a.json {
        out.insert(
            "ppl".into(),
            json!({
                "value": res.value, "seqlen": res.seqlen, "windows": res.windows,
                "tokens": res.tokens, "dataset": res.dataset, "dtype": res.dtype,
            }),
        );
    } else {
        outln!(
            "perplexity {:.4}  ({}, seqlen {}, {} windows: {} of the text's {} tokens, {})",
            res.value,
            res.dataset,
            res.seqlen,
            res.windows,
            res.windows * res.seqlen,
            res.tokens,
            res.dtype
        )?;
    }
    Ok(())
}

fn run_mmlu(a: &EvalArgs, model: &LoadedModel, path: &Path, data: &MmluData) -> Result<MmluResult> {
    let opts = MmluOptions {
        shots: shots(a),
        prompt: a.mmlu_prompt.unwrap_or(MmluPrompt::Hendrycks),
        limit: a.limit,
        batch: batch(a),
        max_context: a.mmlu_max_context,
    };
    evaluate_mmlu(model, data, &opts, &path.display().to_string(), |d, t| {
        super::progress("MMLU items", d, t)
    })
}

fn report_mmlu(a: &EvalArgs, res: &MmluResult, out: &mut Map<String, Value>) -> Result<()> {
    if a.json {
        let mut v = serde_json::to_value(res)?;
        if !a.per_item {
            v.as_object_mut().expect("a struct").remove("predictions");
        }
        out.insert("mmlu".into(), v);
        return Ok(());
    }
    outln!(
        "mmlu accuracy {:.4}  ({}/{} items, {} subjects, {}-shot, {} prompt, {} split, {}{}{})",
        res.accuracy,
        res.correct,
        res.items,
        res.subjects.len(),
        res.shots,
        res.prompt,
        res.split,
        res.dtype,
        res.limit
            .map_or(String::new(), |l| format!(", limit {l} per subject")),
        if res.reduced_shots > 0 {
            format!(
                ", {} prompts cut to fewer shots to fit {} tokens",
                res.reduced_shots, res.max_context
            )
        } else if res.truncated > 0 {
            format!(
                ", {} prompts cut from the left to fit {} tokens",
                res.truncated, res.max_context
            )
        } else {
            String::new()
        }
    )?;
    for s in &res.subjects {
        outln!(
            "  {:<40} {:.4}  ({}/{})",
            s.subject,
            s.accuracy,
            s.correct,
            s.items
        )?;
    }
    Ok(())
}

fn run_fbqa(
    a: &EvalArgs,
    model: &LoadedModel,
    path: &Path,
    items: &[FreebaseItem],
) -> Result<FreebaseResult> {
    let opts = FreebaseOptions {
        limit: a.limit,
        max_new_tokens: a.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS),
    };
    evaluate_freebaseqa(model, items, &opts, &path.display().to_string(), |d, t| {
        super::progress("FreebaseQA questions", d, t)
    })
}

fn report_fbqa(a: &EvalArgs, res: &FreebaseResult, out: &mut Map<String, Value>) -> Result<()> {
    if a.json {
        let mut v = serde_json::to_value(res)?;
        if !a.per_item {
            v.as_object_mut().expect("a struct").remove("records");
        }
        out.insert("freebaseqa".into(), v);
        return Ok(());
    }
    outln!(
        "freebaseqa accuracy {:.4}  ({}/{} questions, greedy, at most {} new tokens, {})",
        res.accuracy,
        res.correct,
        res.items,
        res.max_new_tokens,
        res.dtype
    )?;
    Ok(())
}
