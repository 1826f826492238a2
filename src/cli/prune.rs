//! `arborist prune`: one-shot pruning (the peers' job and our baselines) and export.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};

use super::{calib::CalibArgs, ModelArgs};
use crate::data::{read_ppl_text, Windows};
use crate::eval::perplexity;
use crate::model::LoadedModel;
use crate::prune::alloc::{self, Plan};
use crate::prune::export::{check_inputs_outside, check_out_dir, export, model_inputs};
use crate::prune::metadata;
use crate::prune::oneshot::{prune_sequential, Method, OneShotOptions};
use crate::prune::select::{parse_nm, Pattern};

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// How weights are chosen (and, for SparseGPT, updated).
    #[arg(long, value_enum)]
    pub method: Method,
    /// Target sparsity in [0, 1).
    #[arg(long, conflicts_with = "nm", allow_negative_numbers = true)]
    pub sparsity: Option<f64>,
    /// Semi-structured N:M pattern, e.g. 2:4 (keep 2 of every 4 inputs).
    #[arg(long)]
    pub nm: Option<String>,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// uniform, owl, or a YAML file mapping layer names to sparsities.
    #[arg(long, default_value = "uniform")]
    pub allocation: String,
    /// OWL's λ: per-block sparsities spread over about ±λ around --sparsity (default 0.08).
    #[arg(long, allow_negative_numbers = true)]
    pub owl_lambda: Option<f64>,
    /// OWL's M: a score is an outlier above M times its block's mean (default 5).
    #[arg(long, allow_negative_numbers = true)]
    pub owl_m: Option<f64>,
    /// Calibrate each block on the dense model's activations instead of the pruned ones.
    #[arg(long)]
    pub dense_activations: bool,
    /// Magnitude only: one threshold per layer, as the Wanda repository's baseline.
    #[arg(long)]
    pub magnitude_layerwide: bool,
    /// Perplexity of the pruned model on this text (same protocol as `eval`).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Evaluation windows of --eval (default: all the text holds).
    #[arg(long)]
    pub eval_windows: Option<usize>,
    /// Windows per forward pass of calibration and --eval (default 4; more windows hold
    /// more activations at once).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Directory for the pruned model (config, safetensors, tokenizer, arborist.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a non-empty --out directory.
    #[arg(long)]
    pub force: bool,
    /// Split the weights into files of at most SIZE (5GB, 500MB; KB, MB, GB, TB are powers
    /// of 1000) with a model.safetensors.index.json, as `save_pretrained(max_shard_size=SIZE)`
    /// does [default: 50GB, as in transformers 5].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub max_shard_size: Option<String>,
    /// Print one JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

impl PruneArgs {
    /// The allocation file `--allocation` names (not `uniform` or `owl`).
    fn allocation_file(&self) -> Option<&Path> {
        let file = !matches!(self.allocation.as_str(), "uniform" | "owl");
        file.then(|| Path::new(self.allocation.as_str()))
    }
}

/// The pattern every layer is pruned to; with an allocation file, the one for the layers
/// the file does not name (None: they stay dense).
fn pattern(a: &PruneArgs) -> Result<Option<Pattern>> {
    let file = a.allocation_file().is_some();
    if file && a.nm.is_some() {
        bail!(
            "--allocation {}: an allocation file gives sparsities; it cannot combine with --nm",
            a.allocation
        );
    }
    match (a.sparsity, &a.nm) {
        (None, None) if file => Ok(None),
        (Some(s), None) => {
            if !(0.0..1.0).contains(&s) {
                bail!("--sparsity {s} is outside [0, 1)");
            }
            Ok(Some(Pattern::Unstructured(s)))
        }
        (None, Some(nm)) => parse_nm(nm).map(Some),
        _ => bail!("pass exactly one of --sparsity S or --nm N:M"),
    }
}

/// Flags that only mean something with another one are refused without it.
fn check_flags(a: &PruneArgs) -> Result<()> {
    if a.allocation != "owl" && (a.owl_lambda.is_some() || a.owl_m.is_some()) {
        bail!("--owl-lambda and --owl-m need --allocation owl");
    }
    let lambda = a.lambda();
    if !(lambda.is_finite() && lambda >= 0.0) {
        bail!("--owl-lambda {lambda} must be a non-negative fraction (OWL uses 0.08)");
    }
    let m = a.outlier_m();
    if !(m.is_finite() && m > 0.0) {
        bail!("--owl-m {m} must be above 0 (OWL uses 5)");
    }
    if a.dense_activations && !matches!(a.method, Method::Wanda | Method::Sparsegpt) {
        let why = match a.method {
            Method::Magnitude => "reads no activations",
            _ => "always calibrates on the dense model",
        };
        bail!(
            "--dense-activations chooses the activations Wanda and SparseGPT calibrate on; --method {} {why}",
            a.method
        );
    }
    // They remove blocks or heads by their own scores: an allocation or a pattern was
    // recorded in arborist.json while the weights were pruned without it.
    if matches!(a.method, Method::Shortgpt | Method::Width)
        && (a.allocation != "uniform" || a.nm.is_some())
    {
        bail!("--method {} takes --sparsity (the fraction of block parameters to remove), not --nm or --allocation {}", a.method, a.allocation);
    }
    if a.magnitude_layerwide && a.nm.is_some() {
        bail!("--magnitude-layerwide ranks a whole layer at once; --nm keeps N of every M inputs per row, so they cannot combine");
    }
    if a.magnitude_layerwide && a.method != Method::Magnitude {
        bail!(
            "--magnitude-layerwide applies to --method magnitude, not {}",
            a.method
        );
    }
    super::at_least_one(
        "batch",
        a.batch(),
        "a forward pass needs at least one window",
    )?;
    super::seqlen_ok(a.calib.seqlen)?;
    a.calib.check()?;
    if a.calib.seqlen.is_some() && a.calib.calib.is_none() && a.eval.is_none() {
        bail!("--seqlen sets the windows of --calib and --eval: neither was given");
    }
    if a.eval_windows.is_some() && a.eval.is_none() {
        bail!("--eval-windows needs --eval FILE");
    }
    if a.eval_windows == Some(0) {
        bail!("--eval-windows 0: the perplexity needs at least one window");
    }
    Ok(())
}

impl PruneArgs {
    /// Windows per forward pass, 4 unless given.
    fn batch(&self) -> usize {
        self.batch.unwrap_or(4)
    }

    /// OWL's λ, 0.08 unless given.
    fn lambda(&self) -> f64 {
        self.owl_lambda.unwrap_or(0.08)
    }

    /// OWL's outlier multiple M, 5 unless given.
    fn outlier_m(&self) -> f64 {
        self.owl_m.unwrap_or(5.0)
    }
}

pub fn run(a: PruneArgs) -> Result<()> {
    let pat = pattern(&a)?;
    check_flags(&a)?;
    let max_shard = super::max_shard_size(a.max_shard_size.as_deref())?;
    check_out_dir(&a.out, a.force)?;
    let mut m = a.model.load()?;
    // Every weight is read to prune it: NaN would choose masks silently.
    let zeros = m.refuse_non_finite()?;
    m.warn_if_pruned_before(zeros);
    // A pattern no layer width fits was refused mid-prune, naming whichever layer failed
    // first.
    if let Some(Pattern::NM { n, m: group }) = pat {
        for id in m.decoder.linear_ids() {
            let l = m.decoder.linear(id);
            let cols = l.in_features();
            if !cols.is_multiple_of(group) {
                bail!("--nm {n}:{group}: {} has {cols} inputs, not a multiple of {group} (each row keeps {n} of every {group} consecutive inputs)", l.name);
            }
        }
    }
    // Magnitude pruning reads no windows (only OWL's allocation does): given anyway, they
    // are neither read nor recorded as a calibration that did not run.
    let unused = a.method == Method::Magnitude && a.allocation != "owl";
    if unused && a.calib.calib.is_some() {
        tracing::warn!(
            "--method magnitude uses no calibration: --calib is read only for --allocation owl, and is ignored here"
        );
    }
    if unused && a.eval.is_none() && a.batch.is_some() {
        tracing::warn!(
            "--batch sets the windows per forward pass of calibration and --eval: --method magnitude runs neither here, so it is ignored"
        );
    }
    let calib = if unused { None } else { a.calib.windows(&m)? };
    let mut inputs = model_inputs(&m.files);
    inputs.extend(a.calib.calib.as_deref().map(|p| ("--calib", p)));
    inputs.extend(a.eval.as_deref().map(|p| ("--eval", p)));
    // An allocation file inside --out was deleted by --force's replace.
    inputs.extend(a.allocation_file().map(|p| ("--allocation", p)));
    check_inputs_outside(&a.out, &inputs)?;
    if a.method != Method::Magnitude && calib.is_none() {
        bail!(
            "--method {} needs calibration text: pass --calib FILE",
            a.method
        );
    }
    // The evaluation windows before any pruning, so a bad --eval file costs nothing.
    let eval = match &a.eval {
        Some(p) => {
            let name = p.display().to_string();
            // Named by its flag, as --calib's are: the two may name like files.
            let windows = || -> Result<Windows> {
                let ids = m.encode(&read_ppl_text(p)?)?;
                Windows::sequential(&ids, a.calib.seqlen(&m), a.eval_windows, &name)
            };
            let w = windows().context("--eval")?;
            w.warn_if_fewer("--eval-windows", a.eval_windows, &name);
            Some((w, name))
        }
        None => None,
    };
    let plan: Plan = match (a.allocation.as_str(), pat) {
        ("uniform", Some(pat)) => alloc::uniform(&m.decoder, pat),
        ("owl", Some(pat)) => owl_plan(&m, calib.as_ref(), pat, &a)?,
        (file, pat) => {
            let mut plan = pat.map_or_else(Plan::new, |p| alloc::uniform(&m.decoder, p));
            plan.extend(alloc::from_yaml(std::path::Path::new(file), &m.decoder)?);
            plan
        }
    };
    // Depth pruning removes whole blocks: sparsity counts them against the dense model.
    let (_, dense_weights) = m.decoder.linear_counts();
    let structured = match a.method {
        Method::Shortgpt | Method::Width => {
            let Some(Pattern::Unstructured(frac)) = pat else {
                bail!("--method {} takes --sparsity (the fraction of block parameters to remove), not --nm or an allocation file", a.method);
            };
            Some(structured(
                &mut m,
                calib.as_ref().expect("checked above"),
                a.method,
                frac,
                a.batch(),
            )?)
        }
        _ => None,
    };
    let mut opts = OneShotOptions::new(a.method);
    opts.dense_activations = a.dense_activations;
    opts.magnitude_layerwide = a.magnitude_layerwide;
    opts.batch = a.batch();
    if structured.is_none() {
        prune_sequential(&mut m.decoder, calib.as_ref(), &plan, &opts, |d, t| {
            super::progress("pruning blocks", d, t)
        })?;
    }
    let ppl = match &eval {
        Some((w, name)) => Some(perplexity(&m.decoder, w, a.batch(), name, |d, t| {
            super::progress("evaluating windows", d, t)
        })?),
        None => None,
    };
    let (pruned, kept_shape) = m.decoder.linear_counts();
    let global = (dense_weights - kept_shape + pruned) as f64 / dense_weights.max(1) as f64;
    let common = metadata::common(
        &m.files,
        &m.decoder,
        &a.model.device,
        &a.method,
        global,
        ppl.as_ref(),
    );
    let mut meta = metadata::with(
        common,
        [
            // A structured method removes blocks, heads or channels: no mask pattern
            // (it read `{"unstructured": S}`); `structured` says what went.
            ("pattern", json!(structured.is_none().then_some(pat))),
            // A file is named absolute, as every local path here: the directory is read
            // elsewhere (it was written as typed).
            (
                "allocation",
                json!(match a.allocation_file() {
                    Some(f) => metadata::absolute(&f.display().to_string()),
                    None => a.allocation.clone(),
                }),
            ),
            (
                "owl",
                json!((a.allocation == "owl").then(|| json!({
                    "lambda": a.lambda(), "m": a.outlier_m()
                }))),
            ),
            ("options", opts.recorded(calib.is_some() || eval.is_some())),
            (
                "calibration",
                json!(calib.as_ref().map(|w| a.calib.protocol(w))),
            ),
            ("structured", json!(structured)),
        ],
    );
    export(&m.decoder, &m.files, &a.out, a.force, max_shard, &mut meta)?;
    let mut lines = vec![format!(
        "pruned {} with {} to global sparsity {:.4}; wrote {}",
        m.files.id,
        a.method,
        global,
        a.out.display()
    )];
    if let Some(p) = ppl {
        lines.push(format!(
            "perplexity {:.4}  ({}, seqlen {}, {} windows, {})",
            p.value, p.dataset, p.seqlen, p.windows, p.dtype
        ));
    }
    super::report_written(&a.out, &meta, a.json, &lines)?;
    Ok(())
}

/// ShortGPT or width pruning; returns what was removed.
fn structured(
    m: &mut LoadedModel,
    calib: &Windows,
    method: Method,
    frac: f64,
    batch: usize,
) -> Result<serde_json::Value> {
    use crate::prune::structured as st;
    let batches = crate::prune::oneshot::embed_batches(&m.decoder, calib, batch)?;
    Ok(match method {
        Method::Shortgpt => {
            let bi = st::block_influence(&m.decoder, &batches)?;
            let remove = st::shortgpt_plan(&bi, frac)?;
            m.decoder.remove_blocks(&remove);
            json!({"block_influence": bi, "removed_blocks": remove})
        }
        _ => {
            let stats = st::dense_stats(&m.decoder, &batches)?;
            let plan = st::width_plan(&m.decoder, &stats, frac)?;
            st::apply_width(&mut m.decoder, &plan)?;
            serde_json::to_value(&plan)?
        }
    })
}

/// OWL: per-block sparsity from the share of outlier Wanda scores on the dense model.
fn owl_plan(m: &LoadedModel, calib: Option<&Windows>, pat: Pattern, a: &PruneArgs) -> Result<Plan> {
    let Pattern::Unstructured(s) = pat else {
        bail!("--allocation owl needs --sparsity, not --nm");
    };
    let Some(calib) = calib else {
        bail!("--allocation owl needs calibration text: pass --calib FILE");
    };
    let stats = crate::profile::input_stats(&m.decoder, calib, a.batch())?;
    let d = &m.decoder;
    let mut ratios = Vec::with_capacity(d.blocks.len());
    for (b, st) in stats.iter().enumerate() {
        let mut all = Vec::new();
        for id in d.linear_ids().filter(|id| id.block == b) {
            let lin = d.linear(id);
            let w = crate::prune::scores::weight_f32(&lin.weight()?)?;
            all.extend(crate::prune::scores::wanda(
                &w,
                lin.in_features(),
                st.get(id.kind),
            ));
        }
        ratios.push(alloc::outlier_ratio(&all, a.outlier_m()));
    }
    let lambda = a.lambda();
    let per_block = alloc::owl_sparsities(&ratios, s, lambda);
    if let Some((b, x)) = per_block
        .iter()
        .enumerate()
        .find(|(_, x)| !(0.0..1.0).contains(*x))
    {
        bail!("--allocation owl: with --owl-lambda {lambda} block {b}'s sparsity would be {x:.4}, outside [0, 1); lower --owl-lambda");
    }
    Ok(d.linear_ids()
        .map(|id| {
            (
                id,
                Pattern::Unstructured(per_block[id.block].clamp(0.0, 0.99)),
            )
        })
        .collect())
}
