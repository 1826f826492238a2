//! Run a whole session on the calling thread, with auto-approval: the same machine and
//! engine as the threaded workers, for benchmarks and tests.

use anyhow::{anyhow, Result};
use std::collections::VecDeque;

use super::{AgentJob, Engine};
use crate::agent::Agent;
use crate::session::{Effect, Event, Machine};

/// Every event of the session, derived ones included, in order.
pub fn run_inline(
    m: &mut Machine,
    engine: &mut Engine,
    agent: &mut dyn Agent,
) -> Result<Vec<Event>> {
    run_inline_observed(m, engine, agent, &mut |_| {})
}

/// As `run_inline`, calling `seen` with each event as it happens (benchmarks time them).
pub fn run_inline_observed(
    m: &mut Machine,
    engine: &mut Engine,
    agent: &mut dyn Agent,
    seen: &mut dyn FnMut(&Event),
) -> Result<Vec<Event>> {
    let mut log = Vec::new();
    let mut queue: VecDeque<Effect> = m.start().into();
    let mut none = |_: usize, _: usize| {};
    while let Some(effect) = queue.pop_front() {
        let ev = match effect {
            Effect::Baseline => engine.baseline(&mut none)?,
            Effect::Profile => engine.profile(m.iteration)?,
            Effect::Propose(ctx) => super::agent_event(agent, AgentJob::Propose(ctx)),
            Effect::Review(p) => Event::auto_decided(m.iteration, &p),
            Effect::Apply(step) => engine.apply(m.iteration, &step, &mut none)?,
            Effect::Commit { index } => {
                engine.commit(index);
                continue;
            }
            Effect::Restore { index } => {
                engine.restore(index)?;
                continue;
            }
            Effect::Reflect(b) => super::agent_event(agent, AgentJob::Reflect(b)),
            Effect::Log(ev) => {
                seen(&ev);
                log.push(ev);
                continue;
            }
            Effect::Finished(_) => break,
        };
        queue.extend(m.handle(&ev).map_err(|e| anyhow!(e))?);
        seen(&ev);
        log.push(ev);
    }
    Ok(log)
}
