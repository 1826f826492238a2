//! A live session: the model loads on a background thread (the loading screen stays
//! responsive), then the driver's messages are drained every tick and human actions are fed
//! to it as events. The session file is written event by event by the driver.

use anyhow::{anyhow, bail, Result};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use super::app::{App, Level, Request};
use super::runloop::{self, Exit, Source};
use super::view::View;
use super::{keymap::Keymap, terminal, theme::Themes};
use crate::model::source::Download;
use crate::session::{Event, Machine, Phase, StopReason};
use crate::worker::driver::Driver;
use crate::worker::setup::Opened;

struct Live {
    driver: Option<Driver>,
    loader: Option<Receiver<Result<Driver>>>,
    /// Stands in for the machine until the driver exists.
    placeholder: Machine,
    /// Events of a resumed file, then everything the driver records.
    events: Vec<Event>,
    seen: usize,
    session: String,
    /// The run's options as YAML, for the details overlay.
    options: String,
    started: Instant,
    loading: String,
    /// The model file being downloaded, while one is.
    download: std::sync::Arc<std::sync::Mutex<Option<Download>>>,
    workers_gone: bool,
    /// The worker's job as shown (phase, iteration, progress label) and when it began.
    job: (String, Instant),
}

impl Live {
    fn take_events(&mut self) {
        if let Some(d) = &self.driver {
            self.events.extend(d.recent[self.seen..].iter().cloned());
            self.seen = d.recent.len();
        }
    }

    /// Restart the clock when the job shown changes.
    fn track_job(&mut self) {
        let Some(d) = &self.driver else { return };
        let label = d.progress.as_ref().map_or("", |p| p.0.as_str());
        let key = format!("{:?} {} {label}", d.machine.phase, d.machine.iteration);
        if key != self.job.0 {
            self.job = (key, Instant::now());
        }
    }

    fn feed(&mut self, ev: Event, app: &mut App) {
        let Some(d) = self.driver.as_mut() else {
            return;
        };
        // The proposal waiting is the driver's: it leaves once the machine stops reviewing
        // (a decision or a rollback written), and stays when the event is refused.
        let what = match ev.iteration() {
            Some(i) => format!("the `{}` of iteration {i}", ev.kind()),
            None => format!("the `{}`", ev.kind()),
        };
        // A human decision is waited for (one write, a few ms): the keys after it act on
        // the state it leads to, and a failed write is said before anything else.
        if let Err(e) = d.feed(ev).and_then(|()| d.wait_written()) {
            if d.write_failed() {
                // Nothing moves on after a failed write; the first failure says why, and
                // the proposal stays on screen.
                app.failure
                    .get_or_insert_with(|| format!("{e:#} (not recorded: {what})"));
                self.take_events();
                return;
            }
            app.say(Level::Error, format!("{e:#}"));
        }
        self.take_events();
        // The job a decision starts is timed from now: the frame drawn before the next
        // poll showed the new job with the time spent waiting for the review.
        self.track_job();
    }
}

impl Source for Live {
    fn view(&self) -> View<'_> {
        let (machine, pending, progress) = match &self.driver {
            // Nothing is decided on a state whose last event is still being written.
            Some(d) => (
                &d.machine,
                d.pending_review.as_ref().filter(|_| !d.writing()),
                d.progress.as_ref(),
            ),
            None => (&self.placeholder, None, None),
        };
        View {
            machine,
            events: &self.events,
            pending,
            progress,
            replay: None,
            session: &self.session,
            options: &self.options,
            loading: self.driver.is_none().then_some(self.loading.as_str()),
            busy_for: Some(self.job.1.elapsed()),
        }
    }

    fn tick(&mut self, app: &mut App) -> Result<bool> {
        if let Some(rx) = &self.loader {
            match rx.try_recv() {
                Ok(Ok(d)) => {
                    // Logged too; on screen, or a resumed session's dropped tail goes unsaid.
                    if let Some(note) = &d.note {
                        app.say(Level::Warn, note.clone());
                    }
                    self.driver = Some(d);
                    self.loader = None;
                    self.take_events();
                    return Ok(true);
                }
                Ok(Err(e)) => return Err(e),
                Err(TryRecvError::Disconnected) => bail!("the model loader stopped"),
                Err(TryRecvError::Empty) => {
                    let secs = self.started.elapsed().as_secs();
                    let download = self.download.lock().unwrap_or_else(|e| e.into_inner());
                    self.loading = match download.as_ref().filter(|d| d.done < d.size) {
                        Some(d) => format!(
                            "downloading {} from the Hugging Face hub: {} of {}… {secs} s",
                            d.file,
                            mib(d.done),
                            mib(d.size)
                        ),
                        None => format!("loading the model and its data… {secs} s"),
                    };
                    return Ok(false);
                }
            }
        }
        let Some(d) = self.driver.as_mut() else {
            return Ok(false);
        };
        let mut changed = false;
        while !self.workers_gone {
            match d.poll(Duration::ZERO) {
                Ok(Some(_)) => changed = true,
                Ok(None) => break,
                Err(e) => {
                    let text = format!("{e:#}");
                    tracing::error!("{text}");
                    self.workers_gone = text.contains("workers have stopped");
                    // The first failure is the cause; a failed write says itself what
                    // the file holds.
                    let saved = if d.write_failed() {
                        ""
                    } else {
                        " (the session file is saved)"
                    };
                    app.failure.get_or_insert_with(|| format!("{text}{saved}"));
                    changed = true;
                    break;
                }
            }
        }
        self.take_events();
        self.track_job();
        for w in self
            .driver
            .as_mut()
            .map(|d| d.warnings())
            .unwrap_or_default()
        {
            app.warn_kept(self.events.len(), w);
            changed = true;
        }
        let auto = app.auto_decision(&self.view());
        if let Some(ev) = auto {
            self.feed(ev, app);
            changed = true;
        }
        Ok(changed)
    }

    fn apply(&mut self, req: Request, app: &mut App) -> Result<()> {
        if let Request::Feed(ev) = req {
            tracing::info!("human: {}", ev.summary_in(&self.events));
            self.feed(ev, app);
        }
        Ok(())
    }
}

/// Open the TUI on a session; `load` resolves and loads the model and attaches the driver
/// (on a background thread, so a slow download or load never freezes the screen).
pub fn run_live<F>(opened: Opened, auto_approve: bool, load: F) -> Result<()>
where
    F: FnOnce(Opened) -> Result<Driver> + Send + 'static,
{
    let path = opened.path.clone();
    let continue_with = opened.continue_with.clone();
    let (new, made_dirs) = (opened.log.is_none(), opened.made_dirs.clone());
    let log = terminal::init_logging(terminal::LogFor::Live(&path));
    let log_file = log.clone().ok().flatten();
    let events: Vec<Event> = opened.log.as_ref().map_or(vec![], |l| {
        l.entries.iter().map(|e| e.event.clone()).collect()
    });
    let placeholder = Machine::new(&opened.opts.model, opened.opts.loop_opts.clone());
    // No keys: they come from the environment and are never part of the options.
    let options = serde_yaml::to_string(&opened.opts).unwrap_or_default();
    // hf-hub's progress bars would draw over the screen: shown on the loading screen instead.
    let download = std::sync::Arc::new(std::sync::Mutex::new(None));
    let shown = std::sync::Arc::clone(&download);
    crate::model::source::observe_downloads(move |d| {
        *shown.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.clone());
    });
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(load(opened));
    });
    let (keymap, key_warning) = Keymap::load();
    let (themes, warnings) = Themes::load();
    let mut app = App::new(keymap, themes);
    app.auto_approve = auto_approve;
    app.mouse = std::env::var("ARBORIST_MOUSE").map_or(true, |v| v != "0");
    let said = super::startup_warnings(&log, key_warning.into_iter().chain(warnings));
    if let Some(w) = super::startup_notice(&said, log.is_ok()) {
        app.say(Level::Warn, w);
    }
    app.keep_warnings(events.len(), said);
    let mut live = Live {
        driver: None,
        loader: Some(rx),
        placeholder,
        events,
        seen: 0,
        session: path.display().to_string(),
        options,
        started: Instant::now(),
        loading: "loading the model and its data…".into(),
        download,
        workers_gone: false,
        job: (String::new(), Instant::now()),
    };
    tracing::info!("tui: live session {}", path.display());
    let mut guard = terminal::enter(app.mouse)?;
    let exit = runloop::run(&mut guard, &mut app, &mut live);
    drop(guard);
    let busy = live.view().busy();
    let m = live.view().machine;
    let end = match &m.phase {
        Phase::Done(StopReason::AgentFailed) => End::AgentFailed,
        Phase::Done(_) => End::Finished,
        _ => End::Open,
    };
    let outcome = match &m.phase {
        Phase::Done(reason) => match m.checkpoint() {
            Some(c) => format!(
                " ({}: global sparsity {:.4}, ppl {:.4} on {})",
                reason.words(),
                m.global_sparsity(),
                c.eval.ppl,
                c.eval.protocol()
            ),
            None => format!(" ({})", reason.words()),
        },
        _ => String::new(),
    };
    // An event sent to the file but not yet taken by the machine is in the file too.
    live.take_events();
    let unseen = live.driver.as_ref().is_some_and(|d| d.pending_input());
    let events = live.events.len() + usize::from(unseen);
    // An idle driver is stopped cleanly; a running job is simply abandoned (the file is
    // consistent after every event, and --resume re-issues the step). Either way the
    // writes already queued finish, and a failure among them is said. A new session that
    // recorded nothing leaves no file; it is judged while its driver still holds the lock.
    // Without a driver the file at `path`, if any, is another run's (which created it
    // first, or this one lost to), and it is not touched: a quit while loading deleted a
    // headless run's file in the middle of its baseline.
    let ours = live.driver.is_some();
    let (written, discarded) = match live.driver {
        Some(mut d) => {
            let written = d.finish_writes();
            let discarded = new
                && written.is_ok()
                && crate::worker::setup::discard_unrecorded(&path, &made_dirs, log_file.as_deref());
            let written = match busy {
                false => written.and(d.shutdown()),
                true => written,
            };
            (written, discarded)
        }
        None => {
            if new {
                crate::worker::setup::remove_made(&made_dirs, log_file.as_deref());
            }
            (Ok(()), new)
        }
    };
    if let Err(e) = written {
        app.failure.get_or_insert_with(|| format!("{e:#}"));
    }
    // Without a driver this run made no file; one at `path` is another run's.
    let others = !ours && path.exists();
    let exit = exit.map_err(|e| match discarded && !others {
        true => anyhow!("{e:#} (nothing was recorded, so no session file was kept)"),
        false => e,
    })?;
    // Not eprintln!: after a hang-up stderr is gone, and the message must not panic.
    let p = path.display();
    // The hint keeps the auto-approve the screen had (it is not a recorded option).
    let auto = if app.auto_approve {
        " --auto-approve"
    } else {
        ""
    };
    let line = if discarded && !others {
        format!("session {p}: nothing was recorded, so no session file was kept")
    } else if discarded {
        format!("session {p}: this run recorded nothing; the file there is another run's")
    } else {
        kept_line(
            &p.to_string(),
            events,
            end,
            &outcome,
            &format!("{continue_with}{auto}"),
        )
    };
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
    match (exit, app.failure) {
        (Exit::Signal(sig), _) => super::runloop::end_by_signal(sig),
        // The status bar had room for only part of it: said in full, and not as success.
        (Exit::Quit, Some(failure)) => Err(anyhow!("{failure}")),
        (Exit::Quit, None) => Ok(()),
    }
}

/// Bytes as MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// How the session stands when the TUI closes.
#[derive(Clone, Copy)]
enum End {
    Open,
    Finished,
    /// Finished by three agent failures in a row, which a resume asks again.
    AgentFailed,
}

/// The exit line of a run that kept its file: how to go on, or that it is finished.
fn kept_line(p: &str, events: usize, end: End, outcome: &str, continue_with: &str) -> String {
    let view = format!("view it with `arborist replay {p}`");
    match end {
        End::Open => format!("session {p} ({events} events); continue with {continue_with}, or {view}"),
        // Not "finished": it said so, with no hint, of a session a resume carries on.
        End::AgentFailed => format!(
            "session {p} ({events} events); it stopped{outcome}; continue with {continue_with} once the agent answers, or {view}"
        ),
        End::Finished => format!("session {p} ({events} events); it is finished{outcome}; {view}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_the_agents_failures_ended_is_said_to_continue() {
        let go_on = "arborist run --session s.yaml --resume";
        let line = kept_line(
            "s.yaml",
            9,
            End::AgentFailed,
            " (the agent failed three times in a row)",
            go_on,
        );
        assert_eq!(
            line,
            "session s.yaml (9 events); it stopped (the agent failed three times in a row); continue with arborist run --session s.yaml --resume once the agent answers, or view it with `arborist replay s.yaml`"
        );
        let done = kept_line("s.yaml", 9, End::Finished, " (target reached)", go_on);
        assert!(done.contains("it is finished (target reached)") && !done.contains("--resume"));
        let open = kept_line("s.yaml", 9, End::Open, "", go_on);
        assert!(open.contains("continue with arborist run --session s.yaml --resume, or view"));
    }
}
