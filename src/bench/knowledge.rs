//! Knowledge benchmarks on the bundled model: dense vs uniform Wanda (`--suite knowledge`)
//! and the built-in agent's session vs uniform Wanda at the same global sparsity
//! (`--suite agent`). Every number carries its protocol.

use crate::cli::{errln, outln};
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
    /// How many windows each perplexity averaged (every whole window of eval.txt).
    pub ppl_windows: usize,
    pub ppl_session_windows: usize,
    pub freebaseqa: f64,
    pub freebaseqa_items: usize,
    pub mmlu_5shot: f64,
    pub mmlu_0shot: f64,
    pub mmlu_items: usize,
    /// A Wanda row's calibration: the first `windows` windows of `seqlen` tokens of
    /// calib.txt (none for the dense model and the session).
    pub calibration: Option<Calibration>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Calibration {
    pub seqlen: usize,
    pub windows: usize,
}

/// Perplexity on every `SEQLEN` window of eval.txt, all FreebaseQA questions, all MMLU
/// test items at 5 and 0 shots.
pub fn evaluate(m: &LoadedModel, label: &str) -> Result<Row> {
    let data = bundled::data_dir()?;
    let ids = m.encode(&read_text(&data.join("eval.txt"))?)?;
    let ppl_at = |seqlen| -> Result<(f64, usize)> {
        let w = Windows::sequential(&ids, seqlen, None, "eval.txt")?;
        let value = perplexity(&m.decoder, &w, 4, "eval.txt", |_, _| {})?.value;
        Ok((value, w.len()))
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
    let acc = |shots| -> Result<mmlu::MmluResult> {
        let o = mmlu::MmluOptions {
            shots,
            prompt: mmlu::MmluPrompt::Hendrycks,
            limit: None,
            batch: 8,
            max_context: None,
        };
        mmlu::evaluate_mmlu(m, &mm, &o, "mmlu", |_, _| {})
    };
    let ((ppl, ppl_windows), (long, long_windows)) = (ppl_at(SEQLEN)?, ppl_at(session_seqlen)?);
    let (five, zero) = (acc(5)?, acc(0)?);
    Ok(Row {
        label: label.into(),
        global_sparsity: m.decoder.global_sparsity(),
        ppl,
        ppl_session_seqlen: long,
        session_seqlen,
        ppl_windows,
        ppl_session_windows: long_windows,
        freebaseqa: fb.accuracy,
        freebaseqa_items: fb.items,
        mmlu_5shot: five.accuracy,
        mmlu_0shot: zero.accuracy,
        mmlu_items: zero.items,
        calibration: None,
    })
}

/// `evaluate` of a Wanda model, with the calibration it was pruned with.
fn evaluate_wanda(m: &LoadedModel, label: &str, c: (usize, usize)) -> Result<Row> {
    let mut row = evaluate(m, label)?;
    row.calibration = Some(Calibration {
        seqlen: c.0,
        windows: c.1,
    });
    Ok(row)
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
            // Every whole window of eval.txt, every question and every test item: the
            // counts are the rows' (`ppl_windows`, `freebaseqa_items`, `mmlu_items`), and
            // each Wanda row's `calibration` gives its windows and their length.
            "ppl": {"dataset": "eval.txt", "seqlen": SEQLEN,
                    "windows": rows.first().map(|r| r.ppl_windows),
                    "session_seqlen": rows.first().map(|r| r.session_seqlen),
                    "session_windows": rows.first().map(|r| r.ppl_session_windows)},
            "freebaseqa": {"dataset": "freebaseqa.json",
                           "items": rows.first().map(|r| r.freebaseqa_items),
                           "max_new_tokens": 16},
            "mmlu": {"dataset": "mmlu", "items": rows.first().map(|r| r.mmlu_items),
                     "shots": [5, 0], "prompt": "hendrycks"},
            "wanda": {"calibration": "calib.txt", "sample": "sequential",
                      "seqlen_and_windows": "per row: calibration"},
        },
        "rows": rows,
        "session": session,
    })
}

fn print(suite: &str, rows: &[Row], session: Option<serde_json::Value>, json: bool) -> Result<()> {
    if json {
        outln!("{}", document(suite, rows, session))?;
        return Ok(());
    }
    let long = rows.first().map_or(0, |r| r.session_seqlen);
    outln!("| model | global sparsity | ppl (eval.txt, seqlen {SEQLEN}) | ppl (seqlen {long}) | FreebaseQA | MMLU 5-shot | MMLU 0-shot |")?;
    outln!("|---|---|---|---|---|---|---|")?;
    for r in rows {
        outln!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.1}% | {:.1}% | {:.1}% |",
            r.label,
            r.global_sparsity,
            r.ppl,
            r.ppl_session_seqlen,
            r.freebaseqa * 100.0,
            r.mmlu_5shot * 100.0,
            r.mmlu_0shot * 100.0
        )?;
    }
    Ok(())
}

pub fn knowledge_suite(json: bool) -> Result<()> {
    let m = LoadedModel::load(bundled::NAME, &Device::Cpu, DType::F32)?;
    let mut rows = vec![evaluate(&m, "dense")?];
    for s in [0.3, 0.5, 0.7] {
        let c = (SEQLEN, CALIB_WINDOWS);
        let p = wanda_uniform(&m, s, c)?;
        rows.push(evaluate_wanda(
            &p,
            &format!("Wanda uniform {:.0}%", s * 100.0),
            c,
        )?);
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
    errln!(
        "session: {iters} iterations, {} rollbacks, {:.0} s, global sparsity {:.4}",
        machine.rollbacks,
        secs,
        machine.global_sparsity()
    );
    let agent = evaluate(&engine.model, "built-in agent session")?;
    let base = LoadedModel::load(bundled::NAME, &Device::Cpu, DType::F32)?;
    let short = (SEQLEN, CALIB_WINDOWS);
    let uni = wanda_uniform(&base, agent.global_sparsity, short)?;
    let uniform = evaluate_wanda(
        &uni,
        &format!("Wanda uniform, same global sparsity, calibrated on {CALIB_WINDOWS} x {SEQLEN}"),
        short,
    )?;
    let as_session = (base.seqlen_or_default(opts.seqlen), opts.calib_windows);
    let uni = wanda_uniform(&base, agent.global_sparsity, as_session)?;
    let label = format!(
        "Wanda uniform, same global sparsity, calibrated as the session ({} x {})",
        as_session.1, as_session.0
    );
    let uniform_as_session = evaluate_wanda(&uni, &label, as_session)?;
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
            ppl_windows: 62,
            ppl_session_windows: 31,
            freebaseqa: 0.9,
            freebaseqa_items: 178,
            mmlu_5shot: 0.8,
            mmlu_0shot: 0.7,
            mmlu_items: 178,
            calibration: None,
        };
        let d = document("knowledge", &[row], None);
        assert_eq!(d["suite"], "knowledge");
        assert_eq!(d["protocol"]["ppl"]["seqlen"], SEQLEN);
        assert_eq!(d["protocol"]["ppl"]["session_seqlen"], 512);
        assert_eq!(d["protocol"]["ppl"]["windows"], 62);
        assert_eq!(d["protocol"]["ppl"]["session_windows"], 31);
        assert_eq!(d["protocol"]["freebaseqa"]["items"], 178);
        assert_eq!(d["protocol"]["dtype"], "f32");
        assert_eq!(d["rows"][0]["label"], "dense");
        assert_eq!(d["rows"][0]["mmlu_0shot"], 0.7);
        assert!(d["session"].is_null());
    }
}
