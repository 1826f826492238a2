//! `arborist train-tiny`: the bundled fact-world model, trained from scratch with our own
//! differentiable decoder and candle-nn AdamW (the bundled one on one compute thread,
//! `--threads 1`).

pub mod probe;
pub mod tokenizer;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;
use tokenizers::Tokenizer;

use crate::model::{weights::expected_tensors, Decoder, ModelConfig};
use crate::world::{render, World, WorldSize};
use tokenizer::{encode_segments, eos_id};

#[derive(Clone, Debug, Serialize)]
pub struct TrainOptions {
    pub world_seed: u64,
    pub init_seed: u64,
    pub vocab_size: usize,
    pub hidden: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub seqlen: usize,
    pub batch: usize,
    pub steps: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub probe_every: usize,
    /// FreebaseQA-format practice questions per fact per epoch (distinct phrasings).
    pub qa_repeats: usize,
    /// Multiple-choice practice renderings per epoch.
    pub mc_repeats: usize,
    /// Loss weight of benchmark-answer tokens (practice answers and letters) relative to
    /// the prose; 1 is the plain language-model loss.
    pub answer_weight: f32,
    /// Continue from this model directory (its tokenizer, config and weights) instead of
    /// starting from scratch.
    pub init: Option<std::path::PathBuf>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            world_seed: 2026,
            init_seed: 1,
            vocab_size: 1024,
            hidden: 128,
            layers: 8,
            intermediate: 384,
            heads: 4,
            kv_heads: 2,
            head_dim: 32,
            seqlen: 256,
            batch: 8,
            steps: 1200,
            lr: 3e-3,
            warmup: 60,
            weight_decay: 0.01,
            probe_every: 200,
            qa_repeats: 1,
            mc_repeats: 1,
            answer_weight: 1.0,
            init: None,
        }
    }
}

pub fn config_json(o: &TrainOptions, vocab: usize, eos: u32) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
        "vocab_size": vocab, "hidden_size": o.hidden, "intermediate_size": o.intermediate,
        "num_hidden_layers": o.layers, "num_attention_heads": o.heads,
        "num_key_value_heads": o.kv_heads, "head_dim": o.head_dim, "hidden_act": "silu",
        "max_position_embeddings": 2 * o.seqlen, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": true, "attention_bias": false, "torch_dtype": "float16",
        "bos_token_id": eos, "eos_token_id": eos,
    })
}

/// Linear warmup, then cosine decay to 10% of the peak.
pub fn learning_rate(o: &TrainOptions, step: usize) -> f64 {
    if step < o.warmup {
        return o.lr * (step + 1) as f64 / o.warmup as f64;
    }
    let p = (step - o.warmup) as f64 / (o.steps - o.warmup).max(1) as f64;
    o.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos()))
}

/// Norms start at one, everything else N(0, 0.02²).
fn init_vars(cfg: &ModelConfig, seed: u64) -> Result<HashMap<String, Var>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 0.02).expect("valid normal");
    let mut out = HashMap::new();
    for (name, shape) in expected_tensors(cfg) {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        };
        out.insert(
            name,
            Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu)?)?,
        );
    }
    Ok(out)
}

/// Tokenizer, config and f32 variables of an existing model directory, to continue training.
fn load_init(
    dir: &std::path::Path,
) -> Result<(Tokenizer, serde_json::Value, HashMap<String, Var>)> {
    let tok = crate::model::loaded::load_tokenizer(&dir.join("tokenizer.json"))?;
    let cfg_path = dir.join("config.json");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("reading {}", cfg_path.display()))?,
    )
    .with_context(|| format!("parsing {}", cfg_path.display()))?;
    let weights = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
        .with_context(|| format!("loading {}", weights.display()))?;
    let vars = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, Var::from_tensor(&t.to_dtype(DType::F32)?)?)))
        .collect::<Result<_>>()?;
    Ok((tok, config, vars))
}

/// One epoch's token stream and each token's loss weight: each seed renders the world
/// differently.
fn epoch_stream(
    tok: &Tokenizer,
    world: &World,
    epoch: u64,
    o: &TrainOptions,
) -> Result<(Vec<u32>, Vec<f32>)> {
    let eos = eos_id(tok)?;
    let (mut ids, mut weights) = (Vec::new(), Vec::new());
    for d in render::training_docs_with(world, 1000 + epoch, o.qa_repeats, o.mc_repeats) {
        for (seg, &answer) in d.segments.iter().zip(&d.answers) {
            let seg_ids = encode_segments(tok, std::slice::from_ref(seg))?;
            let w = if answer { o.answer_weight } else { 1.0 };
            weights.extend(std::iter::repeat_n(w, seg_ids.len()));
            ids.extend(seg_ids);
        }
        ids.push(eos);
        weights.push(1.0);
    }
    Ok((ids, weights))
}

/// Σ w·(−log p(target)) / Σ w over a batch of windows; weights are those of the targets.
fn weighted_loss(logits: &Tensor, ids: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let (_, t, _) = logits.dims3()?;
    let lp = candle_nn::ops::log_softmax(&logits.narrow(1, 0, t - 1)?, candle_core::D::Minus1)?;
    let target = ids.narrow(1, 1, t - 1)?.unsqueeze(2)?.contiguous()?;
    let nll = lp.gather(&target, 2)?.squeeze(2)?.neg()?;
    let w = weights.narrow(1, 1, t - 1)?;
    Ok((nll * &w)?.sum_all()?.broadcast_div(&w.sum_all()?)?)
}

#[derive(Debug, Serialize)]
pub struct LogPoint {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub tokens_per_second: f64,
    pub probe_mc: Option<f64>,
    pub probe_qa: Option<f64>,
}

pub struct Trained {
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
    pub config: serde_json::Value,
    pub log: Vec<LogPoint>,
    pub seconds: f64,
}

pub fn train(o: &TrainOptions, mut report: impl FnMut(&LogPoint)) -> Result<Trained> {
    let world = World::generate(o.world_seed, &WorldSize::default());
    let (tok, config, vars) = match &o.init {
        None => {
            let texts: Vec<String> = (0..4)
                .flat_map(|e| render::training_docs(&world, 1000 + e))
                .map(|d| d.joined())
                .collect();
            let tok = tokenizer::train_tokenizer(&texts, o.vocab_size)?;
            let vocab = tok.get_vocab_size(true);
            let config = config_json(o, vocab, eos_id(&tok)?);
            let cfg = ModelConfig::from_json(&config.to_string())?;
            let vars = init_vars(&cfg, o.init_seed)?;
            (tok, config, vars)
        }
        Some(dir) => load_init(dir)?,
    };
    let cfg = ModelConfig::from_json(&config.to_string())?;
    let tensors = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    // Fresh variables for the linear layers; embeddings and norms stay our own variables.
    let (decoder, linear_vars) = Decoder::from_tensors(cfg.clone(), tensors)?.with_grad_vars()?;
    let (mut decayed, mut plain) = (linear_vars, Vec::new());
    for (name, v) in &vars {
        if name.ends_with("norm.weight") {
            plain.push(v.clone());
        } else if name == "model.embed_tokens.weight" {
            decayed.push(v.clone());
        }
    }
    let params = |wd| ParamsAdamW {
        lr: o.lr,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: wd,
    };
    let mut opt_w = AdamW::new(decayed, params(o.weight_decay))?;
    let mut opt_n = AdamW::new(plain, params(0.0))?;

    let start = Instant::now();
    let mut log = Vec::new();
    let mut rng = StdRng::seed_from_u64(o.init_seed);
    let mut queue: Vec<(Vec<u32>, Vec<f32>)> = Vec::new();
    let mut epoch = 0u64;
    let mut seen_tokens = 0usize;
    for step in 0..o.steps {
        while queue.len() < o.batch {
            let (stream, weights) = epoch_stream(&tok, &world, epoch, o)?;
            epoch += 1;
            let mut wins: Vec<(Vec<u32>, Vec<f32>)> = stream
                .chunks_exact(o.seqlen + 1)
                .zip(weights.chunks_exact(o.seqlen + 1))
                .map(|(c, w)| (c.to_vec(), w.to_vec()))
                .collect();
            wins.shuffle(&mut rng);
            queue.extend(wins);
        }
        let (batch, batch_w): (Vec<Vec<u32>>, Vec<Vec<f32>>) = queue.drain(..o.batch).unzip();
        let ids = crate::data::ids_tensor(&batch, &Device::Cpu)?;
        let w = Tensor::new(batch_w, &Device::Cpu)?;
        let lr = learning_rate(o, step);
        opt_w.set_learning_rate(lr);
        opt_n.set_learning_rate(lr);
        let loss = weighted_loss(&decoder.forward(&ids, None)?, &ids, &w)?;
        let grads = loss.backward()?;
        opt_w.step(&grads)?;
        opt_n.step(&grads)?;
        seen_tokens += o.batch * o.seqlen;
        let last = step + 1 == o.steps;
        if step % 20 == 0 || last || (step + 1) % o.probe_every == 0 {
            let mut p = LogPoint {
                step: step + 1,
                loss: loss.to_dtype(DType::F64)?.to_scalar()?,
                lr,
                tokens_per_second: seen_tokens as f64 / start.elapsed().as_secs_f64(),
                probe_mc: None,
                probe_qa: None,
            };
            // probe_every > steps turns the probe off (tiny test models lack single-token letters).
            if (step + 1) % o.probe_every == 0 || (last && o.probe_every <= o.steps) {
                let r = probe::probe(&decoder, &tok, &world, 60)?;
                p.probe_mc = Some(r.mc_accuracy);
                p.probe_qa = Some(r.qa_accuracy);
            }
            report(&p);
            log.push(p);
        }
    }
    Ok(Trained {
        decoder,
        tokenizer: tok,
        config,
        log,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes config.json, tokenizer.json, tokenizer_config.json and f16 model.safetensors into `dir`.
pub fn save_model(t: &Trained, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::model::save::write_safetensors(
        t.decoder.named_tensors(),
        DType::F16,
        &dir.join("model.safetensors"),
    )?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&t.config)?,
    )?;
    t.tokenizer
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| anyhow::anyhow!("saving tokenizer: {e}"))?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        crate::model::save::FAST_TOKENIZER_CONFIG,
    )?;
    Ok(())
}

/// The model card: how the files were made, from the numbers of this run.
pub fn card(o: &TrainOptions, t: &Trained, facts: usize) -> String {
    let last = t.log.last();
    let probe = last
        .and_then(|p| p.probe_mc.zip(p.probe_qa))
        .map(|(mc, qa)| format!("{:.1}% / {:.1}%", mc * 100.0, qa * 100.0))
        .unwrap_or_else(|| "n/a".into());
    let mut extra = format!(
        " --warmup {} --qa-repeats {} --mc-repeats {} --answer-weight {}",
        o.warmup, o.qa_repeats, o.mc_repeats, o.answer_weight
    );
    if let Some(init) = &o.init {
        extra += &format!(" --init {}", init.display());
    }
    let threads = rayon::current_num_threads();
    format!(
        "# Arborist bundled fact-world model\n\n\
         A Qwen3-architecture decoder trained from scratch on a synthetic world of {facts} facts \
         (people, cities, countries, jobs, objects, birth years), generated with world seed {}.\n\n\
         - Made by: `arborist --threads {threads} train-tiny --out DIR --steps {} --lr {} --batch {} --world-seed {}{extra}` \
         ({threads} compute thread(s), candle-nn AdamW, warmup {} steps + cosine to 10%).\n\
         - Shape: {} blocks, hidden {}, MLP {}, {} heads ({} KV) of {}, vocab {} (byte-level BPE \
         trained on the corpus), {} tokens per window, {} windows per step.\n\
         - Training: {:.0} s, final loss {:.4}; quick probe on the test facts in the benchmark \
         phrasing (0-shot multiple choice / greedy answer) {probe}.\n\
         - Weights stored as f16. Data in data/: train.txt (one rendering of the training \
         corpus; each epoch renders afresh), calib.txt and eval.txt (held-out prose), \
         freebaseqa.json and mmlu/ (questions in a phrasing the corpus never uses; \
         the corpus asks every fact only in other practice phrasings, five per relation).\n",
        o.world_seed,
        o.steps,
        o.lr,
        o.batch,
        o.world_seed,
        o.warmup,
        o.layers,
        o.hidden,
        o.intermediate,
        o.heads,
        o.kv_heads,
        o.head_dim,
        t.tokenizer.get_vocab_size(true),
        o.seqlen,
        o.batch,
        t.seconds,
        last.map_or(f64::NAN, |p| p.loss),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_loss_is_the_weighted_mean_of_token_losses() {
        let dev = Device::Cpu;
        let logits = Tensor::randn(0f32, 1.0, (2, 5, 7), &dev).unwrap();
        let ids = Tensor::new(&[[1u32, 2, 3, 4, 5], [6, 0, 1, 2, 3]], &dev).unwrap();
        let ones = Tensor::ones((2, 5), DType::F32, &dev).unwrap();
        let plain = crate::eval::ppl::window_loss(&logits, &ids)
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let w1 = weighted_loss(&logits, &ids, &ones).unwrap();
        assert!((w1.to_scalar::<f32>().unwrap() - plain).abs() < 1e-6);
        // Target 1 of window 0 weighted 3, everything else 1: (3·l₀₁ + Σ others) / 10.
        let lp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1).unwrap();
        let lp: Vec<Vec<Vec<f32>>> = lp.to_vec3().unwrap();
        let idv: Vec<Vec<u32>> = ids.to_vec2().unwrap();
        let mut num = 0f32;
        for b in 0..2 {
            for t in 0..4 {
                let l = -lp[b][t][idv[b][t + 1] as usize];
                num += if (b, t) == (0, 0) { 3.0 * l } else { l };
            }
        }
        let mut w = vec![vec![1f32; 5]; 2];
        w[0][1] = 3.0;
        let got = weighted_loss(&logits, &ids, &Tensor::new(w, &dev).unwrap())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got - num / 10.0).abs() < 1e-5, "{got} vs {}", num / 10.0);
    }
}
