//! Background execution: the compute engine and the agent each run on their own thread and
//! report back on one channel, so a front end never blocks on candle or the network.

pub mod driver;
pub mod engine;
pub mod inline;
pub mod launch;
pub mod recorder;
pub mod setup;
pub mod verify;

use anyhow::Result;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use crate::agent::{Agent, AgentContext, AgentReply, Proposal, StepOutcome};
use crate::session::{Event, MaskStep};
pub use engine::{Engine, EngineConfig};

#[derive(Debug, Clone)]
pub enum Job {
    Baseline,
    Profile {
        iteration: usize,
    },
    Apply {
        iteration: usize,
        step: MaskStep,
    },
    Commit {
        index: usize,
    },
    Restore {
        index: usize,
    },
    /// Restore the masks of a resumed session; `recorded_ppl` is its last checkpoint's.
    Rebuild {
        steps: Vec<MaskStep>,
        profiles: usize,
        recorded_ppl: Option<f64>,
    },
}

#[derive(Debug, Clone)]
pub enum AgentJob {
    Propose(Box<AgentContext>),
    Reflect(Box<(AgentContext, Proposal, StepOutcome)>),
}

#[derive(Debug, Clone)]
pub enum Msg {
    /// The engine finished loading (its data fingerprints, or the error).
    Ready(Result<crate::session::file::DataHashes, String>),
    Event(Event),
    Progress {
        label: String,
        done: usize,
        total: usize,
    },
    /// A job failed or a worker panicked (the text says which); the session file holds
    /// everything before it, so it can be resumed.
    Failed(String),
    /// The compute thread finished a job that produces no event (commit, restore, rebuild).
    Done(String),
}

pub struct Workers {
    pub compute: Sender<Job>,
    pub agent: Sender<AgentJob>,
    pub rx: Receiver<Msg>,
    threads: Vec<JoinHandle<()>>,
}

/// Start both threads. `load` builds the engine on the compute thread.
pub fn spawn(
    load: impl FnOnce() -> Result<Engine> + Send + 'static,
    mut agent: Box<dyn Agent + Send>,
) -> Workers {
    let (tx, rx) = channel::<Msg>();
    let (ctx_tx, ctx_rx) = channel::<Job>();
    let (atx, arx) = channel::<AgentJob>();
    let out = tx.clone();
    let compute = std::thread::spawn(move || {
        // A panic while loading (a malformed data file deep in a parser) is a failed load:
        // unreported, the front end waited for `Ready` forever.
        let loaded = catch_unwind(AssertUnwindSafe(load))
            .unwrap_or_else(|p| Err(anyhow::anyhow!("loading panicked: {}", panic_text(&p))));
        let mut engine = match loaded {
            Ok(mut e) => {
                let _ = out.send(Msg::Ready(Ok(e.data_fingerprints())));
                let stages = out.clone();
                e.on_stage = Some(Box::new(move |stage: &str| progress_msg(&stages, stage)));
                e
            }
            Err(e) => {
                let _ = out.send(Msg::Ready(Err(format!("{e:#}"))));
                return;
            }
        };
        for job in ctx_rx {
            // A panic is reported, not left to end the thread silently: the other
            // thread's sender keeps the channel open, so the front end would wait forever.
            let res = catch_unwind(AssertUnwindSafe(|| run_job(&mut engine, &job, &out)));
            let failed = match res {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => format!("compute failed: {e:#}"),
                Err(p) => format!("the compute worker panicked: {}", panic_text(&p)),
            };
            let _ = out.send(Msg::Failed(failed));
        }
    });
    let out = tx;
    let agent_thread = std::thread::spawn(move || {
        for job in arx {
            let msg = match catch_unwind(AssertUnwindSafe(|| agent_event(agent.as_mut(), job))) {
                Ok(ev) => Msg::Event(ev),
                Err(p) => Msg::Failed(format!("the agent worker panicked: {}", panic_text(&p))),
            };
            if out.send(msg).is_err() {
                break;
            }
        }
    });
    Workers {
        compute: ctx_tx,
        agent: atx,
        rx,
        threads: vec![compute, agent_thread],
    }
}

use crate::runtime::panic_text;

/// Run one agent job; failures become events too, so the loop never stalls on an agent.
pub fn agent_event(agent: &mut dyn Agent, job: AgentJob) -> Event {
    match job {
        AgentJob::Propose(ctx) => match agent.propose(&ctx) {
            Ok(reply) => Event::Proposed {
                iteration: ctx.iteration,
                agent: agent.name(),
                reply,
            },
            Err(e) => failed(ctx.iteration, &e),
        },
        AgentJob::Reflect(b) => {
            let (ctx, p, o) = *b;
            let reply = agent.reflect(&ctx, &p, &o).unwrap_or_else(|e| AgentReply {
                value: format!(
                    "{}{})",
                    crate::agent::NO_REFLECTION,
                    crate::agent::text::one_line(&format!("{e:#}"), 2000)
                ),
                prompt: None,
                raw: None,
                usage: crate::agent::billed_usage(&e),
            });
            Event::Reflected {
                iteration: o.iteration,
                reply,
            }
        }
    }
}

/// An agent failure with whatever was sent and received (an invalid proposal keeps both).
pub fn failed(iteration: usize, e: &anyhow::Error) -> Event {
    let detail = e.downcast_ref::<crate::agent::ProposalError>();
    let unanswered = e.downcast_ref::<crate::agent::Unanswered>();
    Event::AgentFailed {
        iteration,
        // One line, bounded: the error may quote a server or the model.
        error: crate::agent::text::one_line(&format!("{e:#}"), 2000),
        prompt: detail
            .map(|d| d.prompt.clone())
            .or_else(|| unanswered.map(|u| u.prompt.clone())),
        raw: detail.map(|d| d.raw.clone()),
        usage: detail.map_or_else(|| crate::agent::billed_usage(e), |d| d.usage),
    }
}

/// The progress label of a resume's mask rebuild, counted in steps (the others count
/// evaluation windows).
pub const REBUILDING: &str = "rebuilding masks";

fn run_job(engine: &mut Engine, job: &Job, out: &Sender<Msg>) -> Result<()> {
    let label = match job {
        Job::Baseline => "evaluating baseline",
        Job::Apply { .. } => "evaluating",
        Job::Rebuild { .. } => REBUILDING,
        _ => "",
    };
    let mut progress = |done: usize, total: usize| {
        let _ = out.send(Msg::Progress {
            label: label.to_string(),
            done,
            total,
        });
    };
    let ev = match job {
        Job::Baseline => engine.baseline(&mut progress)?,
        Job::Profile { iteration } => {
            progress_msg(out, "profiling");
            engine.profile(*iteration)?
        }
        Job::Apply { iteration, step } => engine.apply(*iteration, step, &mut progress)?,
        Job::Commit { index } => {
            engine.commit(*index);
            let _ = out.send(Msg::Done(format!("checkpoint {index}")));
            return Ok(());
        }
        Job::Restore { index } => {
            engine.restore(*index)?;
            let _ = out.send(Msg::Done(format!("restored checkpoint {index}")));
            return Ok(());
        }
        Job::Rebuild {
            steps,
            profiles,
            recorded_ppl,
        } => {
            engine.rebuild(steps, *profiles, &mut progress)?;
            if let Some(want) = recorded_ppl {
                // The fingerprint samples the weight files: re-measuring the checkpoint
                // notices weights changed between the samples. The pass also fills the
                // evaluation cache the next step's evaluation starts from.
                progress_msg(out, "re-measuring the checkpoint");
                let got = engine.checkpoint_perplexity()?.value;
                let rel = verify::rel(got, *want);
                if rel > verify::DEFAULT_TOLERANCE {
                    tracing::warn!(
                        "the resumed checkpoint re-measures at ppl {got} but was recorded at {want} (relative difference {rel:.1e}): the model's weights may differ from the session's (`replay --verify` says where), or it was recorded by another build or CPU"
                    );
                }
            }
            let _ = out.send(Msg::Done(format!("rebuilt {} checkpoint(s)", steps.len())));
            return Ok(());
        }
    };
    let _ = out.send(Msg::Event(ev));
    Ok(())
}

fn progress_msg(out: &Sender<Msg>, label: &str) {
    let _ = out.send(Msg::Progress {
        label: label.to_string(),
        done: 0,
        total: 1,
    });
}

impl Workers {
    /// Close the job channels and let the threads end. One still busy after a short grace
    /// (an agent call waiting on its server, a mask rebuild) is left to the process's exit:
    /// neither writes the session file, and joining it froze a quit for as long as the
    /// call took.
    pub fn shutdown(self) {
        drop(self.compute);
        drop(self.agent);
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        for t in self.threads {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent that answers after `delay`, or panics.
    struct Slow {
        delay: std::time::Duration,
        panic: bool,
    }

    impl Agent for Slow {
        fn propose(&mut self, _: &AgentContext) -> Result<AgentReply<Proposal>> {
            assert!(!self.panic, "scripted agent panic");
            std::thread::sleep(self.delay);
            anyhow::bail!("too late")
        }
        fn reflect(
            &mut self,
            _: &AgentContext,
            _: &Proposal,
            _: &StepOutcome,
        ) -> Result<AgentReply<String>> {
            anyhow::bail!("unused")
        }
        fn name(&self) -> String {
            "slow".into()
        }
    }

    fn workers(delay_s: u64, panic: bool) -> Workers {
        let agent = Slow {
            delay: std::time::Duration::from_secs(delay_s),
            panic,
        };
        spawn(|| anyhow::bail!("no model in this test"), Box::new(agent))
    }

    // A quit while the agent waits on a slow server returns at once.
    #[test]
    fn shutdown_does_not_wait_for_a_busy_agent() {
        let w = workers(30, false);
        assert!(matches!(w.rx.recv().unwrap(), Msg::Ready(Err(_))));
        w.agent
            .send(AgentJob::Propose(Box::new(AgentContext::example())))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let t = std::time::Instant::now();
        w.shutdown();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
    }

    // A load that panics (a malformed data file deep in a parser) is a failed load: the
    // front end waited for `Ready` forever (found by an audit with a corrupt parquet page).
    #[test]
    fn a_panic_while_loading_is_a_failed_load() {
        let agent = Slow {
            delay: std::time::Duration::ZERO,
            panic: false,
        };
        let w = spawn(
            || panic!("assertion failed: size <= src.len()"),
            Box::new(agent),
        );
        let msg =
            w.rx.recv_timeout(std::time::Duration::from_secs(10))
                .unwrap();
        match msg {
            Msg::Ready(Err(e)) => assert!(
                e.contains("loading panicked: assertion failed: size <= src.len()"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        w.shutdown();
    }

    // A panicking agent is reported on the channel instead of going silent.
    #[test]
    fn a_worker_panic_is_reported() {
        let w = workers(0, true);
        assert!(matches!(w.rx.recv().unwrap(), Msg::Ready(Err(_))));
        w.agent
            .send(AgentJob::Propose(Box::new(AgentContext::example())))
            .unwrap();
        let msg =
            w.rx.recv_timeout(std::time::Duration::from_secs(10))
                .unwrap();
        match msg {
            Msg::Failed(e) => assert!(
                e.contains("agent worker panicked: scripted agent panic"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        w.shutdown();
    }
}
