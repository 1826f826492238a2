//! The undamaged model directories each case copies: one per supported architecture, in
//! each stored dtype, and a sharded one.

use crate::common::{write_model_dir, TINY_QWEN3};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TINY_LLAMA: &str = r#"{"model_type":"llama","vocab_size":260,"hidden_size":32,
  "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
  "max_position_embeddings":256,"tie_word_embeddings":false,"rope_theta":500000.0,
  "rms_norm_eps":1e-5,"hidden_act":"silu","attention_bias":false,"mlp_bias":false,
  "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
  "high_freq_factor":4.0,"original_max_position_embeddings":64},"torch_dtype":"bfloat16"}"#;

const TINY_MISTRAL: &str = r#"{"model_type":"mistral","vocab_size":260,"hidden_size":32,
  "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,
  "max_position_embeddings":512,"tie_word_embeddings":false,"rope_theta":10000.0,
  "rms_norm_eps":1e-5,"sliding_window":16,"hidden_act":"silu","torch_dtype":"float16"}"#;

const TINY_QWEN2: &str = r#"{"model_type":"qwen2","vocab_size":260,"hidden_size":32,
  "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
  "max_position_embeddings":256,"tie_word_embeddings":true,"rope_theta":1000000.0,
  "rms_norm_eps":1e-6,"use_sliding_window":false,"sliding_window":32,"max_window_layers":2,
  "hidden_act":"silu"}"#;

/// What eval ignores and prune copies: damage to it must change nothing.
const TOKENIZER_CONFIG: &str = r#"{"tokenizer_class":"PreTrainedTokenizerFast",
  "model_max_length":256,"chat_template":"{% for m in messages %}{{ m.content }}{% endfor %}"}"#;

pub const INDEX: &str = "model.safetensors.index.json";

pub struct Base {
    pub name: &'static str,
    pub dir: PathBuf,
    pub sharded: bool,
    /// `ppl` of the undamaged directory's `eval --json`.
    pub ppl: serde_json::Value,
}

/// Every base under `root`, each checked to run undamaged.
pub fn build(root: &Path, text: &Path) -> Vec<Base> {
    let specs: [(&str, &str, DType, bool); 5] = [
        ("qwen3-f32", TINY_QWEN3, DType::F32, false),
        ("llama-bf16", TINY_LLAMA, DType::BF16, false),
        ("mistral-f16", TINY_MISTRAL, DType::F16, false),
        ("qwen2-f32", TINY_QWEN2, DType::F32, false),
        ("qwen3-sharded", TINY_QWEN3, DType::F32, true),
    ];
    specs
        .into_iter()
        .enumerate()
        .map(|(i, (name, config, dtype, sharded))| {
            let dir = root.join(name);
            write_model_dir(&dir, config, 10 + i as u64, dtype);
            std::fs::write(dir.join("tokenizer_config.json"), TOKENIZER_CONFIG).unwrap();
            if sharded {
                shard(&dir);
            }
            let ran = crate::child::run(&crate::eval_args(&dir, text), root);
            assert!(
                matches!(ran.ending, crate::child::Ending::Exited(0)),
                "undamaged {name}: {}: {}",
                ran.ending,
                ran.stderr
            );
            let v: serde_json::Value = serde_json::from_str(ran.stdout.trim()).unwrap();
            assert!(v["ppl"]["value"].as_f64().unwrap().is_finite(), "{v}");
            Base {
                name,
                dir,
                sharded,
                ppl: v["ppl"].clone(),
            }
        })
        .collect()
}

/// `dir`'s model.safetensors as two shards and their index, as save_pretrained names them.
fn shard(dir: &Path) {
    let single = dir.join("model.safetensors");
    let all = candle_core::safetensors::load(&single, &Device::Cpu).unwrap();
    let names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let mut parts: [HashMap<String, Tensor>; 2] = Default::default();
    let mut map = serde_json::Map::new();
    for (name, t) in all {
        let first = name.starts_with("model.embed") || name.starts_with("model.layers.0.");
        let k = usize::from(!first);
        map.insert(name.clone(), names[k].into());
        parts[k].insert(name, t);
    }
    for (k, part) in parts.iter().enumerate() {
        candle_core::safetensors::save(part, dir.join(names[k])).unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join(INDEX), index.to_string()).unwrap();
    std::fs::remove_file(single).unwrap();
}
