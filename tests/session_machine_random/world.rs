//! The session's options, layers and the habits of its parties, drawn from a seed.

use super::*;

/// The session's options, layers and the habits of its parties.
#[derive(Debug, Clone)]
pub(crate) struct World {
    pub(crate) opts: LoopOptions,
    pub(crate) layers: Vec<LayerInfo>,
    /// Input features per layer: the granularity of Wanda's rows.
    pub(crate) cols: BTreeMap<String, u64>,
    pub(crate) dense: Evaluation,
    /// How often the agent fails, and how often its proposal is the built-in agent's.
    pub(crate) fail_rate: f64,
    pub(crate) builtin_rate: f64,
    /// An agent that always takes the largest step the bounds allow on the largest layers,
    /// on a model whose perplexity never rises (so the session goes as far as the bounds
    /// let it).
    pub(crate) greedy: bool,
    /// The headless auto-approver instead of a human.
    pub(crate) auto: bool,
    /// The user asks to stop once this many inputs are recorded.
    pub(crate) stop_at: Option<usize>,
}

impl World {
    pub(crate) fn draw(rng: &mut StdRng) -> World {
        let probe = rng.gen_bool(0.3);
        let o = LoopOptions {
            target: match rng.gen_range(0..12) {
                0 => 0.0,
                1 => rng.gen_range(0.9..0.99),
                _ => rng.gen_range(0.005..0.6),
            },
            threshold: match rng.gen_range(0..6) {
                0 => 0.0,
                _ => rng.gen_range(0.0..0.1),
            },
            ceiling: rng.gen_bool(0.3).then(|| rng.gen_range(0.01..0.4)),
            max_iters: match rng.gen_bool(0.1) {
                true => rng.gen_range(41..=120),
                false => rng.gen_range(1..=40),
            },
            bounds: Bounds {
                max_step: rng.gen_range(0.01..0.3),
                max_layers: rng.gen_range(1..=8),
                max_layer_sparsity: rng.gen_range(0.2..0.95),
            },
            profile_every: rng.gen_range(1..=3),
            probe_max_drop: (probe && rng.gen_bool(0.7)).then(|| rng.gen_range(0.0..0.1)),
        };
        let sizes = [8u64, 16, 32, 64, 128];
        let mut layers = Vec::new();
        let mut cols = BTreeMap::new();
        for b in 0..rng.gen_range(1..=3) {
            for k in LinearKind::ALL {
                let (i, out) = (*sizes.choose(rng).unwrap(), *sizes.choose(rng).unwrap());
                let name = format!("model.layers.{b}.{}", k.path());
                cols.insert(name.clone(), i);
                layers.push(LayerInfo {
                    name,
                    params: i * out,
                    sparsity: 0.0,
                });
            }
        }
        let dense = Evaluation {
            ppl: rng.gen_range(2.0..50.0),
            dataset: "synthetic".into(),
            seqlen: 8,
            windows: 1,
            dtype: "f32".into(),
            probe: probe.then(|| ProbeScore {
                kind: "freebaseqa".into(),
                accuracy: rng.gen_range(20..=40) as f64 / 40.0,
                items: 40,
            }),
            seconds: rng.gen_range(0.0..2.0),
            from_block: Some(0),
        };
        let fail_rate = *[0.0, 0.1, 0.5, 0.9].choose(rng).unwrap();
        World {
            opts: o,
            layers,
            cols,
            dense,
            fail_rate,
            builtin_rate: rng.gen_range(0.0..1.0),
            greedy: rng.gen_bool(0.2),
            auto: rng.gen_bool(0.25),
            stop_at: rng.gen_bool(0.25).then(|| rng.gen_range(0..80)),
        }
    }

    pub(crate) fn header(&self) -> Header {
        Header {
            format: file::FORMAT.into(),
            arborist: "test".into(),
            created_unix: 0,
            model: MODEL.into(),
            model_commit: None,
            fingerprint: "none".into(),
            options: RunOptions {
                model: MODEL.into(),
                loop_opts: self.opts.clone(),
                ..RunOptions::default()
            },
            data: Default::default(),
            prompt_hashes: Default::default(),
        }
    }

    pub(crate) fn total(&self) -> f64 {
        self.layers.iter().map(|l| l.params as f64).sum()
    }

    pub(crate) fn global_of(&self, s: &BTreeMap<String, f64>) -> f64 {
        let pruned: f64 = (self.layers.iter())
            .map(|l| s.get(&l.name).copied().unwrap_or(0.0) * l.params as f64)
            .sum();
        pruned / self.total()
    }

    /// The most one step can add to the global sparsity: `max_step` of the `max_layers`
    /// largest layers (README, "The bounds also cap how far a session can go").
    pub(crate) fn per_step(&self) -> f64 {
        let mut p: Vec<u64> = self.layers.iter().map(|l| l.params).collect();
        p.sort_unstable_by(|a, b| b.cmp(a));
        let largest: u64 = p.iter().take(self.opts.bounds.max_layers).sum();
        largest as f64 * self.opts.bounds.max_step / self.total()
    }
}
