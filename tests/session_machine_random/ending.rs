//! The session as a whole: its chain of checkpoints, how it ended, and its file read back.

use super::*;

impl Sim {
    /// Every checkpoint follows from the one before it by one step within the rules.
    pub(crate) fn check_chain(&self) {
        let seed = self.seed;
        let m = &self.m;
        let o = &self.w.opts;
        let b = &o.bounds;
        let c = &m.checkpoints;
        // Checkpoint 0 is the baseline.
        assert_eq!(c[0].index, 0, "seed {seed}");
        assert_eq!(c[0].iteration, 0, "seed {seed}");
        assert_eq!(c[0].eval, self.w.dense, "seed {seed}");
        assert!(c[0].steps.is_empty(), "seed {seed}");
        let base: BTreeMap<String, f64> = (self.w.layers.iter())
            .map(|l| (l.name.clone(), l.sparsity))
            .collect();
        assert_eq!(c[0].sparsity, base, "seed {seed}");
        for k in 1..c.len() {
            let (a, n) = (&c[k - 1], &c[k]);
            assert_eq!(n.index, k, "seed {seed}");
            // Checkpoints are made by ever later iterations.
            assert!(n.iteration > a.iteration, "seed {seed}");
            assert!(n.iteration <= o.max_iters, "seed {seed}");
            // One more recorded step than the checkpoint before.
            assert_eq!(n.steps.len(), k, "seed {seed}");
            assert_eq!(n.steps[..k - 1], a.steps[..], "seed {seed}");
            let step = n.steps.last().unwrap();
            assert!(step.targets.len() <= b.max_layers, "seed {seed}");
            for (name, &s) in &n.sparsity {
                let before = a.sparsity[name];
                // Masks only grow between rollbacks, and only on the step's layers.
                assert!(s >= before, "seed {seed}: {name} {before} -> {s}");
                if s != before {
                    assert!(step.targets.iter().any(|t| &t.name == name), "seed {seed}");
                }
            }
            for t in &step.targets {
                let before = a.sparsity[&t.name];
                // Each target is within the bounds, and no mask grows past it.
                assert!(t.sparsity <= b.max_layer_sparsity + ROOM, "seed {seed}");
                assert!(t.sparsity - before <= b.max_step + 1e-6, "seed {seed}");
                assert!(t.sparsity > before, "seed {seed}");
                assert!(
                    n.sparsity[&t.name] <= t.sparsity.max(before) + ROOM,
                    "seed {seed}"
                );
            }
            // The guard let it in: not above the limit over the last accepted one, the
            // ceiling over the dense model, or the probe's allowed drop.
            let (pa, pn) = (a.eval.ppl, n.eval.ppl);
            assert!(pn.is_finite(), "seed {seed}");
            assert!(
                pn / pa - 1.0 <= o.threshold + 1e-12,
                "seed {seed}: {pa} -> {pn}"
            );
            if let Some(cl) = o.ceiling {
                assert!(pn / self.w.dense.ppl - 1.0 <= cl, "seed {seed}");
            }
            if let (Some(d), Some(x), Some(y)) = (o.probe_max_drop, &a.eval.probe, &n.eval.probe) {
                assert!(x.accuracy - y.accuracy <= d + 1e-12, "seed {seed}");
            }
            // Its masks used a profile taken at the checkpoint before it, or the one
            // the step before used (so a resume rebuilds them with the same statistics).
            let p = step.profile;
            let earlier = (k >= 2).then(|| n.steps[k - 2].profile);
            assert!(p >= 1 && earlier.is_none_or(|e| p >= e), "seed {seed}");
            assert!(
                earlier == Some(p) || self.profile_at[p - 1] == (a.index, a.iteration),
                "seed {seed}: step {k} used profile {p}, taken at {:?}",
                self.profile_at[p - 1]
            );
        }
        let last = c.last().unwrap();
        // The masks rebuilt from the recorded steps are the recorded sparsities.
        let mut rebuilt = base;
        for s in &last.steps {
            for t in &s.targets {
                let v = wanda(rebuilt[&t.name], t.sparsity, self.w.cols[&t.name]);
                rebuilt.insert(t.name.clone(), v);
            }
        }
        assert_eq!(rebuilt, last.sparsity, "seed {seed}");
        // No step adds more than max_step of the max_layers largest layers.
        let g = m.global_sparsity();
        let most = (self.w.per_step() * (c.len() - 1) as f64).min(b.max_layer_sparsity);
        assert!(g <= most + 1e-9, "seed {seed}: {g} > {most}");
    }

    /// At the end: the bound on its length, the replay, and every event's line.
    pub(crate) fn check_end(&self) {
        let seed = self.seed;
        let o = &self.w.opts;
        // It ended within the inputs its iterations, rollbacks and resumes allow.
        let rounds = o.max_iters + self.reviewer_rollbacks + self.continues;
        let most = 2 + rounds * INPUTS_PER_ROUND + 2 * self.reviewer_rollbacks;
        assert!(
            self.inputs <= most,
            "seed {seed}: {} inputs, more than {most}",
            self.inputs
        );
        // Feeding the file into a fresh machine gives the same effects and state.
        let mut m = Machine::new(MODEL, o.clone());
        m.start();
        let mut k = 0;
        for ev in &self.file {
            let fx = m.handle(ev).unwrap();
            if ev.is_input() {
                assert!(same(&fx, &self.effects[k]), "seed {seed}: input {k}");
                k += 1;
            } else {
                assert!(fx.is_empty(), "seed {seed}");
            }
        }
        assert!(dbg(&m) == dbg(&self.m), "seed {seed}: replayed differently");
        // And reading it as a session file does: every derived event is the one its
        // inputs give, none is missing.
        let (r, missing) = consistency::replay_checked(&self.log(&self.file))
            .unwrap_or_else(|d| panic!("seed {seed}: {}", d.why));
        assert!(missing.is_empty(), "seed {seed}: {missing:?}");
        assert!(dbg(&r) == dbg(&self.m), "seed {seed}");
        // A derived event edited by hand (its verdict, a number, the note's words) is
        // refused at that event.
        let derived: Vec<usize> = (0..self.file.len())
            .filter(|&i| !self.file[i].is_input())
            .collect();
        let at = derived[seed as usize % derived.len()];
        let mut edited = self.file.clone();
        match (&mut edited[at], seed % 3) {
            (Event::Guard { accepted, .. }, 0) => *accepted = !*accepted,
            (Event::Guard { ppl_before, .. }, 1) => *ppl_before += 1.0,
            (Event::Guard { note, .. }, _) => note.push_str(" (edited)"),
            (Event::Finished { reason, .. }, 0) => {
                *reason = match reason {
                    StopReason::UserStop => StopReason::MaxIterations,
                    _ => StopReason::UserStop,
                }
            }
            (Event::Finished { ppl, .. }, 1) => *ppl += 1.0,
            (
                Event::Finished {
                    global_sparsity, ..
                },
                _,
            ) => *global_sparsity += 0.5,
            _ => unreachable!(),
        }
        let damage = consistency::replay_checked(&self.log(&edited)).err();
        assert_eq!(
            damage.map(|d| d.entry),
            Some(at),
            "seed {seed}: {:?}",
            edited[at]
        );
        // Each step reached the sparsity its guard left, as the machine still says.
        for (&it, &s) in &self.reached {
            let got = self.m.reached_sparsity(it).unwrap();
            assert!(
                (got - s).abs() < 1e-12,
                "seed {seed}: iter {it}: {got} vs {s}"
            );
        }
        // Every event is one line, and a rollback's says where the step had gone.
        for (i, e) in self.file.iter().enumerate() {
            let line = e.summary_at(&self.file[..i], &self.m);
            assert!(!line.chars().any(char::is_control), "seed {seed}: {line:?}");
            if let Event::Guard {
                accepted: false, ..
            } = e
            {
                assert!(line.contains("(the step reached "), "seed {seed}: {line}");
            }
        }
    }

    /// Writes the session to a file, reads it back, and replays what was read.
    pub(crate) fn check_file(&self, dir: &std::path::Path) {
        let seed = self.seed;
        let path = dir.join(format!("{seed}.yaml"));
        let header = self.w.header();
        let mut w = SessionWriter::create(&path, &header).unwrap();
        for e in &self.file {
            w.append(e).unwrap();
        }
        drop(w);
        let log = file::read(&path).unwrap();
        assert_eq!(log.header, header, "seed {seed}");
        assert!(
            !log.torn_tail && log.unknown_fields.is_empty(),
            "seed {seed}"
        );
        let read: Vec<Event> = log.entries.iter().map(|e| e.event.clone()).collect();
        assert_eq!(yaml(&read), yaml(&self.file), "seed {seed}");
        let (m, missing) =
            consistency::replay_checked(&log).unwrap_or_else(|d| panic!("seed {seed}: {}", d.why));
        assert!(missing.is_empty(), "seed {seed}");
        assert!(
            dbg(&m) == dbg(&self.m),
            "seed {seed}: read back differently"
        );
    }
}
