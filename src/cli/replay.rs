//! `arborist replay SESSION [--verify]` and `arborist export SESSION --out DIR`.

use super::{errln, outln};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};

use super::relocate::Relocate;
use crate::model::ModelFiles;
use crate::session::{file, RunOptions};
use crate::worker::setup::{self, replay_inputs};
use crate::worker::{launch, verify};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The session file (sessions/NAME.yaml).
    pub session: PathBuf,
    /// Re-execute every compute step and compare with the recorded numbers.
    #[arg(long)]
    pub verify: bool,
    /// Largest relative difference accepted by --verify [default: 1e-6].
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Print the timeline instead of opening the TUI.
    #[arg(long)]
    pub headless: bool,
    /// Print the events (with --verify: the verdict and every check) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub relocate: Relocate,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The session file (sessions/NAME.yaml).
    pub session: PathBuf,
    /// Directory for the exported model (as `prune --out` writes it).
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
    /// Export the model as it stood after iteration N (its latest checkpoint at or before
    /// N; 0 is the starting model) instead of the final checkpoint.
    #[arg(long)]
    pub step: Option<usize>,
    /// Largest relative difference accepted between the checkpoint's recorded perplexity
    /// and the one the export re-measures [default: 1e-6, as replay --verify].
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Print one JSON summary on stdout (the directory and its arborist.json), as `prune
    /// --json` does.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub relocate: Relocate,
}

/// The session at `path`; a last document cut off by a crash is left out, and said so.
fn read_session(path: &std::path::Path) -> Result<file::SessionLog> {
    let log = file::read(path)?;
    if let Some(note) = log.left_out_note(path) {
        errln!("warning: {note}");
    }
    if let Some(note) = log.unknown_note(path) {
        errln!("warning: {note}");
    }
    Ok(log)
}

/// The session, its options with any relocated paths, and its model's files, refused when
/// they are not the weights the session was recorded on.
fn load_checked(
    path: &std::path::Path,
    relocate: &Relocate,
) -> Result<(file::SessionLog, RunOptions, ModelFiles)> {
    let log = read_session(path)?;
    super::run::header_options_ok(&log.header.options, path, false)?;
    let name = path.display().to_string();
    let opts = relocate.apply(&log.header.options, &log.header.data, &name)?;
    relocate.check_present(&opts, &name)?;
    let hint = relocate.model_hint(&name, &opts);
    let files = setup::resolve_recorded(&opts.model, hint.as_deref(), &log.header)?;
    let fp = file::fingerprint(&files.config, &files.weights)?;
    if fp != log.header.fingerprint {
        return Err(setup::other_weights(
            path,
            &opts.model,
            &fp,
            &log.header,
            &files,
        ));
    }
    Ok((log, opts, files))
}

/// The engine of the recorded run, refused when its windows differ from the header's
/// hashes: every number, and the masks, are recomputed from them.
fn recorded_engine(
    log: &file::SessionLog,
    opts: &RunOptions,
    files: ModelFiles,
    path: &std::path::Path,
) -> Result<crate::worker::Engine> {
    let engine = launch::load_engine(files, opts)
        .with_context(|| format!("{}: re-executing its run", path.display()))?;
    crate::worker::setup::check_data(&log.header.data, &engine.data_fingerprints(), opts, path)?;
    Ok(engine)
}

/// `--tolerance` of `replay --verify` and `export`, or the default.
fn tolerance(flag: Option<f64>) -> Result<f64> {
    let t = flag.unwrap_or(crate::worker::verify::DEFAULT_TOLERANCE);
    if !(t.is_finite() && t >= 0.0) {
        bail!("--tolerance {t}: expected a finite relative difference >= 0");
    }
    Ok(t)
}

pub fn replay(a: ReplayArgs) -> Result<()> {
    if a.tolerance.is_some() && !a.verify {
        bail!("--tolerance is what --verify accepts: a replay without --verify compares nothing (the TUI's V verifies at the default 1e-6)");
    }
    let tolerance = tolerance(a.tolerance)?;
    if !a.verify && !a.headless && !a.json && crate::tui::is_interactive() {
        // Moved-file flags are for `V`: checked against the header before the screen opens.
        if !a.relocate.args().is_empty() {
            let log = read_session(&a.session)?;
            let name = a.session.display().to_string();
            a.relocate
                .apply(&log.header.options, &log.header.data, &name)?;
        }
        return crate::tui::run_replay(&a.session, a.relocate.args());
    }
    if !a.verify {
        if let Some(flag) = a.relocate.args().first() {
            bail!("{flag}: a replay without --verify reads no model or data (the TUI's V passes it on to its verify)");
        }
        return print_timeline(&a);
    }
    let (log, opts, files) = load_checked(&a.session, &a.relocate)?;
    let mut engine = recorded_engine(&log, &opts, files, &a.session)?;
    let r = verify::verify(
        &log,
        &mut engine,
        tolerance,
        &a.session,
        &mut verify_progress,
    )?;
    print_verify(&r, a.json)?;
    if !r.ok {
        let worst = r.checks.iter().map(|c| c.max_rel_diff).fold(0.0, f64::max);
        // Small differences with the same decisions are last-bit drift from another build
        // or CPU (kernels, gemm's dispatch), not a different session.
        let hint = if r.derived_mismatches.is_empty() && worst < 5e-4 {
            format!(
                " (largest relative difference {worst:.1e}, tolerance {:.0e}; if it was recorded by another build or CPU, that is last-bit drift and --tolerance {:.0e} accepts it)",
                tolerance,
                10f64.powf(worst.log10().ceil())
            )
        } else {
            String::new()
        };
        bail!(
            "{}: re-execution does not match the recording{}{hint}",
            a.session.display(),
            verify::first_mismatch(&r)
        );
    }
    Ok(())
}

/// `replay` without `--verify`: the events one line each (or as JSON) and where the file
/// stops.
fn print_timeline(a: &ReplayArgs) -> Result<()> {
    let log = read_session(&a.session)?;
    super::run::header_options_ok(&log.header.options, &a.session, false)?;
    let m = replay_inputs(&log, &a.session)?;
    if a.json {
        // One object: the header carries the protocols the events' numbers were
        // measured under (until 2026-12-03 the events alone, as an array).
        let events: Vec<_> = log.entries.iter().map(|e| &e.event).collect();
        let finished = match &m.phase {
            crate::session::Phase::Done(r) => Some(r),
            _ => None,
        };
        let out = json!({
            "session": a.session.display().to_string(),
            "header": log.header,
            "events": events,
            "finished": finished,
            "iterations": m.iterations_done(),
            "global_sparsity": m.global_sparsity(),
            "rollbacks": m.rollbacks,
            "reviewer_rollbacks": m.reviewer_rollbacks,
        });
        outln!("{out}")?;
    } else {
        let events: Vec<_> = log.entries.iter().map(|e| e.event.clone()).collect();
        for (k, e) in log.entries.iter().enumerate() {
            outln!("{:>4}  {}", e.seq, e.event.summary_at(&events[..k], &m))?;
            if let Some(r) = e.event.reasoning() {
                outln!("      reasoning: {r}")?;
            }
            if let Some(w) = e.event.unread_prompt() {
                outln!("      warning: {w}")?;
            }
        }
        // Counted as the TUI's status bar counts them: the guard's and the reviewer's.
        let yours = m.reviewer_rollbacks;
        let by = match yours {
            0 => String::new(),
            n => format!(" ({} by the guard, {n} by the reviewer)", m.rollbacks),
        };
        let state = match &m.phase {
            crate::session::Phase::Done(r) => format!("finished ({})", r.words()),
            p => format!("not finished (it stops in phase {})", p.words()),
        };
        outln!(
            "{state}: {} iteration(s), global sparsity {:.4}, {} rollback(s){by}",
            m.iterations_done(),
            m.global_sparsity(),
            m.rollbacks + yours
        )?;
    }
    Ok(())
}

/// The verify report: JSON, or a table of the compute checks and a verdict line.
fn print_verify(r: &verify::Report, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        outln!(
            "{:>4}  {:<44} {:>22} {:>22} {:>10}",
            "seq",
            "check (the number that differs most)",
            "recorded",
            "recomputed",
            "rel diff"
        )?;
        for c in &r.checks {
            outln!(
                "{:>4}  {:<44} {:>22} {:>22} {:>10.2e} {}",
                c.seq,
                c.what,
                c.recorded,
                c.recomputed,
                c.max_rel_diff,
                if c.ok { "ok" } else { "MISMATCH" }
            )?;
        }
        for d in &r.derived_mismatches {
            outln!("derived mismatch: {d}")?;
        }
        // A file that holds only its header has nothing to re-execute: "verified
        // (bit-exact)" read as more than was checked.
        let nothing = r.checks.is_empty() && r.derived_checked == 0;
        outln!(
            "{} compute checks, {} derived events; {}{}",
            r.checks.len(),
            r.derived_checked,
            if r.ok { "verified" } else { "NOT verified" },
            match (r.ok, r.bit_exact) {
                (true, _) if nothing => {
                    " (the file records no event: only its model and data were checked)"
                }
                (true, true) => " (bit-exact)",
                (false, true) => " (the compute checks are bit-exact; the recorded verdicts are not what they imply)",
                _ => "",
            }
        )?;
    }
    Ok(())
}

/// Where `--verify` is (a big model's session takes hours): a bar on a terminal, lines the
/// TUI's `V` reads when it asks for them, nothing otherwise (a file or pipe keeps the table
/// alone).
fn verify_progress(done: usize, total: usize) {
    if std::env::var_os(crate::runtime::PROGRESS_LINES_ENV).is_some() {
        errln!("{}{done}/{total}", crate::runtime::PROGRESS_LINE);
    } else {
        super::bar("verifying events", done, total);
    }
}

pub fn export(a: ExportArgs) -> Result<()> {
    let max_shard = super::max_shard_size(a.max_shard_size.as_deref())?;
    let tolerance = tolerance(a.tolerance)?;
    let (log, opts, files) = load_checked(&a.session, &a.relocate)?;
    crate::prune::export::check_out_dir(&a.out, a.force)?;
    let opts = &opts;
    let texts = [
        ("--calib", launch::text_path(&opts.calib, "calib", opts)?),
        ("--eval", launch::text_path(&opts.eval, "eval", opts)?),
    ];
    let mut inputs = crate::prune::export::model_inputs(&files);
    inputs.push(("the session file", &a.session));
    inputs.extend(texts.iter().map(|(w, p)| (*w, p.as_path())));
    crate::prune::export::check_inputs_outside(&a.out, &inputs)?;
    let m = replay_inputs(&log, &a.session)?;
    let done = m.iterations_done();
    if let Some(n) = a.step.filter(|n| *n > done) {
        bail!(
            "--step {n}: {} has {done} finished iteration(s) (0 is the starting model)",
            a.session.display()
        );
    }
    // The checkpoint standing after iteration N, which a later reviewer's rollback may
    // have dropped from the end state.
    let at_step = match a.step {
        Some(n) => Some(
            crate::session::consistency::machine_after_iteration(&log, n)
                .map_err(|e| anyhow::anyhow!("{}: {e}", a.session.display()))?,
        ),
        None => None,
    };
    let ckpt = match (a.step, &at_step) {
        (Some(n), Some(s)) => s.checkpoints.iter().rev().find(|c| c.iteration <= n),
        _ => m.checkpoint(),
    };
    let Some(ckpt) = ckpt else {
        bail!("{}: the session has no checkpoint yet", a.session.display());
    };
    let finished = match &m.phase {
        crate::session::Phase::Done(r) => Some(r.clone()),
        _ => None,
    };
    let mut engine = recorded_engine(&log, opts, files.clone(), &a.session)?;
    let steps = ckpt.steps.clone();
    engine.rebuild(&steps, 0, &mut |done, total| {
        super::bar("rebuilding masks", done, total)
    })?;
    check_rebuilt_sparsity(&engine.model.decoder, ckpt, tolerance, &a.session)?;
    // The fingerprint samples the weight files; the model is re-measured so that weights
    // changed between the samples cannot be exported under the recorded numbers.
    let measured = engine.checkpoint_perplexity()?;
    let ppl = measured.value;
    let r = &ckpt.eval;
    // The recorded protocol is published beside the number: it must be the one measured.
    if (r.seqlen, r.windows, r.dtype.as_str())
        != (measured.seqlen, measured.windows, measured.dtype.as_str())
    {
        bail!(
            "{}: checkpoint {} was recorded as {} windows of {} tokens in {} but re-measures as {} of {} in {} (was the file edited?); nothing was written",
            a.session.display(),
            ckpt.index,
            r.windows,
            r.seqlen,
            r.dtype,
            measured.windows,
            measured.seqlen,
            measured.dtype
        );
    }
    let rel = crate::worker::verify::rel(ppl, ckpt.eval.ppl);
    if rel > tolerance {
        bail!(
            "{}: checkpoint {} re-measures at ppl {ppl} but was recorded at {} (relative difference {rel:.1e}, tolerance {tolerance:.0e}): the model's weights differ from the session's (`replay --verify` says where), or it was recorded by another build or CPU and --tolerance accepts that; nothing was written",
            a.session.display(),
            ckpt.index,
            ckpt.eval.ppl
        );
    }
    // The shared fields describe the weights written: their masks and the perplexity just
    // measured; the session's own record of the checkpoint follows.
    let common = crate::prune::metadata::common(
        &files,
        &engine.model.decoder,
        &opts.device,
        &"arborist-session",
        // Of the masks written, not the events' account of them.
        engine.model.decoder.global_sparsity(),
        Some(&measured),
    );
    let mut meta = crate::prune::metadata::with(
        common,
        [
            ("fingerprint", json!(log.header.fingerprint)),
            (
                "session",
                json!(crate::prune::metadata::absolute(
                    &a.session.display().to_string()
                )),
            ),
            ("checkpoint", json!(ckpt.index)),
            ("iteration", json!(ckpt.iteration)),
            // How the session ended (null: it had not, or its file is incomplete), so the
            // last checkpoint of a run cut short is not taken for a finished one.
            ("session_finished", json!(finished)),
            ("session_iterations", json!(done)),
            ("eval", json!(ckpt.eval)),
            ("options", json!(log.header.options)),
        ],
    );
    crate::prune::export::export(
        &engine.model.decoder,
        &files,
        &a.out,
        a.force,
        max_shard,
        &mut meta,
    )?;
    // On stdout, as `prune` reports (until 2026-12-02 on stderr, with no --json).
    let mut line = format!(
        "exported checkpoint {} of iteration {} (global sparsity {:.4}, ppl {:.4} on {}) to {}",
        ckpt.index,
        ckpt.iteration,
        engine.model.decoder.global_sparsity(),
        ckpt.eval.ppl,
        ckpt.eval.protocol(),
        a.out.display()
    );
    // `--step 13` gave iteration 12's checkpoint without a word on why.
    if let Some(n) = a.step.filter(|n| *n > ckpt.iteration) {
        let which = match n - ckpt.iteration {
            1 => format!("iteration {n}"),
            _ => format!("iterations {} to {n}", ckpt.iteration + 1),
        };
        line += &format!("; {which} kept no step (rolled back or skipped)");
    }
    super::report_written(&a.out, &meta, a.json, &[line])?;
    if finished.is_none() && a.step.is_none() {
        errln!(
            "warning: {} has not finished ({done} iteration(s); it stops in phase {}: a session still running or killed, or an incomplete copy): this is its last checkpoint, not the end of a run (`session_finished: null` in arborist.json)",
            a.session.display(),
            m.phase.words()
        );
    }
    Ok(())
}

/// The masks rebuilt from the recorded steps must have the sparsities the file records for
/// the checkpoint: an edited `applied` value (with its global sparsity made to add up) was
/// exported under numbers its weights do not have.
fn check_rebuilt_sparsity(
    d: &crate::model::Decoder,
    ckpt: &crate::session::Checkpoint,
    tolerance: f64,
    session: &Path,
) -> Result<()> {
    for (name, &recorded) in &ckpt.sparsity {
        let Some(id) = d.find_linear(name) else {
            bail!(
                "{}: checkpoint {} names layer {name}, which the model does not have",
                session.display(),
                ckpt.index
            );
        };
        let rebuilt = d.linear(id).sparsity();
        if crate::worker::verify::rel(rebuilt, recorded) > tolerance {
            bail!(
                "{}: checkpoint {} records {name} at sparsity {recorded}, but the masks rebuilt from its recorded steps give {rebuilt} (was the file edited?); nothing was written",
                session.display(),
                ckpt.index
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_rebuilt_sparsity;
    use crate::model::{random::random_decoder, ModelConfig};
    use crate::session::Checkpoint;
    use candle_core::{DType, Device};
    use std::path::Path;
    use std::sync::Arc;

    /// export's last line of defence: masks rebuilt from the recorded steps are held to the
    /// sparsities the file claims (the file-level edit that reached it is now refused at its
    /// event by the machine, so this check is exercised here, on a model it can hold).
    #[test]
    fn rebuilt_masks_must_have_the_recorded_sparsities() {
        let cfg = ModelConfig::from_json(
            &serde_json::json!({
                "model_type": "qwen3", "vocab_size": 40, "hidden_size": 16,
                "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 4, "rms_norm_eps": 1e-6,
                "rope_theta": 10000.0, "max_position_embeddings": 64
            })
            .to_string(),
        )
        .unwrap();
        let mut d = random_decoder(&cfg, 5, DType::F32, &Device::Cpu).unwrap();
        let name = "model.layers.1.mlp.down_proj";
        let id = d.find_linear(name).unwrap();
        let (rows, cols) = {
            let l = d.linear(id);
            (l.out_features(), l.in_features())
        };
        // A quarter of every row pruned.
        let mut mask = crate::model::mask::Mask::empty(rows, cols);
        for r in 0..rows {
            for c in 0..cols / 4 {
                mask.prune(r, c);
            }
        }
        d.set_mask(id, Some(Arc::new(mask))).unwrap();
        let ckpt = |s: f64| Checkpoint {
            index: 3,
            iteration: 4,
            sparsity: [(name.to_string(), s)].into_iter().collect(),
            eval: crate::session::Evaluation {
                ppl: 10.0,
                dataset: "eval.txt".into(),
                seqlen: 32,
                windows: 2,
                dtype: "f32".into(),
                probe: None,
                seconds: 0.1,
                from_block: None,
            },
            steps: vec![],
        };
        let session = Path::new("sessions/s.yaml");
        check_rebuilt_sparsity(&d, &ckpt(0.25), 1e-9, session).unwrap();
        let e = check_rebuilt_sparsity(&d, &ckpt(0.3), 1e-9, session)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("sessions/s.yaml: checkpoint 3 records {name} at sparsity 0.3, but the masks rebuilt from its recorded steps give 0.25 (was the file edited?); nothing was written")
        );
        // Within the tolerance a recorded value passes (the file writes what it measured).
        check_rebuilt_sparsity(&d, &ckpt(0.25 * (1.0 + 1e-7)), 1e-6, session).unwrap();
        let mut gone = ckpt(0.25);
        gone.sparsity
            .insert("model.layers.7.mlp.up_proj".into(), 0.1);
        let e = check_rebuilt_sparsity(&d, &gone, 1e-9, session)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("names layer model.layers.7.mlp.up_proj, which the model does not have"),
            "{e}"
        );
    }
}
