//! `arborist bench`: forward throughput and achieved FLOP/s against a GEMM of matching
//! shape timed in the same run, so the ratio survives machine drift.

mod depth;
pub mod knowledge;
mod memory;
mod ppl;
pub mod session;
pub mod stream;

use crate::cli::outln;
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use serde::Serialize;
use std::time::Instant;

use crate::model::device::{dtype_name, parse_device, parse_dtype};
use crate::model::{random::random_decoder, Decoder, ModelConfig};
use crate::profile::GradSpec;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Tokens per window.
    #[arg(long, default_value_t = SEQLEN)]
    pub seqlen: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = BATCH)]
    pub batch: usize,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = ITERS)]
    pub iters: usize,
    /// cpu or cuda:N (every suite but knowledge and agent).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, f16 or bf16 (every suite but knowledge and agent).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// forward, ppl (perplexity of a random model: throughput against a GEMM in the same
    /// dtype on the same device), profile (sensitivity profile), prune (one-shot Wanda 50%), knowledge
    /// (bundled model: dense vs uniform Wanda), agent (built-in session vs uniform Wanda) or
    /// session (iteration cost: full vs incremental evaluation, profile time, memory) or
    /// stream (perplexity with resident weights vs --stream-layers: time and memory).
    /// Run one suite per process so the peak RSS belongs to it.
    #[arg(long, default_value = "forward")]
    pub suite: String,
    /// Calibration windows for the profile and prune suites (ppl: evaluation windows).
    #[arg(long, default_value_t = CALIB_WINDOWS)]
    pub calib_windows: usize,
    /// A Hugging Face config.json for the random model of the forward, ppl, profile and
    /// prune suites (default: the 7.3M-parameter bench shape), e.g. benches/qwen3-4b.json;
    /// also of the session suite's `--model random` and the stream suite's (default: the
    /// 29M-parameter shape; a vocabulary at least the bundled tokenizer's).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Print the results as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// The session suite's model (default: bundled; stream suite: a random 29M-parameter
    /// model unless given). `random` runs the session suite on that random model (written
    /// to a temporary directory, 512-token context) with the bundled model's texts and
    /// tokenizer.
    #[arg(long)]
    pub model: Option<String>,
    /// The session suite's calibration text, for a model other than `bundled` or `random`.
    #[arg(long)]
    pub calib: Option<String>,
    /// The session suite's evaluation text, for a model other than `bundled` or `random`.
    #[arg(long)]
    pub eval: Option<String>,
    /// The session suite's iterations per session.
    #[arg(long, default_value_t = SESSION_ITERS)]
    pub session_iters: usize,
    /// The session suite's memory measurement: pairs of fresh processes (one iteration, then
    /// the whole session) whose medians are reported; 0 skips it.
    #[arg(long, default_value_t = MEMORY_RUNS)]
    pub memory_runs: usize,
}

impl BenchArgs {
    /// The session suite's model: `--model`, or the bundled one.
    pub fn session_model(&self) -> &str {
        self.model.as_deref().unwrap_or(crate::model::bundled::NAME)
    }
}

const SESSION_ITERS: usize = 12;
const SEQLEN: usize = 256;
const ITERS: usize = 5;
const BATCH: usize = 4;
const CALIB_WINDOWS: usize = 32;
const MEMORY_RUNS: usize = 3;

/// A Qwen3-shaped model of about 7.3M parameters (6.3M in the blocks' linear layers).
pub fn bench_config() -> ModelConfig {
    ModelConfig::from_json(
        r#"{"model_type":"qwen3","vocab_size":4096,"hidden_size":256,"intermediate_size":768,
            "num_hidden_layers":8,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":64,
            "rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":true,
            "max_position_embeddings":4096}"#,
    )
    .expect("bench config parses")
}

#[derive(Debug, Serialize)]
pub struct ForwardBench {
    pub params: usize,
    pub tokens_per_forward: usize,
    pub forward_seconds: f64,
    pub tokens_per_second: f64,
    pub forward_gflops: f64,
    pub gemm_gflops: f64,
    pub fraction_of_gemm: f64,
    pub threads: usize,
    pub dtype: String,
    pub device: String,
    /// Windows per pass and tokens per window (synthetic ids).
    pub batch: usize,
    pub seqlen: usize,
    /// One more pass with a device sync at each phase's end (`model::phases`): its wall
    /// time and each phase's seconds, largest first.
    pub marked_pass_seconds: f64,
    pub phases: Vec<PhaseTime>,
}

#[derive(Debug, Serialize)]
pub struct PhaseTime {
    pub phase: &'static str,
    pub seconds: f64,
}

/// A device as `--device` spells it (and prune's arborist.json records it), not `Cpu`.
pub(crate) fn device_name(d: &candle_core::Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// `n` token ids spread over the vocabulary by a multiplicative hash (the same tokens in
/// every suite and every run).
fn synthetic_ids(vocab: usize, n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 2654435761usize) >> 7) as u32 % vocab as u32)
        .collect()
}

/// Parameters of the blocks' linear layers and the embedding.
fn params(cfg: &ModelConfig) -> usize {
    cfg.num_layers * cfg.linear_params_per_block() + cfg.vocab_size * cfg.hidden_size
}

/// FLOPs of one forward over `b` windows of `t` tokens (matmuls only; 2 per multiply-add).
pub fn forward_flops(cfg: &ModelConfig, b: usize, t: usize) -> f64 {
    let n = (b * t) as f64;
    let linear = cfg.num_layers as f64 * cfg.linear_params_per_block() as f64;
    let head = (cfg.hidden_size * cfg.vocab_size) as f64;
    // QKᵀ and PV over the causal half of the score matrix (t(t+1)/2 query-key pairs per
    // head): what the model needs, not the full T×T that an untiled kernel multiplies (the
    // tiled attention computes about 62% of T×T at 256 tokens, so this undercounts it).
    let pairs = (b * t * (t + 1) / 2) as f64;
    let attn = cfg.num_layers as f64 * 4.0 * pairs * (cfg.head_dim * cfg.num_heads) as f64;
    2.0 * n * (linear + head) + attn
}

/// The `p`-quantile of `v`, interpolated linearly between the two nearest ranks (numpy's
/// default), so the median of an even count is the mean of the middle two. Until
/// 2026-12-02 the rank was rounded, which made the median of two runs their maximum.
pub fn quantile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let x = (s.len() - 1) as f64 * p;
    let (lo, hi) = (s[x.floor() as usize], s[x.ceil() as usize]);
    if lo == hi {
        lo
    } else {
        lo + (hi - lo) * x.fract()
    }
}

fn median(v: Vec<f64>) -> f64 {
    quantile(&v, 0.5)
}

fn time<F: FnMut() -> Result<()>>(iters: usize, mut f: F) -> Result<f64> {
    f()?; // warm-up
    let mut ts = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let s = Instant::now();
        f()?;
        ts.push(s.elapsed().as_secs_f64());
    }
    Ok(median(ts))
}

/// GFLOP/s of [m, k] × [k, n] with the weight transposed as the decoder stores it.
pub fn gemm_gflops(
    m: usize,
    k: usize,
    n: usize,
    iters: usize,
    dtype: DType,
    dev: &Device,
) -> Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (m, k), dev)?.to_dtype(dtype)?;
    let w = Tensor::randn(0f32, 1.0, (n, k), dev)?.to_dtype(dtype)?;
    // A small product is over in milliseconds, and a median of three of those was thrown
    // off by a neighbour's burst (once 60 instead of 94-150 GFLOP/s): repeat it up to about
    // 10 GFLOP in all, at most 50 times.
    let flop = 2.0 * (m * k * n) as f64;
    let reps = iters.max(((1e10 / flop).ceil() as usize).min(50));
    let s = time(reps, || {
        let y = a.matmul(&w.t()?)?;
        dev.synchronize()?;
        drop(y);
        Ok(())
    })?;
    Ok(flop / s / 1e9)
}

pub fn forward_bench(model: &Decoder, b: usize, t: usize, iters: usize) -> Result<ForwardBench> {
    let cfg = &model.cfg;
    let dev = &model.device;
    let ids: Vec<u32> = (0..b * t)
        .map(|i| (i * 7919 % cfg.vocab_size) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (b, t), dev)?;
    let secs = time(iters, || {
        let y = model.forward(&ids, None)?;
        dev.synchronize()?;
        drop(y);
        Ok(())
    })?;
    let ((), marked, phases) = crate::model::phases::measure(dev, || {
        model.forward(&ids, None)?;
        Ok(())
    })?;
    let mut phases: Vec<PhaseTime> = phases
        .into_iter()
        .map(|(phase, seconds)| PhaseTime { phase, seconds })
        .collect();
    phases.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let flops = forward_flops(cfg, b, t);
    let gemm = gemm_gflops(
        b * t,
        cfg.hidden_size,
        cfg.intermediate_size,
        iters,
        model.dtype,
        dev,
    )?;
    let gflops = flops / secs / 1e9;
    Ok(ForwardBench {
        params: params(cfg),
        tokens_per_forward: b * t,
        forward_seconds: secs,
        tokens_per_second: (b * t) as f64 / secs,
        forward_gflops: gflops,
        gemm_gflops: gemm,
        fraction_of_gemm: gflops / gemm,
        threads: candle_core::utils::get_num_threads(),
        dtype: dtype_name(model.dtype).to_string(),
        device: device_name(&model.device),
        batch: b,
        seqlen: t,
        marked_pass_seconds: marked,
        phases,
    })
}

/// Peak resident set size of this process so far, in bytes (Linux; 0 elsewhere).
pub fn peak_rss_bytes() -> u64 {
    proc_status_bytes("VmHWM:")
}

/// Resident set size now, in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    proc_status_bytes("VmRSS:")
}

/// Give freed heap back to the system and forget the peak resident set so far, so that a
/// phase's numbers are its own (Linux 4.0+ with glibc; elsewhere the peak is cumulative).
pub fn reset_peak_rss() {
    crate::runtime::return_free_heap();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A kB field of /proc/self/status, in bytes.
fn proc_status_bytes(field: &str) -> u64 {
    crate::runtime::proc_kb_field("/proc/self/status", field).unwrap_or(0)
}

/// Wall time and peak RSS of the profile or of one-shot Wanda on the bench model.
fn calib_suite(a: &BenchArgs, mut model: Decoder) -> Result<()> {
    let ids = synthetic_ids(model.cfg.vocab_size, a.calib_windows * a.seqlen);
    let w = crate::data::Windows::sequential(&ids, a.seqlen, None, "synthetic")?;
    let grad = GradSpec::paper(4);
    let start = Instant::now();
    let mut parts = None;
    match a.suite.as_str() {
        "profile" => {
            let p = crate::profile::compute(&model, &w, grad, a.batch, "synthetic")?;
            parts = Some(p.seconds);
        }
        "prune" => {
            use crate::prune::{alloc, oneshot, select::Pattern};
            let plan = alloc::uniform(&model, Pattern::Unstructured(0.5));
            let mut opts = oneshot::OneShotOptions::new(oneshot::Method::Wanda);
            opts.batch = a.batch;
            oneshot::prune_sequential(&mut model, Some(&w), &plan, &opts, |_, _| {})?;
        }
        other => unreachable!("--suite {other} was checked in bench::run"),
    }
    let secs = start.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "suite": a.suite, "seconds": secs, "peak_rss_bytes": peak_rss_bytes(),
        "weight_bytes": model.weight_bytes(), "calib_windows": w.len(), "seqlen": a.seqlen,
        "threads": candle_core::utils::get_num_threads(), "batch": a.batch,
        "dataset": "synthetic", "params": params(&model.cfg),
        "dtype": dtype_name(model.dtype), "device": device_name(&model.device),
        "what": match a.suite.as_str() {
            "profile" => serde_json::json!({"grad_windows": grad.windows, "grad_average": grad.average.name(), "seconds": parts}),
            _ => serde_json::json!({"method": "wanda", "sparsity": 0.5, "allocation": "uniform"}),
        },
    });
    if a.json {
        outln!("{out}")?;
    } else {
        outln!(
            "{}: {:.2} s for {} windows of {} tokens; peak RSS {:.1} MiB with {:.1} MiB of weights ({} threads)",
            a.suite, secs, w.len(), a.seqlen,
            peak_rss_bytes() as f64 / 1048576.0, model.weight_bytes() as f64 / 1048576.0,
            candle_core::utils::get_num_threads()
        )?;
        if let Some(p) = parts {
            outln!(
                "  calibration pass {:.2} s, gradient pass {:.2} s, layer rows {:.2} s",
                p.calibration,
                p.gradients,
                p.rows
            )?;
        }
    }
    Ok(())
}

/// Whether `suite` reads the common flag `flag`.
fn reads(suite: &str, flag: &str) -> bool {
    match (suite, flag) {
        ("knowledge" | "agent", _) => false,
        ("session" | "session-memory", f) => matches!(f, "--iters" | "--device" | "--dtype"),
        ("forward", "--calib-windows") => false,
        ("profile" | "prune", "--iters") => false,
        _ => true,
    }
}

/// Why a suite reads fewer flags than the others.
fn what_it_runs(suite: &str) -> &'static str {
    match suite {
        "knowledge" | "agent" => "it evaluates the bundled model as the knowledge table does, on the CPU in f32",
        "session" | "session-memory" => "a session runs with `run`'s windows: the model's context, 16 calibration and 16 evaluation windows, batch 4",
        "forward" => "it times forward passes of --batch windows of --seqlen tokens",
        "profile" | "prune" => "it times one run",
        _ => "",
    }
}

/// The suites a user may ask for (`session-memory` is the session suite's child process).
const SUITES: &str = "forward, ppl, profile, prune, knowledge, agent, session or stream";

/// Set in the environment of the session suite's memory children, the only callers of
/// `--suite session-memory`.
pub(crate) const MEMORY_CHILD_ENV: &str = "ARBORIST_BENCH_MEMORY_CHILD";

pub fn run(a: BenchArgs) -> Result<()> {
    // First, so that a misspelled suite is not blamed on a flag it would not have read.
    let known = SUITES.replace(" or ", ", ");
    let child = a.suite == "session-memory" && std::env::var_os(MEMORY_CHILD_ENV).is_some();
    anyhow::ensure!(
        child || known.split(", ").any(|s| s == a.suite),
        "--suite {}: expected {SUITES}",
        a.suite
    );
    anyhow::ensure!(
        a.batch > 0,
        "--batch 0: a forward pass needs at least one window"
    );
    crate::cli::seqlen_ok(Some(a.seqlen))?;
    crate::cli::at_least_one(
        "calib-windows",
        a.calib_windows,
        "the suites run on at least one window",
    )?;
    crate::cli::at_least_one("iters", a.iters, "a median needs one timed repetition")?;
    crate::cli::at_least_one(
        "session-iters",
        a.session_iters,
        "a session needs one iteration to time",
    )?;
    let dev = parse_device(&a.device)?;
    let dtype = parse_dtype(&a.dtype)?;
    if !matches!(a.suite.as_str(), "session" | "session-memory") {
        for (flag, v) in [("--calib", &a.calib), ("--eval", &a.eval)] {
            anyhow::ensure!(
                v.is_none(),
                "{flag}: only the session suite reads texts (--suite {} runs on synthetic windows or the bundled data)",
                a.suite
            );
        }
    }
    let random_model = match a.suite.as_str() {
        "session" => a.model.as_deref() == Some("random"),
        "stream" => a.model.is_none(),
        "knowledge" | "agent" | "session-memory" => false,
        _ => true,
    };
    anyhow::ensure!(
        a.config.is_none() || random_model,
        "--config: only a random model reads it (suites forward, ppl, profile, prune; session with --model random; stream without --model), not --suite {}{}",
        a.suite,
        a.model.as_ref().map(|m| format!(" --model {m}")).unwrap_or_default()
    );
    // Checked here, not first in the session-memory children (which printed it, then
    // their own failure).
    if a.suite == "session" && !matches!(a.session_model(), "bundled" | "random") {
        for (flag, v) in [("--calib", &a.calib), ("--eval", &a.eval)] {
            anyhow::ensure!(
                v.is_some(),
                "{flag} FILE is required for --model {} (only `bundled` and `random` bring their own texts)",
                a.session_model()
            );
        }
    }
    // The session suite's own flags, set away from their defaults for another suite, would
    // be silently ignored.
    let session = matches!(a.suite.as_str(), "session" | "session-memory");
    let own = [
        (
            "--session-iters",
            a.session_iters != SESSION_ITERS,
            session,
            "the session suite reads it",
        ),
        (
            "--memory-runs",
            a.memory_runs != MEMORY_RUNS,
            session,
            "the session suite reads it",
        ),
        (
            "--model",
            a.model.is_some(),
            session || a.suite == "stream",
            "the session suite reads it (and stream)",
        ),
    ];
    // The common flags a suite does not read, set away from their defaults, were ignored
    // silently (a session bench asked for bf16 ran in f32).
    let tuned = [
        ("--seqlen", a.seqlen != SEQLEN),
        ("--batch", a.batch != BATCH),
        ("--calib-windows", a.calib_windows != CALIB_WINDOWS),
        ("--iters", a.iters != ITERS),
        ("--device", a.device != "cpu"),
        ("--dtype", a.dtype != "f32"),
    ];
    if let Some((flag, _)) = tuned.iter().find(|(f, set)| *set && !reads(&a.suite, f)) {
        anyhow::bail!(
            "{flag}: --suite {} does not read it ({})",
            a.suite,
            what_it_runs(&a.suite)
        );
    }
    if let Some((flag, _, _, readers)) = own.iter().find(|(_, set, read, _)| *set && !*read) {
        anyhow::bail!("{flag}: only {readers}, not --suite {}", a.suite);
    }
    match a.suite.as_str() {
        "knowledge" => return knowledge::knowledge_suite(a.json),
        "agent" => return knowledge::agent_suite(a.json),
        "session" => return session::session_suite(&a),
        "session-memory" => return memory::child(&a),
        "stream" => return stream::stream_suite(&a),
        _ => {}
    }
    let cfg = match &a.config {
        Some(path) => ModelConfig::from_file(path)?,
        None => bench_config(),
    };
    let model = random_decoder(&cfg, 0, dtype, &dev)?;
    if a.suite == "ppl" {
        return ppl::ppl_suite(&a, &model);
    }
    if a.suite != "forward" {
        return calib_suite(&a, model);
    }
    let r = forward_bench(&model, a.batch, a.seqlen, a.iters)?;
    if a.json {
        // Flat, with `suite` and the data named, as the other suites print (until
        // 2026-12-03 nested under "forward", without them).
        let mut out = serde_json::to_value(&r)?;
        let extra = serde_json::json!({
            "suite": "forward", "dataset": "synthetic", "windows": r.batch, "iters": a.iters,
            "gemm_shape": [r.tokens_per_forward, model.cfg.hidden_size, model.cfg.intermediate_size],
        });
        if let (Some(o), serde_json::Value::Object(e)) = (out.as_object_mut(), extra) {
            o.extend(e);
        }
        outln!("{out}")?;
    } else {
        outln!(
            "forward: {} params, {} tokens/pass, {:.0} tokens/s, {:.1} GFLOP/s = {:.0}% of a {}x{}x{} GEMM at {:.1} GFLOP/s ({} threads, {})",
            r.params, r.tokens_per_forward, r.tokens_per_second, r.forward_gflops,
            100.0 * r.fraction_of_gemm, r.tokens_per_forward, model.cfg.hidden_size,
            model.cfg.intermediate_size, r.gemm_gflops, r.threads, r.dtype
        )?;
        let parts: Vec<String> = r
            .phases
            .iter()
            .map(|p| {
                format!(
                    "{} {:.0}%",
                    p.phase,
                    100.0 * p.seconds / r.marked_pass_seconds
                )
            })
            .collect();
        outln!(
            "phases of one marked pass ({:.3} s): {}",
            r.marked_pass_seconds,
            parts.join(", ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quantile;

    // The median of an even count is the mean of the middle two (it was the upper one, so
    // the median of two memory runs reported their maximum); quartiles interpolate.
    #[test]
    fn quantiles_interpolate_between_ranks() {
        assert_eq!(quantile(&[2.626, 2.414], 0.5), (2.626 + 2.414) / 2.0);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.25), 1.75);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.75), 3.25);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[7.0], 0.25), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
        // Equal neighbours, infinite ones included, are returned as they are.
        assert_eq!(
            quantile(&[f64::INFINITY, f64::INFINITY], 0.5),
            f64::INFINITY
        );
    }
}
