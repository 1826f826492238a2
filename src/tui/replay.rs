//! Replay, read-only: the machine state at any event of a session file, rebuilt by feeding
//! the file's inputs into a fresh machine, with the same panels as a live session.

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use super::app::{App, Level, Notice, Overlay, Request, Seek};
use super::runloop::{self, Exit, Source};
use super::textfield::TextField;
use super::verify_child::{spawn_verify, VerifyNews};
use super::view::{ReplayPos, View};
use super::{keymap::Keymap, terminal, theme::Themes};
use crate::session::consistency;
use crate::session::file::{self, SessionLog};
use crate::session::{Event, LoopOptions, Machine};

/// The session's events and the machine after the first `index` of them.
pub struct Timeline {
    events: Vec<Event>,
    model: String,
    opts: LoopOptions,
    index: usize,
    machine: Machine,
    /// The first event the machine refused (a damaged file); replay stops before it.
    pub error: Option<String>,
}

impl Timeline {
    pub fn new(log: &SessionLog) -> Timeline {
        let o = &log.header.options;
        let mut t = Timeline {
            events: log.entries.iter().map(|e| e.event.clone()).collect(),
            model: o.model.clone(),
            opts: o.loop_opts.clone(),
            index: 0,
            machine: Machine::new(&o.model, o.loop_opts.clone()),
            error: None,
        };
        // An event that does not follow from the ones before it (an edited perplexity,
        // a guard note turned into another verdict) ends the timeline, as headless
        // replay refuses the file there.
        if let Err(d) = consistency::replay_checked(log) {
            t.events.truncate(d.entry);
            t.error = Some(d.why);
        }
        t.machine.start();
        t.seek_to(t.events.len());
        t
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// The file records the session's finish.
    pub fn finished(&self) -> bool {
        (self.events.iter()).any(|e| matches!(e, Event::Finished { .. }))
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    pub fn events(&self) -> &[Event] {
        &self.events[..self.index]
    }

    /// Move to position `to` (0..=len): forward by feeding, backward by rebuilding.
    pub fn seek_to(&mut self, to: usize) {
        let to = to.min(self.events.len());
        if to < self.index {
            self.machine = Machine::new(&self.model, self.opts.clone());
            self.machine.start();
            self.index = 0;
        }
        while self.index < to {
            let ev = &self.events[self.index];
            if ev.is_input() {
                if let Err(e) = self.machine.handle(ev) {
                    // `replay_checked` found it first; kept for a timeline built otherwise.
                    self.error
                        .get_or_insert(format!("event {}: {e}", self.index + 1));
                    self.events.truncate(self.index);
                    break;
                }
            } else if let Event::Guard {
                iteration, note, ..
            } = ev
            {
                // The verdict in the file's words, as the log shows it: the machine words
                // it anew, and older versions gave fewer decimals (`+0.0%` on screen beside
                // `+0.02%`).
                let last = self.machine.history.last_mut();
                if let Some(h) = last.filter(|h| h.iteration == *iteration) {
                    h.note.clone_from(note);
                }
            }
            self.index += 1;
        }
    }

    /// Where iteration `n` is best seen: just after its (last) decision, else after its
    /// last event.
    pub fn position_of(&self, n: usize) -> Option<usize> {
        let of_n = |e: &Event| e.iteration() == Some(n);
        let decided = self
            .events
            .iter()
            .rposition(|e| of_n(e) && matches!(e, Event::Decided { .. }));
        decided
            .or_else(|| self.events.iter().rposition(of_n))
            .map(|i| i + 1)
    }

    /// The highest iteration that got a proposal or a decision (the profile after the
    /// last step names the next iteration, which never ran).
    pub fn last_iteration(&self) -> usize {
        self.events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Proposed { .. } | Event::AgentFailed { .. } | Event::Decided { .. }
                )
            })
            .filter_map(Event::iteration)
            .max()
            .unwrap_or(0)
    }

    pub fn seek(&mut self, s: Seek) {
        let here = self.events()[..]
            .iter()
            .rev()
            .find_map(Event::iteration)
            .unwrap_or(0);
        let to = match s {
            Seek::Back => self.index.saturating_sub(1),
            Seek::Forward => self.index + 1,
            Seek::First => 0,
            Seek::Last => self.events.len(),
            Seek::Iteration(n) => self.position_of(n).unwrap_or(self.index),
            Seek::PrevIteration => here
                .checked_sub(1)
                .and_then(|n| self.position_of(n))
                .unwrap_or(0),
            Seek::NextIteration => self.position_of(here + 1).unwrap_or(self.index),
        };
        self.seek_to(to);
    }
}

struct Replay {
    timeline: Timeline,
    path: PathBuf,
    session: String,
    /// The header as YAML, for the details overlay.
    options: String,
    verify: Option<Receiver<VerifyNews>>,
    verify_args: Vec<String>,
    /// The file's length when read: `V` verifies the file as it is when pressed, which a
    /// run still writing it may have grown.
    read_len: Option<u64>,
}

impl Source for Replay {
    fn view(&self) -> View<'_> {
        let m = self.timeline.machine();
        View {
            machine: m,
            events: self.timeline.events(),
            pending: super::view::pending(m),
            progress: None,
            replay: Some(ReplayPos {
                index: self.timeline.index(),
                total: self.timeline.len(),
                unfinished: !self.timeline.finished(),
            }),
            session: &self.session,
            options: &self.options,
            loading: None,
            busy_for: None,
        }
    }

    fn tick(&mut self, app: &mut App) -> Result<bool> {
        let Some(rx) = &self.verify else {
            return Ok(false);
        };
        // The latest progress only: several lines may have come since the last tick.
        let mut news = None;
        while let Ok(n) = rx.try_recv() {
            let done = matches!(n, VerifyNews::Done(..));
            news = Some(n);
            if done {
                break;
            }
        }
        match news {
            Some(VerifyNews::Progress(done, total)) => {
                app.verdict = Some(Notice {
                    level: Level::Info,
                    text: format!("{VERIFYING}: event {done} of {total}…"),
                });
                Ok(true)
            }
            Some(VerifyNews::Done(level, mut text)) => {
                let now = std::fs::metadata(&self.path).ok().map(|m| m.len());
                if now != self.read_len {
                    text += " (of the file as it is now, grown since this replay read it: \
                             reopen it to see the new events)";
                }
                // A failure is kept whole where it can be read: the status bar cuts it.
                if level != Level::Info {
                    tracing::warn!("{}: {text}", self.session);
                    let at = self.timeline.index();
                    let pos = app.warnings.partition_point(|(k, _)| *k <= at);
                    app.warnings.insert(pos, (at, text.clone()));
                }
                app.verdict = Some(Notice { level, text });
                self.verify = None;
                // A second `V` said it was running: no longer true.
                if app
                    .notice
                    .as_ref()
                    .is_some_and(|n| n.text == VERIFY_RUNNING)
                {
                    app.notice = None;
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn apply(&mut self, req: Request, app: &mut App) -> Result<()> {
        match req {
            Request::Seek(Seek::Iteration(n))
                if n > self.timeline.last_iteration() || self.timeline.position_of(n).is_none() =>
            {
                let last = self.timeline.last_iteration();
                app.say(
                    Level::Warn,
                    format!("no iteration {n} in this session (it has 0 to {last})"),
                );
                // Open again with the number, to be corrected.
                let mut field = TextField::default();
                field.insert_str(&n.to_string());
                app.overlay = Overlay::Goto(field);
            }
            Request::Seek(s) => self.timeline.seek(s),
            Request::Verify if self.verify.is_some() => app.say(Level::Info, VERIFY_RUNNING),
            Request::Verify => {
                self.verify = Some(spawn_verify(&self.path, &self.verify_args));
                app.verdict = Some(Notice {
                    level: Level::Info,
                    text: format!("{VERIFYING}…"),
                });
            }
            _ => {}
        }
        Ok(())
    }
}

const VERIFY_RUNNING: &str = "verify is running…";
const VERIFYING: &str = "verifying in the background (replay --verify)";

/// Open a saved session read-only at its last event.
/// `verify_args`: the model and data paths the session's own are replaced by when `V`
/// verifies it (`replay --model DIR`, ...).
pub fn run_replay(path: &Path, verify_args: Vec<String>) -> Result<()> {
    let read_len = std::fs::metadata(path).ok().map(|m| m.len());
    let log = file::read(path)?;
    let logged = terminal::init_logging(terminal::LogFor::Replay);
    let timeline = Timeline::new(&log);
    let (keymap, key_warning) = Keymap::load();
    let (themes, warnings) = Themes::load();
    let mut app = App::new(keymap, themes);
    app.mouse = std::env::var("ARBORIST_MOUSE").map_or(true, |v| v != "0");
    // A torn last document was left out without a word, and text added by hand was
    // called a crash's.
    let others = (log.left_out_note(path).into_iter())
        .chain(log.unknown_note(path))
        .chain(key_warning)
        .chain(warnings);
    let said = super::startup_warnings(&logged, others);
    let notice = super::startup_notice(&said, logged.is_ok());
    app.keep_warnings(0, said);
    let events: Vec<Event> = log.entries.iter().map(|e| e.event.clone()).collect();
    app.keep_event_warnings(&events);
    // A damaged event stays on screen: the timeline ends before it, and the position
    // alone ("event 14/14") would pass for the whole file.
    let damaged = timeline.error.clone().map(|e| {
        format!(
            "replay stops before a damaged event ({} in the file): {e}",
            log.entries.len()
        )
    });
    app.failure = damaged.clone();
    if let Some(n) = notice {
        app.say(Level::Warn, n);
    }
    let mut src = Replay {
        timeline,
        path: path.to_path_buf(),
        session: path.display().to_string(),
        options: serde_yaml::to_string(&log.header).unwrap_or_default(),
        verify: None,
        verify_args,
        read_len,
    };
    let mut guard = terminal::enter(app.mouse)?;
    let exit = runloop::run(&mut guard, &mut app, &mut src);
    drop(guard);
    if let Some(d) = damaged {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "warning: {}: {d}", path.display());
    }
    match exit? {
        Exit::Quit => Ok(()),
        Exit::Signal(sig) => super::runloop::end_by_signal(sig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed `V` is kept whole in the Log at the event shown: the status bar cut it,
    /// and it was nowhere else (replay audit).
    #[test]
    fn a_failed_verify_is_kept_whole_in_the_log() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions/example.yaml");
        let log = file::read(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut r = Replay {
            timeline: Timeline::new(&log),
            path: path.clone(),
            session: "example.yaml".into(),
            options: String::new(),
            verify: Some(rx),
            verify_args: vec![],
            read_len: std::fs::metadata(&path).ok().map(|m| m.len()),
        };
        r.timeline.seek_to(5);
        let mut app = crate::tui::fixtures::app();
        app.warnings = vec![(0, "at start".into()), (9, "later".into())];
        let long = format!("NOT verified: error: {}", "x".repeat(300));
        tx.send(VerifyNews::Done(Level::Error, long.clone()))
            .unwrap();
        assert!(r.tick(&mut app).unwrap());
        let kept: Vec<(usize, &str)> = (app.warnings.iter())
            .map(|(k, t)| (*k, t.as_str()))
            .collect();
        assert_eq!(kept, [(0, "at start"), (5, long.as_str()), (9, "later")]);
        assert!(r.verify.is_none());
        // A file longer than when it was read (a run still writing it) is said to be
        // verified as it is now.
        let (tx, rx) = std::sync::mpsc::channel();
        r.verify = Some(rx);
        r.read_len = Some(1);
        tx.send(VerifyNews::Done(
            Level::Info,
            "verified: 2 compute checks".into(),
        ))
        .unwrap();
        assert!(r.tick(&mut app).unwrap());
        let said = &app.verdict.as_ref().unwrap().text;
        assert!(
            said.ends_with("grown since this replay read it: reopen it to see the new events)"),
            "{said}"
        );
    }

    /// A number the session does not have leaves the go-to field open with it, to be
    /// corrected (it closed, and the message spoke of a field no longer there).
    #[test]
    fn a_missing_iteration_reopens_the_goto_field() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions/example.yaml");
        let log = file::read(&path).unwrap();
        let mut r = Replay {
            timeline: Timeline::new(&log),
            path: path.clone(),
            session: String::new(),
            options: String::new(),
            verify: None,
            verify_args: vec![],
            read_len: None,
        };
        let mut app = crate::tui::fixtures::app();
        let at = r.timeline.index();
        r.apply(Request::Seek(Seek::Iteration(999)), &mut app)
            .unwrap();
        assert_eq!(r.timeline.index(), at);
        assert!(
            matches!(&app.overlay, Overlay::Goto(t) if t.as_str() == "999"),
            "{:?}",
            app.overlay
        );
        let said = &app.notice.as_ref().unwrap().text;
        assert!(
            said.starts_with("no iteration 999 in this session (it has 0 to "),
            "{said}"
        );
    }
}
