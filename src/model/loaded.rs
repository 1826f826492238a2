//! A model ready to run: files, config, tokenizer and decoder on a device.

use anyhow::{anyhow, Context, Result};
use candle_core::{DType, Device};
use tokenizers::Tokenizer;

use super::{weights, Decoder, ModelConfig, ModelFiles};

pub struct LoadedModel {
    pub files: ModelFiles,
    pub cfg: ModelConfig,
    pub tokenizer: Tokenizer,
    pub decoder: Decoder,
    /// Tensors in the weight files that this config does not use (see `WeightFiles::unused`).
    pub unused_tensors: Vec<String>,
    /// config.json ties the head to the embedding, but the files hold an `lm_head.weight`
    /// that differs: it is used untied, as transformers does (`cfg.tie_word_embeddings` is
    /// then false).
    pub untied_head: bool,
}

impl LoadedModel {
    pub fn load(spec: &str, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with(spec, device, dtype, false)
    }

    /// `stream`: keep no linear weight in memory; each block reads its own from the files
    /// when it computes (`--stream-layers`).
    pub fn load_with(spec: &str, device: &Device, dtype: DType, stream: bool) -> Result<Self> {
        let files = ModelFiles::resolve(spec)?;
        Self::from_files(files, device, dtype, stream)
    }

    pub fn from_files(
        files: ModelFiles,
        device: &Device,
        dtype: DType,
        stream: bool,
    ) -> Result<Self> {
        let mut cfg = ModelConfig::from_file(&files.config)?;
        let tokenizer = load_tokenizer(&files.tokenizer)?;
        let wf = weights::WeightFiles::open(&files.weights)?;
        let mut tensors = weights::load_all(&wf, &cfg, dtype, device, stream)?;
        let head = weights::stored_head_differs(
            &wf,
            &cfg,
            &tensors["model.embed_tokens.weight"],
            dtype,
            device,
        )?;
        let untied_head = head.is_some();
        if let Some(head) = head {
            cfg.tie_word_embeddings = false;
            tensors.insert("lm_head.weight".to_string(), head);
        }
        let unused_tensors = wf.unused(&cfg);
        let source: std::sync::Arc<dyn super::linear::DenseSource> =
            std::sync::Arc::new(weights::FileSource::new(&wf, dtype, device));
        drop(wf);
        let decoder = if stream {
            Decoder::streamed(cfg.clone(), tensors, source)?
        } else {
            // Masked layers keep only their masked weight; rollbacks re-read from the files.
            let mut d = Decoder::from_tensors(cfg.clone(), tensors)?;
            for id in d.linear_ids().collect::<Vec<_>>() {
                d.linear_mut(id).attach_source(source.clone());
            }
            d
        };
        Ok(LoadedModel {
            files,
            cfg,
            tokenizer,
            decoder,
            unused_tensors,
            untied_head,
        })
    }

    /// The warnings `eval`, `profile`, `prune` and `run` print after loading.
    pub fn load_notes(&self) -> Vec<String> {
        [
            self.unused_note(),
            self.head_note(),
            self.custom_code_note(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// One line when config.json ties the head but the weights hold a different one.
    pub fn head_note(&self) -> Option<String> {
        self.untied_head.then(|| {
            format!(
                "{} sets tie_word_embeddings true, but its weights hold an `lm_head.weight` that differs from `model.embed_tokens.weight`: the stored `lm_head.weight` is used, untied, as transformers does",
                self.files.config.display()
            )
        })
    }

    /// One line when config.json names custom modeling code (`auto_map`, loaded by
    /// transformers only with trust_remote_code): that code may compute something other
    /// than the standard architecture arborist runs.
    pub fn custom_code_note(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.files.config).ok()?;
        let cfg: serde_json::Value = serde_json::from_str(&text).ok()?;
        let map = cfg.get("auto_map").filter(|m| !m.is_null())?;
        let code = map.get("AutoModelForCausalLM").and_then(|c| c.as_str());
        Some(format!(
            "{} names custom modeling code in `auto_map`{}: arborist runs the standard `{}` architecture, whose numbers differ from that code's wherever it departs from it",
            self.files.config.display(),
            code.map(|c| format!(" ({c})")).unwrap_or_default(),
            cfg["model_type"].as_str().unwrap_or("?")
        ))
    }

    /// One line when the weights hold tensors the config does not use, as transformers
    /// warns: a config cut to fewer blocks than the weights is often a mistake.
    pub fn unused_note(&self) -> Option<String> {
        let first = self.unused_tensors.first()?;
        Some(format!(
            "{} tensor(s) in the weights of {} are not used by its config.json (num_hidden_layers {}), e.g. `{first}`",
            self.unused_tensors.len(),
            self.files.id,
            self.cfg.num_layers
        ))
    }

    /// `--seqlen` as given, or the default for this model's context.
    pub fn seqlen_or_default(&self, flag: Option<usize>) -> usize {
        flag.unwrap_or_else(|| crate::data::default_seqlen(self.cfg.max_position_embeddings))
    }

    /// One line when `seqlen` is longer than the model's context. Such windows still run
    /// (rotary positions extrapolate, as in transformers), but the numbers then measure
    /// extrapolation, not the model.
    pub fn seqlen_note(&self, seqlen: usize) -> Option<String> {
        let max = self.cfg.max_position_embeddings;
        (seqlen > max).then(|| {
            format!(
                "--seqlen {seqlen} is longer than the model's context \
                 (max_position_embeddings {max} in {}): positions past {max} were never trained",
                self.files.config.display()
            )
        })
    }

    /// Tokenize without special tokens: the project's choice for perplexity and the
    /// knowledge evaluations (Wanda's, SparseGPT's, Hendrycks' and LLM-KICK's scripts
    /// tokenize with the defaults, which put a BOS first for Llama; Qwen adds none).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, false)
    }

    /// `text` as the Hugging Face tokenizer encodes it by default, special tokens included
    /// (Llama's BOS): how Wanda and SparseGPT tokenize each calibration document.
    pub fn encode_document(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, true)
    }

    fn encode_with(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, special)
            .map_err(|e| anyhow!("tokenizer {} failed: {e}", self.files.tokenizer.display()))?;
        let ids = enc.get_ids().to_vec();
        // Else blamed on the text ("has 0 tokens, too short"): a vocabulary that lost its
        // entries drops every character it cannot find.
        if ids.is_empty() && !text.trim().is_empty() {
            anyhow::bail!(
                "tokenizer {} turned {} characters of text into no tokens (its vocabulary has {} \
                 entries: is `model.vocab` empty or cut, or its unk_token missing?)",
                self.files.tokenizer.display(),
                text.chars().count(),
                self.tokenizer.get_vocab_size(true)
            );
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.cfg.vocab_size) {
            anyhow::bail!(
                "tokenizer {} produced token id {bad}, outside the model's vocab_size {}",
                self.files.tokenizer.display(),
                self.cfg.vocab_size
            );
        }
        Ok(ids)
    }
}

/// The tokenizer without the truncation and padding a `tokenizer.json` may carry (files
/// saved after a truncating call often do): transformers turns both off before encoding
/// unless asked, and with them on the whole text would be cut or padded.
pub fn load_tokenizer(path: &std::path::Path) -> Result<Tokenizer> {
    let what = || format!("cannot load tokenizer {}", path.display());
    let bytes = std::fs::read(path).with_context(what)?;
    // The tokenizers crate panics on some malformed files (a JSON cut inside `decoder`, a
    // bad `precompiled_charsmap`): the syntax is checked first, to say where it breaks,
    // and a panic left is caught and said in one line.
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
        .map_err(|e| anyhow!("not valid JSON: {e}"))
        .with_context(what)?;
    let mut tok = crate::runtime::catch_quietly(|| Tokenizer::from_bytes(&bytes))
        .map_err(|p| anyhow!("the tokenizers crate failed on it: {p}"))
        .with_context(what)?
        .map_err(|e| anyhow!("{e}"))
        .with_context(what)?;
    tok.with_truncation(None)
        .map_err(|e| anyhow!("cannot turn off truncation in {}: {e}", path.display()))?;
    tok.with_padding(None);
    Ok(tok)
}

/// Why a weight can be infinite in f16 though the file holds none.
const F16_RANGE: &str = " in f16, the compute dtype (if the file stores a wider type, bf16 or f32, a weight beyond f16's range of ±65504 became infinite when converted for --dtype f16: f32 or bf16 keep it)";

impl LoadedModel {
    /// Refuse weights holding NaN or infinities, naming the first such tensor: they make
    /// every perplexity NaN and every Wanda score meaningless. One pass over the weights
    /// (each converted to f32 in turn), so it runs where a failure is seen or before a
    /// command that reads every weight anyway.
    ///
    /// Returns the fraction of the linear layers' weights that are exactly zero, read in
    /// the same pass: a model pruned before loads as dense (its zeros are not masks).
    pub fn refuse_non_finite(&self) -> Result<f64> {
        let (mut zeros, mut total) = (0f64, 0f64);
        for (name, t) in self.decoder.named_tensors() {
            let linear = matches!(t, crate::model::save::Stored::Linear(_));
            let t = t.tensor()?;
            let sum = t
                .to_dtype(DType::F32)?
                .abs()?
                .sum_all()?
                .to_scalar::<f32>()?;
            if !sum.is_finite() {
                // The conversion's doing when the file stores a wider type: said, since
                // the line read as a corrupt checkpoint of weights that load in f32.
                let f16 = match t.dtype() {
                    DType::F16 => F16_RANGE,
                    _ => "",
                };
                anyhow::bail!(
                    "{}: tensor {name} holds NaN or infinite values{f16}",
                    self.files.id
                );
            }
            if linear {
                let z = t
                    .eq(0.0)?
                    .to_dtype(DType::F32)?
                    .sum_all()?
                    .to_scalar::<f32>()?;
                zeros += z as f64;
                total += t.elem_count() as f64;
            }
        }
        Ok(if total > 0.0 { zeros / total } else { 0.0 })
    }

    /// A warning when the linear weights already hold many zeros (`zero_fraction` from
    /// `refuse_non_finite`): sparsities count masks chosen here, not zeros.
    pub fn warn_if_pruned_before(&self, zero_fraction: f64) {
        if zero_fraction > 0.01 {
            let f16 = match self.decoder.dtype {
                DType::F16 => " (or, if the file stores a wider type, weights below f16's smallest value that became zero when converted for --dtype f16)",
                _ => "",
            };
            tracing::warn!(
                "{}: {:.1}% of its linear weights are already zero (a pruned model?{f16}): they load as active weights, so the sparsities reported count only the masks chosen from here",
                self.files.id,
                100.0 * zero_fraction
            );
        }
    }
}
