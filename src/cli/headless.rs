//! The headless runner: the same machine and workers as the TUI, reviewed by
//! `--auto-approve` or a decisions file, progress on stderr, summary on stdout.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::run::{default_session_path, RunArgs};
use crate::session::file::{self, Header, SessionLog, SessionWriter};
use crate::session::review::{HeadlessReviewer, Verdict};
use crate::session::{Event, Machine, RunOptions};
use crate::worker::{driver::Driver, launch};

/// Rebuild the machine from a session file's inputs.
pub fn replay_inputs(log: &SessionLog, path: &Path) -> Result<Machine> {
    let o = &log.header.options;
    let mut m = Machine::new(&o.model, o.loop_opts.clone());
    m.start();
    for e in &log.entries {
        if e.event.is_input() {
            m.handle(&e.event)
                .map_err(|msg| anyhow!("{}: event {}: {msg}", path.display(), e.seq))?;
        }
    }
    Ok(m)
}

struct Opened {
    opts: RunOptions,
    path: PathBuf,
    log: Option<SessionLog>,
}

fn open(a: &RunArgs) -> Result<Opened> {
    if a.resume {
        let path = a.session.clone().context("--resume needs --session FILE")?;
        let log = file::read(&path)?;
        if log.torn_tail {
            eprintln!(
                "{}: dropping a torn last event (written during a crash)",
                path.display()
            );
        }
        return Ok(Opened {
            opts: log.header.options.clone(),
            path,
            log: Some(log),
        });
    }
    let opts = a.options()?;
    let path = a
        .session
        .clone()
        .unwrap_or_else(|| default_session_path(&opts.model));
    if path.exists() {
        bail!(
            "session {} already exists (pass --resume to continue it)",
            path.display()
        );
    }
    Ok(Opened {
        opts,
        path,
        log: None,
    })
}

pub fn run(a: &RunArgs) -> Result<()> {
    let s = open(a)?;
    let mut reviewer = HeadlessReviewer::new(a.decisions.as_deref(), a.auto_approve)?;
    let (workers, files) = launch::start(&s.opts)?;
    launch::wait_ready(&workers)?;
    let fingerprint = file::fingerprint(&files.config, &files.weights)?;
    let (machine, writer) = match &s.log {
        None => {
            let header = Header {
                format: file::FORMAT.into(),
                arborist: env!("CARGO_PKG_VERSION").into(),
                created_unix: file::now_ms() / 1000,
                model: s.opts.model.clone(),
                fingerprint,
                options: s.opts.clone(),
            };
            let m = Machine::new(&s.opts.model, s.opts.loop_opts.clone());
            (m, SessionWriter::create(&s.path, &header)?)
        }
        Some(log) => {
            if log.header.fingerprint != fingerprint {
                bail!(
                    "{}: model {} has fingerprint {fingerprint}, the session was recorded on {}",
                    s.path.display(),
                    s.opts.model,
                    log.header.fingerprint
                );
            }
            let m = replay_inputs(log, &s.path)?;
            let seq = log.entries.last().map_or(0, |e| e.seq);
            (m, SessionWriter::append_to(&s.path, log.valid_len, seq)?)
        }
    };
    let resumed = s.log.is_some();
    let mut d = Driver::new(machine, Some(writer), workers);
    if resumed {
        eprintln!(
            "resuming {} at iteration {} ({:?})",
            s.path.display(),
            d.machine.iteration,
            d.machine.phase
        );
        d.resume()?;
    } else {
        eprintln!("session {}", s.path.display());
        d.start()?;
    }
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

fn summary(d: &Driver, path: &Path) -> serde_json::Value {
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
