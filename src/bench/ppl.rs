//! `bench --suite ppl`: perplexity of a random model of any shape (`--config`, e.g. a
//! 4B-shaped Qwen3 in bf16 on a GPU) over synthetic windows, its throughput, and the
//! fraction of a GEMM of the MLP's shape timed in the same run, dtype and device.

use crate::cli::outln;
use anyhow::Result;
use std::time::Instant;

use super::{forward_flops, gemm_gflops, median, params, synthetic_ids, BenchArgs};
use crate::data::Windows;
use crate::model::Decoder;

pub fn ppl_suite(a: &BenchArgs, model: &Decoder) -> Result<()> {
    let cfg = &model.cfg;
    let ids = synthetic_ids(cfg.vocab_size, a.calib_windows.max(1) * a.seqlen);
    let w = Windows::sequential(&ids, a.seqlen, None, "synthetic")?;
    let run = || crate::eval::perplexity(model, &w, a.batch, "synthetic", |_, _| {});
    let first = run()?; // warm-up: kernels loaded, allocator primed
    let mut secs = Vec::new();
    for _ in 0..a.iters.max(1) {
        let t = Instant::now();
        let p = run()?;
        secs.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            p.value.to_bits() == first.value.to_bits(),
            "perplexity changed between identical passes: {} vs {}",
            p.value,
            first.value
        );
    }
    let s = median(secs);
    let tokens = w.len() * w.seqlen;
    let gflops = forward_flops(cfg, w.len(), w.seqlen) / s / 1e9;
    // The rows one pass multiplies at a time: fewer windows than --batch make one short batch.
    let rows = a.batch.min(w.len()) * w.seqlen;
    let gemm = gemm_gflops(
        rows,
        cfg.hidden_size,
        cfg.intermediate_size,
        a.iters.max(1),
        model.dtype,
        &model.device,
    )?;
    let params = params(cfg);
    let dtype = crate::model::device::dtype_name(model.dtype);
    let device = super::device_name(&model.device);
    if a.json {
        outln!(
            "{}",
            serde_json::json!({
                "suite": "ppl", "ppl": first.value, "dataset": "synthetic",
                "seqlen": w.seqlen, "windows": w.len(), "batch": a.batch, "dtype": dtype,
                "device": device, "params": params, "seconds": s,
                "threads": candle_core::utils::get_num_threads(), "gemm_rows": rows,
                "tokens_per_second": tokens as f64 / s, "gflops": gflops,
                "gemm_gflops": gemm, "fraction_of_gemm": gflops / gemm,
            })
        )?;
    } else {
        outln!(
            "ppl: {:.4} over {} synthetic windows of {} tokens ({params} params, {dtype}, {device}, {} threads); {:.3} s = {:.0} tokens/s, {:.1} GFLOP/s = {:.0}% of a {}x{}x{} GEMM at {:.1} GFLOP/s",
            first.value, w.len(), w.seqlen, candle_core::utils::get_num_threads(), s,
            tokens as f64 / s, gflops, 100.0 * gflops / gemm, rows, cfg.hidden_size,
            cfg.intermediate_size, gemm
        )?;
    }
    Ok(())
}
