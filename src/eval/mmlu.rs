//! MMLU under the Hendrycks protocol: k dev examples, then the question ending in
//! "Answer:"; the prediction is the letter whose continuation " A".." D" is most likely.
//! The prompt is spelled as Hendrycks' `evaluate.py` writes it, or as lm-eval's does; the
//! lm-eval protocol also fits the context and takes the tokenizer's BOS as lm-eval does.

use anyhow::{bail, Result};
use serde::Serialize;

use crate::data::mmlu::{MmluData, MmluItem, LETTERS};
use crate::model::generate::{continuation_logprobs, next_token_logprobs_batch};
use crate::model::LoadedModel;

pub use super::mmlu_prompt::MmluPrompt;

#[derive(Debug, Clone, Serialize)]
pub struct MmluResult {
    /// Micro average: correct / items over all subjects.
    pub accuracy: f64,
    pub correct: usize,
    pub items: usize,
    pub shots: usize,
    /// Whose spelling of the prompt: `hendrycks` or `lm-eval`.
    pub prompt: MmluPrompt,
    /// At most this many items of each subject (the first ones in file order).
    pub limit: Option<usize>,
    pub split: String,
    pub dataset: String,
    pub dtype: String,
    /// Prompts and continuations fit in this many tokens: `--mmlu-max-context`; by
    /// default Hendrycks' 2048 capped at max_position_embeddings (`hendrycks`), or
    /// max_position_embeddings, lm-eval's `max_length` (`lm-eval`).
    pub max_context: usize,
    /// Items whose prompt kept fewer than `shots` examples to fit `max_context`
    /// (`hendrycks`, whose scripts drop examples).
    pub reduced_shots: usize,
    /// Items whose prompt lost tokens from its start to fit `max_context` (`lm-eval`,
    /// which cuts from the left and keeps every example).
    pub truncated: usize,
    pub subjects: Vec<SubjectScore>,
    pub predictions: Vec<MmluPrediction>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubjectScore {
    pub subject: String,
    pub items: usize,
    pub correct: usize,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MmluPrediction {
    pub subject: String,
    pub source: String,
    pub row: usize,
    pub answer: String,
    pub predicted: String,
    /// log p(" A") .. log p(" D") after the prompt.
    pub logprobs: [f64; 4],
    pub shots: usize,
    /// Tokens cut from the prompt's start (lm-eval's left truncation); 0 when it fit.
    pub truncated: usize,
}

/// A prompt's tokens and the tokens of its four continuations.
struct Prepared {
    prompt: Vec<u32>,
    conts: Vec<Vec<u32>>,
    shots: usize,
    /// Tokens cut from the prompt's start (the most of the four).
    truncated: usize,
    /// Each continuation's own prompt, where lm-eval's cut differs between them
    /// (continuations of different lengths keep different numbers of prompt tokens).
    own: Option<Vec<Vec<u32>>>,
}

/// Tokens of " X" after `prompt_ids`: those of the joint encoding (`encode`, as the
/// prompt was) past the prompt when the prompt's tokens are a prefix of it (as lm-eval
/// splits), else " X" encoded alone.
fn continuation(
    model: &LoadedModel,
    encode: impl Fn(&str) -> Result<Vec<u32>>,
    text: &str,
    prompt_ids: &[u32],
    letter: &str,
) -> Result<Vec<u32>> {
    let cont = format!(" {letter}");
    let joint = encode(&format!("{text}{cont}"))?;
    if joint.len() > prompt_ids.len() && joint.starts_with(prompt_ids) {
        return Ok(joint[prompt_ids.len()..].to_vec());
    }
    model.encode(&cont)
}

/// The prompt with all `shots` examples, cut from the left to fit the context as
/// lm-eval's `_loglikelihood_tokens` cuts it: each continuation is scored after the last
/// `max + 1 - len` tokens of the prompt, `(context + continuation)[-(max + 1):][:-1]`.
/// Encoded with the tokenizer's own special tokens (a Llama tokenizer's BOS), as lm-eval
/// does since it left BOS to the tokenizer (its PR #3347, 2025-10).
fn prepare_lm_eval(
    model: &LoadedModel,
    item: &MmluItem,
    dev: &[MmluItem],
    shots: usize,
    max: usize,
) -> Result<Prepared> {
    let text = MmluPrompt::LmEval.prompt(item, dev, shots);
    let encode = |t: &str| model.encode_document(t);
    let ids = encode(&text)?;
    let conts = LETTERS
        .iter()
        .map(|l| continuation(model, encode, &text, &ids, l))
        .collect::<Result<Vec<_>>>()?;
    let mut cuts = Vec::with_capacity(conts.len());
    for c in &conts {
        if c.len() > max {
            bail!(
                "{}: row {}: an answer's continuation is {} tokens, more than the context of {max} (--mmlu-max-context)",
                item.source,
                item.row,
                c.len()
            );
        }
        cuts.push((ids.len() + c.len() - 1).saturating_sub(max));
    }
    let truncated = cuts.iter().copied().max().unwrap_or(0);
    let own = match cuts.iter().all(|&c| c == cuts[0]) {
        true => None,
        false => Some(cuts.iter().map(|&c| ids[c..].to_vec()).collect()),
    };
    Ok(Prepared {
        prompt: ids[cuts[0]..].to_vec(),
        conts,
        shots,
        truncated,
        own,
    })
}

/// The longest prompt with at most `shots` examples that fits the context. As in
/// Hendrycks' code, examples are dropped from the end until it fits.
fn prepare(
    model: &LoadedModel,
    item: &MmluItem,
    dev: &[MmluItem],
    shots: usize,
    style: MmluPrompt,
    max: usize,
) -> Result<Prepared> {
    if style == MmluPrompt::LmEval {
        return prepare_lm_eval(model, item, dev, shots, max);
    }
    let mut k = shots;
    loop {
        let text = style.prompt(item, dev, k);
        let ids = model.encode(&text)?;
        let conts = LETTERS
            .iter()
            .map(|l| continuation(model, |t: &str| model.encode(t), &text, &ids, l))
            .collect::<Result<Vec<_>>>()?;
        let longest = conts.iter().map(Vec::len).max().unwrap_or(1);
        // Scoring feeds the prompt and all but the last continuation token.
        let need = ids.len() + longest - 1;
        if need <= max {
            return Ok(Prepared {
                prompt: ids,
                conts,
                shots: k,
                truncated: 0,
                own: None,
            });
        }
        if k == 0 {
            bail!(
                "{}: row {}: the 0-shot prompt needs {need} tokens, more than the context of {max} (--mmlu-max-context; 2048 capped at max_position_embeddings by default)",
                item.source,
                item.row
            );
        }
        k -= 1;
    }
}

pub struct MmluOptions {
    pub shots: usize,
    pub prompt: MmluPrompt,
    pub limit: Option<usize>,
    /// Prompts per forward pass (right-padded).
    pub batch: usize,
    /// Longest prompt plus continuation in tokens; `None` is the spelling's default
    /// (`context_limit`).
    pub max_context: Option<usize>,
}

/// Hendrycks' `evaluate.py` and `evaluate_hf.py` drop shots until the prompt fits 2048
/// tokens, whatever the model's own context.
pub const HENDRYCKS_CONTEXT: usize = 2048;

/// The context the prompts must fit, checked against the model's. By default Hendrycks'
/// 2048 (capped at max_position_embeddings); lm-eval's `max_length`, which is the model's
/// max_position_embeddings.
pub fn context_limit(
    model: &LoadedModel,
    max_context: Option<usize>,
    style: MmluPrompt,
) -> Result<usize> {
    let mp = model.cfg.max_position_embeddings;
    match max_context {
        None if style == MmluPrompt::LmEval => Ok(mp),
        None => Ok(HENDRYCKS_CONTEXT.min(mp)),
        Some(0) => bail!("--mmlu-max-context 0: no prompt fits"),
        Some(n) if n > mp => {
            bail!("--mmlu-max-context {n} is above the model's max_position_embeddings {mp}")
        }
        Some(n) => Ok(n),
    }
}

pub fn evaluate_mmlu(
    model: &LoadedModel,
    data: &MmluData,
    opts: &MmluOptions,
    dataset: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<MmluResult> {
    let items: Vec<&MmluItem> = data
        .test
        .values()
        .flat_map(|v| v.iter().take(opts.limit.unwrap_or(usize::MAX)))
        .collect();
    let max = context_limit(model, opts.max_context, opts.prompt)?;
    let empty = Vec::new();
    let mut predictions = Vec::with_capacity(items.len());
    for chunk in items.chunks(opts.batch.max(1)) {
        let prepared = chunk
            .iter()
            .map(|it| {
                let dev = data.dev.get(&it.subject).unwrap_or(&empty);
                // Evaluating the dev split itself: an item is never its own example (its
                // answer would be in the prompt); compared by content, as lm-eval does.
                let others: Vec<MmluItem>;
                let dev = if data.split == "dev" {
                    others = dev
                        .iter()
                        .filter(|d| {
                            (&d.question, &d.choices, d.answer)
                                != (&it.question, &it.choices, it.answer)
                        })
                        .cloned()
                        .collect();
                    &others
                } else {
                    dev
                };
                prepare(model, it, dev, opts.shots, opts.prompt, max)
            })
            .collect::<Result<Vec<_>>>()?;
        for (it, (p, lp)) in chunk
            .iter()
            .zip(prepared.iter().zip(score(model, &prepared)?))
        {
            let best = (0..4).fold(0, |b, j| if lp[j] > lp[b] { j } else { b });
            predictions.push(MmluPrediction {
                subject: it.subject.clone(),
                source: it.source.clone(),
                row: it.row,
                answer: LETTERS[it.answer].to_string(),
                predicted: LETTERS[best].to_string(),
                logprobs: lp,
                shots: p.shots,
                truncated: p.truncated,
            });
        }
        progress(predictions.len(), items.len());
    }
    Ok(summarize(model, data, opts, dataset, max, predictions))
}

/// Log-probabilities of the four continuations of each prompt. Prompts whose
/// continuations are single tokens share one batched forward.
fn score(model: &LoadedModel, prepared: &[Prepared]) -> Result<Vec<[f64; 4]>> {
    let single = |p: &Prepared| p.own.is_none() && p.conts.iter().all(|c| c.len() == 1);
    let batch: Vec<Vec<u32>> = prepared
        .iter()
        .filter(|p| single(p))
        .map(|p| p.prompt.clone())
        .collect();
    let mut rows = if batch.is_empty() {
        Vec::new()
    } else {
        next_token_logprobs_batch(&model.decoder, &batch)?.to_vec2::<f32>()?
    }
    .into_iter();
    prepared
        .iter()
        .map(|p| {
            let lp: Vec<f64> = if single(p) {
                let row = rows.next().expect("one row per single-token prompt");
                p.conts.iter().map(|c| row[c[0] as usize] as f64).collect()
            } else if let Some(own) = &p.own {
                let one = |(prompt, c): (&Vec<u32>, &Vec<u32>)| {
                    Ok(continuation_logprobs(&model.decoder, prompt, std::slice::from_ref(c))?[0])
                };
                own.iter().zip(&p.conts).map(one).collect::<Result<_>>()?
            } else {
                continuation_logprobs(&model.decoder, &p.prompt, &p.conts)?
            };
            Ok([lp[0], lp[1], lp[2], lp[3]])
        })
        .collect()
}

fn summarize(
    model: &LoadedModel,
    data: &MmluData,
    opts: &MmluOptions,
    dataset: &str,
    max_context: usize,
    predictions: Vec<MmluPrediction>,
) -> MmluResult {
    let mut subjects: Vec<SubjectScore> = Vec::new();
    for p in &predictions {
        if subjects.last().is_none_or(|s| s.subject != p.subject) {
            subjects.push(SubjectScore {
                subject: p.subject.clone(),
                items: 0,
                correct: 0,
                accuracy: 0.0,
            });
        }
        let s = subjects.last_mut().expect("just pushed");
        s.items += 1;
        s.correct += usize::from(p.answer == p.predicted);
    }
    for s in &mut subjects {
        s.accuracy = s.correct as f64 / s.items as f64;
    }
    let correct: usize = subjects.iter().map(|s| s.correct).sum();
    MmluResult {
        accuracy: correct as f64 / predictions.len().max(1) as f64,
        correct,
        items: predictions.len(),
        shots: opts.shots,
        prompt: opts.prompt,
        limit: opts.limit,
        split: data.split.clone(),
        dataset: dataset.to_string(),
        dtype: crate::model::device::dtype_name(model.decoder.dtype).to_string(),
        max_context,
        reduced_shots: predictions.iter().filter(|p| p.shots < opts.shots).count(),
        truncated: predictions.iter().filter(|p| p.truncated > 0).count(),
        subjects,
        predictions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(question: &str, answer: usize) -> MmluItem {
        MmluItem {
            subject: "high_school_physics".into(),
            question: question.into(),
            choices: ["w", "x", "y", "z"].map(String::from),
            answer,
            source: String::new(),
            row: 1,
        }
    }

    /// The two published spellings, written out by hand.
    #[test]
    fn prompts_are_spelled_as_published() {
        let dev = [item("Dev one?", 1), item("Dev two?", 3)];
        let q = item(" What is g? \n", 0);
        assert_eq!(
            MmluPrompt::Hendrycks.prompt(&q, &dev, 1),
            "The following are multiple choice questions (with answers) about  high school \
             physics.\n\nDev one?\nA. w\nB. x\nC. y\nD. z\nAnswer: B\n\n What is g? \n\nA. w\n\
             B. x\nC. y\nD. z\nAnswer:"
        );
        assert_eq!(
            MmluPrompt::LmEval.prompt(&q, &dev, 2),
            "The following are multiple choice questions (with answers) about high school \
             physics.\n\nDev one?\nA. w\nB. x\nC. y\nD. z\nAnswer: B\n\nDev two?\nA. w\nB. x\n\
             C. y\nD. z\nAnswer: D\n\nWhat is g?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
        );
        for p in [MmluPrompt::Hendrycks, MmluPrompt::LmEval] {
            assert_eq!(p.name().parse::<MmluPrompt>(), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
        assert!("hendricks".parse::<MmluPrompt>().is_err());
    }
}
