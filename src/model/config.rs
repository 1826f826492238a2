//! Hugging Face `config.json` for the Llama family, reduced to what the decoder needs.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

pub const SUPPORTED: &[&str] = &["llama", "mistral", "qwen2", "qwen3"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

/// How rotary frequencies are derived from `rope_theta`.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: Arch,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (always for Qwen2, `attention_bias` elsewhere).
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Qwen3's per-head RMSNorm on q and k.
    pub qk_norm: bool,
    /// Sliding attention window per layer (None = full causal attention).
    pub sliding_window: Vec<Option<usize>>,
    pub max_position_embeddings: usize,
    /// Fields that shape the tensors which config.json leaves out, with the default taken
    /// (`head_dim, taken as Qwen3Config's default 128`): said with a shape or a missing
    /// tensor, whose cause they may be.
    pub defaulted: Vec<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    /// transformers >= 5 moves rope_theta and the scaling here.
    rope_parameters: Option<serde_json::Value>,
    tie_word_embeddings: Option<bool>,
    /// transformers' rope builds rotate only this share of each head; not supported.
    partial_rotary_factor: Option<f64>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    /// Absent (outer None) and null (inner None) differ: MistralConfig, Qwen2Config and
    /// Qwen3Config default an absent one to 4096, and null means no window.
    #[serde(default, deserialize_with = "present")]
    sliding_window: Option<Option<usize>>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
    max_position_embeddings: Option<usize>,
    hidden_act: Option<String>,
}

/// A field that is present, null or not: `Some(None)` for null, `None` when absent.
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// transformers' `sliding_window` default in MistralConfig, Qwen2Config and Qwen3Config.
const DEFAULT_SLIDING_WINDOW: usize = 4096;

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        // A value of the wrong type is named by its field (`rope_scaling.factor`), not only
        // by its line and column.
        let value: serde_json::Value = serde_json::from_str(text).context("invalid config JSON")?;
        if !value.is_object() {
            bail!("invalid config JSON: not a JSON object");
        }
        // Packed weights (bitsandbytes, GPTQ, AWQ) failed later on a shape or a missing
        // tensor, which read like a broken config.
        if let Some(q) = value.get("quantization_config").filter(|q| !q.is_null()) {
            let method = q["quant_method"].as_str().unwrap_or("unnamed");
            bail!(
                "field `quantization_config`: a pre-quantized checkpoint ({method}) cannot be pruned; use the unquantized model"
            );
        }
        let raw: RawConfig = serde_path_to_error::deserialize(value)
            .map_err(|e| anyhow::anyhow!("field `{}`: {}", e.path(), e.inner()))?;
        let model_type = raw
            .model_type
            .clone()
            .context("field `model_type` is missing")?;
        let arch = match model_type.as_str() {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            other => bail!(
                "unsupported model_type `{other}` (supported: {})",
                SUPPORTED.join(", ")
            ),
        };
        fn req(v: Option<usize>, field: &str) -> Result<usize> {
            match v {
                Some(0) => bail!("field `{field}` must be positive"),
                Some(x) => Ok(x),
                None => bail!("field `{field}` is missing"),
            }
        }
        let hidden_size = req(raw.hidden_size, "hidden_size")?;
        let num_heads = req(raw.num_attention_heads, "num_attention_heads")?;
        // An absent field takes its config class's default, as transformers reads it:
        // Qwen2Config and Qwen3Config say 32 key/value heads, MistralConfig 8, LlamaConfig
        // as many as attention heads; Qwen3Config's head_dim is 128, the others derive it.
        let class = match arch {
            Arch::Llama => "LlamaConfig",
            Arch::Mistral => "MistralConfig",
            Arch::Qwen2 => "Qwen2Config",
            Arch::Qwen3 => "Qwen3Config",
        };
        let absent = |default: &str| format!(" (absent: {class}'s default {default})");
        let (num_kv_heads, kv_note) = match (raw.num_key_value_heads, arch) {
            (Some(n), _) => (n, String::new()),
            (None, Arch::Llama) => (num_heads, String::new()),
            (None, Arch::Mistral) => (8, absent("8")),
            (None, Arch::Qwen2 | Arch::Qwen3) => (32, absent("32")),
        };
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            bail!("field `num_key_value_heads` ({num_kv_heads}{kv_note}) must divide num_attention_heads ({num_heads})");
        }
        let head_dim = match (raw.head_dim, arch) {
            (Some(0), _) => bail!("field `head_dim` must be positive"),
            (Some(d), _) => d,
            (None, Arch::Qwen3) => 128,
            (None, _) if hidden_size % num_heads == 0 => hidden_size / num_heads,
            (None, _) => bail!(
                "hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}"
            ),
        };
        if head_dim % 2 != 0 {
            bail!("head_dim {head_dim} is odd: rotary embeddings rotate pairs of dimensions");
        }
        let num_layers = req(raw.num_hidden_layers, "num_hidden_layers")?;
        // Per-block tables are built from it before any weight is read.
        if num_layers > MAX_LAYERS {
            bail!("field `num_hidden_layers` ({num_layers}) is more blocks than any decoder has (at most {MAX_LAYERS} here)");
        }
        let attention_bias = raw.attention_bias.unwrap_or(false);
        // The decoder's MLP is SwiGLU: silu(gate) * up.
        if let Some(act) = raw
            .hidden_act
            .as_deref()
            .filter(|a| !matches!(*a, "silu" | "swish"))
        {
            bail!("field `hidden_act` is `{act}`; only silu (SwiGLU) is supported");
        }
        let rms_norm_eps = raw.rms_norm_eps.unwrap_or(1e-6);
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
            bail!("field `rms_norm_eps` ({rms_norm_eps}) must be positive");
        }
        // Each config class's own default when the field is absent.
        let max_position_embeddings = match raw.max_position_embeddings {
            Some(0) => bail!("field `max_position_embeddings` must be positive"),
            Some(v) => v,
            None => match arch {
                Arch::Llama => 2048,
                Arch::Mistral => 131_072,
                Arch::Qwen2 | Arch::Qwen3 => 32_768,
            },
        };
        let (rope_theta, rope_scaling) = parse_rope(&raw, max_position_embeddings)?;
        // Read by transformers' rope builders for every architecture; ignored here, it gave
        // full-rotary numbers for a model that rotates part of each head (until 2026-12-03).
        if let Some(f) = raw.partial_rotary_factor.filter(|f| *f != 1.0) {
            bail!("field `partial_rotary_factor` is {f}: only full rotary embeddings (1.0) are supported");
        }
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            bail!("field `rope_theta` ({rope_theta}) must be positive");
        }
        let sliding_window = sliding_windows(&raw, arch, num_layers)?;
        let mut defaulted = Vec::new();
        match (raw.num_key_value_heads, arch) {
            (Some(_), _) => {}
            // Always divides, so only a tensor's shape can show it.
            (None, Arch::Llama) => defaulted.push(format!(
                "num_key_value_heads, taken as {class}'s default num_attention_heads ({num_kv_heads})"
            )),
            (None, _) => defaulted.push(format!(
                "num_key_value_heads, taken as {class}'s default {num_kv_heads}"
            )),
        }
        if raw.head_dim.is_none() && arch == Arch::Qwen3 {
            defaulted.push(format!("head_dim, taken as {class}'s default {head_dim}"));
        }
        if raw.tie_word_embeddings.is_none() {
            defaulted.push(format!(
                "tie_word_embeddings, taken as {class}'s default false"
            ));
        }
        let cfg = ModelConfig {
            defaulted,
            arch,
            vocab_size: req(raw.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: req(raw.intermediate_size, "intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            // As each modeling file builds its linears: Qwen2 always has q/k/v biases and
            // no other; Mistral none at all, whatever its config says; Qwen3 reads
            // attention_bias; only Llama reads mlp_bias.
            qkv_bias: match arch {
                Arch::Qwen2 => true,
                Arch::Mistral => false,
                Arch::Llama | Arch::Qwen3 => attention_bias,
            },
            o_bias: attention_bias && matches!(arch, Arch::Llama | Arch::Qwen3),
            mlp_bias: raw.mlp_bias.unwrap_or(false) && arch == Arch::Llama,
            qk_norm: arch == Arch::Qwen3,
            sliding_window,
            max_position_embeddings,
            model_type,
        };
        refuse_infinite_rotary_frequencies(&cfg)?;
        Ok(cfg)
    }

    /// ` (config.json leaves out ...)` for an error about a tensor's shape or presence, or
    /// nothing when every field that shapes them is given.
    pub fn defaulted_note(&self) -> String {
        match self.defaulted.is_empty() {
            true => String::new(),
            false => format!(" (config.json leaves out {})", self.defaulted.join("; ")),
        }
    }

    /// `; config.json: …`, the fields a linear's expected shape comes from, for an error
    /// about that shape (a wrong head_dim read as a wrong tensor).
    pub fn shape_note(&self, tensor: &str) -> String {
        let (h, d) = (self.hidden_size, self.head_dim);
        let heads = |n: usize, what: &str| format!("{what} {n} × head_dim {d} = {}", n * d);
        let from = if tensor.contains("self_attn.q_proj") || tensor.contains("self_attn.o_proj") {
            format!(
                "hidden_size {h}, {}",
                heads(self.num_heads, "num_attention_heads")
            )
        } else if tensor.contains("self_attn.k_proj") || tensor.contains("self_attn.v_proj") {
            format!(
                "hidden_size {h}, {}",
                heads(self.num_kv_heads, "num_key_value_heads")
            )
        } else if tensor.contains("mlp.") {
            format!(
                "hidden_size {h}, intermediate_size {}",
                self.intermediate_size
            )
        } else if tensor.contains("embed_tokens") || tensor.starts_with("lm_head") {
            format!("vocab_size {}, hidden_size {h}", self.vocab_size)
        } else if tensor.contains("q_norm") || tensor.contains("k_norm") {
            format!("head_dim {d}")
        } else if tensor.contains("norm") {
            format!("hidden_size {h}")
        } else {
            return String::new();
        };
        format!("; config.json: {from}")
    }

    /// Number of parameters in the linear layers of the blocks (the prunable ones).
    pub fn linear_params_per_block(&self) -> usize {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        h * q + 2 * h * kv + q * h + 3 * h * i
    }
}

/// More blocks than this is a broken config, refused before per-block tables are built.
const MAX_LAYERS: usize = 65_536;

/// Rotary frequencies are computed in f32, as transformers computes them: a tiny
/// `rope_theta` or scaling factor makes them infinite and every perplexity NaN, with
/// finite weights and nothing said.
fn refuse_infinite_rotary_frequencies(cfg: &ModelConfig) -> Result<()> {
    let finite = |c: &ModelConfig| {
        crate::model::decoder::inv_freq(c)
            .iter()
            .all(|f| f.is_finite())
    };
    if finite(cfg) {
        return Ok(());
    }
    let unscaled = ModelConfig {
        rope_scaling: RopeScaling::None,
        ..cfg.clone()
    };
    if !finite(&unscaled) {
        bail!(
            "field `rope_theta` ({:?}) makes the rotary frequencies infinite in f32",
            cfg.rope_theta
        );
    }
    bail!(
        "field `rope_scaling` ({:?}) makes the rotary frequencies infinite in f32",
        cfg.rope_scaling
    )
}

/// The attention window of each layer (None: full causal attention), as transformers
/// reads the config, with its checks of `sliding_window` and `layer_types`.
fn sliding_windows(raw: &RawConfig, arch: Arch, num_layers: usize) -> Result<Vec<Option<usize>>> {
    // MistralConfig, Qwen2Config and Qwen3Config default an absent sliding_window to
    // 4096 (null means none); Qwen2 and Qwen3 drop it unless use_sliding_window, and
    // then slide the layers `layer_types` marks, or those from max_window_layers (28).
    let window = raw.sliding_window.unwrap_or(Some(DEFAULT_SLIDING_WINDOW));
    let window_for_layer = |i: usize| -> Option<usize> {
        match arch {
            Arch::Mistral => window,
            Arch::Qwen2 | Arch::Qwen3 => {
                let window = window.filter(|_| raw.use_sliding_window.unwrap_or(false))?;
                let sliding = match &raw.layer_types {
                    Some(types) => types.get(i).is_some_and(|t| t == "sliding_attention"),
                    None => i >= raw.max_window_layers.unwrap_or(28),
                };
                sliding.then_some(window)
            }
            Arch::Llama => None,
        }
    };
    let sliding_window: Vec<Option<usize>> = (0..num_layers).map(window_for_layer).collect();
    if sliding_window.contains(&Some(0)) {
        bail!("field `sliding_window` must be positive");
    }
    if let (Arch::Qwen2 | Arch::Qwen3, Some(types)) = (arch, &raw.layer_types) {
        // As transformers' layer_type_validation: one entry per layer, of a known kind
        // (of those, these two are the ones these architectures compute).
        if types.len() != num_layers {
            bail!("field `layer_types` has {} entries for {num_layers} layers (num_hidden_layers); transformers refuses this config too", types.len());
        }
        if let Some((i, t)) = types
            .iter()
            .enumerate()
            .find(|(_, t)| !matches!(t.as_str(), "full_attention" | "sliding_attention"))
        {
            bail!("field `layer_types`: layer {i} is `{t}` (full_attention or sliding_attention)");
        }
        if let Some(i) = (0..num_layers).find(|&i| {
            types.get(i).is_some_and(|t| t == "sliding_attention") && sliding_window[i].is_none()
        }) {
            bail!("field `layer_types` makes layer {i} sliding_attention, but there is no window (use_sliding_window false or sliding_window null); transformers refuses this config too");
        }
    }
    Ok(sliding_window)
}

/// transformers' `convert_rope_params_to_dict`: a legacy `rope_scaling` object replaces
/// `rope_parameters` whole, and the `rope_theta` inside the chosen object wins over a
/// top-level one (10000 when neither has it). A llama3 scaling without
/// `original_max_position_embeddings` takes `max_position_embeddings`.
fn parse_rope(raw: &RawConfig, max_position_embeddings: usize) -> Result<(f64, RopeScaling)> {
    for (field, v) in [
        ("rope_scaling", &raw.rope_scaling),
        ("rope_parameters", &raw.rope_parameters),
    ] {
        if v.as_ref().is_some_and(|v| !v.is_object() && !v.is_null()) {
            bail!("field `{field}` must be an object or null");
        }
    }
    // `rope_scaling or rope_parameters`: an empty object counts as absent, as in Python.
    fn given(v: &Option<serde_json::Value>) -> Option<&serde_json::Map<String, serde_json::Value>> {
        v.as_ref()
            .and_then(|v| v.as_object())
            .filter(|o| !o.is_empty())
    }
    let (field, params) = match given(&raw.rope_scaling) {
        Some(p) => ("rope_scaling", Some(p)),
        None => ("rope_parameters", given(&raw.rope_parameters)),
    };
    let nested = match params.and_then(|p| p.get("rope_theta")) {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .with_context(|| format!("field `rope_theta` in `{field}` is {v}, not a number"))?,
        ),
    };
    let theta = nested.or(raw.rope_theta).unwrap_or(10000.0);
    let Some(p) = params else {
        return Ok((theta, RopeScaling::None));
    };
    let kind = p
        .get("rope_type")
        .or_else(|| p.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let num = |key: &str| -> Result<f64> {
        let x = match p.get(key) {
            None => bail!("rope scaling `{kind}` needs field `{key}`"),
            Some(v) => v.as_f64().with_context(|| {
                format!("rope scaling `{kind}`: field `{key}` must be a number, not {v}")
            })?,
        };
        if !(x.is_finite() && x > 0.0) {
            bail!("rope scaling `{kind}`: field `{key}` ({x}) must be positive");
        }
        Ok(x)
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: match p.get("original_max_position_embeddings") {
                None => max_position_embeddings as f64,
                Some(_) => num("original_max_position_embeddings")?,
            },
        },
        other => {
            bail!("unsupported rope scaling type `{other}` (supported: default, linear, llama3)")
        }
    };
    Ok((theta, scaling))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(model_type: &str) -> serde_json::Value {
        serde_json::json!({
            "model_type": model_type, "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1
        })
    }

    #[test]
    fn unsupported_model_type_is_named() {
        let err = ModelConfig::from_json(&base("gpt2").to_string()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("`gpt2`") && msg.contains("llama, mistral, qwen2, qwen3"),
            "{msg}"
        );
    }

    // A bitsandbytes or AWQ checkpoint failed on a packed weight's shape or a missing
    // tensor; its config names it.
    #[test]
    fn a_pre_quantized_checkpoint_is_refused_by_its_config() {
        for (q, name) in [
            (
                serde_json::json!({"quant_method": "bitsandbytes", "load_in_4bit": true}),
                "bitsandbytes",
            ),
            (serde_json::json!({"quant_method": "awq", "bits": 4}), "awq"),
            (serde_json::json!({"bits": 4}), "unnamed"),
        ] {
            let mut c = base("llama");
            c["quantization_config"] = q;
            let msg = format!("{:#}", ModelConfig::from_json(&c.to_string()).unwrap_err());
            assert!(
                msg.contains(&format!(
                    "pre-quantized checkpoint ({name}) cannot be pruned"
                )),
                "{msg}"
            );
        }
        let mut c = base("llama");
        c["quantization_config"] = serde_json::Value::Null;
        assert!(ModelConfig::from_json(&c.to_string()).is_ok());
    }

    // Found by tests/model_files_random: the perplexity came out NaN, said nowhere.
    #[test]
    fn values_that_make_rotary_frequencies_infinite_are_named() {
        let msg = |edit: serde_json::Value| {
            let mut c = base("qwen3");
            c.as_object_mut()
                .unwrap()
                .extend(edit.as_object().unwrap().clone());
            ModelConfig::from_json(&c.to_string()).map_err(|e| format!("{e:#}"))
        };
        let err = msg(serde_json::json!({"rope_theta": 1e-300})).unwrap_err();
        assert!(err.contains("`rope_theta` (1e-300) makes"), "{err}");
        let tiny = serde_json::json!({"rope_scaling": {"rope_type": "linear", "factor": 1e-300}});
        let err = msg(tiny).unwrap_err();
        assert!(
            err.contains("`rope_scaling` (Linear { factor: 1e-300 }) makes"),
            "{err}"
        );
        // Tiny but representable in f32 stays accepted, as transformers accepts it.
        assert!(msg(serde_json::json!({"rope_theta": 1e-3})).is_ok());
    }

    // A value of the wrong type is named by its field, and layer_types is checked as
    // transformers checks it.
    #[test]
    fn bad_fields_are_named() {
        let bad = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = base("qwen3");
            edit(&mut v);
            format!("{:#}", ModelConfig::from_json(&v.to_string()).unwrap_err())
        };
        let msg = bad(&|v| v["hidden_size"] = "8".into());
        assert!(
            msg.contains("field `hidden_size`: invalid type: string \"8\""),
            "{msg}"
        );
        let msg =
            bad(&|v| v["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": "2"}));
        assert!(msg.contains("field `factor` must be a number"), "{msg}");
        let msg = format!("{:#}", ModelConfig::from_json("[1, 2]").unwrap_err());
        assert!(msg.contains("not a JSON object"), "{msg}");
        let msg = bad(&|v| v["layer_types"] = serde_json::json!(["full_attention"]));
        assert!(
            msg.contains("`layer_types` has 1 entries for 2 layers"),
            "{msg}"
        );
        let msg = bad(&|v| v["layer_types"] = serde_json::json!(["full_attention", "bogus"]));
        assert!(msg.contains("layer 1 is `bogus`"), "{msg}");
        let mut ok = base("qwen3");
        ok["layer_types"] = serde_json::json!(["full_attention", "full_attention"]);
        ModelConfig::from_json(&ok.to_string()).unwrap();
    }

    #[test]
    fn qwen2_has_qkv_bias_and_qwen3_has_qk_norm() {
        let q2 = ModelConfig::from_json(&base("qwen2").to_string()).unwrap();
        assert!(q2.qkv_bias && !q2.o_bias && !q2.qk_norm);
        let q3 = ModelConfig::from_json(&base("qwen3").to_string()).unwrap();
        assert!(!q3.qkv_bias && q3.qk_norm);
    }

    #[test]
    fn llama3_rope_scaling_from_either_field() {
        let mut v = base("llama");
        v["rope_theta"] = 500000.0.into();
        v["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let c = ModelConfig::from_json(&v.to_string()).unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        let mut v5 = base("llama");
        v5["rope_parameters"] = serde_json::json!({"rope_type": "llama3", "rope_theta": 1000.0, "factor": 2.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
        let c5 = ModelConfig::from_json(&v5.to_string()).unwrap();
        assert_eq!(c5.rope_theta, 1000.0);
        assert!(matches!(c5.rope_scaling, RopeScaling::Llama3 { .. }));
    }

    // transformers' convert_rope_params_to_dict: a legacy rope_scaling object replaces
    // rope_parameters whole; the rope_theta inside the chosen object wins over the top-level
    // one, which is used when the object has none (10000 when neither has one).
    #[test]
    fn rope_precedence_is_transformers() {
        let linear2 = serde_json::json!({"rope_type": "linear", "factor": 2.0});
        let params = serde_json::json!({"rope_type": "default", "rope_theta": 1000.0});
        let cases: [(serde_json::Value, f64, RopeScaling); 6] = [
            (
                serde_json::json!({"rope_theta": 500000.0, "rope_parameters": params}),
                1000.0,
                RopeScaling::None,
            ),
            (
                serde_json::json!({"rope_scaling": linear2, "rope_parameters": params}),
                10000.0,
                RopeScaling::Linear { factor: 2.0 },
            ),
            (
                serde_json::json!({"rope_theta": 300.0, "rope_scaling": linear2,
                    "rope_parameters": params}),
                300.0,
                RopeScaling::Linear { factor: 2.0 },
            ),
            (
                serde_json::json!({"rope_theta": 300.0, "rope_scaling": {"type": "linear",
                    "factor": 3.0, "rope_theta": 77.0}}),
                77.0,
                RopeScaling::Linear { factor: 3.0 },
            ),
            (
                serde_json::json!({"rope_scaling": {}, "rope_parameters": {"rope_type": "linear",
                    "factor": 4.0, "rope_theta": 1000.0}}),
                1000.0,
                RopeScaling::Linear { factor: 4.0 },
            ),
            (
                serde_json::json!({"rope_scaling": null, "rope_theta": 123.0}),
                123.0,
                RopeScaling::None,
            ),
        ];
        for (extra, theta, scaling) in cases {
            let mut v = base("llama");
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            let c = ModelConfig::from_json(&v.to_string()).unwrap();
            assert_eq!(
                (c.rope_theta, &c.rope_scaling),
                (theta, &scaling),
                "{extra}"
            );
        }
    }

    // standardize_rope_params: a llama3 scaling without original_max_position_embeddings
    // takes max_position_embeddings, whose own default is LlamaConfig's 2048.
    #[test]
    fn llama3_without_original_max_position_embeddings() {
        let llama3 = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0});
        for (max_pos, want) in [(Some(512), 512.0), (None, 2048.0)] {
            for field in ["rope_scaling", "rope_parameters"] {
                let mut v = base("llama");
                v[field] = llama3.clone();
                if let Some(m) = max_pos {
                    v["max_position_embeddings"] = m.into();
                }
                let c = ModelConfig::from_json(&v.to_string()).unwrap();
                assert!(
                    matches!(c.rope_scaling, RopeScaling::Llama3 { original_max_position_embeddings: o, .. } if o == want),
                    "{field} {max_pos:?}: {:?}",
                    c.rope_scaling
                );
            }
        }
    }

    // Each config class's defaults for absent fields.
    #[test]
    fn absent_fields_take_each_classes_default() {
        for (arch, max_pos) in [
            ("llama", 2048),
            ("mistral", 131_072),
            ("qwen2", 32_768),
            ("qwen3", 32_768),
        ] {
            let c = ModelConfig::from_json(&base(arch).to_string()).unwrap();
            assert_eq!(c.max_position_embeddings, max_pos, "{arch}");
        }
        // Key/value heads and head_dim: 64 heads of 2 in a hidden size of 128.
        for (arch, kv, head_dim) in [
            ("llama", 64, 2),
            ("mistral", 8, 2),
            ("qwen2", 32, 2),
            ("qwen3", 32, 128),
        ] {
            let mut v = base(arch);
            v["hidden_size"] = 128.into();
            v["num_attention_heads"] = 64.into();
            v.as_object_mut().unwrap().remove("num_key_value_heads");
            let c = ModelConfig::from_json(&v.to_string()).unwrap();
            assert_eq!((c.num_kv_heads, c.head_dim), (kv, head_dim), "{arch}");
            // A shape error says the default was taken: Llama's too, whose default is
            // the attention heads (it said nothing there).
            let note = match arch {
                "llama" => "LlamaConfig's default num_attention_heads (64)".to_string(),
                "mistral" => "MistralConfig's default 8".to_string(),
                "qwen2" => "Qwen2Config's default 32".to_string(),
                _ => "Qwen3Config's default 32".to_string(),
            };
            let note = format!("num_key_value_heads, taken as {note}");
            assert!(c.defaulted.contains(&note), "{arch}: {:?}", c.defaulted);
        }
        // A default that does not fit says it was the default.
        let mut v = base("qwen2");
        v["num_attention_heads"] = 2.into();
        v.as_object_mut().unwrap().remove("num_key_value_heads");
        let msg = format!("{:#}", ModelConfig::from_json(&v.to_string()).unwrap_err());
        assert!(
            msg.contains("(32 (absent: Qwen2Config's default 32)) must divide"),
            "{msg}"
        );
        let window = |arch: &str, extra: serde_json::Value| {
            let mut v = base(arch);
            v["num_hidden_layers"] = 30.into();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            ModelConfig::from_json(&v.to_string())
                .unwrap()
                .sliding_window
        };
        let none = vec![None; 30];
        // MistralConfig: an absent sliding_window is 4096 on every layer; null is none.
        assert_eq!(
            window("mistral", serde_json::json!({})),
            vec![Some(4096); 30]
        );
        assert_eq!(
            window("mistral", serde_json::json!({"sliding_window": null})),
            none
        );
        assert_eq!(
            window("mistral", serde_json::json!({"sliding_window": 8})),
            vec![Some(8); 30]
        );
        // LlamaConfig has no window, whatever the config carries.
        assert_eq!(
            window("llama", serde_json::json!({"sliding_window": 8})),
            none
        );
        for arch in ["qwen2", "qwen3"] {
            // Off unless use_sliding_window; then 4096 when absent, from max_window_layers
            // (28 when absent).
            assert_eq!(window(arch, serde_json::json!({})), none);
            assert_eq!(window(arch, serde_json::json!({"sliding_window": 8})), none);
            let mut from28 = none.clone();
            from28[28..].fill(Some(4096));
            assert_eq!(
                window(arch, serde_json::json!({"use_sliding_window": true})),
                from28
            );
            assert_eq!(
                window(
                    arch,
                    serde_json::json!({"use_sliding_window": true, "sliding_window": null})
                ),
                none
            );
            let mut from2 = none.clone();
            from2[2..].fill(Some(8));
            assert_eq!(
                window(
                    arch,
                    serde_json::json!({"use_sliding_window": true, "sliding_window": 8, "max_window_layers": 2})
                ),
                from2
            );
            // A sliding layer in layer_types with no window: transformers raises.
            let mut v = base(arch);
            v["layer_types"] = serde_json::json!(["full_attention", "sliding_attention"]);
            v["sliding_window"] = 8.into();
            let msg = format!("{:#}", ModelConfig::from_json(&v.to_string()).unwrap_err());
            assert!(msg.contains("layer 1 sliding_attention"), "{msg}");
            v["use_sliding_window"] = true.into();
            let c = ModelConfig::from_json(&v.to_string()).unwrap();
            assert_eq!(c.sliding_window, vec![None, Some(8)]);
        }
    }

    // Which biases each modeling file builds: MistralForCausalLM has none and Qwen2's are
    // fixed, whatever attention_bias and mlp_bias say; Qwen3 reads only attention_bias.
    #[test]
    fn biases_are_those_each_architecture_builds() {
        for (arch, want) in [
            ("llama", (true, true, true)),
            ("mistral", (false, false, false)),
            ("qwen2", (true, false, false)),
            ("qwen3", (true, true, false)),
        ] {
            let mut v = base(arch);
            v["attention_bias"] = true.into();
            v["mlp_bias"] = true.into();
            let c = ModelConfig::from_json(&v.to_string()).unwrap();
            assert_eq!((c.qkv_bias, c.o_bias, c.mlp_bias), want, "{arch}");
        }
    }

    // Values the decoder would run with and give garbage (NaN, the wrong activation) are
    // refused, naming the field; the ones real checkpoints carry still load.
    #[test]
    fn values_the_decoder_cannot_honour_are_refused() {
        let cases: [(&str, &str, serde_json::Value, &str); 13] = [
            ("qwen3", "head_dim", 33.into(), "head_dim 33 is odd"),
            ("qwen3", "head_dim", 0.into(), "`head_dim` must be positive"),
            (
                "llama",
                "num_hidden_layers",
                1_000_000_000.into(),
                "`num_hidden_layers` (1000000000) is more blocks",
            ),
            (
                "llama",
                "rope_scaling",
                serde_json::json!({"type": "linear", "factor": 0}),
                "field `factor` (0) must be positive",
            ),
            (
                "llama",
                "rope_scaling",
                "linear".into(),
                "field `rope_scaling` must be an object or null",
            ),
            (
                "qwen3",
                "rope_parameters",
                serde_json::json!({"rope_type": "default", "rope_theta": "1e6"}),
                "`rope_theta` in `rope_parameters` is \"1e6\", not a number",
            ),
            (
                "llama",
                "hidden_act",
                "gelu".into(),
                "`hidden_act` is `gelu`",
            ),
            (
                "llama",
                "rms_norm_eps",
                (-1.0).into(),
                "`rms_norm_eps` (-1) must be positive",
            ),
            (
                "llama",
                "rms_norm_eps",
                0.0.into(),
                "`rms_norm_eps` (0) must be positive",
            ),
            (
                "llama",
                "rope_theta",
                0.0.into(),
                "`rope_theta` (0) must be positive",
            ),
            (
                "mistral",
                "sliding_window",
                0.into(),
                "`sliding_window` must be positive",
            ),
            (
                "qwen3",
                "max_position_embeddings",
                0.into(),
                "`max_position_embeddings` must be positive",
            ),
            (
                "qwen3",
                "hidden_act",
                "relu".into(),
                "`hidden_act` is `relu`",
            ),
        ];
        for (arch, field, value, want) in cases {
            let mut v = base(arch);
            v[field] = value;
            let msg = format!("{:#}", ModelConfig::from_json(&v.to_string()).unwrap_err());
            assert!(msg.contains(want), "{field}: {msg}");
        }
        for (field, value) in [("hidden_act", "silu"), ("hidden_act", "swish")] {
            let mut v = base("qwen3");
            v[field] = value.into();
            ModelConfig::from_json(&v.to_string()).unwrap();
        }
        // Qwen2 configs carry a sliding_window they do not use.
        let mut v = base("qwen2");
        v["sliding_window"] = 0.into();
        v["use_sliding_window"] = false.into();
        ModelConfig::from_json(&v.to_string()).unwrap();
    }

    #[test]
    fn missing_field_is_named() {
        let mut v = base("llama");
        v.as_object_mut().unwrap().remove("hidden_size");
        let msg = format!("{:#}", ModelConfig::from_json(&v.to_string()).unwrap_err());
        assert!(msg.contains("hidden_size"), "{msg}");
    }
}
