//! The driver: it answers what the machine asks for, playing every party, and crashes
//! and resumes the session at random.

use super::*;

/// The session in the making, and the driver's own account of it.
pub(crate) struct Sim {
    pub(crate) seed: u64,
    pub(crate) rng: StdRng,
    pub(crate) w: World,
    pub(crate) m: Machine,
    /// The session file: each input the machine took, then the derived events it gave.
    pub(crate) file: Vec<Event>,
    /// The effects of each input (for the replay).
    pub(crate) effects: Vec<Vec<Effect>>,
    /// What the machine asked for last and has not had answered.
    pub(crate) request: Option<Effect>,
    /// The machine before the last input, and what it had asked for.
    pub(crate) before_last: Option<(Machine, Option<Effect>)>,
    pub(crate) inputs: usize,
    /// The checkpoint (index, iteration) each profile was taken at.
    pub(crate) profile_at: Vec<(usize, usize)>,
    pub(crate) accepted_since_profile: usize,
    pub(crate) guards: Vec<usize>,
    pub(crate) rollbacks: usize,
    pub(crate) reviewer_rollbacks: usize,
    pub(crate) agent_failures: usize,
    pub(crate) failures_in_a_row: usize,
    pub(crate) reflected: usize,
    /// Each reflection: its step's iteration, whether the call failed, its text.
    pub(crate) reflections: Vec<(usize, bool, String)>,
    pub(crate) skipped: usize,
    pub(crate) feedback: Vec<String>,
    pub(crate) feedback_open: bool,
    pub(crate) rejects: (usize, usize),
    pub(crate) continues: usize,
    pub(crate) resumes: usize,
    pub(crate) stop_fed: Option<usize>,
    pub(crate) usage: Usage,
    /// The global sparsity each evaluated step reached, as its guard left it.
    pub(crate) reached: BTreeMap<usize, f64>,
    /// The approved targets of the step being applied, and whether the reviewer changed them.
    pub(crate) approved: Option<(Vec<LayerTarget>, bool)>,
    /// Whether the bounds were out of reach of the target when the baseline came.
    pub(crate) out_of_reach: bool,
    pub(crate) refused: usize,
}

impl Sim {
    pub(crate) fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let w = World::draw(&mut rng);
        let m = Machine::new(MODEL, w.opts.clone());
        Sim {
            seed,
            rng,
            w,
            m,
            file: vec![],
            effects: vec![],
            request: None,
            before_last: None,
            inputs: 0,
            profile_at: vec![],
            accepted_since_profile: 0,
            guards: vec![],
            rollbacks: 0,
            reviewer_rollbacks: 0,
            agent_failures: 0,
            failures_in_a_row: 0,
            reflected: 0,
            reflections: vec![],
            skipped: 0,
            feedback: vec![],
            feedback_open: false,
            rejects: (0, 0),
            continues: 0,
            resumes: 0,
            stop_fed: None,
            usage: Usage::default(),
            reached: BTreeMap::new(),
            approved: None,
            out_of_reach: false,
            refused: 0,
        }
    }

    /// Runs the session to its end.
    pub(crate) fn run(seed: u64) -> Sim {
        let mut s = Sim::new(seed);
        // Starting asks for the baseline, and nothing else.
        assert_eq!(s.m.start(), vec![Effect::Baseline], "seed {seed}");
        s.request = Some(Effect::Baseline);
        for _ in 0..100_000 {
            if s.maybe_stop() {
                continue;
            }
            if !s.file.is_empty() && !s.m.is_done() && s.rng.gen_bool(0.02) {
                s.crash_and_resume();
            }
            if s.rng.gen_bool(0.25) {
                s.refuse_something();
            }
            match s.m.phase.clone() {
                Phase::Idle => panic!("seed {seed}: idle after start"),
                Phase::Baseline => s.baseline(),
                Phase::Profiling => s.profiled(),
                Phase::Proposing => s.propose(),
                Phase::Reviewing => s.review(),
                Phase::Applying => s.evaluated(),
                Phase::Reflecting => s.reflected(),
                Phase::Done(StopReason::AgentFailed)
                    if s.continues < MAX_CONTINUES && s.rng.gen_bool(0.7) =>
                {
                    // The run ended; `--resume` continues it, asking the agent again.
                    s.crash_and_resume();
                    s.continues += 1;
                    let it = s.m.iteration;
                    s.feed(Event::Continued { iteration: it });
                }
                Phase::Done(_) => {
                    s.check_end();
                    return s;
                }
            }
        }
        panic!("seed {seed}: the session did not end in 100000 steps");
    }

    pub(crate) fn usage(&mut self) -> Usage {
        Usage {
            prompt_tokens: self.rng.gen_range(0..2000),
            completion_tokens: self.rng.gen_range(0..300),
            cost: self
                .rng
                .gen_bool(0.3)
                .then(|| self.rng.gen_range(0.0..0.01)),
        }
    }

    pub(crate) fn maybe_stop(&mut self) -> bool {
        let due = self.w.stop_at.is_some_and(|k| self.inputs >= k);
        if !due || self.stop_fed.is_some() || self.m.is_done() {
            return false;
        }
        self.feed(Event::StopRequested { by: "human".into() });
        true
    }

    pub(crate) fn baseline(&mut self) {
        let layers = self.w.layers.clone();
        let eval = self.w.dense.clone();
        self.feed(Event::Baseline { layers, eval });
        self.out_of_reach = reach::shortfall(&self.m).is_some();
    }

    pub(crate) fn profiled(&mut self) {
        let ck = self.m.checkpoint().unwrap().sparsity.clone();
        let rows = (self.w.layers.iter().enumerate())
            .map(|(i, l)| LayerRow {
                name: l.name.clone(),
                block: i / 7,
                kind: LinearKind::ALL[i % 7].short().into(),
                s: self.rng.gen_range(0.1..10.0),
                g: self.rng.gen_range(0.1..10.0),
                z_s: self.rng.gen_range(-2.0..2.0),
                z_g: self.rng.gen_range(-2.0..2.0),
                sparsity: ck[&l.name],
                params: l.params,
            })
            .collect();
        let iteration = self.m.iteration;
        self.feed(Event::Profiled {
            iteration,
            rows,
            seconds: 0.1,
            calib_from_block: Some(0),
        });
    }

    /// The agent answers the context the machine sent it.
    pub(crate) fn propose(&mut self) {
        let Some(Effect::Propose(ctx)) = self.request.clone() else {
            panic!("seed {}: proposing without a request", self.seed)
        };
        let it = ctx.iteration;
        let usage = self.usage();
        let failed = |error: String, usage| Event::AgentFailed {
            iteration: it,
            error,
            prompt: None,
            raw: None,
            usage,
        };
        let ev = if self.rng.gen_bool(self.w.fail_rate) {
            failed("openai: HTTP 503 Service Unavailable".into(), usage)
        } else if self.rng.gen_bool(self.w.builtin_rate) {
            match BuiltinAgent::decide(&ctx) {
                Ok(p) => Event::Proposed {
                    iteration: it,
                    agent: "builtin".into(),
                    reply: reply(p, Usage::default()),
                },
                Err(e) => failed(format!("{e:#}"), Usage::default()),
            }
        } else {
            let layers = match self.w.greedy {
                true => greedy_targets(&ctx),
                false => self.valid_targets(&ctx),
            };
            if layers.is_empty() {
                // An LLM's proposal with no room left fails validation and its repair.
                failed("no layer has room".into(), usage)
            } else {
                Event::Proposed {
                    iteration: it,
                    agent: "openai".into(),
                    reply: reply(
                        Proposal {
                            layers,
                            reasoning: "random".into(),
                        },
                        usage,
                    ),
                }
            }
        };
        self.feed(ev);
    }

    pub(crate) fn review(&mut self) {
        let it = self.m.iteration;
        let p = self.m.proposal.clone().expect("reviewing has a proposal");
        let ctx = self.m.context();
        let decided = |by: &str, decision| Event::Decided {
            iteration: it,
            by: by.into(),
            decision,
        };
        if self.w.auto {
            // Headless --auto-approve: approve, or skip an agent failure.
            return self.feed(Event::auto_decided(it, &p));
        }
        if self.rejects.0 != it {
            self.rejects = (it, 0);
        }
        let can_reject = self.rejects.1 < MAX_REJECTS;
        let can_roll_back =
            self.m.checkpoints.len() >= 2 && self.reviewer_rollbacks < MAX_REVIEWER_ROLLBACKS;
        let roll = self.rng.gen_range(0..100);
        let ev = match roll {
            0..=6 if can_roll_back => {
                let c = self.rng.gen_range(0..self.m.checkpoints.len() - 1);
                Event::RollbackTo {
                    checkpoint: c,
                    by: "human".into(),
                }
            }
            7..=18 if can_reject => {
                self.rejects.1 += 1;
                let feedback = format!("spare block {} please", self.rng.gen_range(0..3));
                decided("human", Decision::Reject { feedback })
            }
            19..=25 => decided("human", Decision::Skip),
            26..=40 => {
                let layers = self.valid_targets(&ctx);
                match layers.is_empty() {
                    true => decided("human", Decision::Skip),
                    false => decided(
                        "human",
                        Decision::Override {
                            layers,
                            reasoning: "mine".into(),
                        },
                    ),
                }
            }
            // Approving or editing the empty proposal of a failure is not offered.
            _ if p.layers.is_empty() => decided("auto", Decision::Skip),
            41..=55 => {
                let layers = self.edited(&ctx, &p.layers);
                decided("human", Decision::Edit { layers })
            }
            _ => decided("human", Decision::Approve),
        };
        if let Event::Decided { decision, .. } = &ev {
            // What the TUI's editor passes (no problems shown) the machine takes.
            let checked = self.m.check_decision(decision);
            assert!(checked.is_ok(), "seed {}: {checked:?}", self.seed);
        }
        self.feed(ev);
    }

    /// The compute worker grows the approved masks and evaluates.
    pub(crate) fn evaluated(&mut self) {
        let (applied, eval) = self.evaluation();
        let iteration = self.m.iteration;
        self.feed(Event::Evaluated {
            iteration,
            applied,
            eval,
        });
    }

    pub(crate) fn evaluation(&mut self) -> (BTreeMap<String, f64>, Evaluation) {
        let Some(Effect::Apply(step)) = self.request.clone() else {
            panic!("seed {}: applying without a request", self.seed)
        };
        let ck = self.m.checkpoint().unwrap().clone();
        let applied = (step.targets.iter())
            .map(|t| {
                let before = ck.sparsity[&t.name];
                (
                    t.name.clone(),
                    wanda(before, t.sparsity, self.w.cols[&t.name]),
                )
            })
            .collect();
        let base = ck.eval.ppl;
        let th = self.w.opts.threshold;
        let ppl = match self.rng.gen_range(0..100) {
            _ if self.w.greedy => base * (1.0 - self.rng.gen_range(0.0..0.01)),
            0 => f64::NAN,
            1 => f64::INFINITY,
            2..=7 => base * (1.0 + th),
            8..=11 => base * self.rng.gen_range(1.5..1e3),
            _ => base * (1.0 + self.rng.gen_range(-0.02..th * 1.5 + 0.01)),
        };
        let probe = ck.eval.probe.as_ref().map(|p| {
            let drift = match self.w.greedy {
                true => 0,
                false => self.rng.gen_range(-4..=2),
            };
            let k = (p.accuracy * 40.0).round() as i64 + drift;
            ProbeScore {
                accuracy: k.clamp(0, 40) as f64 / 40.0,
                ..p.clone()
            }
        });
        let eval = Evaluation {
            ppl,
            probe,
            seconds: self.rng.gen_range(0.0..2.0),
            from_block: Some(self.rng.gen_range(0..3)),
            ..self.w.dense.clone()
        };
        (applied, eval)
    }

    pub(crate) fn reflected(&mut self) {
        let Some(Effect::Reflect(job)) = self.request.clone() else {
            panic!("seed {}: reflecting without a request", self.seed)
        };
        let (ctx, _, outcome) = *job;
        let usage = self.usage();
        let reply = match self.rng.gen_range(0..3) {
            0 => reply(BuiltinAgent::reflection(&ctx, &outcome), Usage::default()),
            1 => reply(format!("{NO_REFLECTION}openai: HTTP 500)"), usage),
            _ => reply("Noted.".to_string(), usage),
        };
        self.feed(Event::Reflected {
            iteration: outcome.iteration,
            reply,
        });
    }

    /// Targets within every bound, on random layers with room (empty when none has).
    pub(crate) fn valid_targets(&mut self, ctx: &AgentContext) -> Vec<LayerTarget> {
        let b = ctx.bounds.clone();
        let mut rows: Vec<&LayerRow> = (ctx.layers.iter())
            .filter(|r| b.max_layer_sparsity - r.sparsity >= 0.002)
            .collect();
        if rows.is_empty() {
            return vec![];
        }
        rows.shuffle(&mut self.rng);
        rows.truncate(self.rng.gen_range(1..=b.max_layers.min(rows.len())));
        let rows: Vec<(String, f64)> = rows.iter().map(|r| (r.name.clone(), r.sparsity)).collect();
        rows.into_iter()
            .map(|(name, cur)| LayerTarget {
                sparsity: self.valid_value(ctx, cur),
                name,
            })
            .collect()
    }

    /// A new sparsity for a layer at `cur` within the bounds: often on a bound itself.
    pub(crate) fn valid_value(&mut self, ctx: &AgentContext, cur: f64) -> f64 {
        let b = &ctx.bounds;
        let room = b.max_step.min(b.max_layer_sparsity - cur);
        match self.rng.gen_range(0..10) {
            0 => cur + room,
            1 if cur + b.max_step <= b.max_layer_sparsity => cur + b.max_step,
            1 => b.max_layer_sparsity,
            _ => {
                let x = cur + self.rng.gen_range(0.001..=room);
                match floor4(x) > cur + 1e-6 {
                    true => floor4(x),
                    false => x,
                }
            }
        }
    }

    /// The reviewer's edit of `agent`: values changed, layers dropped or added.
    pub(crate) fn edited(&mut self, ctx: &AgentContext, agent: &[LayerTarget]) -> Vec<LayerTarget> {
        let mut out = Vec::new();
        for t in agent {
            if self.rng.gen_bool(0.2) {
                continue;
            }
            let cur = ctx.layer(&t.name).unwrap().sparsity;
            let room = ctx.bounds.max_layer_sparsity - cur >= 0.002;
            let sparsity = match room && self.rng.gen_bool(0.5) {
                true => self.valid_value(ctx, cur),
                false => t.sparsity,
            };
            out.push(LayerTarget {
                name: t.name.clone(),
                sparsity,
            });
        }
        let more = self.valid_targets(ctx);
        for t in more {
            if out.len() < ctx.bounds.max_layers
                && !out.iter().any(|o| o.name == t.name)
                && self.rng.gen_bool(0.3)
            {
                out.push(t);
            }
        }
        if out.is_empty() {
            out = agent.to_vec();
        }
        out
    }

    /// Layers that break at least one rule, and which.
    pub(crate) fn invalid_targets(
        &mut self,
        ctx: &AgentContext,
    ) -> (Vec<LayerTarget>, &'static str) {
        let b = ctx.bounds.clone();
        let row = ctx.layers.choose(&mut self.rng).unwrap().clone();
        let t = |name: &str, sparsity| LayerTarget {
            name: name.into(),
            sparsity,
        };
        let mut valid = self.valid_targets(ctx);
        valid.truncate(b.max_layers - 1);
        let (bad, why) = match self.rng.gen_range(0..8) {
            0 => (t("model.layers.99.mlp.up_proj", 0.05), "an unknown layer"),
            1 => (
                t(&row.name, row.sparsity + b.max_step + 0.01),
                "a step past max_step",
            ),
            2 if row.sparsity >= 0.001 => (t(&row.name, row.sparsity - 0.001), "a lower sparsity"),
            2 | 3 => (t(&row.name, row.sparsity), "no change"),
            4 => {
                let v = *[f64::NAN, f64::INFINITY, -0.1, 1.0, 1.5]
                    .choose(&mut self.rng)
                    .unwrap();
                (t(&row.name, v), "not a fraction in [0, 1)")
            }
            5 => (
                t(&row.name, b.max_layer_sparsity + 0.001),
                "past max_layer_sparsity",
            ),
            6 => {
                // The same layer twice.
                let cur = row.sparsity;
                let v = (cur + 0.001).min(0.999);
                valid.retain(|x| x.name != row.name);
                valid.push(t(&row.name, v));
                (t(&row.name, v), "a layer listed twice")
            }
            _ => {
                // One layer more than max_layers.
                let mut names: Vec<String> = ctx.layers.iter().map(|r| r.name.clone()).collect();
                names.extend((0..b.max_layers + 1).map(|i| format!("model.layers.9{i}.x")));
                let layers = (names.into_iter().take(b.max_layers + 1))
                    .map(|n| t(&n, 0.5))
                    .collect();
                return (layers, "more layers than max_layers");
            }
        };
        valid.retain(|x| x.name != bad.name || why == "a layer listed twice");
        let at = self.rng.gen_range(0..=valid.len());
        valid.insert(at, bad);
        (valid, why)
    }

    /// The process dies after the file took the last input, before some of the derived
    /// events it gave were written; `--resume` rebuilds the machine from the file.
    pub(crate) fn crash_and_resume(&mut self) {
        let last_input = self.file.iter().rposition(Event::is_input).unwrap();
        let lost = self.rng.gen_range(0..=self.file.len() - last_input - 1);
        let kept = self.file.len() - lost;
        let (m, missing) = consistency::replay_checked(&self.log(&self.file[..kept]))
            .unwrap_or_else(|d| panic!("seed {}: resume refused: {}", self.seed, d.why));
        // The derived events the crash lost are the ones the resume writes.
        assert_eq!(
            yaml(&missing),
            yaml(&self.file[kept..]),
            "seed {}: lost derived events",
            self.seed
        );
        // The rebuilt machine is the one that ran.
        assert!(
            dbg(&m) == dbg(&self.m),
            "seed {}: the resumed machine differs from the live one",
            self.seed
        );
        // And it asks again for what the live one was waiting for.
        if !m.is_done() {
            assert!(
                same(&m.resume_effects()[..], &[self.request.clone().unwrap()]),
                "seed {}",
                self.seed
            );
        }
        self.m = m;
        self.resumes += 1;
        // Had the input's own write been torn, the resume would stand where the machine
        // stood before it, asking again for what it asked then.
        let (before, asked) = self.before_last.as_ref().unwrap();
        let (m, missing) = consistency::replay_checked(&self.log(&self.file[..last_input]))
            .unwrap_or_else(|d| panic!("seed {}: resume refused: {}", self.seed, d.why));
        assert!(missing.is_empty(), "seed {}: {missing:?}", self.seed);
        assert!(dbg(&m) == dbg(before), "seed {}", self.seed);
        if !m.is_done() {
            let asked = asked.clone().unwrap();
            assert!(
                same(&m.resume_effects()[..], &[asked]),
                "seed {}",
                self.seed
            );
        }
    }

    pub(crate) fn feed(&mut self, ev: Event) {
        let prev = self.m.clone();
        let fx = match self.m.handle(&ev) {
            Ok(fx) => fx,
            Err(e) => panic!(
                "seed {}: the machine refused {ev:?} in phase {:?}: {e}",
                self.seed, prev.phase
            ),
        };
        self.inputs += 1;
        self.file.push(ev.clone());
        for f in &fx {
            if let Effect::Log(d) = f {
                self.file.push(d.clone());
            }
        }
        self.effects.push(fx.clone());
        let asked = self.request.clone();
        self.account(&prev, &ev, &fx);
        self.check_transition(&prev, &ev, &fx);
        self.check_state(&prev);
        self.before_last = Some((prev, asked));
    }

    /// The driver's own account of what happened, from the events alone.
    pub(crate) fn account(&mut self, prev: &Machine, ev: &Event, fx: &[Effect]) {
        match ev {
            Event::Profiled { .. } => {
                let c = self.m.checkpoint().unwrap();
                self.profile_at.push((c.index, c.iteration));
                self.accepted_since_profile = 0;
            }
            Event::Proposed { reply, .. } => {
                self.usage += reply.usage;
                self.failures_in_a_row = 0;
            }
            Event::AgentFailed { usage, .. } => {
                self.usage += *usage;
                self.agent_failures += 1;
                self.failures_in_a_row += 1;
            }
            Event::Continued { .. } => self.failures_in_a_row = 0,
            Event::Reflected { reply, iteration } => {
                self.usage += reply.usage;
                self.reflected += 1;
                let failed = reply.value.starts_with(NO_REFLECTION) && reply.prompt.is_none();
                self.reflections
                    .push((*iteration, failed, reply.value.clone()));
            }
            Event::Decided { decision, .. } => {
                let reviewed = prev.proposal.clone().unwrap();
                match decision {
                    Decision::Reject { feedback } => {
                        self.feedback.push(feedback.clone());
                        self.feedback_open = true;
                    }
                    // A skip ends the iteration and with it the rejection's feedback.
                    Decision::Skip => {
                        self.skipped += 1;
                        self.feedback_open = false;
                    }
                    Decision::Approve if reviewed.layers.is_empty() => {
                        self.skipped += 1;
                        self.feedback_open = false;
                    }
                    Decision::Approve => self.approved = Some((reviewed.layers, false)),
                    Decision::Edit { layers } | Decision::Override { layers, .. } => {
                        self.approved = Some((layers.clone(), true))
                    }
                }
            }
            Event::Evaluated { applied, .. } => {
                let accepted = fx.contains(&Effect::Commit {
                    index: prev.checkpoints.len(),
                });
                self.guards.push(prev.iteration);
                self.feedback_open = false;
                let ck = prev.checkpoint().unwrap();
                let mut s = ck.sparsity.clone();
                s.extend(applied.iter().map(|(k, v)| (k.clone(), *v)));
                self.reached.insert(prev.iteration, self.w.global_of(&s));
                match accepted {
                    true => self.accepted_since_profile += 1,
                    false => self.rollbacks += 1,
                }
            }
            Event::RollbackTo { .. } => {
                self.reviewer_rollbacks += 1;
                // The rollback answers an open rejection: its feedback becomes earlier feedback.
                self.feedback_open = false;
            }
            Event::StopRequested { .. } => {
                self.stop_fed.get_or_insert(self.inputs);
            }
            _ => {}
        }
    }
}
