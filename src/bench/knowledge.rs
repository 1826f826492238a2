//! Knowledge benchmarks on the bundled model: dense vs uniform Wanda (`--suite knowledge`)
//! and the built-in agent's session vs uniform Wanda at the same global sparsity
//! (`--suite agent`). Every number carries its protocol.

use anyhow::Result;
use candle_core::{DType, Device};
use serde::Serialize;
use std::time::Instant;

use crate::agent::builtin::BuiltinAgent;
use crate::data::{freebaseqa::read_freebaseqa, mmlu::read_mmlu, read_text, Windows};
use crate::eval::{freebaseqa, mmlu, perplexity};
use crate::model::{bundled, LoadedModel};
use crate::prune::alloc::uniform;
use crate::prune::oneshot::{prune_sequential, Method, OneShotOptions};
use crate::prune::select::Pattern;
use crate::session::{Event, Machine, RunOptions};
use crate::worker::{inline::run_inline, launch};

pub const SEQLEN: usize = 256;
pub const CALIB_WINDOWS: usize = 32;

#[derive(Debug, Serialize)]
pub struct Row {
    pub label: String,
    pub global_sparsity: f64,
    /// Over every `SEQLEN` window of eval.txt.
    pub ppl: f64,
    /// Over every window of eval.txt at a session's default seqlen (the model's context):
    /// the length the agent's session is guarded at, so the comparison is shown at both.
    pub ppl_session_seqlen: f64,
    pub session_seqlen: usize,
    pub freebaseqa: f64,
    pub mmlu_5shot: f64,
    pub mmlu_0shot: f64,
}

/// Perplexity on every `SEQLEN` window of eval.txt, all FreebaseQA questions, all MMLU
/// test items at 5 and 0 shots.
pub fn evaluate(m: &LoadedModel, label: &str) -> Result<Row> {
    let data = bundled::data_dir()?;
    let ids = m.encode(&read_text(&data.join("eval.txt"))?)?;
    let ppl_at = |seqlen| -> Result<f64> {
        let w = Windows::sequential(&ids, seqlen, None, "eval.txt")?;
        Ok(perplexity(&m.decoder, &w, 4, "eval.txt", |_, _| {})?.value)
    };
    let session_seqlen = m.seqlen_or_default(None);
    let items = read_freebaseqa(&data.join("freebaseqa.json"))?;
    let fo = freebaseqa::FreebaseOptions {
        limit: None,
        max_new_tokens: 16,
    };
    let fb = freebaseqa::evaluate_freebaseqa(m, &items, &fo, "freebaseqa.json", |_, _| {})?;
    let mm = read_mmlu(
        &data.join("mmlu"),
        crate::data::mmlu::Shots {
            n: 5,
            option: "--shots",
        },
    )?;
    let acc = |shots| -> Result<f64> {
        let o = mmlu::MmluOptions {
            shots,
            prompt: mmlu::MmluPrompt::Hendrycks,
            limit: None,
            batch: 8,
            max_context: None,
        };
        Ok(mmlu::evaluate_mmlu(m, &mm, &o, "mmlu", |_, _| {})?.accuracy)
    };
    Ok(Row {
        label: label.into(),
        global_sparsity: m.decoder.global_sparsity(),
        ppl: ppl_at(SEQLEN)?,
        ppl_session_seqlen: ppl_at(session_seqlen)?,
        session_seqlen,
        freebaseqa: fb.accuracy,
        mmlu_5shot: acc(5)?,
        mmlu_0shot: acc(0)?,
    })
}

/// Uniform Wanda calibrated on the first `windows` windows of `seqlen` tokens of calib.txt.
fn wanda_uniform(
    base: &LoadedModel,
    sparsity: f64,
    (seqlen, windows): (usize, usize),
) -> Result<LoadedModel> {
    let data = bundled::data_dir()?;
    let ids = base.encode(&read_text(&data.join("calib.txt"))?)?;
    let calib = Windows::sequential(&ids, seqlen, Some(windows), "calib.txt")?;
    let mut d = base.decoder.clone();
    let plan = uniform(&d, Pattern::Unstructured(sparsity));
    prune_sequential(
        &mut d,
        Some(&calib),
        &plan,
        &OneShotOptions::new(Method::Wanda),
        |_, _| {},
    )?;
    Ok(LoadedModel {
        files: base.files.clone(),
        cfg: base.cfg.clone(),
        tokenizer: base.tokenizer.clone(),
        decoder: d,
        unused_tensors: base.unused_tensors.clone(),
        untied_head: base.untied_head,
    })
}

/// The suite's `--json` document: the protocol every row was measured under, the rows,
/// and for the agent suite the session's figures.
fn document(suite: &str, rows: &[Row], session: Option<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "suite": suite,
        "protocol": {
            "device": "cpu", "dtype": "f32", "model": bundled::NAME,
            "ppl": {"dataset": "eval.txt", "seqlen": SEQLEN, "windows": "all",
                    "session_seqlen": rows.first().map(|r| r.session_seqlen)},
            "freebaseqa": {"items": "all", "max_new_tokens": 16},
            "mmlu": {"items": "all", "shots": [5, 0], "prompt": "hendrycks"},
            "wanda": {"calibration": "calib.txt", "sample": "sequential"},
        },
        "rows": rows,
        "session": session,
    })
}

fn print(suite: &str, rows: &[Row], session: Option<serde_json::Value>, json: bool) -> Result<()> {
    if json {
        println!("{}", document(suite, rows, session));
        return Ok(());
    }
    let long = rows.first().map_or(0, |r| r.session_seqlen);
    println!("| model | global sparsity | ppl (eval.txt, seqlen {SEQLEN}) | ppl (seqlen {long}) | FreebaseQA | MMLU 5-shot | MMLU 0-shot |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.1}% | {:.1}% | {:.1}% |",
            r.label,
            r.global_sparsity,
            r.ppl,
            r.ppl_session_seqlen,
            r.freebaseqa * 100.0,
            r.mmlu_5shot * 100.0,
            r.mmlu_0shot * 100.0
        );
    }
    Ok(())
}

pub fn knowledge_suite(json: bool) -> Result<()> {
    let m = LoadedModel::load(bundled::NAME, &Device::Cpu, DType::F32)?;
    let mut rows = vec![evaluate(&m, "dense")?];
    for s in [0.3, 0.5, 0.7] {
        let p = wanda_uniform(&m, s, (SEQLEN, CALIB_WINDOWS))?;
        rows.push(evaluate(&p, &format!("Wanda uniform {:.0}%", s * 100.0))?);
    }
    print("knowledge", &rows, None, json)
}

/// The built-in agent's session with default run options, then uniform Wanda at the
/// global sparsity the session reached, calibrated as the knowledge table's Wanda and as
/// the session calibrates.
pub fn agent_suite(json: bool) -> Result<()> {
    let opts = RunOptions::default();
    let files = crate::model::ModelFiles::resolve(bundled::NAME)?;
    let mut engine = launch::load_engine(files, &opts)?;
    let mut machine = Machine::new(&opts.model, opts.loop_opts.clone());
    let t = Instant::now();
    let log = run_inline(&mut machine, &mut engine, &mut BuiltinAgent)?;
    let secs = t.elapsed().as_secs_f64();
    let iters = log
        .iter()
        .filter(|e| matches!(e, Event::Guard { .. }))
        .count();
    eprintln!(
        "session: {iters} iterations, {} rollbacks, {:.0} s, global sparsity {:.4}",
        machine.rollbacks,
        secs,
        machine.global_sparsity()
    );
    let agent = evaluate(&engine.model, "built-in agent session")?;
    let base = LoadedModel::load(bundled::NAME, &Device::Cpu, DType::F32)?;
    let short = (SEQLEN, CALIB_WINDOWS);
    let uni = wanda_uniform(&base, agent.global_sparsity, short)?;
    let uniform = evaluate(
        &uni,
        &format!("Wanda uniform, same global sparsity, calibrated on {CALIB_WINDOWS} x {SEQLEN}"),
    )?;
    let as_session = (base.seqlen_or_default(opts.seqlen), opts.calib_windows);
    let uni = wanda_uniform(&base, agent.global_sparsity, as_session)?;
    let label = format!(
        "Wanda uniform, same global sparsity, calibrated as the session ({} x {})",
        as_session.1, as_session.0
    );
    let uniform_as_session = evaluate(&uni, &label)?;
    let dense = evaluate(&base, "dense")?;
    let session = serde_json::json!({
        "iterations": iters, "rollbacks": machine.rollbacks, "seconds": secs,
        "global_sparsity": machine.global_sparsity(), "options": opts,
    });
    let rows = [dense, uniform, uniform_as_session, agent];
    print("agent", &rows, Some(session), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    // It printed a bare array of rows: no protocol, and no room for one.
    #[test]
    fn the_json_document_carries_the_protocol_beside_the_rows() {
        let row = Row {
            label: "dense".into(),
            global_sparsity: 0.0,
            ppl: 3.0,
            ppl_session_seqlen: 3.1,
            session_seqlen: 512,
            freebaseqa: 0.9,
            mmlu_5shot: 0.8,
            mmlu_0shot: 0.7,
        };
        let d = document("knowledge", &[row], None);
        assert_eq!(d["suite"], "knowledge");
        assert_eq!(d["protocol"]["ppl"]["seqlen"], SEQLEN);
        assert_eq!(d["protocol"]["ppl"]["session_seqlen"], 512);
        assert_eq!(d["protocol"]["dtype"], "f32");
        assert_eq!(d["rows"][0]["label"], "dense");
        assert_eq!(d["rows"][0]["mmlu_0shot"], 0.7);
        assert!(d["session"].is_null());
    }
}
