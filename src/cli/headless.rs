//! The headless runner: the same machine and workers as the TUI, reviewed by
//! `--auto-approve` or a decisions file, progress on stderr, summary on stdout.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

use super::run::{default_session_path, RunArgs};
use crate::session::review::{HeadlessReviewer, Verdict};
use crate::session::Event;
use crate::worker::{driver::Driver, launch, setup};

/// Options and session path from the flags (or from the file when resuming).
pub fn open(a: &RunArgs) -> Result<setup::Opened> {
    if a.resume {
        let path = a.session.clone().context("--resume needs --session FILE")?;
        return setup::open(Default::default(), path, true);
    }
    let opts = a.options()?;
    let path = a
        .session
        .clone()
        .unwrap_or_else(|| default_session_path(&opts.model));
    setup::open(opts, path, false)
}

pub fn run(a: &RunArgs) -> Result<()> {
    let s = open(a)?;
    let mut reviewer = HeadlessReviewer::new(a.decisions.as_deref(), a.auto_approve)?;
    let (workers, files) = launch::start(&s.opts)?;
    launch::wait_ready(&workers)?;
    let mut d = setup::attach(&s, workers, &files)?;
    eprintln!(
        "session {} ({} at iteration {})",
        s.path.display(),
        if s.log.is_some() { "resumed" } else { "new" },
        d.machine.iteration
    );
    let res = drive(&mut d, &mut reviewer);
    let summary = summary(&d, &s.path);
    d.shutdown();
    res.with_context(|| {
        format!(
            "the session is saved in {}; continue with --session {} --resume",
            s.path.display(),
            s.path.display()
        )
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{}", serde_yaml::to_string(&summary)?.trim_end());
    }
    Ok(())
}

fn drive(d: &mut Driver, reviewer: &mut HeadlessReviewer) -> Result<()> {
    let mut printed = 0;
    loop {
        for ev in &d.recent[printed..] {
            eprintln!("{}", ev.summary());
        }
        printed = d.recent.len();
        if d.finished.is_some() {
            return Ok(());
        }
        if d.pending_review.take().is_some() {
            let it = d.machine.iteration;
            let ev = match reviewer.review(it)? {
                (by, Verdict::Decide(decision)) => Event::Decided {
                    iteration: it,
                    by,
                    decision,
                },
                (by, Verdict::Stop) => Event::StopRequested { by },
            };
            d.feed(ev)?;
            continue;
        }
        d.poll(Duration::from_millis(200))?;
    }
}

/// The run's outcome with its protocol (for stdout).
pub fn summary(d: &Driver, path: &Path) -> serde_json::Value {
    let m = &d.machine;
    serde_json::json!({
        "session": path.display().to_string(),
        "finished": d.finished,
        "iterations": m.history.len(),
        "rollbacks": m.rollbacks,
        "global_sparsity": m.global_sparsity(),
        "target": m.opts.target,
        "dense_ppl": m.dense.as_ref().map(|e| e.ppl),
        "ppl": m.checkpoint().map(|c| c.eval.ppl),
        "eval": m.dense.as_ref().map(|e| serde_json::json!({
            "dataset": e.dataset, "seqlen": e.seqlen, "windows": e.windows, "dtype": e.dtype})),
        "agent_tokens": m.usage,
    })
}
