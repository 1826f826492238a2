//! Connects the state machine to the workers and the session file: every event is recorded
//! before the machine sees it, and every effect becomes a job, a review request or a record.

use anyhow::{anyhow, Result};
use std::time::Duration;

use super::{AgentJob, Job, Msg, Workers};
use crate::agent::Proposal;
use crate::session::file::SessionWriter;
use crate::session::{Effect, Event, Machine, StopReason};

pub struct Driver {
    pub machine: Machine,
    writer: Option<SessionWriter>,
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
}

impl Driver {
    pub fn new(machine: Machine, writer: Option<SessionWriter>, workers: Workers) -> Driver {
        Driver {
            machine,
            writer,
            workers,
            pending_review: None,
            finished: None,
            progress: None,
            recent: Vec::new(),
            note: None,
        }
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

    fn record(&mut self, ev: &Event) -> Result<()> {
        if let Some(w) = &mut self.writer {
            w.append(ev)?;
        }
        self.recent.push(ev.clone());
        Ok(())
    }

    /// The session file could not be written: the session cannot go on in this process.
    pub fn write_failed(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| w.failed())
    }

    /// Let the machine judge an input event, record it, and only then move the machine on
    /// (an event the machine refuses is not recorded; one the file cannot take leaves the
    /// machine where the file stops, so the screen never shows what the file lacks).
    pub fn feed(&mut self, ev: Event) -> Result<()> {
        if self.machine.is_done() && !matches!(ev, Event::StopRequested { .. }) {
            return Ok(()); // a late reply after the session ended
        }
        // The file stopped at the event before a failed write; the machine must not move
        // on past what the file can hold.
        if let Some(w) = self.writer.as_mut().filter(|w| w.failed()) {
            return w.append(&ev);
        }
        let mut next = self.machine.clone();
        let effects = next.handle(&ev).map_err(|e| anyhow!(e))?;
        self.record(&ev)?;
        self.machine = next;
        self.dispatch(effects)
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
                    self.pending_review = None;
                    self.finished = Some(r)
                }
            }
        }
        Ok(())
    }

    /// Wait up to `timeout` for one worker message and act on it. Returns the message for
    /// front ends that display it; a failed job is an error.
    pub fn poll(&mut self, timeout: Duration) -> Result<Option<Msg>> {
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
    /// Stop the workers (a job still running after a short grace is abandoned).
    pub fn shutdown(self) {
        self.workers.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    // After a write fails, the machine stays where the file stops: the next event is
    // refused instead of moving it on with nothing recorded.
    #[cfg(target_os = "linux")]
    #[test]
    fn after_a_failed_write_the_machine_stays_where_the_file_stops() {
        let writer = SessionWriter::on_full_device().expect("/dev/full opens on Linux");
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
        let log = crate::session::file::read(std::path::Path::new(example)).unwrap();
        let (compute, _jobs) = channel();
        let (agent, _asks) = channel();
        let (_tx, rx) = channel();
        let workers = Workers {
            compute,
            agent,
            rx,
            threads: vec![],
        };
        let o = &log.header.options;
        let machine = Machine::new(&o.model, o.loop_opts.clone());
        let mut d = Driver::new(machine, Some(writer), workers);
        d.start().unwrap();
        let (baseline, profiled) = (&log.entries[0].event, &log.entries[1].event);
        assert!(matches!(profiled, Event::Profiled { .. }));
        // The first failed write leaves the machine as it was before the event, too.
        let before = d.machine.phase.clone();
        let e = format!("{:#}", d.feed(baseline.clone()).unwrap_err());
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
