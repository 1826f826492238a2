//! What each event did: the effects it asked for, the guard's verdict and the state after.

use super::*;

impl Sim {
    /// What the machine asked for fits the phase it is in, and the event did what it says.
    pub(crate) fn check_transition(&mut self, prev: &Machine, ev: &Event, fx: &[Effect]) {
        let seed = self.seed;
        let m = &self.m;
        let o = &self.w.opts;
        let requests: Vec<&Effect> = (fx.iter())
            .filter(|f| {
                !matches!(
                    f,
                    Effect::Log(_) | Effect::Commit { .. } | Effect::Restore { .. }
                )
            })
            .collect();
        // At most one thing is asked for at a time.
        assert!(requests.len() <= 1, "seed {seed}: {ev:?} gave {fx:?}");
        // And it fits the phase the machine is in now.
        match requests.first() {
            // Only a stop while something is computed (or after the end) asks for
            // nothing: the phase stays, and so does the request.
            None => assert!(
                matches!(ev, Event::StopRequested { .. })
                    && m.phase == prev.phase
                    && !matches!(m.phase, Phase::Proposing | Phase::Reviewing),
                "seed {seed}: {ev:?} asked for nothing in phase {:?}",
                m.phase
            ),
            Some(Effect::Baseline) => panic!("seed {seed}: a second baseline after {ev:?}"),
            Some(Effect::Profile) => assert_eq!(m.phase, Phase::Profiling, "seed {seed}"),
            Some(Effect::Propose(ctx)) => {
                assert_eq!(m.phase, Phase::Proposing, "seed {seed}");
                // The agent is sent what the machine holds now.
                assert!(
                    same(ctx.as_ref(), &m.context()),
                    "seed {seed}: a stale context"
                );
            }
            Some(Effect::Review(p)) => {
                assert_eq!(m.phase, Phase::Reviewing, "seed {seed}");
                // What the reviewer is shown is what a decision will be taken on.
                assert_eq!(m.proposal.as_ref(), Some(p), "seed {seed}");
                let want = match ev {
                    Event::Proposed { reply, .. } => reply.value.layers.clone(),
                    _ => vec![],
                };
                // The reviewer sees the agent's proposal, or nothing after its failure.
                assert_eq!(p.layers, want, "seed {seed}: reviewed {ev:?}");
            }
            Some(Effect::Apply(step)) => {
                assert_eq!(m.phase, Phase::Applying, "seed {seed}");
                // The masks grow with the latest profile's statistics, to the approved
                // targets.
                assert_eq!(step.profile, self.profile_at.len(), "seed {seed}");
                let approved = self.approved.as_ref().map(|a| &a.0);
                assert_eq!(Some(&step.targets), approved, "seed {seed}");
            }
            Some(Effect::Reflect(job)) => {
                assert_eq!(m.phase, Phase::Reflecting, "seed {seed}");
                // The reflection is on the step just guarded, from the state the step was
                // proposed in.
                assert!(same(&job.2, m.history.last().unwrap()), "seed {seed}");
                assert!(same(&job.0, &prev.context()), "seed {seed}");
            }
            Some(Effect::Finished(r)) => {
                assert_eq!(m.phase, Phase::Done(r.clone()), "seed {seed}");
                let logged = fx.iter().find_map(|f| match f {
                    Effect::Log(Event::Finished {
                        reason,
                        iteration,
                        global_sparsity,
                        ppl,
                    }) => Some((reason, *iteration, *global_sparsity, *ppl)),
                    _ => None,
                });
                let ck = m.checkpoint().unwrap();
                // The finish records the state it ended in.
                assert_eq!(
                    logged,
                    Some((r, m.iteration, m.global_sparsity(), ck.eval.ppl)),
                    "seed {seed}"
                );
                let g = m.global_sparsity();
                match r {
                    StopReason::TargetReached => {
                        assert!(g >= o.target - 1e-9, "seed {seed}: {g} < {}", o.target);
                        // A target the bounds could not reach was said to be out of reach.
                        assert!(!self.out_of_reach, "seed {seed}: reached the unreachable");
                    }
                    StopReason::MaxIterations => {
                        assert_eq!(m.iteration, o.max_iters + 1, "seed {seed}");
                        assert!(g < o.target - 1e-9, "seed {seed}: {g} reached the target");
                    }
                    // Only a stop the user asked for ends as one.
                    StopReason::UserStop => assert!(self.stop_fed.is_some(), "seed {seed}"),
                    // The agent failed three times in a row, not fewer.
                    StopReason::AgentFailed => assert_eq!(
                        self.failures_in_a_row, 3,
                        "seed {seed}: ended after {} failures in a row",
                        self.failures_in_a_row
                    ),
                }
            }
            Some(other) => unreachable!("{other:?}"),
        }
        if let Some(r) = requests.first() {
            self.request = Some((*r).clone());
        }
        // Commits, restores and verdicts come from evaluations and rollbacks only.
        let verdicts: Vec<&Effect> = (fx.iter())
            .filter(|f| {
                matches!(
                    f,
                    Effect::Commit { .. }
                        | Effect::Restore { .. }
                        | Effect::Log(Event::Guard { .. })
                )
            })
            .collect();
        match ev {
            Event::Evaluated { .. } => self.check_guard(prev, ev, fx),
            Event::RollbackTo { checkpoint, .. } => {
                let c = *checkpoint;
                // A rollback restores exactly the chosen checkpoint, drops later ones and
                // profiles it.
                assert_eq!(
                    fx,
                    [Effect::Restore { index: c }, Effect::Profile],
                    "seed {seed}"
                );
                assert_eq!(m.checkpoints[..], prev.checkpoints[..=c], "seed {seed}");
                let g = m.sparsity_of(&prev.checkpoints[c]);
                assert_eq!(m.global_sparsity(), g, "seed {seed}");
            }
            _ => assert!(verdicts.is_empty(), "seed {seed}: {ev:?} gave {fx:?}"),
        }
        // A rejection asks the agent again in the same iteration, with the feedback.
        if let Event::Decided {
            decision: Decision::Reject { feedback },
            ..
        } = ev
        {
            let Some(Effect::Propose(ctx)) = requests.first() else {
                panic!("seed {seed}: a rejection gave {fx:?}")
            };
            assert_eq!(ctx.feedback.as_ref(), Some(feedback), "seed {seed}");
            assert_eq!(ctx.iteration, prev.iteration, "seed {seed}");
        }
        // After a rollback the profile still holds; after accepted steps it is taken
        // again every `profile_every` (README, "Profiles are recomputed...").
        if let Event::Reflected { .. } = ev {
            let accepted = m.history.last().unwrap().accepted;
            let due = accepted && self.accepted_since_profile >= o.profile_every;
            let profiles = matches!(requests.first(), Some(Effect::Profile));
            if !m.is_done() {
                assert_eq!(profiles, due, "seed {seed}: a profile after {ev:?}");
            }
        }
        // A resumed session asks for what this one waits for.
        let again = m.resume_effects();
        match &m.phase {
            Phase::Done(_) => assert!(again.is_empty(), "seed {seed}"),
            _ => assert!(
                same(&again[..], &[self.request.clone().unwrap()]),
                "seed {seed}: resume_effects after {ev:?}"
            ),
        }
    }

    /// The guard's verdict on an evaluated step, by the README's rule.
    pub(crate) fn check_guard(&self, prev: &Machine, ev: &Event, fx: &[Effect]) {
        let seed = self.seed;
        let m = &self.m;
        let o = &self.w.opts;
        let Event::Evaluated {
            iteration,
            applied,
            eval,
        } = ev
        else {
            unreachable!()
        };
        let ck = prev.checkpoint().unwrap();
        let dense = &self.w.dense;
        let delta = eval.ppl / ck.eval.ppl - 1.0;
        let within = eval.ppl.is_finite() && delta <= o.threshold + 1e-12;
        let ceiling_ok = o.ceiling.is_none_or(|c| eval.ppl / dense.ppl - 1.0 <= c);
        let probe_ok = match (o.probe_max_drop, &ck.eval.probe, &eval.probe) {
            (Some(d), Some(a), Some(b)) => a.accuracy - b.accuracy <= d + 1e-12,
            _ => true,
        };
        let accepted = within && ceiling_ok && probe_ok;
        // Exactly the threshold is within it.
        if eval.ppl == ck.eval.ppl * (1.0 + o.threshold) && ceiling_ok && probe_ok {
            assert!(accepted, "seed {seed}: a step at the threshold itself");
        }
        let first = match accepted {
            true => Effect::Commit {
                index: prev.checkpoints.len(),
            },
            false => Effect::Restore { index: ck.index },
        };
        // The verdict, its record, and the reflection it asks for.
        assert_eq!(fx.len(), 3, "seed {seed}: {fx:?}");
        assert_eq!(fx[0], first, "seed {seed}: the verdict on {ev:?}");
        let Effect::Log(Event::Guard {
            iteration: gi,
            ppl_before,
            ppl_after,
            delta: gd,
            accepted: ga,
            global_sparsity,
            note,
        }) = &fx[1]
        else {
            panic!("seed {seed}: no guard in {fx:?}")
        };
        // The record holds the step's numbers against the last accepted checkpoint.
        assert_eq!(*gi, *iteration, "seed {seed}");
        assert_eq!(*ppl_before, ck.eval.ppl, "seed {seed}");
        assert_eq!(ppl_after.to_bits(), eval.ppl.to_bits(), "seed {seed}");
        assert_eq!(gd.to_bits(), delta.to_bits(), "seed {seed}");
        assert_eq!(*ga, accepted, "seed {seed}");
        assert_eq!(*global_sparsity, m.global_sparsity(), "seed {seed}");
        // The note says the verdict.
        assert_eq!(
            note.starts_with("accepted: "),
            accepted,
            "seed {seed}: {note}"
        );
        if !eval.ppl.is_finite() {
            assert_eq!(note, "rolled back: perplexity is not finite", "seed {seed}");
        }
        let outcome = m.history.last().unwrap();
        let edited = self.approved.as_ref().unwrap().1;
        // Edited exactly when the reviewer changed the agent's proposal.
        assert_eq!(outcome.edited, edited, "seed {seed}");
        // Each change runs from the checkpoint's sparsity to the applied one.
        for c in &outcome.changes {
            assert_eq!(c.from, ck.sparsity[&c.name], "seed {seed}");
            assert_eq!(c.to, applied[&c.name], "seed {seed}");
        }
        assert_eq!(outcome.changes.len(), applied.len(), "seed {seed}");
        if accepted {
            // The new checkpoint is the old one with the applied sparsities, after the
            // ones before it, unchanged.
            let n = prev.checkpoints.len();
            assert_eq!(m.checkpoints[..n], prev.checkpoints[..], "seed {seed}");
            let new = &m.checkpoints[n];
            let mut s = ck.sparsity.clone();
            s.extend(applied.iter().map(|(k, v)| (k.clone(), *v)));
            assert_eq!(new.sparsity, s, "seed {seed}");
            assert_eq!(&new.eval, eval, "seed {seed}");
            assert_eq!(new.iteration, *iteration, "seed {seed}");
        } else {
            // A rollback keeps every checkpoint as it was.
            assert_eq!(m.checkpoints, prev.checkpoints, "seed {seed}");
        }
    }

    /// What holds after every event.
    pub(crate) fn check_state(&self, prev: &Machine) {
        let seed = self.seed;
        let m = &self.m;
        let o = &self.w.opts;
        // Iterations never go back; a skip or a reflection moves on by one.
        assert!(m.iteration >= prev.iteration, "seed {seed}");
        if m.dense.is_some() && !matches!(m.phase, Phase::Done(_)) {
            // The iteration counter names the next one: ended ones plus one.
            assert_eq!(
                m.iteration,
                1 + self.reflected + self.skipped,
                "seed {seed}"
            );
            assert!(m.iteration <= o.max_iters, "seed {seed}: past max_iters");
        }
        let in_reflecting = usize::from(m.phase == Phase::Reflecting);
        if m.dense.is_some() {
            // Iterations done count skipped ones, and one whose guard is written.
            assert_eq!(
                m.iterations_done(),
                self.reflected + self.skipped + in_reflecting,
                "seed {seed}"
            );
        }
        // Guard verdicts come one per iteration at most, in order, within max_iters.
        assert!(
            self.guards.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: {:?}",
            self.guards
        );
        assert!(self.guards.iter().all(|i| (1..=o.max_iters).contains(i)));
        // The machine's counts agree with the events.
        assert_eq!(m.history.len(), self.guards.len(), "seed {seed}");
        assert_eq!(m.rollbacks, self.rollbacks, "seed {seed}");
        assert_eq!(m.reviewer_rollbacks, self.reviewer_rollbacks, "seed {seed}");
        assert_eq!(m.agent_failures_total, self.agent_failures, "seed {seed}");
        assert_eq!(m.usage, self.usage, "seed {seed}");
        assert_eq!(m.reflections.len(), self.reflected, "seed {seed}");
        assert_eq!(m.profiles, self.profile_at.len(), "seed {seed}");
        let logged: Vec<&String> = m.feedback_log.iter().map(|f| &f.feedback).collect();
        assert_eq!(
            logged,
            self.feedback.iter().collect::<Vec<_>>(),
            "seed {seed}"
        );
        // Feedback is open from its rejection until a step answers it.
        let open = self.feedback.last().filter(|_| self.feedback_open);
        assert_eq!(m.feedback(), open.map(String::as_str), "seed {seed}");
        // Three agent failures in a row end the session.
        if self.failures_in_a_row >= 3 {
            assert_eq!(m.phase, Phase::Done(StopReason::AgentFailed), "seed {seed}");
        }
        // A stop ends the session at the next safe point: at most an evaluation and a
        // reflection later.
        if let Some(k) = self.stop_fed {
            assert!(
                m.is_done() || self.inputs - k < 2,
                "seed {seed}: still {:?} {} inputs after the stop",
                m.phase,
                self.inputs - k
            );
        }
        if matches!(
            m.phase,
            Phase::Profiling | Phase::Proposing | Phase::Reviewing
        ) {
            // Asking the agent (or profiling for it) means the loop has not ended.
            let g = m.global_sparsity();
            assert!(
                g < o.target - 1e-9,
                "seed {seed}: {g} is at the target but the loop goes on"
            );
        }
        if matches!(m.phase, Phase::Proposing | Phase::Reviewing) {
            assert!(!m.stop_requested, "seed {seed}: asking after a stop");
            // The agent sees the checkpoint's sparsities.
            let ck = m.checkpoint().unwrap();
            let ctx = m.context();
            for r in &ctx.layers {
                assert_eq!(r.sparsity, ck.sparsity[&r.name], "seed {seed}");
            }
            assert_eq!(ctx.global_sparsity, m.global_sparsity(), "seed {seed}");
            // The agent reads every reflection but the failed ones, each with its step.
            let shown: Vec<(usize, &String)> = (self.reflections.iter())
                .filter(|r| !r.1)
                .map(|r| (r.0, &r.2))
                .collect();
            let got: Vec<(usize, &String)> = ctx
                .reflection_steps
                .iter()
                .copied()
                .zip(&ctx.reflections)
                .collect();
            assert_eq!(got, shown, "seed {seed}");
            assert_eq!(
                ctx.reflections.len(),
                ctx.reflection_steps.len(),
                "seed {seed}"
            );
            // And every rejection's feedback: the open one apart, the others as earlier.
            let earlier: Vec<&String> = ctx.earlier_feedback.iter().map(|f| &f.feedback).collect();
            let closed = self.feedback.len() - usize::from(self.feedback_open);
            assert_eq!(
                earlier,
                self.feedback[..closed].iter().collect::<Vec<_>>(),
                "seed {seed}"
            );
            assert_eq!(ctx.feedback.as_deref(), m.feedback(), "seed {seed}");
            assert_eq!(ctx.current_ppl, ck.eval.ppl, "seed {seed}");
            // The latest profile's statistics can be rebuilt on resume: it was taken at
            // the last checkpoint, or the last step used it already.
            let p = m.profiles;
            let last_step = ck.steps.last().map(|s| s.profile);
            assert!(
                last_step == Some(p) || self.profile_at[p - 1] == (ck.index, ck.iteration),
                "seed {seed}: profile {p} was taken at {:?}, not at checkpoint {}",
                self.profile_at[p - 1],
                ck.index
            );
        }
        if m.checkpoints != prev.checkpoints {
            self.check_chain();
        }
    }
}
