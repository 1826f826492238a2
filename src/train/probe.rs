//! Quick held-out checks while training (the real benchmarks live in `eval`): zero-shot
//! multiple choice and greedy fact answers, on the held-out facts only.

use anyhow::{bail, Result};
use candle_core::{Device, IndexOp, Tensor};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use tokenizers::Tokenizer;

use super::tokenizer::encode_segments;
use crate::model::Decoder;
use crate::world::render::{mc_header, mc_item, qa_prompt, question};
use crate::world::World;

fn last_logits(model: &Decoder, ids: &[u32]) -> Result<Vec<f32>> {
    let t = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
    let logits = model.forward(&t, None)?;
    Ok(logits
        .i((0, ids.len() - 1))?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1()?)
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

pub struct ProbeResult {
    pub mc_accuracy: f64,
    pub qa_accuracy: f64,
    pub items: usize,
}

pub fn probe(model: &Decoder, tok: &Tokenizer, world: &World, limit: usize) -> Result<ProbeResult> {
    let enc = |s: &str| encode_segments(tok, &[s.to_string()]);
    let mut letters = Vec::new();
    for l in [" A", " B", " C", " D"] {
        match enc(l)?.as_slice() {
            [id] => letters.push(*id as usize),
            _ => bail!("answer letter `{l}` is not a single token"),
        }
    }
    let newline = enc("\n")?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut facts: Vec<_> = world.facts().into_iter().filter(|f| f.held_out).collect();
    // A seeded sample across every relation (a fixed stride can alias with the four
    // facts per person and miss whole relations).
    facts.shuffle(&mut StdRng::seed_from_u64(11));
    let (mut mc, mut qa, mut n) = (0, 0, 0);
    for f in facts.iter().take(limit.max(1)) {
        n += 1;
        let (opts, gold) = world.options(f, &mut rng);
        let prompt = mc_header(f.relation.subject()) + &mc_item(&question(f), &opts, None);
        let lg = last_logits(model, &enc(&prompt)?)?;
        let scores: Vec<f32> = letters.iter().map(|&i| lg[i]).collect();
        mc += usize::from(argmax(&scores) == gold);
        let ids = enc(&qa_prompt(&question(f)))?;
        let out = crate::model::generate::generate_greedy(model, &ids, 8, &newline)?;
        let text = tok.decode(&out, true).unwrap_or_default();
        qa += usize::from(text.to_lowercase().contains(&f.answer.to_lowercase()));
    }
    Ok(ProbeResult {
        mc_accuracy: mc as f64 / n.max(1) as f64,
        qa_accuracy: qa as f64 / n.max(1) as f64,
        items: n,
    })
}
