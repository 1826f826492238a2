//! The compute side of a session: owns the decoder, the calibration and evaluation windows
//! and the masks of every checkpoint. Synchronous; `worker` runs it on its own thread.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::agent::LayerRow;
use crate::data::Windows;
use crate::eval::incremental::IncrementalPpl;
use crate::model::{BlockStats, LinearId, LoadedModel, Mask};
use crate::profile::incremental::IncrementalStats;
use crate::prune::oneshot::{prune_layers, Method, OneShotOptions};
use crate::prune::select::Pattern;
use crate::session::{Evaluation, Event, LayerInfo, MaskStep, ProbeScore};

pub struct EngineConfig {
    pub calib: Windows,
    pub calib_name: String,
    pub eval: Windows,
    pub eval_name: String,
    pub grads: crate::profile::GradSpec,
    pub batch: usize,
    pub eval_cache_bytes: usize,
}

type Masks = Vec<Option<Arc<Mask>>>;

/// The optional knowledge probe: a small FreebaseQA or MMLU set run after each perplexity.
pub enum Probe {
    FreebaseQa {
        items: Vec<crate::data::freebaseqa::FreebaseItem>,
        name: String,
    },
    Mmlu {
        data: crate::data::mmlu::MmluData,
        shots: usize,
        prompt: crate::eval::mmlu::MmluPrompt,
        limit: usize,
        name: String,
    },
}

impl Probe {
    /// A hash of the items this probe scores (and MMLU's few-shot examples): text read
    /// from another or an edited file gives other probe numbers.
    fn fingerprint(&self) -> String {
        let mut h = crate::runtime::Fnv1a::new();
        let mut eat = |s: &str| {
            h.eat(&(s.len() as u64).to_le_bytes());
            h.eat(s.as_bytes());
        };
        match self {
            Probe::FreebaseQa { items, .. } => {
                for it in items {
                    eat(&it.id);
                    eat(&it.question);
                    it.aliases.iter().for_each(|a| eat(a));
                    eat("");
                }
            }
            Probe::Mmlu {
                data, shots, limit, ..
            } => {
                let used = data
                    .test
                    .iter()
                    .map(|(s, v)| (s, &v[..v.len().min(*limit)]));
                let dev = data.dev.iter().map(|(s, v)| (s, &v[..v.len().min(*shots)]));
                for (subject, items) in used.chain(dev) {
                    eat(subject);
                    for it in items {
                        eat(&it.question);
                        it.choices.iter().for_each(|c| eat(c));
                        eat(&it.answer.to_string());
                    }
                }
            }
        }
        format!("fnv1a64-items:{:016x}", h.value())
    }

    /// What a status line says while the probe runs.
    fn stage(&self) -> &'static str {
        match self {
            Probe::FreebaseQa { .. } => "running the FreebaseQA probe",
            Probe::Mmlu { .. } => "running the MMLU probe",
        }
    }

    fn run(&self, m: &LoadedModel) -> Result<ProbeScore> {
        let none = |_: usize, _: usize| {};
        Ok(match self {
            Probe::FreebaseQa { items, name } => {
                let o = crate::eval::freebaseqa::FreebaseOptions {
                    limit: None,
                    max_new_tokens: 16,
                };
                let r = crate::eval::freebaseqa::evaluate_freebaseqa(m, items, &o, name, none)?;
                ProbeScore {
                    kind: "freebaseqa".into(),
                    accuracy: r.accuracy,
                    items: r.items,
                }
            }
            Probe::Mmlu {
                data,
                shots,
                prompt,
                limit,
                name,
            } => {
                let o = crate::eval::mmlu::MmluOptions {
                    shots: *shots,
                    prompt: *prompt,
                    limit: Some(*limit),
                    batch: 8,
                    max_context: None,
                };
                let r = crate::eval::mmlu::evaluate_mmlu(m, data, &o, name, none)?;
                ProbeScore {
                    kind: format!("mmlu-{shots}shot"),
                    accuracy: r.accuracy,
                    items: r.items,
                }
            }
        })
    }
}

/// Called with the name of a stage that reports no counts.
pub type StageListener = Box<dyn FnMut(&str) + Send>;

pub struct Engine {
    pub model: LoadedModel,
    probe: Option<Probe>,
    cfg: EngineConfig,
    ids: Vec<LinearId>,
    /// Wanda statistics of the latest profile, and that profile's number.
    stats: Option<(usize, Vec<BlockStats>)>,
    profiles: usize,
    checkpoints: Vec<Masks>,
    /// Perplexity recomputed from the first changed block; its base is the last checkpoint.
    ppl: IncrementalPpl,
    /// Calibration statistics recomputed from the first block changed since the last profile.
    calib_stats: IncrementalStats,
    /// Told the name of a stage that reports no counts (the knowledge probe), for a front
    /// end's status: during a long probe it showed the evaluation's last count.
    pub on_stage: Option<StageListener>,
}

/// A hash of token windows, their count and length included.
fn windows_fingerprint(w: &Windows) -> String {
    let mut h = crate::runtime::Fnv1a::new();
    h.eat(&(w.windows.len() as u64).to_le_bytes());
    for win in &w.windows {
        h.eat(&(win.len() as u64).to_le_bytes());
        for id in win {
            h.eat(&id.to_le_bytes());
        }
    }
    format!("fnv1a64-tokens:{:016x}", h.value())
}

impl Engine {
    /// Fingerprints of the windows computed on, by option (`calib`, `eval`), and of the
    /// probe's items (`probe`) when there is one. The session
    /// header records them: a resume or verify reading other text (a relative path taken
    /// from another directory, an edited file, another tokenizer) is refused.
    pub fn data_fingerprints(&self) -> crate::session::file::DataHashes {
        let mut h = BTreeMap::from([
            ("calib".to_string(), windows_fingerprint(&self.cfg.calib)),
            ("eval".to_string(), windows_fingerprint(&self.cfg.eval)),
        ]);
        if let Some(p) = &self.probe {
            h.insert("probe".to_string(), p.fingerprint());
        }
        h
    }

    pub fn new(model: LoadedModel, cfg: EngineConfig, probe: Option<Probe>) -> Engine {
        let decoder = &model.decoder;
        let ids: Vec<LinearId> = decoder.linear_ids().collect();
        let masks = ids
            .iter()
            .map(|&i| decoder.linear(i).mask().cloned())
            .collect();
        let ppl = IncrementalPpl::new(
            cfg.eval.clone(),
            cfg.batch,
            &cfg.eval_name,
            cfg.eval_cache_bytes,
        );
        let calib_stats = IncrementalStats::new(cfg.calib.clone(), cfg.batch, cfg.eval_cache_bytes);
        Engine {
            ppl,
            calib_stats,
            model,
            probe,
            cfg,
            ids,
            stats: None,
            profiles: 0,
            checkpoints: vec![masks],
            on_stage: None,
        }
    }

    /// The evaluation windows and batch size (benchmarks time full passes over them).
    pub fn eval_windows(&self) -> (&Windows, usize) {
        (&self.cfg.eval, self.cfg.batch)
    }

    /// Bytes of the evaluation's cached block-boundary states.
    pub fn eval_cache_bytes(&self) -> usize {
        self.ppl.cached_bytes()
    }

    fn current_masks(&self) -> Masks {
        self.ids
            .iter()
            .map(|&i| self.model.decoder.linear(i).mask().cloned())
            .collect()
    }

    /// The perplexity of the last checkpoint, the model as it stands after `rebuild` (the
    /// export's and resume's check), without the probe. Its block states become the
    /// evaluation cache, as an accepted step's do.
    pub fn checkpoint_perplexity(&mut self) -> Result<crate::eval::ppl::Perplexity> {
        let p = self.ppl.evaluate(&self.model.decoder, &mut |_, _| {})?.0;
        self.ppl.commit();
        Ok(p)
    }

    pub fn evaluate(&mut self, progress: &mut dyn FnMut(usize, usize)) -> Result<Evaluation> {
        let t = Instant::now();
        let (p, reuse) = self.ppl.evaluate(&self.model.decoder, progress)?;
        let probe = match &self.probe {
            Some(pr) => {
                if let Some(tell) = self.on_stage.as_mut() {
                    tell(pr.stage());
                }
                Some(pr.run(&self.model)?)
            }
            None => None,
        };
        Ok(Evaluation {
            ppl: p.value,
            dataset: p.dataset,
            seqlen: p.seqlen,
            windows: p.windows,
            dtype: p.dtype,
            probe,
            seconds: t.elapsed().as_secs_f64(),
            from_block: Some(reuse.start_block),
        })
    }

    pub fn baseline(&mut self, progress: &mut dyn FnMut(usize, usize)) -> Result<Event> {
        let layers = self
            .ids
            .iter()
            .map(|&i| {
                let l = self.model.decoder.linear(i);
                LayerInfo {
                    name: l.name.clone(),
                    params: (l.out_features() * l.in_features()) as u64,
                    sparsity: l.sparsity(),
                }
            })
            .collect();
        let eval = self.evaluate(progress)?;
        if !eval.ppl.is_finite() {
            let zeros = self.model.refuse_non_finite()?;
            self.model.warn_if_pruned_before(zeros);
        }
        self.ppl.commit();
        Ok(Event::Baseline { layers, eval })
    }

    pub fn profile(&mut self, iteration: usize) -> Result<Event> {
        let t = Instant::now();
        let (p, stats, reuse) =
            self.calib_stats
                .profile(&self.model.decoder, self.cfg.grads, &self.cfg.calib_name)?;
        self.profiles += 1;
        self.stats = Some((self.profiles, stats));
        let rows = p
            .layers
            .into_iter()
            .zip(&self.ids)
            .map(|(l, &id)| {
                let lin = self.model.decoder.linear(id);
                LayerRow {
                    name: l.name,
                    block: l.block,
                    kind: l.kind,
                    s: l.s,
                    g: l.g,
                    z_s: l.z_s,
                    z_g: l.z_g,
                    sparsity: l.sparsity,
                    params: (lin.out_features() * lin.in_features()) as u64,
                }
            })
            .collect();
        Ok(Event::Profiled {
            iteration,
            rows,
            seconds: t.elapsed().as_secs_f64(),
            calib_from_block: Some(reuse.start_block),
        })
    }

    /// Grow the masks of the step's layers with the statistics of its profile.
    fn grow(&mut self, step: &MaskStep) -> Result<BTreeMap<String, f64>> {
        if self.stats.as_ref().map(|s| s.0) != Some(step.profile) {
            // Rebuilding: the profile's statistics are those of the current state.
            let st = self.calib_stats.input_stats(&self.model.decoder)?.0;
            self.stats = Some((step.profile, st));
            self.profiles = self.profiles.max(step.profile);
        }
        let stats = &self.stats.as_ref().expect("set above").1;
        let opts = OneShotOptions::new(Method::Wanda);
        let mut layers = Vec::with_capacity(step.targets.len());
        for t in &step.targets {
            let id = self
                .model
                .decoder
                .find_linear(&t.name)
                .with_context(|| format!("unknown layer `{}`", t.name))?;
            layers.push((id, Pattern::Unstructured(t.sparsity)));
        }
        prune_layers(&mut self.model.decoder, &layers, &opts, &|b| stats.get(b))?;
        let mut applied = BTreeMap::new();
        for (t, (id, _)) in step.targets.iter().zip(&layers) {
            applied.insert(t.name.clone(), self.model.decoder.linear(*id).sparsity());
        }
        Ok(applied)
    }

    pub fn apply(
        &mut self,
        iteration: usize,
        step: &MaskStep,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Event> {
        let applied = self.grow(step)?;
        Ok(Event::Evaluated {
            iteration,
            applied,
            eval: self.evaluate(progress)?,
        })
    }

    pub fn commit(&mut self, index: usize) {
        self.checkpoints.truncate(index);
        self.checkpoints.push(self.current_masks());
        self.ppl.commit();
    }

    /// Restore checkpoint `index`; only layers whose mask differs are rebuilt.
    pub fn restore(&mut self, index: usize) -> Result<()> {
        let target = self
            .checkpoints
            .get(index)
            .with_context(|| format!("no checkpoint {index}"))?
            .clone();
        self.ppl.discard();
        for (k, &id) in self.ids.clone().iter().enumerate() {
            let same = match (self.model.decoder.linear(id).mask(), &target[k]) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if !same {
                self.model.decoder.set_mask(id, target[k].clone())?;
            }
        }
        self.checkpoints.truncate(index + 1);
        Ok(())
    }

    /// Rebuild checkpoints 1.. from their steps (one per checkpoint), then make sure the
    /// statistics of profile `profiles` are loaded. Used to resume and to export.
    /// `progress(done, total)` after each step: a long session's rebuild takes as many
    /// calibration passes as it had profiles, and was a silent wait.
    pub fn rebuild(
        &mut self,
        steps: &[MaskStep],
        profiles: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        self.restore(0)?;
        for (i, s) in steps.iter().enumerate() {
            progress(i, steps.len());
            self.grow(s)?;
            self.commit(i + 1);
        }
        progress(steps.len(), steps.len());
        if profiles > 0 && self.stats.as_ref().map(|s| s.0) != Some(profiles) {
            let st = self.calib_stats.input_stats(&self.model.decoder)?.0;
            self.stats = Some((profiles, st));
        }
        self.profiles = self.profiles.max(profiles);
        Ok(())
    }
}
