//! arborist.json, written beside a pruned model by `prune --out` and `export`. Both start
//! from the same fields in the same shapes, so one reader handles either directory; each
//! command then adds what only it knows (the method's options, or the session's place).

use serde_json::{json, Map, Value};

use crate::eval::ppl::Perplexity;
use crate::model::{Decoder, ModelFiles};

/// The shared fields: provenance, the weights' dtype and device, the global and per-layer
/// sparsity (every linear layer, in the model's order, as its mask stands) and, when the
/// command measured it, the perplexity with its protocol.
pub fn common(
    files: &ModelFiles,
    decoder: &Decoder,
    device: &str,
    method: &impl serde::Serialize,
    global_sparsity: f64,
    ppl: Option<&Perplexity>,
) -> Map<String, Value> {
    let layers: Vec<Value> = super::oneshot::layer_sparsities(decoder)
        .into_iter()
        .map(|(name, sparsity)| json!({ "name": name, "sparsity": sparsity }))
        .collect();
    let ppl = ppl.map(|p| {
        json!({
            "value": p.value,
            "dataset": absolute(&p.dataset),
            "seqlen": p.seqlen,
            "windows": p.windows,
            "tokens": p.tokens,
            "dtype": p.dtype,
        })
    });
    [
        ("arborist_version", json!(env!("CARGO_PKG_VERSION"))),
        ("source_model", json!(absolute(&files.id))),
        ("source_commit", json!(files.commit)),
        ("device", json!(device)),
        (
            "dtype",
            json!(crate::model::device::dtype_name(decoder.dtype)),
        ),
        ("method", json!(method)),
        ("global_sparsity", json!(global_sparsity)),
        ("layers", json!(layers)),
        ("ppl", json!(ppl)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A path that names a file or directory here, made absolute: the directory is shared
/// and read elsewhere, where a path relative to where the command ran means nothing (a
/// hub id or a dataset's name stays as it is).
pub fn absolute(name: &str) -> String {
    match std::fs::canonicalize(name) {
        Ok(p) if !name.is_empty() => p.display().to_string(),
        _ => name.to_string(),
    }
}

/// `common` with the command's own fields after it.
pub fn with<const N: usize>(mut common: Map<String, Value>, extra: [(&str, Value); N]) -> Value {
    common.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    Value::Object(common)
}

#[cfg(test)]
mod tests {
    use super::absolute;

    #[test]
    fn local_paths_become_absolute_and_names_stay() {
        // cargo runs unit tests in the crate's root.
        let here = absolute("Cargo.toml");
        assert!(std::path::Path::new(&here).is_absolute() && here.ends_with("/Cargo.toml"));
        assert_eq!(absolute("Qwen/Qwen3-4B"), "Qwen/Qwen3-4B");
        assert_eq!(absolute("synthetic"), "synthetic");
        assert_eq!(absolute(""), "");
    }
}
