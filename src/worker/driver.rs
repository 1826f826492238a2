//! Connects the state machine to the workers and the session file: the machine moves on
//! past an input event only once the file holds it, and every effect becomes a job, a
//! review request or a record. The file is written on its own thread (`Recorder`), so a
//! slow disk holds back the machine, not the front end that polls it.

use anyhow::{anyhow, Result};
use std::time::Duration;

use super::recorder::Recorder;
use super::{AgentJob, Job, Msg, Workers};
use crate::agent::Proposal;
use crate::session::file::SessionWriter;
use crate::session::{Effect, Event, Machine, StopReason};

/// An input event the machine has judged, waiting for its write.
struct Pending {
    ticket: u64,
    event: Event,
    next: Machine,
    effects: Vec<Effect>,
}

pub struct Driver {
    pub machine: Machine,
    writer: Option<Recorder>,
    pending: Option<Pending>,
    /// The session ended; `finished` is set once the file holds everything up to this
    /// ticket (so a front end never reports a finished session the file lacks).
    finishing: Option<(u64, StopReason)>,
    pub workers: Workers,
    /// A proposal waiting for the reviewer.
    pub pending_review: Option<Proposal>,
    pub finished: Option<StopReason>,
    /// The latest progress report of the compute thread.
    pub progress: Option<(String, usize, usize)>,
    /// Events recorded so far in this process (for front ends that show a log).
    pub recent: Vec<Event>,
    /// What opening the session file had to say (a torn last event dropped), for a front
    /// end that does not show the log.
    pub note: Option<String>,
    /// Whether the bounds were checked against the target (once the layers are known).
    reach_checked: bool,
    /// How many of `recent` were looked at for an unread prompt, and whether one was said.
    unread_scanned: usize,
    unread_said: bool,
}

impl Driver {
    pub fn new(machine: Machine, writer: Option<SessionWriter>, workers: Workers) -> Driver {
        Driver::with_recorder(machine, writer.map(Recorder::spawn), workers)
    }

    fn with_recorder(machine: Machine, writer: Option<Recorder>, workers: Workers) -> Driver {
        Driver {
            machine,
            writer,
            pending: None,
            finishing: None,
            workers,
            pending_review: None,
            finished: None,
            progress: None,
            recent: Vec::new(),
            note: None,
            reach_checked: false,
            unread_scanned: 0,
            unread_said: false,
        }
    }

    /// Warnings for the front end to show, each logged and returned once: when the layers
    /// are known (the baseline, or a resumed file), that the bounds cannot reach the target
    /// in the iterations left (`session::reach`); at the first exchange whose server did
    /// not read the prompt whole (`Event::unread_prompt`), that one.
    pub fn warnings(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.reach_checked && !self.machine.layers.is_empty() {
            self.reach_checked = true;
            out.extend(crate::session::reach::shortfall(&self.machine));
        }
        if !self.unread_said {
            let new = &self.recent[self.unread_scanned..];
            self.unread_scanned = self.recent.len();
            if let Some(w) = new.iter().find_map(Event::unread_prompt) {
                self.unread_said = true;
                out.push(format!("{w} (said once; `replay --headless` names each)"));
            }
        }
        for w in &out {
            tracing::warn!("{w}");
        }
        out
    }

    pub fn start(&mut self) -> Result<()> {
        let effects = self.machine.start();
        self.dispatch(effects)
    }

    /// After rebuilding the machine from a file: restore the masks, then re-issue the effects
    /// of the phase the session was in.
    pub fn resume(&mut self) -> Result<()> {
        use crate::session::{Phase, StopReason};
        if self.machine.phase == Phase::Done(StopReason::AgentFailed) {
            let ev = Event::Continued {
                iteration: self.machine.iteration,
            };
            self.record(&ev)?;
            self.flush()?;
            // Its effect (ask the agent) is what `resume_effects` gives below.
            self.machine.handle(&ev).map_err(anyhow::Error::msg)?;
        }
        if let Phase::Done(r) = &self.machine.phase {
            self.finished = Some(r.clone());
            return Ok(());
        }
        // The latest checkpoint's steps are cumulative: every accepted step, in order.
        let checkpoint = self.machine.checkpoint();
        let steps = checkpoint.map_or(vec![], |c| c.steps.clone());
        let recorded_ppl = checkpoint.map(|c| c.eval.ppl);
        self.send(Job::Rebuild {
            steps,
            profiles: self.machine.profiles,
            recorded_ppl,
        })?;
        let effects = self.machine.resume_effects();
        self.dispatch(effects)
    }

    /// Queue a derived event (or one the machine has taken already) for the file.
    fn record(&mut self, ev: &Event) -> Result<()> {
        if let Some(w) = &mut self.writer {
            w.send(ev)?;
        }
        self.recent.push(ev.clone());
        Ok(())
    }

    /// Wait until the file holds every event sent to it, the pending one taken.
    pub fn flush(&mut self) -> Result<()> {
        self.settle(Duration::MAX)?;
        if let Some(w) = &mut self.writer {
            w.flush()?;
        }
        if let Some((_, reason)) = self.finishing.take() {
            self.finished = Some(reason);
        }
        Ok(())
    }

    /// Wait until the event fed last is written and taken: a front end that feeds a human
    /// decision shows its outcome (or its failed write) at once, as keys that follow it
    /// expect.
    pub fn wait_written(&mut self) -> Result<()> {
        self.settle(Duration::MAX).map(|_| ())
    }

    /// Wait for the writes already queued, moving nothing on: what a front end does on
    /// its way out (a failure already reported is not said again).
    pub fn finish_writes(&mut self) -> Result<()> {
        match &mut self.writer {
            Some(w) => w.flush_unreported(),
            None => Ok(()),
        }
    }

    /// The session file could not be written: the session cannot go on in this process.
    pub fn write_failed(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| w.failed())
    }

    /// An input event is sent to the file but not yet taken by the machine.
    pub fn pending_input(&self) -> bool {
        self.pending.is_some()
    }

    /// An input event is judged but not yet written, or the session's end is being
    /// written: the machine shows the state before it, so nothing may be decided on it.
    pub fn writing(&self) -> bool {
        self.pending.is_some() || self.finishing.is_some()
    }

    /// Let the machine judge an input event, send it to the file, and move the machine on
    /// when it is written (`poll` sees to that). An event the machine refuses is not
    /// recorded; one the file cannot take leaves the machine where the file stops, so the
    /// screen never shows what the file lacks.
    pub fn feed(&mut self, ev: Event) -> Result<()> {
        // The machine judges each event after the one before it.
        self.settle(Duration::MAX)?;
        if self.machine.is_done() && !matches!(ev, Event::StopRequested { .. }) {
            return Ok(()); // a late reply after the session ended
        }
        // The file stopped at the event before a failed write; the machine must not move
        // on past what the file can hold.
        if let Some(w) = self.writer.as_mut().filter(|w| w.failed()) {
            return w.send(&ev).map(|_| ());
        }
        let mut next = self.machine.clone();
        let effects = next.handle(&ev).map_err(|e| anyhow!(e))?;
        let Some(w) = &mut self.writer else {
            self.machine = next;
            self.recent.push(ev);
            return self.dispatch(effects);
        };
        let ticket = w.send(&ev)?;
        self.pending = Some(Pending {
            ticket,
            event: ev,
            next,
            effects,
        });
        Ok(())
    }

    /// Wait up to `timeout` for the pending event's write, and move the machine on when it
    /// is written. True when it was taken; a failed write is an error, and the machine
    /// stays where the file stops.
    fn settle(&mut self, timeout: Duration) -> Result<bool> {
        let (Some(p), Some(w)) = (&self.pending, &mut self.writer) else {
            return Ok(false);
        };
        match w.wait_for(p.ticket, timeout) {
            None => Ok(false),
            Some(Err(e)) => {
                self.pending = None;
                Err(e)
            }
            Some(Ok(())) => {
                let p = self.pending.take().expect("a pending event");
                self.machine = p.next;
                self.recent.push(p.event);
                self.dispatch(p.effects)?;
                Ok(true)
            }
        }
    }

    fn send(&self, job: Job) -> Result<()> {
        self.workers
            .compute
            .send(job)
            .map_err(|_| anyhow!("the compute worker has stopped"))
    }

    fn ask(&self, job: AgentJob) -> Result<()> {
        self.workers
            .agent
            .send(job)
            .map_err(|_| anyhow!("the agent worker has stopped"))
    }

    fn dispatch(&mut self, effects: Vec<Effect>) -> Result<()> {
        // Only a reviewing machine has a proposal waiting: a rollback or a stop ends the
        // review as a decision does (the TUI showed the old one as waiting until the next).
        if self.machine.phase != crate::session::Phase::Reviewing {
            self.pending_review = None;
        }
        for e in effects {
            match e {
                Effect::Baseline => self.send(Job::Baseline)?,
                Effect::Profile => self.send(Job::Profile {
                    iteration: self.machine.iteration,
                })?,
                Effect::Propose(ctx) => self.ask(AgentJob::Propose(ctx))?,
                Effect::Review(p) => self.pending_review = Some(p),
                Effect::Apply(step) => self.send(Job::Apply {
                    iteration: self.machine.iteration,
                    step,
                })?,
                Effect::Commit { index } => self.send(Job::Commit { index })?,
                Effect::Restore { index } => self.send(Job::Restore { index })?,
                Effect::Reflect(b) => self.ask(AgentJob::Reflect(b))?,
                Effect::Log(ev) => self.record(&ev)?,
                Effect::Finished(r) => {
                    // Finished means the file holds the whole session: `poll` says so
                    // once the writes up to here are acknowledged.
                    match &self.writer {
                        Some(w) => self.finishing = Some((w.last_ticket(), r)),
                        None => self.finished = Some(r),
                    }
                }
            }
        }
        Ok(())
    }

    /// Wait up to `timeout` for the pending event's write (or the end's) or, with none
    /// pending, for one worker message, and act on it. Returns the message for front ends
    /// that display it: a worker's event when it is fed, and again when the machine takes
    /// it; `Done` when the finished session is all written. A failed job or write is an
    /// error.
    pub fn poll(&mut self, timeout: Duration) -> Result<Option<Msg>> {
        if let Some(p) = &self.pending {
            let event = p.event.clone();
            return Ok(self.settle(timeout)?.then_some(Msg::Event(event)));
        }
        if let (Some((ticket, _)), Some(w)) = (&self.finishing, &mut self.writer) {
            return match w.wait_for(*ticket, timeout) {
                None => Ok(None),
                Some(done) => {
                    let (_, reason) = self.finishing.take().expect("finishing");
                    done?;
                    self.finished = Some(reason);
                    Ok(Some(Msg::Done(
                        "the session file holds the whole session".into(),
                    )))
                }
            };
        }
        // A derived event's failed write, said once, when nothing waits on it.
        if let Some(w) = &mut self.writer {
            w.check()?;
        }
        let msg = match self.workers.rx.recv_timeout(timeout) {
            Ok(m) => m,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(None),
            Err(_) => return Err(anyhow!("the workers have stopped")),
        };
        match &msg {
            Msg::Event(ev) => {
                self.progress = None;
                self.feed(ev.clone())?
            }
            Msg::Progress { label, done, total } => {
                self.progress = Some((label.clone(), *done, *total))
            }
            Msg::Failed(e) => return Err(anyhow!("{e}")),
            Msg::Ready(Err(e)) => return Err(anyhow!("{e}")),
            Msg::Ready(Ok(_)) | Msg::Done(_) => {}
        }
        Ok(Some(msg))
    }
}

impl Driver {
    /// Stop the workers (a job still running after a short grace is abandoned); the file
    /// gets every event queued for it, and nothing new is started (a pending event's
    /// effects are re-issued by `--resume`). A write failure not yet reported is returned.
    pub fn shutdown(mut self) -> Result<()> {
        let written = self.finish_writes();
        self.workers.shutdown();
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Receiver};

    /// The example session, and workers whose other ends the test holds (`_held`):
    /// nothing runs, jobs only queue.
    #[allow(clippy::type_complexity)]
    fn example_with_idle_workers() -> (
        crate::session::file::SessionLog,
        Workers,
        (
            Receiver<Job>,
            Receiver<AgentJob>,
            std::sync::mpsc::Sender<Msg>,
        ),
    ) {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
        let log = crate::session::file::read(std::path::Path::new(example)).unwrap();
        let (compute, jobs) = channel();
        let (agent, asks) = channel();
        let (tx, rx) = channel();
        let workers = Workers {
            compute,
            agent,
            rx,
            threads: vec![],
        };
        (log, workers, (jobs, asks, tx))
    }

    /// Writes an event only when the test lets it (one `()` per event).
    struct Gated {
        gate: Receiver<()>,
        path: std::path::PathBuf,
    }

    impl super::super::recorder::Append for Gated {
        fn append(&mut self, _: &Event) -> Result<()> {
            // Bounded, so a failed assertion cannot leave the drop waiting on it.
            self.gate
                .recv_timeout(Duration::from_secs(60))
                .map_err(|_| anyhow!("gate closed"))
        }
        fn path(&self) -> &std::path::Path {
            &self.path
        }
    }

    // The machine moves past an event only once its write is acknowledged, and a
    // finished session is reported only once its `finished` event is written; meanwhile
    // the driver answers at once (the screen is drawn) and offers nothing to decide.
    #[test]
    fn the_machine_waits_for_each_write_and_the_finish_for_the_last() {
        let (log, workers, _held) = example_with_idle_workers();
        let (open, gate) = channel();
        let writer = Recorder::spawn(Gated {
            gate,
            path: "gated.yaml".into(),
        });
        let o = &log.header.options;
        let machine = Machine::new(&o.model, o.loop_opts.clone());
        let mut d = Driver::with_recorder(machine, Some(writer), workers);
        d.start().unwrap();
        let quick = Duration::from_millis(50);
        let take = |d: &mut Driver, ev: &Event, open: &std::sync::mpsc::Sender<()>| {
            let before = d.machine.phase.clone();
            d.feed(ev.clone()).unwrap();
            assert!(d.writing());
            assert!(d.poll(quick).unwrap().is_none(), "taken before its write");
            assert_eq!(d.machine.phase, before);
            open.send(()).unwrap();
            assert!(d.poll(Duration::from_secs(60)).unwrap().is_some());
        };
        take(&mut d, &log.entries[0].event, &open);
        assert!(d.machine.dense.is_some() && !d.writing());
        take(&mut d, &log.entries[1].event, &open);
        assert_eq!(d.machine.phase, crate::session::Phase::Proposing);
        assert!(!d.writing());
        // A stop while proposing ends the session: the machine is done once the stop is
        // written, the session finished once the `finished` event is.
        take(&mut d, &Event::StopRequested { by: "test".into() }, &open);
        assert!(d.machine.is_done() && d.writing() && d.finished.is_none());
        assert!(d.poll(quick).unwrap().is_none());
        assert!(
            d.finished.is_none(),
            "finished before its event was written"
        );
        open.send(()).unwrap();
        let done = d.poll(Duration::from_secs(60)).unwrap();
        assert!(matches!(done, Some(Msg::Done(_))), "{done:?}");
        assert_eq!(d.finished, Some(StopReason::UserStop));
        assert!(!d.writing());
        assert!(d.shutdown().is_ok());
    }

    // A reviewer's rollback ends the review: the proposal it left stayed "waiting for
    // review" on screen until the new profile came (TUI audit, 2026-12-05).
    #[test]
    fn a_rollback_during_review_leaves_no_proposal_waiting() {
        let (log, workers, _held) = example_with_idle_workers();
        let o = &log.header.options;
        let machine = Machine::new(&o.model, o.loop_opts.clone());
        let mut d = Driver::new(machine, None, workers);
        d.start().unwrap();
        let second = |e: &Event| matches!(e, Event::Proposed { iteration: 2, .. });
        for e in log.entries.iter().map(|e| &e.event) {
            d.feed(e.clone()).unwrap();
            if second(e) {
                break;
            }
        }
        assert!(d.pending_review.is_some(), "{:?}", d.machine.phase);
        let back = Event::RollbackTo {
            checkpoint: 0,
            by: "human".into(),
        };
        d.feed(back).unwrap();
        assert_eq!(d.machine.phase, crate::session::Phase::Profiling);
        assert!(d.pending_review.is_none(), "{:?}", d.pending_review);
    }

    // After a write fails, the machine stays where the file stops: the next event is
    // refused instead of moving it on with nothing recorded.
    #[cfg(target_os = "linux")]
    #[test]
    fn after_a_failed_write_the_machine_stays_where_the_file_stops() {
        let writer = SessionWriter::on_full_device().expect("/dev/full opens on Linux");
        let (log, workers, _held) = example_with_idle_workers();
        let o = &log.header.options;
        let machine = Machine::new(&o.model, o.loop_opts.clone());
        let mut d = Driver::new(machine, Some(writer), workers);
        d.start().unwrap();
        let (baseline, profiled) = (&log.entries[0].event, &log.entries[1].event);
        assert!(matches!(profiled, Event::Profiled { .. }));
        // The first failed write leaves the machine as it was before the event, too.
        let before = d.machine.phase.clone();
        d.feed(baseline.clone()).unwrap();
        assert!(d.writing());
        let e = format!("{:#}", d.poll(Duration::from_secs(60)).unwrap_err());
        assert!(e.contains("No space left") && d.write_failed(), "{e}");
        assert_eq!(
            d.machine.phase, before,
            "the machine took the unwritten event"
        );
        assert!(d.machine.dense.is_none());
        let phase = d.machine.phase.clone();
        let e = format!("{:#}", d.feed(profiled.clone()).unwrap_err());
        assert!(e.contains("no longer written"), "{e}");
        assert_eq!(d.machine.phase, phase, "the machine moved on");
        assert!(d.recent.is_empty());
    }
}
