//! `bench --suite stream`: perplexity with every weight resident against `--stream-layers`,
//! on a random Qwen3-shaped model written to disk (about 30M parameters) or `--model M`.
//! Reports time, resident set and peak for each, and fails unless the losses are identical.

use crate::cli::outln;
use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device};
use std::time::Instant;

use super::{peak_rss_bytes, reset_peak_rss, rss_bytes, BenchArgs};
use crate::data::Windows;
use crate::model::{LoadedModel, ModelConfig, ModelFiles};

/// About 29M parameters (27M in the blocks' linear layers): big enough that weights, not
/// the runtime, dominate the resident set.
pub(super) const STREAM_CONFIG: &str = r#"{"model_type":"qwen3","vocab_size":4096,"hidden_size":512,
  "intermediate_size":1536,"num_hidden_layers":8,"num_attention_heads":8,"num_key_value_heads":4,
  "head_dim":64,"max_position_embeddings":1024,"tie_word_embeddings":true,"rope_theta":10000.0,
  "rms_norm_eps":1e-6}"#;

/// The random model's config: `--config` when given, else `default`. It reads the bundled
/// tokenizer's ids, so its vocabulary must hold them.
pub(super) fn random_config(a: &BenchArgs, default: &str) -> Result<String> {
    let Some(path) = &a.config else {
        return Ok(default.to_string());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config {}: cannot read it", path.display()))?;
    let cfg =
        ModelConfig::from_json(&text).with_context(|| format!("--config {}", path.display()))?;
    let bundled = ModelConfig::from_file(&crate::model::bundled::dir()?.join("config.json"))?;
    anyhow::ensure!(
        cfg.vocab_size >= bundled.vocab_size,
        "--config {}: vocab_size {} is smaller than the bundled tokenizer's {} (the random model reads its token ids)",
        path.display(),
        cfg.vocab_size,
        bundled.vocab_size
    );
    Ok(text)
}

/// A model directory with seeded random f32 weights and the bundled tokenizer.
pub(super) fn write_random_model(dir: &std::path::Path, config: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let cfg = ModelConfig::from_json(config)?;
    std::fs::write(dir.join("config.json"), config)?;
    std::fs::copy(
        crate::model::bundled::dir()?.join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )?;
    let t = crate::model::random::random_tensors(&cfg, 0, 0.05, DType::F32, &Device::Cpu)?;
    candle_core::safetensors::save(&t, dir.join("model.safetensors"))?;
    Ok(())
}

/// Removed on drop, error paths included.
pub(super) struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// `<tmp>/<prefix>-<HOST-PID>` for this run, after removing the ones of runs whose
    /// process is gone: a bench stopped by Ctrl-C never drops its directory (about 100 MB
    /// of model).
    pub fn for_this_run(prefix: &str) -> TempDir {
        let tmp = std::env::temp_dir();
        let prefix = format!("{prefix}-");
        for dead in crate::runtime::dead_process_leftovers(&tmp, &prefix) {
            let _ = std::fs::remove_dir_all(dead);
        }
        TempDir(tmp.join(format!("{prefix}{}", crate::runtime::owner_tag())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Phase {
    seconds: f64,
    /// Reading (and masking) every linear weight once, as a streamed pass must.
    read_seconds: f64,
    rss_loaded: u64,
    /// Peak RSS while loading: a resident load holds the mapped file's pages beside the
    /// copies it makes, for a moment.
    peak_loading: u64,
    /// Peak RSS from after loading through the passes.
    peak: u64,
    losses: Vec<u64>,
    weight_bytes: usize,
}

fn phase(files: &ModelFiles, a: &BenchArgs, ids: &[u32], stream: bool) -> Result<Phase> {
    reset_peak_rss();
    let dtype = crate::model::device::parse_dtype(&a.dtype)?;
    let device = crate::model::device::parse_device(&a.device)?;
    let m = LoadedModel::from_files(files.clone(), &device, dtype, stream)?;
    let rss_loaded = rss_bytes();
    let peak_loading = peak_rss_bytes();
    reset_peak_rss();
    let w = Windows::sequential(ids, a.seqlen, Some(a.calib_windows), "synthetic")?;
    let mut times = Vec::new();
    let mut losses = Vec::new();
    for _ in 0..a.iters.max(1) {
        let t = Instant::now();
        let p = crate::eval::perplexity(&m.decoder, &w, a.batch, "synthetic", |_, _| {})?;
        times.push(t.elapsed().as_secs_f64());
        losses = p.window_loss.iter().map(|x| x.to_bits()).collect();
    }
    let t = Instant::now();
    for id in m.decoder.linear_ids().collect::<Vec<_>>() {
        m.decoder.linear(id).weight()?;
    }
    let read_seconds = t.elapsed().as_secs_f64();
    Ok(Phase {
        read_seconds,
        seconds: super::median(times),
        rss_loaded,
        peak_loading,
        peak: peak_rss_bytes(),
        losses,
        weight_bytes: m.decoder.weight_bytes(),
    })
}

pub fn stream_suite(a: &BenchArgs) -> Result<()> {
    let tmp = TempDir::for_this_run("arborist-stream-bench");
    let files = match &a.model {
        None => {
            let dir = tmp.0.join("model");
            write_random_model(&dir, &random_config(a, STREAM_CONFIG)?)?;
            ModelFiles::from_dir(&dir)?
        }
        Some(m) => ModelFiles::resolve(m)?,
    };
    let cfg = ModelConfig::from_file(&files.config)?;
    let ids = super::synthetic_ids(cfg.vocab_size, a.calib_windows * a.seqlen);
    reset_peak_rss();
    let rss_start = rss_bytes();
    // Streamed first: memory a phase frees may stay with the allocator and count for the next.
    let s = phase(&files, a, &ids, true)?;
    let r = phase(&files, a, &ids, false)?;
    ensure!(
        s.losses == r.losses,
        "streamed and resident perplexities differ"
    );
    let mib = |b: u64| b as f64 / 1048576.0;
    let out = serde_json::json!({
        "suite": "stream", "model": files.id, "dtype": a.dtype, "device": a.device,
        "windows": a.calib_windows, "seqlen": a.seqlen, "batch": a.batch,
        "weight_bytes": r.weight_bytes, "identical_losses": true, "rss_start_bytes": rss_start,
        "resident": {"seconds": r.seconds, "rss_loaded_bytes": r.rss_loaded,
            "peak_rss_loading_bytes": r.peak_loading, "peak_rss_bytes": r.peak},
        "streamed": {"seconds": s.seconds, "rss_loaded_bytes": s.rss_loaded,
            "peak_rss_loading_bytes": s.peak_loading, "peak_rss_bytes": s.peak,
            "read_all_weights_seconds": s.read_seconds},
        "streamed_over_resident_time": s.seconds / r.seconds,
        "threads": candle_core::utils::get_num_threads(),
    });
    if a.json {
        outln!("{out}")?;
        return Ok(());
    }
    outln!(
        "{}: {} windows x {} tokens, {} ({} threads); weights {:.1} MiB; RSS {:.1} MiB at start",
        files.id,
        a.calib_windows,
        a.seqlen,
        a.dtype,
        candle_core::utils::get_num_threads(),
        mib(r.weight_bytes as u64),
        mib(rss_start)
    )?;
    for (name, p) in [("resident", &r), ("streamed", &s)] {
        outln!(
            "  {name:<8}: perplexity pass {:.3} s; RSS loaded {:.1} MiB (peak while loading {:.1} MiB), peak in the passes {:.1} MiB",
            p.seconds,
            mib(p.rss_loaded),
            mib(p.peak_loading),
            mib(p.peak)
        )?;
    }
    outln!(
        "  streamed / resident time {:.2} (reading every weight once: {:.3} s); losses identical bit for bit",
        s.seconds / r.seconds,
        s.read_seconds
    )?;
    Ok(())
}
