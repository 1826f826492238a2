//! Damage to config.json: a field deleted or given an odd value, head counts that do not
//! divide, an unknown model_type, and the file itself cut or made invalid.

use crate::damage::*;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use std::path::Path;

/// Paths of every key, nested objects' keys too (`rope_scaling`, `rope_scaling.factor`).
fn key_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, x) in m {
            prefix.push(k.clone());
            out.push(prefix.clone());
            key_paths(x, prefix, out);
            prefix.pop();
        }
    }
}

fn parent_mut<'a>(v: &'a mut Value, keys: &[String]) -> &'a mut serde_json::Map<String, Value> {
    let mut at = v;
    for k in &keys[..keys.len() - 1] {
        at = &mut at[k.as_str()];
    }
    at.as_object_mut().unwrap()
}

/// A value of another type or an odd size in place of `cur`: what a hand edit or a broken
/// converter writes.
fn odd_value(rng: &mut StdRng, cur: &Value) -> Value {
    let mut pool = vec![
        Value::Null,
        json!(true),
        json!(""),
        json!("x"),
        json!([]),
        json!({}),
        json!(0),
        json!(-1),
        json!(0.5),
        json!(1e12),
        json!(1u64 << 40),
        json!(u64::MAX),
        json!(1.8446744073709552e19),
        json!(1e308),
        json!(1e-300),
        json!(-0.0),
    ];
    if let Some(u) = cur.as_u64() {
        pool.extend([
            json!(u + 1),
            json!(u.saturating_sub(1)),
            json!(u * 2),
            json!(u / 2),
            json!(u as f64 + 0.5),
            json!(u.to_string()),
            json!(-(u as i64)),
        ]);
    } else if let Some(x) = cur.as_f64() {
        pool.extend([json!(-x), json!(x * 1e300), json!(x.to_string())]);
    }
    if let Some(s) = cur.as_str() {
        pool.extend([
            json!(s.to_uppercase()),
            json!(format!("{s} ")),
            json!(s.len()),
        ]);
    }
    if let Some(b) = cur.as_bool() {
        pool.extend([json!(!b), json!(b.to_string()), json!(u8::from(b))]);
    }
    loop {
        let v = pick(rng, &pool);
        if &v != cur {
            return v;
        }
    }
}

pub fn damage(rng: &mut StdRng, dir: &Path) -> Damage {
    let path = dir.join("config.json");
    let mut v = read_json(&path);
    let mut paths = Vec::new();
    key_paths(&v, &mut Vec::new(), &mut paths);
    let whole = || Blame::Config {
        keys: vec![],
        value: None,
    };
    let field = |keys: &[String], value: Option<&Value>| Blame::Config {
        keys: keys.to_vec(),
        value: value.and_then(|v| v.as_str()).map(String::from),
    };
    let set = |v: &mut Value, keys: &[String], new: Value| {
        parent_mut(v, keys).insert(keys.last().unwrap().clone(), new);
    };
    let key = |s: &str| vec![s.to_string()];
    match rng.gen_range(0..12) {
        0 => Damage::new(truncate(rng, &path, None), Expect::MustFail, whole()),
        1 => {
            let len = std::fs::read(&path).unwrap().len();
            Damage::new(flip(rng, &path, 0..len, 1), Expect::MayRun, whole())
        }
        2 => Damage::new(invalid_utf8(rng, &path), Expect::MustFail, whole()),
        3 => {
            let keys = pick(rng, &paths);
            parent_mut(&mut v, &keys).remove(keys.last().unwrap());
            write_json(&path, &v);
            let what = format!("config.json: `{}` deleted", keys.join("."));
            Damage::new(what, Expect::MayRun, field(&keys, None))
        }
        4..=6 => {
            let keys = pick(rng, &paths);
            let mut at = &v;
            for k in &keys {
                at = &at[k.as_str()];
            }
            let new = odd_value(rng, at);
            let what = format!("config.json: `{}` set to {new} (was {at})", keys.join("."));
            let blame = field(&keys, Some(&new));
            set(&mut v, &keys, new);
            write_json(&path, &v);
            Damage::new(what, Expect::MayRun, blame)
        }
        7 => {
            // Shapes the decoder cannot build: each refused by the config or the weights.
            let (keys, new) = pick(
                rng,
                &[
                    (key("num_key_value_heads"), json!(3)),
                    (key("num_attention_heads"), json!(3)),
                    (key("head_dim"), json!(7)),
                    (key("hidden_size"), json!(30)),
                    (key("rope_theta"), json!(0.0)),
                    (key("rope_theta"), json!(-10000.0)),
                    (key("rms_norm_eps"), json!(0)),
                    (key("num_hidden_layers"), json!(0)),
                    (key("max_position_embeddings"), json!(0)),
                ],
            );
            let what = format!("config.json: `{}` set to {new}", keys[0]);
            set(&mut v, &keys, new);
            write_json(&path, &v);
            Damage::new(what, Expect::MustFail, field(&keys, None))
        }
        8 if rng.gen_bool(0.5) => {
            // Positive and finite, so accepted; the numbers they give must be too.
            let (keys, new) = pick(
                rng,
                &[
                    (key("rope_theta"), json!(1e-300)),
                    (key("rope_theta"), json!(1e300)),
                    (key("rms_norm_eps"), json!(1e-300)),
                    (key("rms_norm_eps"), json!(1e300)),
                    (
                        key("rope_scaling"),
                        json!({"rope_type": "linear", "factor": 1e-300}),
                    ),
                    (
                        key("rope_scaling"),
                        json!({"rope_type": "linear", "factor": 1e300}),
                    ),
                    (key("max_position_embeddings"), json!(1u64 << 40)),
                    (key("num_hidden_layers"), json!(65536)),
                ],
            );
            let what = format!("config.json: `{}` set to {new}", keys[0]);
            set(&mut v, &keys, new);
            write_json(&path, &v);
            Damage::new(what, Expect::MayRun, field(&keys, None))
        }
        8 => {
            let new = pick(
                rng,
                &[
                    "gpt2",
                    "Qwen3",
                    "qwen3 ",
                    "",
                    "llama4",
                    "mixtral",
                    "qwen3_moe",
                    "ṕ",
                ],
            );
            let what = format!("config.json: `model_type` set to {new:?}");
            set(&mut v, &key("model_type"), json!(new));
            write_json(&path, &v);
            Damage::new(
                what,
                Expect::MustFail,
                field(&key("model_type"), Some(&json!(new))),
            )
        }
        9 => {
            // Another supported architecture: runs, or is refused by a tensor it lacks.
            let new = pick(rng, &["llama", "mistral", "qwen2", "qwen3"]);
            let what = format!("config.json: `model_type` set to {new:?}");
            set(&mut v, &key("model_type"), json!(new));
            write_json(&path, &v);
            Damage::new(
                what,
                Expect::MayRun,
                field(&key("model_type"), Some(&json!(new))),
            )
        }
        10 => {
            let text = std::fs::read_to_string(&path).unwrap();
            let replaced: Vec<String> = [
                "[]".to_string(),
                "null".to_string(),
                "\"config\"".to_string(),
                "42".to_string(),
                text.replacen('}', ",}", 1),
                text.replacen("10000.0", "NaN", 1),
                text.replacen("260", "Infinity", 1),
                format!("// saved by hand\n{text}"),
                format!("{text}{text}"),
            ]
            .into_iter()
            .filter(|t| *t != text)
            .collect();
            let new = pick(rng, &replaced);
            std::fs::write(&path, &new).unwrap();
            let what = format!("config.json: replaced by {new:?}");
            Damage::new(what, Expect::MustFail, whole())
        }
        _ => {
            // Fields the decoder does not read.
            let (k, new) = pick(
                rng,
                &[
                    ("torch_dtype", json!("int4")),
                    ("torch_dtype", json!(7)),
                    ("architectures", json!(["GPT2LMHeadModel"])),
                    ("_name_or_path", json!("/nonexistent")),
                    ("transformers_version", json!(null)),
                    ("quantization_config", json!(null)),
                    ("bos_token_id", json!(1u64 << 40)),
                    ("use_cache", json!("no")),
                ],
            );
            let what = format!("config.json: `{k}` set to {new}");
            set(&mut v, &key(k), new);
            write_json(&path, &v);
            Damage::new(what, Expect::MustRunSame, Blame::Nothing)
        }
    }
}
