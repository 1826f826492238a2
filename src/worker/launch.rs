//! From run options to running workers: model files, windows, engine and agent.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

use super::engine::Probe;
use super::{spawn, Engine, EngineConfig, Msg, Workers};
use crate::agent::{builtin::BuiltinAgent, Agent, LlmAgent, LlmClient, LlmConfig, Templates};
use crate::data::{read_ppl_text, Windows};
use crate::model::{LoadedModel, ModelFiles};
use crate::session::{ProbeSpec, RunOptions};

/// A data file: the flag's path, or `rel` inside the bundled model's data when the model
/// is `bundled`; otherwise the flag is required.
fn data_path(spec: &Option<String>, rel: &str, flag: &str, opts: &RunOptions) -> Result<PathBuf> {
    match spec {
        Some(p) => Ok(PathBuf::from(p)),
        None if opts.model == crate::model::bundled::NAME => {
            Ok(crate::model::bundled::data_dir()?.join(rel))
        }
        None => bail!("--{flag} is required for a model other than `bundled`"),
    }
}

/// The flag leads an error in a file it named (the bundled model's default names none).
fn flagged<T>(r: Result<T>, flag: &str, given: bool) -> Result<T> {
    if given {
        crate::data::for_flag(r, flag)
    } else {
        r
    }
}

/// The calibration or evaluation text: the flag, or the bundled model's own file.
pub fn text_path(spec: &Option<String>, flag: &str, opts: &RunOptions) -> Result<PathBuf> {
    data_path(spec, &format!("{flag}.txt"), &format!("{flag} FILE"), opts)
}

/// The calibration windows as the session's options say (`--calib-sample`, `--seed`).
fn calib_windows(
    m: &LoadedModel,
    path: &std::path::Path,
    seqlen: usize,
    opts: &RunOptions,
) -> Result<Windows> {
    let w = crate::data::documents::calibration_windows(
        path,
        opts.calib_sample,
        (seqlen, opts.calib_windows, opts.seed),
        |t| m.encode(t),
        |t| m.encode_document(t),
    )?;
    w.warn_if_fewer(
        "--calib-windows",
        Some(opts.calib_windows),
        &path.display().to_string(),
    );
    Ok(w)
}

/// Load the model and windows (runs on the compute thread).
pub fn load_engine(files: ModelFiles, opts: &RunOptions) -> Result<Engine> {
    let device = crate::model::device::parse_device(&opts.device)?;
    let dtype = crate::model::device::parse_dtype(&opts.dtype)?;
    let m = LoadedModel::from_files(files, &device, dtype, opts.stream_layers)?;
    // The same notes `eval`, `profile` and `prune` print (stderr when headless, the log
    // panel in the TUI).
    let seqlen = m.seqlen_or_default(opts.seqlen);
    for note in m.load_notes().into_iter().chain(m.seqlen_note(seqlen)) {
        tracing::warn!("{note}");
    }
    let calib_path = text_path(&opts.calib, "calib", opts)?;
    let eval_path = text_path(&opts.eval, "eval", opts)?;
    let calib = flagged(
        calib_windows(&m, &calib_path, seqlen, opts),
        "--calib",
        opts.calib.is_some(),
    )?;
    crate::profile::warn_if_fewer_grad_windows(&calib, Some(opts.grad_windows));
    // Evaluation text is read as `eval --ppl` reads it (wikitext parquet too).
    let eval_name = eval_path.display().to_string();
    let eval_text = flagged(read_ppl_text(&eval_path), "--eval", opts.eval.is_some())?;
    let eval_ids = m.encode(&eval_text)?;
    let eval = flagged(
        Windows::sequential(&eval_ids, seqlen, Some(opts.eval_windows), &eval_name),
        "--eval",
        opts.eval.is_some(),
    )?;
    eval.warn_if_fewer("--eval-windows", Some(opts.eval_windows), &eval_name);
    let probe = match &opts.probe {
        Some(p) => Some(load_probe(p, opts)?),
        None => None,
    };
    Ok(Engine::new(
        m,
        EngineConfig {
            calib,
            calib_name: calib_path.display().to_string(),
            eval,
            eval_name,
            grads: crate::profile::GradSpec {
                windows: opts.grad_windows,
                average: opts.grad_average,
            },
            batch: opts.batch,
            eval_cache_bytes: opts.eval_cache_mb << 20,
        },
        probe,
    ))
}

/// The probe's benchmark file: the flag, or the bundled model's set of its kind.
pub fn probe_path(p: &ProbeSpec, opts: &RunOptions) -> Result<PathBuf> {
    let rel = if p.kind == "mmlu" {
        "mmlu"
    } else {
        "freebaseqa.json"
    };
    data_path(&p.file, rel, "probe-file", opts)
}

fn load_probe(p: &ProbeSpec, opts: &RunOptions) -> Result<Probe> {
    Ok(match p.kind.as_str() {
        "freebaseqa" => {
            let path = probe_path(p, opts)?;
            let read = crate::data::freebaseqa::read_freebaseqa(&path);
            let mut items = flagged(read, "--probe-file", p.file.is_some())?;
            items.truncate(p.limit);
            Probe::FreebaseQa {
                items,
                name: path.display().to_string(),
            }
        }
        "mmlu" => {
            let path = probe_path(p, opts)?;
            let shots = crate::data::mmlu::Shots {
                n: p.shots,
                option: "probe.shots",
            };
            let read = crate::data::mmlu::read_mmlu(&path, shots);
            Probe::Mmlu {
                data: flagged(read, "--probe-file", p.file.is_some())?,
                shots: p.shots,
                prompt: p.mmlu_prompt,
                limit: p.limit,
                name: path.display().to_string(),
            }
        }
        other => bail!("--probe {other} is unknown (freebaseqa or mmlu)"),
    })
}

pub fn make_agent(opts: &RunOptions) -> Result<Box<dyn Agent + Send>> {
    let a = &opts.agent;
    Ok(match a.backend.as_str() {
        "builtin" => Box::new(BuiltinAgent),
        backend => {
            let model = a
                .model
                .as_deref()
                .with_context(|| format!("--agent {backend} needs --agent-model NAME"))?;
            let mut cfg = LlmConfig::from_env(backend.parse()?, model, a.base_url.as_deref());
            if let Some(t) = a.timeout_s {
                cfg.timeout = std::time::Duration::from_secs(t);
                cfg.connect_timeout = cfg.timeout;
            }
            cfg.max_tokens = a.max_tokens;
            let mut templates = Templates::load(a.prompts.as_deref().map(std::path::Path::new))?;
            templates.set_grad_average(opts.grad_average);
            Box::new(LlmAgent::new(LlmClient::new(cfg)?, templates)?)
        }
    })
}

/// Start the workers on the model's resolved files (`setup::start`); the model loads on the
/// compute thread.
pub fn start(files: ModelFiles, opts: &RunOptions) -> Result<(Workers, ModelFiles)> {
    let agent = make_agent(opts)?;
    let (f, o) = (files.clone(), opts.clone());
    Ok((spawn(move || load_engine(f, &o), agent), files))
}

/// Block until the engine has loaded (or failed to); its data fingerprints.
pub fn wait_ready(w: &Workers) -> Result<crate::session::file::DataHashes> {
    loop {
        match w.rx.recv_timeout(Duration::from_secs(3600)) {
            Ok(Msg::Ready(Ok(data))) => return Ok(data),
            Ok(Msg::Ready(Err(e))) => bail!("{e}"),
            Ok(_) => continue,
            Err(_) => bail!("the compute worker stopped while loading"),
        }
    }
}
