//! FreebaseQA under the LLM-KICK protocol: greedy answer after "Please give answer to this
//! question: {q}\nThe answer is ", correct when a gold alias occurs in the continuation.

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::Path;

use crate::data::freebaseqa::FreebaseItem;
use crate::model::generate::generate_greedy_until;
use crate::model::LoadedModel;

#[derive(Debug, Clone, Serialize)]
pub struct FreebaseResult {
    pub accuracy: f64,
    pub correct: usize,
    pub items: usize,
    /// The first `limit` questions of the file.
    pub limit: Option<usize>,
    pub max_new_tokens: usize,
    pub dataset: String,
    pub dtype: String,
    /// Token ids that end generation (EOS from the model's config files).
    pub stop_ids: Vec<u32>,
    pub records: Vec<FreebaseRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FreebaseRecord {
    pub id: String,
    pub question: String,
    /// The generated continuation's first line (`first_line`).
    pub generated: String,
    pub correct: bool,
}

pub fn prompt(question: &str) -> String {
    format!("Please give answer to this question: {question}\nThe answer is ")
}

/// Lowercase with every whitespace character removed.
pub fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Is any alias (normalized, non-empty) a substring of the normalized continuation?
/// Only the continuation is scored: an alias that appears in the question earns nothing.
pub fn is_correct(continuation: &str, aliases: &[String]) -> bool {
    let text = normalize(continuation);
    aliases
        .iter()
        .map(|a| normalize(a))
        .any(|a| !a.is_empty() && text.contains(&a))
}

/// The answer: the continuation from its first non-whitespace character to the next
/// newline. LLM-KICK scores the whole continuation, so an answer after a leading newline
/// counts there; cutting at the very first newline would score it as empty.
pub fn first_line(continuation: &str) -> &str {
    let t = continuation.trim_start();
    t.split('\n').next().unwrap_or("")
}

/// EOS ids from `config.json` and, when present beside it, `generation_config.json`
/// (`eos_token_id` may be a number, a list or null). A file that is there but cannot be
/// read is an error: without its ids, generation would run past the answer unnoticed.
pub fn eos_ids(config: &Path) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    let files = [
        config.to_path_buf(),
        config.with_file_name("generation_config.json"),
    ];
    for f in files {
        if !f.exists() {
            continue;
        }
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", f.display()))?;
        let id = |x: &serde_json::Value| -> Result<u32> {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .with_context(|| {
                    format!("{}: `eos_token_id` holds {x}, not a token id", f.display())
                })
        };
        let found: Vec<u32> = match &v["eos_token_id"] {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::Array(a) => a.iter().map(id).collect::<Result<_>>()?,
            x => vec![id(x)?],
        };
        for id in found {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

pub struct FreebaseOptions {
    pub limit: Option<usize>,
    pub max_new_tokens: usize,
}

pub fn evaluate_freebaseqa(
    model: &LoadedModel,
    items: &[FreebaseItem],
    opts: &FreebaseOptions,
    dataset: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<FreebaseResult> {
    let items = &items[..opts.limit.map_or(items.len(), |l| l.min(items.len()))];
    let stop_ids = eos_ids(&model.files.config)?;
    // The argmax never picks an id past the vocabulary: generation could not stop there.
    let vocab = model.cfg.vocab_size;
    if let Some(id) = stop_ids.iter().find(|&&id| id as usize >= vocab) {
        tracing::warn!(
            "{}: `eos_token_id` {id} (config.json or generation_config.json) is not in the vocabulary ({vocab} tokens): generation can never stop at it",
            model.files.id
        );
    }
    let decode = |ids: &[u32]| {
        model
            .tokenizer
            .decode(ids, true)
            .map_err(|e| anyhow!("decoding generated tokens: {e}"))
    };
    let mut records = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        let ids = model.encode(&prompt(&it.question))?;
        let max = model.cfg.max_position_embeddings;
        if ids.len() > max {
            bail!(
                "{dataset}: question {} ({}): the prompt is {} tokens, more than max_position_embeddings {max}",
                i + 1,
                it.id,
                ids.len()
            );
        }
        // Generation ends at EOS or at the first newline after the answer has begun.
        let newline = |out: &[u32]| decode(out).is_ok_and(|t| t.trim_start().contains('\n'));
        let out = generate_greedy_until(
            &model.decoder,
            &ids,
            opts.max_new_tokens,
            &stop_ids,
            newline,
        )?;
        let text = decode(&out)?;
        let generated = first_line(&text).to_string();
        records.push(FreebaseRecord {
            id: it.id.clone(),
            question: it.question.clone(),
            correct: is_correct(&generated, &it.aliases),
            generated,
        });
        progress(records.len(), items.len());
    }
    let correct = records.iter().filter(|r| r.correct).count();
    Ok(FreebaseResult {
        accuracy: correct as f64 / records.len().max(1) as f64,
        correct,
        items: records.len(),
        limit: opts.limit,
        max_new_tokens: opts.max_new_tokens,
        dataset: dataset.to_string(),
        dtype: crate::model::device::dtype_name(model.decoder.dtype).to_string(),
        stop_ids,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_ids_come_from_both_files_and_a_broken_one_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let config = d.path().join("config.json");
        let gen = d.path().join("generation_config.json");
        std::fs::write(&config, r#"{"eos_token_id": 2}"#).unwrap();
        assert_eq!(eos_ids(&config).unwrap(), vec![2]);
        std::fs::write(&gen, r#"{"eos_token_id": [2, 7]}"#).unwrap();
        assert_eq!(eos_ids(&config).unwrap(), vec![2, 7]);
        std::fs::write(&gen, r#"{"eos_token_id": null}"#).unwrap();
        assert_eq!(eos_ids(&config).unwrap(), vec![2]);
        for (text, want) in [
            (
                r#"{"eos_token_id": [1, 2"#,
                "generation_config.json is not valid JSON",
            ),
            (
                r#"{"eos_token_id": "2"}"#,
                "`eos_token_id` holds \"2\", not a token id",
            ),
            (
                r#"{"eos_token_id": [4294967296]}"#,
                "holds 4294967296, not a token id",
            ),
        ] {
            std::fs::write(&gen, text).unwrap();
            let err = format!("{:#}", eos_ids(&config).unwrap_err());
            assert!(err.contains(want), "{err}");
        }
    }
}
