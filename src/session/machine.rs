//! The pruning loop as one pure state machine: events in, effects out, no IO. The TUI, the
//! headless runner and the replayer all drive this same machine.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::events::{Decision, Evaluation, Event, LayerInfo, StopReason};
use crate::agent::{
    parse, AgentContext, Bounds, LayerChange, LayerRow, LayerTarget, ProbeView, Proposal,
    ReviewerFeedback, StepOutcome, Usage,
};

/// The loop's rules; recorded in every session header. An unknown key is refused: a
/// misplaced `max_step` here ran the session on the default bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopOptions {
    /// Stop when the global sparsity of the blocks' linear layers reaches this.
    pub target: f64,
    /// Roll back a step whose perplexity rises more than this (relative) over the checkpoint.
    pub threshold: f64,
    /// Optional ceiling on total degradation versus the dense model (relative).
    pub ceiling: Option<f64>,
    pub max_iters: usize,
    pub bounds: Bounds,
    /// Recompute the profile after this many accepted steps.
    pub profile_every: usize,
    /// Roll back when the knowledge probe's accuracy drops more than this (absolute) below
    /// the checkpoint's. Beyond the paper, which guards perplexity only.
    pub probe_max_drop: Option<f64>,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            target: 0.45,
            threshold: 0.05,
            ceiling: None,
            max_iters: 60,
            bounds: Bounds::default(),
            profile_every: 1,
            probe_max_drop: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Phase {
    Idle,
    Baseline,
    Profiling,
    Proposing,
    Reviewing,
    Applying,
    Reflecting,
    Done(StopReason),
}

impl Phase {
    /// The phase as a message says it: `profiling`, `done`.
    pub fn words(&self) -> String {
        match self {
            Phase::Done(_) => "done".into(),
            p => format!("{p:?}").to_lowercase(),
        }
    }
}

/// Masks of one applied step: the targets, pruned Wanda-style with the input statistics of
/// profile number `profile` (so masks can be rebuilt exactly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskStep {
    pub profile: usize,
    pub targets: Vec<LayerTarget>,
}

/// An accepted state: sparsities and metrics, never weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub index: usize,
    pub iteration: usize,
    pub sparsity: BTreeMap<String, f64>,
    pub eval: Evaluation,
    pub steps: Vec<MaskStep>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Baseline,
    Profile,
    Propose(Box<AgentContext>),
    Review(Proposal),
    /// Grow the masks of `targets` with the latest profile's statistics, then evaluate.
    Apply(MaskStep),
    /// The current masks become checkpoint `index`.
    Commit {
        index: usize,
    },
    /// Restore the masks of checkpoint `index`, dropping later ones.
    Restore {
        index: usize,
    },
    Reflect(Box<(AgentContext, Proposal, StepOutcome)>),
    /// A derived event to record.
    Log(Event),
    Finished(StopReason),
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub opts: LoopOptions,
    pub model: String,
    pub phase: Phase,
    pub iteration: usize,
    pub layers: Vec<LayerInfo>,
    pub dense: Option<Evaluation>,
    pub checkpoints: Vec<Checkpoint>,
    pub profile: Vec<LayerRow>,
    /// Number of profiles received; masks use the statistics of the latest.
    pub profiles: usize,
    /// The iteration the latest profile was taken at (before its proposal).
    pub profiled_at: Option<usize>,
    accepted_since_profile: usize,
    pub proposal: Option<Proposal>,
    pub applying: Option<Proposal>,
    /// The agent's own proposal behind `applying`, and whether the reviewer edited or
    /// overrode it (the reflection is about the agent's proposal, not the reviewer's).
    agent_proposal: Option<Proposal>,
    edited: bool,
    /// The reflection job of the step being reflected on, kept for `resume_effects`.
    reflect: Option<Box<(AgentContext, Proposal, StepOutcome)>>,
    pub history: Vec<StepOutcome>,
    /// One per step, as recorded (for the TUI, parallel to `history`).
    pub reflections: Vec<String>,
    /// Indices into `reflections` of failed reflection calls, kept out of the prompts.
    failed_reflections: Vec<usize>,
    /// Every rejection with its feedback, oldest first.
    pub feedback_log: Vec<ReviewerFeedback>,
    /// The last entry of `feedback_log` is this iteration's, not yet answered by a step.
    feedback_open: bool,
    /// The guard's rollbacks.
    pub rollbacks: usize,
    /// The reviewer's (`RollbackTo`).
    pub reviewer_rollbacks: usize,
    pub usage: Usage,
    agent_failures: usize,
    /// Every agent failure of the session, in a row or not (iterations the reviewer got no
    /// valid proposal for).
    pub agent_failures_total: usize,
    pub stop_requested: bool,
}

impl Machine {
    pub fn new(model: &str, opts: LoopOptions) -> Machine {
        Machine {
            opts,
            model: model.to_string(),
            phase: Phase::Idle,
            iteration: 0,
            layers: Vec::new(),
            dense: None,
            checkpoints: Vec::new(),
            profile: Vec::new(),
            profiles: 0,
            profiled_at: None,
            accepted_since_profile: 0,
            proposal: None,
            applying: None,
            agent_proposal: None,
            edited: false,
            reflect: None,
            history: Vec::new(),
            reflections: Vec::new(),
            failed_reflections: Vec::new(),
            feedback_log: Vec::new(),
            feedback_open: false,
            rollbacks: 0,
            reviewer_rollbacks: 0,
            usage: Usage::default(),
            agent_failures: 0,
            agent_failures_total: 0,
            stop_requested: false,
        }
    }

    pub fn start(&mut self) -> Vec<Effect> {
        self.phase = Phase::Baseline;
        vec![Effect::Baseline]
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done(_))
    }

    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoints.last()
    }

    /// The reviewer's feedback on this iteration's rejected proposal, until a step answers it.
    pub fn feedback(&self) -> Option<&str> {
        let last = self.feedback_log.last().filter(|_| self.feedback_open);
        last.map(|f| f.feedback.as_str())
    }

    /// Iterations finished, skipped ones included: the counter names the next one, and one
    /// whose guard is written (its reflection not yet) counts.
    pub fn iterations_done(&self) -> usize {
        if self.phase == Phase::Reflecting {
            self.iteration
        } else {
            self.iteration.saturating_sub(1)
        }
    }

    /// The global sparsity iteration `iteration`'s step reached when it was evaluated:
    /// a rolled-back step's is above the checkpoint's it returned to (None before its
    /// guard, or for an iteration without a step).
    pub fn reached_sparsity(&self, iteration: usize) -> Option<f64> {
        let o = self
            .history
            .iter()
            .rev()
            .find(|o| o.iteration == iteration)?;
        if o.accepted {
            return Some(o.global_sparsity_after);
        }
        let params = |name: &str| {
            (self.layers.iter())
                .find(|l| l.name == name)
                .map_or(0.0, |l| l.params as f64)
        };
        let total: f64 = self.layers.iter().map(|l| l.params as f64).sum();
        let moved: f64 = (o.changes.iter())
            .map(|c| (c.to - c.from) * params(&c.name))
            .sum();
        Some(o.global_sparsity_after + moved / total.max(1.0))
    }

    /// Parameter-weighted sparsity of the current checkpoint.
    pub fn global_sparsity(&self) -> f64 {
        self.checkpoint().map_or(0.0, |c| self.sparsity_of(c))
    }

    /// Parameter-weighted sparsity of any checkpoint over the blocks' linear layers.
    pub fn sparsity_of(&self, c: &Checkpoint) -> f64 {
        let (mut pruned, mut total) = (0.0, 0.0);
        for l in &self.layers {
            pruned += c.sparsity.get(&l.name).copied().unwrap_or(0.0) * l.params as f64;
            total += l.params as f64;
        }
        pruned / total.max(1.0)
    }

    /// What the agent sees now.
    pub fn context(&self) -> AgentContext {
        let c = self.checkpoint();
        let layers = self
            .profile
            .iter()
            .map(|r| LayerRow {
                sparsity: c
                    .and_then(|c| c.sparsity.get(&r.name).copied())
                    .unwrap_or(r.sparsity),
                ..r.clone()
            })
            .collect();
        let (open, earlier) = match self.feedback_log.split_last() {
            Some((last, earlier)) if self.feedback_open => (Some(last), earlier),
            _ => (None, &self.feedback_log[..]),
        };
        // One reflection per evaluated step, in order (a failed call kept as a placeholder).
        let shown: Vec<(usize, &String)> = (self.reflections.iter().enumerate())
            .filter(|(i, _)| !self.failed_reflections.contains(i))
            .map(|(i, r)| (self.history.get(i).map_or(0, |h| h.iteration), r))
            .collect();
        AgentContext {
            model: self.model.clone(),
            iteration: self.iteration,
            target: self.opts.target,
            global_sparsity: self.global_sparsity(),
            threshold: self.opts.threshold,
            dense_ppl: self.dense.as_ref().map_or(f64::NAN, |e| e.ppl),
            current_ppl: c.map_or(f64::NAN, |c| c.eval.ppl),
            layers,
            history: self.history.clone(),
            reflections: shown.iter().map(|(_, r)| r.to_string()).collect(),
            reflection_steps: shown.iter().map(|(i, _)| *i).collect(),
            feedback: open.map(|f| f.feedback.clone()),
            rejected: open.map(|f| f.rejected.clone()),
            earlier_feedback: earlier.to_vec(),
            bounds: self.opts.bounds.clone(),
            ceiling: self.opts.ceiling,
            probe_max_drop: self.opts.probe_max_drop,
            max_iters: self.opts.max_iters,
            probe: self.probe_view(),
        }
    }

    /// The probe's accuracy for the dense model and at the checkpoint, when one runs.
    fn probe_view(&self) -> Option<ProbeView> {
        let dense = self.dense.as_ref()?.probe.as_ref()?;
        let now = self.checkpoint()?.eval.probe.as_ref()?;
        Some(ProbeView {
            kind: dense.kind.clone(),
            items: dense.items,
            dense: dense.accuracy,
            now: now.accuracy,
        })
    }

    /// Checks a human's edit or override against the same rules as an agent's proposal.
    pub fn check_decision(&self, d: &Decision) -> Result<(), Vec<String>> {
        match d {
            Decision::Edit { layers } | Decision::Override { layers, .. } => parse::validate(
                &Proposal {
                    layers: layers.clone(),
                    reasoning: String::new(),
                },
                &self.context(),
            ),
            _ => Ok(()),
        }
    }

    /// The effects to issue again after the machine was rebuilt from a session file.
    pub fn resume_effects(&self) -> Vec<Effect> {
        match &self.phase {
            Phase::Idle | Phase::Baseline => vec![Effect::Baseline],
            Phase::Profiling => vec![Effect::Profile],
            Phase::Proposing => vec![self.propose()],
            Phase::Reviewing => vec![Effect::Review(self.proposal.clone().expect("reviewing"))],
            Phase::Applying => vec![Effect::Apply(self.mask_step())],
            Phase::Reflecting => {
                vec![Effect::Reflect(
                    self.reflect.clone().expect("a reflection job"),
                )]
            }
            Phase::Done(_) => vec![],
        }
    }

    fn propose(&self) -> Effect {
        Effect::Propose(Box::new(self.context()))
    }

    fn mask_step(&self) -> MaskStep {
        MaskStep {
            profile: self.profiles,
            targets: self.applying.as_ref().map_or(vec![], |p| p.layers.clone()),
        }
    }

    fn finish(&mut self, reason: StopReason) -> Vec<Effect> {
        self.phase = Phase::Done(reason.clone());
        let ppl = self.checkpoint().map_or(f64::NAN, |c| c.eval.ppl);
        vec![
            Effect::Log(Event::Finished {
                reason: reason.clone(),
                iteration: self.iteration,
                global_sparsity: self.global_sparsity(),
                ppl,
            }),
            Effect::Finished(reason),
        ]
    }

    /// Stop conditions checked before asking the agent; otherwise profile or propose.
    fn next_step(&mut self, need_profile: bool) -> Vec<Effect> {
        if self.stop_requested {
            return self.finish(StopReason::UserStop);
        }
        if self.global_sparsity() >= self.opts.target - 1e-9 {
            return self.finish(StopReason::TargetReached);
        }
        if self.iteration > self.opts.max_iters {
            return self.finish(StopReason::MaxIterations);
        }
        if need_profile {
            self.phase = Phase::Profiling;
            return vec![Effect::Profile];
        }
        self.phase = Phase::Proposing;
        vec![self.propose()]
    }

    fn expect(&self, phase: Phase, ev: &Event, iteration: Option<usize>) -> Result<(), String> {
        if self.phase != phase {
            return Err(format!(
                "event `{}` arrived in phase {:?}, expected {:?}",
                ev.kind(),
                self.phase,
                phase
            ));
        }
        match iteration {
            Some(i) if i != self.iteration => Err(format!(
                "event `{}` is for iteration {i} but the session is at iteration {}",
                ev.kind(),
                self.iteration
            )),
            _ => Ok(()),
        }
    }
}

#[path = "transitions.rs"]
mod transitions;
