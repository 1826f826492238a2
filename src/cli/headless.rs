//! The headless runner: the same machine and workers as the TUI, reviewed by
//! `--auto-approve` or a decisions file, progress on stderr, summary on stdout.

use super::{errln, outln};
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
        // Where the agent is reached, how long to wait and how long a reply may be are not
        // part of what the session records (replay never calls the agent), so a server that
        // moved or got slow, or replies cut off, can be followed; every other option is the
        // header's.
        // The model and data may be found at other paths (checked against the header).
        // So may the prompt templates' directory (what it holds is checked against the
        // header's hashes when the session attaches).
        let connection = [
            "--base-url",
            "--agent-timeout",
            "--agent-max-tokens",
            "--prompts",
        ];
        let kept =
            |f: &&str| connection.contains(f) || super::relocate::Relocate::FLAGS.contains(f);
        if let Some(flag) = a.option_flags().iter().find(|f| !kept(f)) {
            anyhow::bail!(
                "{flag}: a resumed session keeps the options in its header ({}); drop the flag, or start a new session",
                path.display()
            );
        }
        let mut opened = setup::open(Default::default(), path, true)?;
        let relocate = super::relocate::Relocate {
            model: a.model.clone(),
            calib: a.calib.clone(),
            eval: a.eval.clone(),
            probe_file: a.probe_file.clone(),
        };
        let data = &opened.log.as_ref().expect("a resumed session").header.data;
        let name = opened.path.display().to_string();
        opened.opts = relocate.apply(&opened.opts, data, &name)?;
        relocate.check_present(&opened.opts, &name)?;
        opened.model_hint = relocate.model_hint(&name, &opened.opts);
        for word in relocate.args() {
            opened.continue_with.push(' ');
            opened.continue_with.push_str(&setup::shell_word(&word));
        }
        let recorded = opened.opts.clone();
        if a.base_url.is_some() {
            opened.opts.agent.base_url = a.base_url.clone();
        }
        if a.agent_timeout.is_some() {
            opened.opts.agent.timeout_s = a.agent_timeout;
        }
        if a.agent_max_tokens.is_some() {
            opened.opts.agent.max_tokens = a.agent_max_tokens;
        }
        match (&a.prompts, &opened.opts.agent.prompts) {
            (Some(_), _) => {
                opened.opts.agent.prompts = a.prompts.clone();
                super::run::prompts_need_an_llm(&opened.opts)?;
            }
            (None, Some(d)) if !Path::new(d).is_dir() => anyhow::bail!(
                "{}: its prompt templates' directory {d} (recorded in its header) is not there; pass --prompts DIR where it is now",
                opened.path.display()
            ),
            _ => {}
        }
        // A header that passes alone leaves the flags to blame: named as the flags'.
        match super::run::header_options_ok(&recorded, &opened.path, true) {
            Ok(()) => super::run::check(&opened.opts)?,
            Err(_) => super::run::header_options_ok(&opened.opts, &opened.path, true)?,
        }
        return Ok(opened);
    }
    let opts = a.options()?;
    match &a.session {
        Some(path) => {
            names_a_file(path)?;
            setup::open(opts, path.clone(), false)
        }
        None => {
            let (path, claim) = default_session_path(&opts.model)?;
            let mut opened = setup::open(opts, path, false)?;
            opened.claim = Some(claim);
            Ok(opened)
        }
    }
}

/// A new session's path that can only name a directory (`newdir/`, `d/.`) is refused
/// before the model loads: creating the file failed only after calibration.
fn names_a_file(path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if text.ends_with('/') {
        let dir = text.trim_end_matches('/');
        anyhow::bail!("--session {text} ends in '/': it takes a file, e.g. {dir}/session.yaml");
    }
    if let Some(last @ ("." | "..")) = text.rsplit('/').next() {
        anyhow::bail!(
            "--session {text} ends in '{last}': it takes a file, e.g. sessions/NAME.yaml"
        );
    }
    Ok(())
}

pub fn run(a: &RunArgs) -> Result<()> {
    let mut s = open(a)?;
    // The hint continues the run as it was reviewed: without these, it opened the TUI (or,
    // without a terminal, failed for want of one).
    s.continue_with += " --headless";
    if a.auto_approve {
        s.continue_with += " --auto-approve";
    }
    if let Some(d) = &a.decisions {
        s.continue_with += &format!(
            " --decisions {}",
            setup::shell_word(&d.display().to_string())
        );
    }
    // A finished session has nothing to review: its resume only says so.
    let finished = s.log.as_ref().and_then(setup::recorded_finish).is_some();
    let mut reviewer = HeadlessReviewer::new(a.decisions.as_deref(), a.auto_approve || finished)?;
    if let Some(log) = &s.log {
        reviewer.skip_recorded(log.entries.iter().map(|e| &e.event));
    }
    let (workers, files) = setup::start(&s)?;
    let data = launch::wait_ready(&workers)?;
    // `attach` reports a torn last document once resuming has worked.
    let mut d = setup::attach(&mut s, workers, &files, data)?;
    match &d.finished {
        Some(reason) if s.log.is_some() => errln!(
            "session {} had already finished ({}); nothing to do",
            s.path.display(),
            reason.words()
        ),
        _ => errln!(
            "session {} ({} at iteration {})",
            s.path.display(),
            if s.log.is_some() { "resumed" } else { "new" },
            d.machine.iteration
        ),
    }
    announce_signals(&s.path, &s.continue_with);
    let earlier: Vec<Event> = (s.log.iter())
        .flat_map(|l| l.entries.iter().map(|e| e.event.clone()))
        .collect();
    let res = drive(&mut d, &mut reviewer, earlier);
    let summary = summary(&d, &s.path, &s.opts);
    let failures = d.machine.agent_failures_total;
    // Not every failure skips an iteration: the one that ends a session is asked again
    // when it is continued.
    let recorded = s
        .log
        .iter()
        .flat_map(|l| l.entries.iter().map(|e| &e.event));
    let skipped = recorded
        .chain(&d.recent)
        .filter(|e| e.skipped_for_the_agent())
        .count();
    let agent_failed = d
        .finished
        .clone()
        .filter(|r| *r == crate::session::StopReason::AgentFailed);
    let last_failure = (d.recent.iter().rev()).find_map(|e| match e {
        Event::AgentFailed { error, .. } => Some(error.clone()),
        _ => None,
    });
    // A run too short for three failures in a row (`--max-iters 2`) whose every iteration
    // was skipped for the agent did nothing the user asked for either.
    let decided = (d.recent.iter())
        .filter(|e| matches!(e, Event::Decided { .. }))
        .count();
    let all_skipped = decided > 0
        && decided
            == d.recent
                .iter()
                .filter(|e| e.skipped_for_the_agent())
                .count();
    // The cause first, then where the work is kept. A new session that failed before its
    // first event (a model whose dense perplexity is NaN) keeps nothing worth resuming, and
    // its file would only block the same command: it goes, while this process still holds
    // its lock (a `--resume` taking the file in between wrote to a deleted file).
    // Whatever is queued for the file is on disk before the file is judged here.
    let res = res.and(d.finish_writes());
    let removed_empty =
        res.is_err() && s.log.is_none() && setup::discard_unrecorded(&s.path, &s.made_dirs, None);
    // Its writes are finished above; any failure there is in `res`.
    let _ = d.shutdown();
    if let Err(e) = res {
        if removed_empty {
            anyhow::bail!("{e:#} (nothing was recorded, so no session file was kept)");
        }
        anyhow::bail!(
            "{e:#} (the session is saved in {}; continue with {})",
            s.path.display(),
            s.continue_with
        );
    }
    if a.json {
        outln!("{}", serde_json::to_string(&summary)?)?;
    } else {
        outln!("{}", serde_yaml::to_string(&summary)?.trim_end())?;
    }
    if failures > 0 && agent_failed.is_none() && !all_skipped {
        // Fewer than three in a row do not end the run, but the result is not the agent's
        // choice in those iterations.
        errln!(
            "warning: the agent gave no valid proposal {failures} time(s) in this session, and {skipped} iteration(s) were skipped for it (agent_failed events in {})",
            s.path.display()
        );
    }
    if agent_failed.is_none() && all_skipped {
        anyhow::bail!(
            "the agent gave no valid proposal in any of this run's {decided} iteration(s), so nothing was pruned (agent_failed events in {}; continue with {} once it answers)",
            s.path.display(),
            s.continue_with
        );
    }
    // Not a result: a script must not take the summary for a finished run.
    if let Some(reason) = agent_failed
        .as_ref()
        .filter(|_| s.opts.agent.backend == "builtin")
    {
        // The built-in policy answers the same state the same way: "once it answers"
        // would send the user to a resume that fails again.
        anyhow::bail!(
            "{}; the last: {} (the session is saved in {}; the built-in policy would fail \
             the same way on a resume: start a new session with another --threshold, \
             --max-step or --target)",
            reason.words(),
            last_failure.as_deref().unwrap_or("(not in this run)"),
            s.path.display(),
        );
    }
    if let Some(reason) = agent_failed {
        anyhow::bail!(
            "{} (the session is saved in {}; continue with {} once it answers)",
            reason.words(),
            s.path.display(),
            s.continue_with
        );
    }
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP still end a headless run at once (every event written is
/// already in the file), but first say where the session is and how to continue it; a
/// signal ignored at start stays ignored.
fn announce_signals(path: &Path, continue_with: &str) {
    // On a terminal a progress line may be half drawn: clear it. In a log every line is
    // whole, and a leading newline left a blank line before this one.
    use std::io::IsTerminal;
    let lead = if std::io::stderr().is_terminal() {
        "\r\x1b[K"
    } else {
        ""
    };
    let msg = format!(
        "{lead}arborist: stopped by a signal; the session is saved in {}; continue with {continue_with}\n",
        path.display()
    );
    let msg: &'static [u8] = Box::leak(msg.into_bytes().into_boxed_slice());
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]
    .into_iter()
    .filter(|s| !crate::runtime::ignored_at_start(*s))
    {
        // SAFETY: the handler only calls write(2) and signal-hook's default-action
        // emulation, both async-signal-safe.
        let registered = unsafe {
            signal_hook::low_level::register(sig, move || {
                libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), msg.len());
                let _ = signal_hook::low_level::emulate_default_handler(sig);
            })
        };
        if let Err(e) = registered {
            tracing::warn!("no handler for signal {sig}: {e}");
        }
    }
}

/// `earlier`: the events a resumed file already held, which each line is told against
/// (a resumed run's edit and finish lines lacked the proposal and the protocol in them).
fn drive(d: &mut Driver, reviewer: &mut HeadlessReviewer, mut before: Vec<Event>) -> Result<()> {
    let mut printed = 0;
    loop {
        for ev in d.recent.iter().skip(printed) {
            errln!("{}", ev.summary_at(&before, &d.machine));
            before.push(ev.clone());
        }
        printed = d.recent.len();
        // Logged, so on stderr here (`stderr_log`).
        let _ = d.warnings();
        if d.finished.is_some() {
            return Ok(());
        }
        if let Some(p) = d.pending_review.take() {
            let it = d.machine.iteration;
            if p.layers.is_empty() {
                // No valid proposal: headless, the iteration is recorded as skipped, unless
                // the decisions file stops the session there.
                let dropped = reviewer.drop_unanswerable(it);
                let stop = reviewer.stops_at(it);
                if let (Some(f), true) = (reviewer.file(), dropped > 0) {
                    let then = match stop {
                        true => "its stop is kept",
                        false => "so it is skipped",
                    };
                    errln!(
                        "warning: {}: {dropped} decision(s) for iteration {it} not used: the agent gave no valid proposal, {then}",
                        f.display()
                    );
                }
                match stop {
                    true => {
                        let (by, _) = reviewer.review(it)?;
                        d.feed(Event::StopRequested { by })?;
                    }
                    false => d.feed(Event::auto_decided(it, &p))?,
                }
                continue;
            }
            let (by, verdict) = reviewer.review(it)?;
            let scripted = by == "script";
            let ev = match verdict {
                Verdict::Decide(decision) => Event::Decided {
                    iteration: it,
                    by,
                    decision,
                },
                Verdict::Stop => Event::StopRequested { by },
            };
            // A decision the rules refuse is named by its file and iteration.
            d.feed(ev)
                .map_err(|e| match reviewer.file().filter(|_| scripted) {
                    Some(f) => e.context(format!("{}: iteration {it}", f.display())),
                    None => e,
                })?;
            continue;
        }
        if let Some(crate::worker::Msg::Progress { label, done, total }) =
            d.poll(Duration::from_millis(200))?
        {
            super::bar(&label, done, total);
        }
    }
}

/// The run's outcome with its protocol (for stdout).
pub fn summary(d: &Driver, path: &Path, opts: &crate::session::RunOptions) -> serde_json::Value {
    let m = &d.machine;
    serde_json::json!({
        "session": path.display().to_string(),
        "finished": d.finished,
        // Iterations completed, skipped ones (no valid proposal, a rejection) included;
        // `steps_evaluated` counts those that reached the guard. Until 2026-12-02
        // `iterations` was the latter, below max_iters when any was skipped.
        "iterations": m.iterations_done(),
        "steps_evaluated": m.history.len(),
        "rollbacks": m.rollbacks,
        // `b` in the TUI (the status bar adds them up with the guard's).
        "reviewer_rollbacks": m.reviewer_rollbacks,
        "global_sparsity": m.global_sparsity(),
        "target": m.opts.target,
        "dense_ppl": m.dense.as_ref().map(|e| e.ppl),
        "ppl": m.checkpoint().map(|c| c.eval.ppl),
        "eval": m.dense.as_ref().map(|e| serde_json::json!({
            "dataset": e.dataset, "seqlen": e.seqlen, "windows": e.windows, "dtype": e.dtype})),
        // The probe's protocol beside its accuracies (file null: the bundled model's set).
        "probe": opts.probe,
        "probe_dense": m.dense.as_ref().and_then(|e| e.probe.clone()),
        "probe_final": m.checkpoint().and_then(|c| c.eval.probe.clone()),
        "agent_tokens": m.usage,
        "agent_failures": m.agent_failures_total,
    })
}
