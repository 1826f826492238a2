//! `bench --suite session`: what a session iteration costs, in one run. The same built-in
//! session runs twice, with full perplexity passes and with the incremental evaluation;
//! both must produce the same perplexities bit for bit.

use crate::cli::outln;
use anyhow::{ensure, Result};
use serde::Serialize;
use std::time::Instant;

use super::{forward_flops, gemm_gflops, median, BenchArgs};
use crate::agent::builtin::BuiltinAgent;
use crate::session::{Event, Machine, RunOptions};
use crate::worker::{inline::run_inline_observed, launch, Engine};

#[derive(Debug, Serialize, Clone)]
pub struct Iteration {
    pub iteration: usize,
    pub seconds: f64,
    pub profile_seconds: f64,
    pub eval_seconds: f64,
    pub from_block: Option<usize>,
    pub calib_from_block: Option<usize>,
    pub ppl: f64,
    pub accepted: bool,
}

#[derive(Debug, Serialize)]
pub struct SessionRun {
    pub eval_cache_mb: usize,
    pub iterations: Vec<Iteration>,
    pub seconds: f64,
    /// The evaluation cache's committed states at the end (an evaluation holds its own
    /// uncommitted states beside them until the guard decides).
    pub eval_cache_bytes_at_end: usize,
}

impl SessionRun {
    fn column(&self, f: impl Fn(&Iteration) -> f64) -> Vec<f64> {
        self.iterations.iter().map(f).collect()
    }

    /// f of each iteration over f of the same iteration of `other`.
    fn over(&self, other: &SessionRun, f: impl Fn(&Iteration) -> f64) -> Vec<f64> {
        let theirs = other.column(&f);
        self.column(&f)
            .iter()
            .zip(theirs)
            .map(|(a, b)| a / b)
            .collect()
    }
}

pub(super) fn session(opts: &RunOptions, engine: &mut Engine) -> Result<SessionRun> {
    let mut machine = Machine::new(&opts.model, opts.loop_opts.clone());
    let start = Instant::now();
    let mut last = Instant::now();
    let mut its: Vec<Iteration> = Vec::new();
    let (mut prof, mut eval, mut from, mut ppl) = (0.0, 0.0, None, f64::NAN);
    let mut calib_from = None;
    run_inline_observed(
        &mut machine,
        engine,
        &mut BuiltinAgent,
        &mut |ev| match ev {
            Event::Baseline { .. } => last = Instant::now(),
            Event::Profiled {
                seconds,
                calib_from_block,
                ..
            } => {
                prof = *seconds;
                calib_from = *calib_from_block;
            }
            Event::Evaluated { eval: e, .. } => {
                eval = e.seconds;
                from = e.from_block;
                ppl = e.ppl;
            }
            Event::Guard {
                iteration,
                accepted,
                ..
            } => {
                its.push(Iteration {
                    iteration: *iteration,
                    seconds: last.elapsed().as_secs_f64(),
                    profile_seconds: std::mem::take(&mut prof),
                    eval_seconds: eval,
                    from_block: from,
                    calib_from_block: calib_from.take(),
                    ppl,
                    accepted: *accepted,
                });
                last = Instant::now();
            }
            _ => {}
        },
    )?;
    Ok(SessionRun {
        eval_cache_mb: opts.eval_cache_mb,
        iterations: its,
        seconds: start.elapsed().as_secs_f64(),
        eval_cache_bytes_at_end: engine.eval_cache_bytes(),
    })
}

fn quartiles(v: &[f64]) -> [f64; 3] {
    [0.25, 0.5, 0.75].map(|p| super::quantile(v, p))
}

/// The session suite's options for `model` (`--calib`/`--eval` as given); `random` adds
/// the bundled model's texts, whose tokenizer it uses.
pub(super) fn options(a: &BenchArgs, model: &str, random: bool) -> Result<RunOptions> {
    let mut opts = RunOptions {
        model: model.to_string(),
        calib: a.calib.clone(),
        eval: a.eval.clone(),
        device: a.device.clone(),
        dtype: a.dtype.clone(),
        ..RunOptions::default()
    };
    opts.loop_opts.max_iters = a.session_iters;
    if random {
        let data = crate::model::bundled::data_dir()?;
        let text = |f: &str| Some(data.join(f).display().to_string());
        opts.calib = opts.calib.or_else(|| text("calib.txt"));
        opts.eval = opts.eval.or_else(|| text("eval.txt"));
    }
    Ok(opts)
}

pub fn session_suite(a: &BenchArgs) -> Result<()> {
    let random = a.session_model() == "random";
    // The random model lives in a temporary directory for this run (children included).
    let tmp = random.then(|| super::stream::TempDir::for_this_run("arborist-session-bench"));
    let model = match &tmp {
        Some(t) => {
            // The stream suite's shape with the bundled model's context, so that windows
            // default to its 512 tokens; or `--config`'s shape.
            let mut cfg: serde_json::Value = serde_json::from_str(super::stream::STREAM_CONFIG)?;
            cfg["max_position_embeddings"] = 512.into();
            let cfg = super::stream::random_config(a, &cfg.to_string())?;
            super::stream::write_random_model(&t.0, &cfg)?;
            t.0.display().to_string()
        }
        None => a.session_model().to_string(),
    };
    let opts = options(a, &model, random)?;
    let files = crate::model::ModelFiles::resolve(&opts.model)?;
    // Fresh processes first, while this one holds nothing.
    let memory = (a.memory_runs > 0)
        .then(|| super::memory::measure(a, &opts, a.memory_runs))
        .transpose()?;

    // Dense evaluation throughput against a GEMM timed in this run.
    let mut engine = launch::load_engine(files.clone(), &opts)?;
    let d = &engine.model.decoder;
    let weight_bytes = d.weight_bytes();
    let (w, batch) = engine.eval_windows();
    let w = w.clone();
    // One untimed pass first: the first passes of a process run slower (fresh pages, the
    // allocator's thresholds still growing), and the session's passes all come after it.
    crate::eval::perplexity(d, &w, batch, "eval", |_, _| {})?;
    let mut full = Vec::new();
    for _ in 0..a.iters.max(1) {
        let t = Instant::now();
        crate::eval::perplexity(d, &w, batch, "eval", |_, _| {})?;
        full.push(t.elapsed().as_secs_f64());
    }
    let full_s = median(full);
    let tokens = w.len() * w.seqlen;
    let gflops = forward_flops(&d.cfg, w.len(), w.seqlen) / full_s / 1e9;
    let gemm = gemm_gflops(
        batch * w.seqlen,
        d.cfg.hidden_size,
        d.cfg.intermediate_size,
        a.iters.max(1),
        d.dtype,
        &d.device,
    )?;

    let (hidden, inter, blocks) = (d.cfg.hidden_size, d.cfg.intermediate_size, d.blocks.len());
    let dt = crate::model::device::dtype_name(d.dtype);
    let depth = super::depth::by_block(
        &mut engine.model.decoder,
        &w,
        batch,
        opts.eval_cache_mb << 20,
        a.iters,
    )?;
    let incremental = session(&opts, &mut engine)?;
    let resident: usize = engine
        .model
        .decoder
        .linear_ids()
        .filter(|&i| engine.model.decoder.linear(i).dense_resident())
        .count();
    let full_opts = RunOptions {
        eval_cache_mb: 0,
        ..opts.clone()
    };
    let mut engine_full = launch::load_engine(files, &full_opts)?;
    let full_run = session(&full_opts, &mut engine_full)?;
    let bits =
        |r: &SessionRun| -> Vec<u64> { r.iterations.iter().map(|i| i.ppl.to_bits()).collect() };
    ensure!(
        bits(&incremental) == bits(&full_run),
        "incremental and full sessions diverged: {:?} vs {:?}",
        incremental.column(|i| i.ppl),
        full_run.column(|i| i.ppl)
    );

    // Each incremental evaluation against the full pass over the same model state in the
    // session run without the cache (the same iteration: the perplexities are equal).
    let eval_q = quartiles(&incremental.over(&full_run, |i| i.eval_seconds));
    let it_q = quartiles(&incremental.over(&full_run, |i| i.seconds));
    let profiled: Vec<f64> = incremental
        .column(|i| i.profile_seconds)
        .into_iter()
        .filter(|&s| s > 0.0)
        .collect();
    let prof_q = quartiles(&profiled);
    let iter_q = quartiles(&incremental.column(|i| i.seconds));
    let full_iter_q = quartiles(&full_run.column(|i| i.seconds));
    let froms: Vec<String> = incremental
        .iterations
        .iter()
        .map(|i| i.from_block.map_or("-".into(), |b| b.to_string()))
        .collect();
    let calib_froms: Vec<String> = incremental
        .iterations
        .iter()
        .map(|i| i.calib_from_block.map_or("-".into(), |b| b.to_string()))
        .collect();
    let out = serde_json::json!({
        "model": a.session_model(), "device": opts.device, "dtype": dt,
        "eval_windows": w.len(), "seqlen": w.seqlen, "eval_tokens": tokens,
        "full_eval_seconds": full_s, "eval_tokens_per_second": tokens as f64 / full_s,
        "eval_gflops": gflops, "gemm_gflops": gemm, "fraction_of_gemm": gflops / gemm,
        "iterations": incremental.iterations.len(),
        "incremental_eval_over_full_quartiles": eval_q,
        "iteration_incremental_over_full_quartiles": it_q,
        "iteration_seconds_quartiles": iter_q,
        "iteration_seconds_full_quartiles": full_iter_q,
        "profile_seconds_quartiles": prof_q,
        "from_block": froms, "calib_from_block": calib_froms, "blocks": blocks,
        "incremental_eval_over_full_by_first_changed_block": depth,
        "eval_cache_bytes_at_end": incremental.eval_cache_bytes_at_end,
        "weight_bytes": weight_bytes, "dense_copies_resident": resident,
        "memory": memory,
        "threads": candle_core::utils::get_num_threads(),
        "incremental": incremental, "full": full_run,
    });
    if a.json {
        outln!("{out}")?;
        return Ok(());
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    outln!(
        "dense eval: {} windows x {} tokens in {:.3} s = {:.0} tokens/s, {:.2} GFLOP/s = {:.0}% of a {}x{}x{} GEMM at {:.2} GFLOP/s ({dt}, {} threads)",
        w.len(), w.seqlen, full_s, tokens as f64 / full_s, gflops, 100.0 * gflops / gemm,
        batch * w.seqlen, hidden, inter, gemm, candle_core::utils::get_num_threads()
    )?;
    outln!(
        "session ({} iterations, built-in agent, same perplexities bit for bit with and without the cache):",
        incremental.iterations.len()
    )?;
    outln!(
        "  incremental eval / full eval of the same state: q1 {:.2}  median {:.2}  q3 {:.2}  (started at block {} of {})",
        eval_q[0], eval_q[1], eval_q[2], froms.join(","), blocks
    )?;
    let by_depth: Vec<String> = depth
        .iter()
        .map(|x| format!("{}: {:.2}", x.block, x.ratio))
        .collect();
    outln!(
        "  incremental eval / full eval by the block of the first change (one layer, same bits): {}",
        by_depth.join(", ")
    )?;
    outln!(
        "  iteration, incremental / full session: q1 {:.2}  median {:.2}  q3 {:.2}  (median {:.2} s vs {:.2} s)",
        it_q[0], it_q[1], it_q[2], iter_q[1], full_iter_q[1]
    )?;
    outln!(
        "  profile: median {:.2} s (q1 {:.2}, q3 {:.2}); calibration pass started at block {}",
        prof_q[1],
        prof_q[0],
        prof_q[2],
        calib_froms.join(",")
    )?;
    outln!(
        "memory: weights {:.1} MiB, unmasked copies resident {resident}, eval cache at the end {:.1} MiB (its committed states; an evaluation adds those it replaces until the guard decides)",
        mib(weight_bytes as u64),
        mib(incremental.eval_cache_bytes_at_end as u64),
    )?;
    if let Some(m) = &memory {
        let ratios: Vec<String> = m.per_run.iter().map(|r| format!("{r:.2}")).collect();
        outln!(
            "  fresh processes, median of {}: RSS {:.1} MiB at start, {:.1} MiB loaded; one iteration adds {:.1} MiB after loading (its working set); {} iterations peak at {:.1} MiB RSS = {:.2} x (weights + working set) (per run {}); they add {:.2} x what one iteration adds",
            m.runs, mib(m.rss_start_bytes), mib(m.rss_loaded_bytes), mib(m.working_set_bytes),
            a.session_iters, mib(m.peak_rss_bytes), m.peak_over_weights_plus_working_set,
            ratios.join(", "), m.added_over_working_set
        )?;
        if let (Some(u), Some(h)) = (m.heap_in_use_end_bytes, m.heap_held_end_bytes) {
            let arenas = m.session.iter().filter_map(|s| s.heap_arenas).max();
            outln!(
                "  heap at the end, one iteration / {} iterations: {:.1} / {:.1} MiB in use, {:.1} / {:.1} MiB held by malloc (arenas: {})",
                a.session_iters, mib(u[0]), mib(u[1]), mib(h[0]), mib(h[1]),
                arenas.map_or_else(|| "?".into(), |n| n.to_string())
            )?;
        }
    }
    Ok(())
}
