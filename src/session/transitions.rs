//! `Machine::handle`: one arm per event.

use super::*;
use crate::agent::percent::percent;

/// Consecutive agent failures (across iterations) that end the session.
pub const MAX_AGENT_FAILURES: usize = 3;

impl Machine {
    /// Apply one input event. A derived event (guard, finished) is accepted and ignored, so a
    /// whole session file can be fed back. An event that does not fit is an error.
    pub fn handle(&mut self, ev: &Event) -> Result<Vec<Effect>, String> {
        match ev {
            Event::Baseline { layers, eval } => {
                self.expect(Phase::Baseline, ev, None)?;
                // Every verdict compares with it: NaN would roll back every step, and a
                // hand-edited file would fail later at an unrelated event.
                if !(eval.ppl.is_finite() && eval.ppl > 0.0) {
                    return Err(format!(
                        "the dense model's perplexity is {}: a session needs a finite one to \
                         guard against (with --dtype f16, try bf16 or f32)",
                        eval.ppl
                    ));
                }
                self.layers = layers.clone();
                self.dense = Some(eval.clone());
                self.checkpoints = vec![Checkpoint {
                    index: 0,
                    iteration: 0,
                    sparsity: layers
                        .iter()
                        .map(|l| (l.name.clone(), l.sparsity))
                        .collect(),
                    eval: eval.clone(),
                    steps: vec![],
                }];
                self.iteration = 1;
                Ok(self.next_step(true))
            }
            Event::Profiled {
                iteration, rows, ..
            } => {
                self.expect(Phase::Profiling, ev, Some(*iteration))?;
                self.profile = rows.clone();
                self.profiles += 1;
                self.profiled_at = Some(*iteration);
                self.accepted_since_profile = 0;
                Ok(self.next_step(false))
            }
            Event::Proposed {
                iteration, reply, ..
            } => {
                self.expect(Phase::Proposing, ev, Some(*iteration))?;
                // Agents only ever propose within the rules; a session file edited by hand
                // may not, and would otherwise apply it on a resume or replay.
                if !reply.value.layers.is_empty() {
                    parse::validate(&reply.value, &self.context())
                        .map_err(|p| format!("invalid proposal: {}", p.join("; ")))?;
                }
                self.usage += reply.usage;
                self.agent_failures = 0;
                self.proposal = Some(reply.value.clone());
                self.phase = Phase::Reviewing;
                Ok(vec![Effect::Review(reply.value.clone())])
            }
            Event::AgentFailed {
                iteration,
                error,
                usage,
                ..
            } => {
                self.expect(Phase::Proposing, ev, Some(*iteration))?;
                self.usage += *usage;
                self.agent_failures += 1;
                self.agent_failures_total += 1;
                if self.agent_failures >= MAX_AGENT_FAILURES {
                    return Ok(self.finish(StopReason::AgentFailed));
                }
                // The reviewer decides: override, reject (ask again) or skip the iteration.
                let empty = Proposal {
                    layers: vec![],
                    reasoning: format!("(no valid proposal: {error})"),
                };
                self.proposal = Some(empty.clone());
                self.phase = Phase::Reviewing;
                Ok(vec![Effect::Review(empty)])
            }
            Event::Decided {
                iteration,
                decision,
                ..
            } => {
                self.expect(Phase::Reviewing, ev, Some(*iteration))?;
                self.decide(decision)
            }
            Event::Evaluated {
                iteration,
                applied,
                eval,
            } => {
                self.expect(Phase::Applying, ev, Some(*iteration))?;
                self.check_applied(applied)?;
                Ok(self.guard(applied, eval))
            }
            Event::Reflected { iteration, reply } => {
                self.expect(Phase::Reflecting, ev, Some(*iteration))?;
                self.usage += reply.usage;
                // A failed reflection is recorded and listed, but never shown to the agent.
                if crate::agent::is_failed_reflection(reply) {
                    self.failed_reflections.push(self.reflections.len());
                }
                self.reflections.push(reply.value.clone());
                let accepted = self.history.last().is_some_and(|o| o.accepted);
                self.iteration += 1;
                let need_profile =
                    accepted && self.accepted_since_profile >= self.opts.profile_every.max(1);
                Ok(self.next_step(need_profile))
            }
            Event::StopRequested { .. } => match self.phase {
                Phase::Proposing | Phase::Reviewing => Ok(self.finish(StopReason::UserStop)),
                Phase::Done(_) => Ok(vec![]),
                _ => {
                    self.stop_requested = true;
                    Ok(vec![])
                }
            },
            Event::RollbackTo { checkpoint, .. } => self.roll_back_to(*checkpoint),
            Event::Continued { iteration } => {
                if self.phase != Phase::Done(StopReason::AgentFailed)
                    || *iteration != self.iteration
                {
                    return Err(format!(
                        "only a session ended by agent failures continues (phase {:?}, iteration {})",
                        self.phase, self.iteration
                    ));
                }
                self.agent_failures = 0;
                self.phase = Phase::Proposing;
                Ok(vec![self.propose()])
            }
            Event::Guard { .. } | Event::Finished { .. } => Ok(vec![]),
        }
    }

    /// The reviewer's decision on the proposal waiting for review.
    fn decide(&mut self, decision: &Decision) -> Result<Vec<Effect>, String> {
        self.check_decision(decision)
            .map_err(|p| format!("invalid decision: {}", p.join("; ")))?;
        let agent = self.proposal.take().expect("reviewing has a proposal");
        // After a failure the proposal is the loop's placeholder: the model proposed
        // nothing, and the error (an endpoint, an environment variable) is not its words
        // to be shown as its own, to a re-ask or to the reflection on an override.
        let agent = match self.agent_failures {
            0 => agent,
            _ => Proposal {
                layers: vec![],
                reasoning: String::new(),
            },
        };
        let approved = match decision {
            Decision::Skip => return Ok(self.skip()),
            Decision::Approve if agent.layers.is_empty() => return Ok(self.skip()),
            // No feedback (the TUI's "ask again" after a failure) asks again as before,
            // with nothing for the prompt to say of it.
            Decision::Reject { feedback } if feedback.trim().is_empty() => {
                self.phase = Phase::Proposing;
                return Ok(vec![self.propose()]);
            }
            Decision::Reject { feedback } => {
                self.feedback_open = true;
                self.feedback_log.push(ReviewerFeedback {
                    iteration: self.iteration,
                    feedback: feedback.clone(),
                    rejected: agent,
                });
                self.phase = Phase::Proposing;
                return Ok(vec![self.propose()]);
            }
            Decision::Approve => agent.clone(),
            Decision::Edit { layers } => Proposal {
                layers: layers.clone(),
                // Said first, as an override's: after the reasoning it read as
                // the reasoning having been edited.
                reasoning: format!("[layers edited by the reviewer] {}", agent.reasoning)
                    .trim_end()
                    .to_string(),
            },
            Decision::Override { layers, reasoning } => Proposal {
                layers: layers.clone(),
                reasoning: format!("[override by the reviewer] {reasoning}"),
            },
        };
        self.edited = !matches!(decision, Decision::Approve);
        self.agent_proposal = Some(agent);
        self.applying = Some(approved);
        self.phase = Phase::Applying;
        Ok(vec![Effect::Apply(self.mask_step())])
    }

    /// The reviewer's rollback to an earlier checkpoint, between steps.
    fn roll_back_to(&mut self, checkpoint: usize) -> Result<Vec<Effect>, String> {
        if !matches!(self.phase, Phase::Proposing | Phase::Reviewing) {
            return Err(format!(
                "a rollback to a checkpoint needs an idle session, not phase {:?}",
                self.phase
            ));
        }
        // Not `checkpoint + 1`: a hand-edited huge index would wrap around.
        if checkpoint >= self.checkpoints.len().saturating_sub(1) {
            return Err(format!(
                "checkpoint {checkpoint} is not an earlier checkpoint (latest is {})",
                self.checkpoints.len().saturating_sub(1)
            ));
        }
        self.checkpoints.truncate(checkpoint + 1);
        self.reviewer_rollbacks += 1;
        // The accepted steps after the restored checkpoint are undone: the prompts, the
        // trend and the reflections said "accepted" of steps the model no longer has.
        let restored = self.checkpoints[checkpoint].iteration;
        for h in self.history.iter_mut() {
            if h.accepted && h.iteration > restored && h.undone_to.is_none() {
                h.undone_to = Some(restored);
            }
        }
        // An open rejection named a proposal made against the checkpoint left behind: it
        // becomes earlier feedback, not a re-ask of that proposal.
        self.feedback_open = false;
        self.proposal = None;
        self.phase = Phase::Profiling;
        Ok(vec![Effect::Restore { index: checkpoint }, Effect::Profile])
    }

    fn skip(&mut self) -> Vec<Effect> {
        // The iteration ends: a rejection's feedback becomes earlier feedback (the next
        // prompt said "rejected your last proposal ... propose again" of one it skipped).
        self.feedback_open = false;
        self.iteration += 1;
        self.next_step(false)
    }

    /// The sparsities a step reached are those its approved targets allow: masks grow
    /// toward a target (Wanda rounds each row down) and never shrink. An `applied` edited
    /// past its target or below where the layer stood was replayed and exported as
    /// recorded unless `--verify` re-ran the step.
    fn check_applied(&self, applied: &BTreeMap<String, f64>) -> Result<(), String> {
        // Float room only: a sparsity is a count of weights over the layer's size.
        const ROOM: f64 = 1e-9;
        let targets = self.applying.as_ref().map_or(&[][..], |p| &p.layers[..]);
        let ckpt = self
            .checkpoint()
            .ok_or("no checkpoint to apply a step to")?;
        for t in targets {
            let Some(&got) = applied.get(&t.name) else {
                return Err(format!(
                    "applied has no sparsity for {}, a layer of the approved step",
                    t.name
                ));
            };
            let before = ckpt.sparsity.get(&t.name).copied().unwrap_or(0.0);
            if got > t.sparsity.max(before) + ROOM {
                return Err(format!(
                    "applied gives {} sparsity {got}, past its approved target {} (a mask grows to its target, never past it)",
                    t.name, t.sparsity
                ));
            }
            if got < before - ROOM {
                return Err(format!(
                    "applied gives {} sparsity {got}, below the {before} it had (masks only grow)",
                    t.name
                ));
            }
        }
        match applied
            .keys()
            .find(|k| !targets.iter().any(|t| &t.name == *k))
        {
            Some(k) => Err(format!(
                "applied gives a sparsity for {k}, which the approved step does not name"
            )),
            None => Ok(()),
        }
    }

    fn guard(&mut self, applied: &BTreeMap<String, f64>, eval: &Evaluation) -> Vec<Effect> {
        // The reflection is about the step from the state the agent proposed it in, so its
        // context is taken before an accepted step becomes the new checkpoint.
        let before = self.context();
        let ckpt = self.checkpoint().expect("a checkpoint").clone();
        let delta = eval.ppl / ckpt.eval.ppl - 1.0;
        let total = self.dense.as_ref().map_or(0.0, |d| eval.ppl / d.ppl - 1.0);
        let th = self.opts.threshold;
        let over_ceiling = self.opts.ceiling.is_some_and(|c| total > c);
        let probe_drop = match (&ckpt.eval.probe, &eval.probe) {
            (Some(a), Some(b)) => a.accuracy - b.accuracy,
            _ => 0.0,
        };
        let probe_failed = self
            .opts
            .probe_max_drop
            .is_some_and(|m| probe_drop > m + 1e-12);
        // A hair of slack so that exactly +threshold (up to rounding) counts as within it.
        let accepted =
            eval.ppl.is_finite() && delta <= th + 1e-12 && !over_ceiling && !probe_failed;
        // The value and its limit with the decimals that tell them apart.
        let pair =
            |v: f64, l: f64, signed| (percent(v, Some(l), signed), percent(l, Some(v), false));
        let note = if !eval.ppl.is_finite() {
            "rolled back: perplexity is not finite".to_string()
        } else if probe_failed {
            let (d, l) = pair(probe_drop, self.opts.probe_max_drop.unwrap_or(0.0), false);
            format!("rolled back: probe accuracy fell {d} points > {l}")
        } else if over_ceiling {
            let (d, l) = pair(total, self.opts.ceiling.unwrap_or(0.0), true);
            format!("rolled back: {d}% over dense > ceiling {l}%")
        } else if accepted {
            let (d, l) = pair(delta, th, true);
            format!("accepted: {d}% <= {l}%")
        } else {
            let (d, l) = pair(delta, th, true);
            format!("rolled back: {d}% > {l}%")
        };
        let changes: Vec<LayerChange> = applied
            .iter()
            .map(|(name, to)| LayerChange {
                name: name.clone(),
                from: ckpt.sparsity.get(name).copied().unwrap_or(0.0),
                to: *to,
            })
            .collect();
        let mut effects = Vec::new();
        if accepted {
            let mut sparsity = ckpt.sparsity.clone();
            sparsity.extend(applied.iter().map(|(k, v)| (k.clone(), *v)));
            let mut steps = ckpt.steps.clone();
            steps.push(self.mask_step());
            let index = self.checkpoints.len();
            self.checkpoints.push(Checkpoint {
                index,
                iteration: self.iteration,
                sparsity,
                eval: eval.clone(),
                steps,
            });
            self.accepted_since_profile += 1;
            effects.push(Effect::Commit { index });
        } else {
            self.rollbacks += 1;
            effects.push(Effect::Restore { index: ckpt.index });
        }
        let outcome = StepOutcome {
            iteration: self.iteration,
            changes,
            ppl_before: ckpt.eval.ppl,
            ppl_after: eval.ppl,
            accepted,
            global_sparsity_after: self.global_sparsity(),
            note: note.clone(),
            edited: self.edited,
            probe_before: ckpt.eval.probe.as_ref().map(|p| p.accuracy),
            probe_after: eval.probe.as_ref().map(|p| p.accuracy),
            undone_to: None,
        };
        effects.push(Effect::Log(Event::Guard {
            iteration: self.iteration,
            ppl_before: ckpt.eval.ppl,
            ppl_after: eval.ppl,
            delta,
            accepted,
            global_sparsity: self.global_sparsity(),
            note,
        }));
        self.history.push(outcome.clone());
        self.feedback_open = false;
        self.phase = Phase::Reflecting;
        let proposal = self
            .agent_proposal
            .clone()
            .expect("applying has a proposal");
        let job = Box::new((before, proposal, outcome));
        self.reflect = Some(job.clone());
        effects.push(Effect::Reflect(job));
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Only a session the agent's failures ended continues; the words count the failures.
    #[test]
    fn continued_needs_a_session_ended_by_agent_failures() {
        let mut m = Machine::new("m", LoopOptions::default());
        m.start();
        let err = m.handle(&Event::Continued { iteration: 0 }).unwrap_err();
        assert!(
            err.contains("only a session ended by agent failures"),
            "{err}"
        );
        m.phase = Phase::Done(StopReason::UserStop);
        assert!(m.handle(&Event::Continued { iteration: 0 }).is_err());
        m.phase = Phase::Done(StopReason::AgentFailed);
        m.agent_failures = MAX_AGENT_FAILURES;
        let effects = m.handle(&Event::Continued { iteration: 0 }).unwrap();
        assert_eq!(m.phase, Phase::Proposing);
        assert_eq!(m.agent_failures, 0);
        assert!(matches!(effects.as_slice(), [Effect::Propose(_)]));
        let words = ["once", "twice", "three times"][MAX_AGENT_FAILURES - 1];
        assert!(StopReason::AgentFailed.words().contains(words));
    }

    // Rejecting the empty proposal a failure left does not hand the failure's error to the
    // agent as its own reasoning (the re-ask read "You proposed: nothing ((no valid
    // proposal: openai: HTTP 401 ...))").
    #[test]
    fn a_rejected_failure_is_not_the_agents_reasoning() {
        let mut m = Machine::new("m", LoopOptions::default());
        m.start();
        m.phase = Phase::Proposing;
        let failed = Event::AgentFailed {
            iteration: m.iteration,
            error: "openai: HTTP 401 Unauthorized (check OPENAI_API_KEY)".into(),
            prompt: None,
            raw: None,
            usage: Default::default(),
        };
        m.handle(&failed).unwrap();
        assert!(m.proposal.as_ref().unwrap().reasoning.contains("HTTP 401"));
        let reject = Event::Decided {
            iteration: m.iteration,
            by: "human".into(),
            decision: Decision::Reject {
                feedback: "try block 3".into(),
            },
        };
        m.handle(&reject).unwrap();
        let last = m.feedback_log.last().unwrap();
        assert_eq!(
            (last.rejected.reasoning.as_str(), last.feedback.as_str()),
            ("", "try block 3")
        );
    }
}
