//! Events no runner sends in the machine's state: each must be refused and change nothing.

use super::*;

impl Sim {
    /// Feeds one event that does not fit the machine's state; it must be refused and
    /// change nothing.
    pub(crate) fn refuse_something(&mut self) {
        let it = self.m.iteration;
        let phase = self.m.phase.clone();
        let checkpoints = self.m.checkpoints.len();
        let eval = self.w.dense.clone();
        let other_iteration = match self.rng.gen_bool(0.5) {
            true => it + 1,
            false => it.saturating_sub(1),
        };
        let roll = self.rng.gen_range(0..10);
        match phase {
            Phase::Baseline if roll < 5 => {
                let ppl = *[f64::NAN, f64::INFINITY, 0.0, -1.0]
                    .choose(&mut self.rng)
                    .unwrap();
                let layers = self.w.layers.clone();
                let eval = Evaluation { ppl, ..eval };
                return self.refuse(Event::Baseline { layers, eval }, "a dense perplexity");
            }
            Phase::Proposing if roll < 5 => {
                let ctx = self.m.context();
                let (layers, why) = self.invalid_targets(&ctx);
                let p = Proposal {
                    layers,
                    reasoning: String::new(),
                };
                let ev = Event::Proposed {
                    iteration: it,
                    agent: "edited".into(),
                    reply: reply(p, Usage::default()),
                };
                return self.refuse(ev, why);
            }
            Phase::Reviewing if roll < 6 => {
                let ctx = self.m.context();
                let (layers, why) = match self.rng.gen_bool(0.1) {
                    true => (vec![], "no layer"),
                    false => self.invalid_targets(&ctx),
                };
                let d = match self.rng.gen_bool(0.5) {
                    true => Decision::Edit { layers },
                    false => Decision::Override {
                        layers,
                        reasoning: String::new(),
                    },
                };
                // The TUI's editor shows `check_decision`'s problems; the machine refuses
                // what it refuses.
                assert!(
                    self.m.check_decision(&d).is_err(),
                    "seed {}: check_decision took {why}: {d:?}",
                    self.seed
                );
                let ev = Event::Decided {
                    iteration: it,
                    by: "human".into(),
                    decision: d,
                };
                return self.refuse(ev, why);
            }
            Phase::Reviewing | Phase::Proposing if roll < 8 => {
                let latest = checkpoints - 1;
                let c = *[latest, latest + 1, usize::MAX]
                    .choose(&mut self.rng)
                    .unwrap();
                let ev = Event::RollbackTo {
                    checkpoint: c,
                    by: "human".into(),
                };
                return self.refuse(ev, "a rollback to no earlier checkpoint");
            }
            Phase::Applying if roll < 6 => {
                let (mut applied, eval) = self.evaluation();
                let targets = match &self.request {
                    Some(Effect::Apply(s)) => s.targets.clone(),
                    _ => unreachable!(),
                };
                let ck = self.m.checkpoint().unwrap().sparsity.clone();
                let t = targets.choose(&mut self.rng).unwrap().clone();
                let why = match self.rng.gen_range(0..4) {
                    0 => {
                        applied.insert(t.name.clone(), t.sparsity + 0.01);
                        "an applied sparsity past its target"
                    }
                    1 if ck[&t.name] >= 0.001 => {
                        applied.insert(t.name.clone(), ck[&t.name] - 0.001);
                        "an applied sparsity below the checkpoint's"
                    }
                    1 | 2 => {
                        applied.insert("model.layers.99.mlp.up_proj".into(), 0.1);
                        "an applied layer the step does not name"
                    }
                    _ => {
                        applied.remove(&t.name);
                        "an approved layer missing from applied"
                    }
                };
                let ev = Event::Evaluated {
                    iteration: it,
                    applied,
                    eval,
                };
                return self.refuse(ev, why);
            }
            Phase::Done(StopReason::AgentFailed) if roll < 5 => {
                let ev = Event::Continued {
                    iteration: other_iteration,
                };
                return self.refuse(ev, "a continuation at another iteration");
            }
            _ => {}
        }
        if roll == 9 {
            // A derived event fed back (a whole file is) is taken and changes nothing.
            if let Some(d) = self.file.iter().rev().find(|e| !e.is_input()).cloned() {
                let before = dbg(&self.m);
                let fx = self.m.handle(&d);
                assert!(
                    fx.as_ref().is_ok_and(Vec::is_empty),
                    "seed {}: a derived event gave {fx:?}",
                    self.seed
                );
                assert!(
                    dbg(&self.m) == before,
                    "seed {}: a derived event changed the machine",
                    self.seed
                );
            }
            return;
        }
        // An event of another phase, or of this phase at another iteration.
        let want = |p: &Phase| std::mem::discriminant(p);
        let here = want(&phase);
        let mut cands: Vec<(Phase, Event)> = vec![
            (
                Phase::Baseline,
                Event::Baseline {
                    layers: self.w.layers.clone(),
                    eval: eval.clone(),
                },
            ),
            (
                Phase::Profiling,
                Event::Profiled {
                    iteration: it,
                    rows: vec![],
                    seconds: 0.0,
                    calib_from_block: None,
                },
            ),
            (
                Phase::Proposing,
                Event::AgentFailed {
                    iteration: it,
                    error: "x".into(),
                    prompt: None,
                    raw: None,
                    usage: Usage::default(),
                },
            ),
            (
                Phase::Reviewing,
                Event::Decided {
                    iteration: it,
                    by: "human".into(),
                    decision: Decision::Skip,
                },
            ),
            (
                Phase::Applying,
                Event::Evaluated {
                    iteration: it,
                    applied: BTreeMap::new(),
                    eval: eval.clone(),
                },
            ),
            (
                Phase::Reflecting,
                Event::Reflected {
                    iteration: it,
                    reply: reply("late".into(), Usage::default()),
                },
            ),
            (
                Phase::Done(StopReason::AgentFailed),
                Event::Continued { iteration: it },
            ),
        ];
        if !matches!(phase, Phase::Proposing | Phase::Reviewing) && checkpoints >= 2 {
            let ev = Event::RollbackTo {
                checkpoint: 0,
                by: "human".into(),
            };
            cands.push((Phase::Proposing, ev));
        }
        let done_but_not_by_failures =
            matches!(phase, Phase::Done(ref r) if *r != StopReason::AgentFailed);
        let (p, mut ev) = cands.choose(&mut self.rng).unwrap().clone();
        if want(&p) == here && !done_but_not_by_failures {
            // This phase's event, for another iteration (the baseline has none).
            match &mut ev {
                Event::Profiled { iteration, .. }
                | Event::AgentFailed { iteration, .. }
                | Event::Decided { iteration, .. }
                | Event::Evaluated { iteration, .. }
                | Event::Reflected { iteration, .. }
                | Event::Continued { iteration } => *iteration = other_iteration,
                _ => return,
            }
            if other_iteration == it {
                return;
            }
        }
        self.refuse(ev, "an event that does not fit the phase or iteration");
    }

    pub(crate) fn refuse(&mut self, ev: Event, why: &str) {
        let before = dbg(&self.m);
        let r = self.m.handle(&ev);
        assert!(
            r.is_err(),
            "seed {}: the machine took {why} in phase {:?}: {ev:?}",
            self.seed,
            self.m.phase
        );
        // A refused event changes nothing.
        assert!(
            dbg(&self.m) == before,
            "seed {}: the refused {why} changed the machine ({ev:?})",
            self.seed
        );
        self.refused += 1;
    }

    pub(crate) fn log(&self, events: &[Event]) -> SessionLog {
        SessionLog {
            header: self.w.header(),
            entries: (events.iter().enumerate())
                .map(|(i, e)| file::Entry {
                    seq: i as u64 + 1,
                    unix_ms: 0,
                    event: e.clone(),
                })
                .collect(),
            valid_len: 0,
            torn_tail: false,
            appended: false,
            unknown_fields: vec![],
        }
    }
}
