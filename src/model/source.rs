//! Where a model's files come from: a local directory or the Hugging Face cache (via hf-hub).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The files of one model, all known to exist.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the user named: a directory or a hub id.
    pub id: String,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    /// One file, or the shards listed by `model.safetensors.index.json`, sorted by name.
    pub weights: Vec<PathBuf>,
}

const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

impl ModelFiles {
    /// Resolve `spec`: an existing directory is used as is; `owner/name` is looked up
    /// in the Hugging Face cache first and downloaded only when allowed.
    pub fn resolve(spec: &str) -> Result<Self> {
        if spec == super::bundled::NAME {
            // Named as typed: the cache directory means nothing to a reader of arborist.json.
            let mut f = Self::from_dir(&super::bundled::dir()?)?;
            f.id = spec.to_string();
            return Ok(f);
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::from_dir(path);
        }
        if path.exists() {
            bail!("model {spec} is a file, expected a directory with config.json");
        }
        if looks_like_hub_id(spec) {
            return from_hub(spec).with_context(|| {
                format!("model {spec}: no local directory has that name, so it was taken as a Hugging Face id")
            });
        }
        bail!("model directory {spec} does not exist")
    }

    pub fn from_dir(dir: &Path) -> Result<Self> {
        let need = |name: &str, what: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                bail!("{what} {} is missing", p.display())
            }
        };
        let config = need("config.json", "model config")?;
        let tokenizer = need("tokenizer.json", "tokenizer")?;
        // transformers' order: a single file wins over an index beside it.
        let weights = if dir.join(SINGLE).is_file() {
            vec![dir.join(SINGLE)]
        } else if dir.join(INDEX).is_file() {
            let index = dir.join(INDEX);
            shard_names(&index)?
                .into_iter()
                .map(|s| need(&s, "weight shard"))
                .collect::<Result<Vec<_>>>()?
        } else {
            bail!(
                "weights are missing in {}: expected {SINGLE} or {INDEX}",
                dir.display()
            )
        };
        Ok(ModelFiles {
            id: dir.display().to_string(),
            config,
            tokenizer,
            weights,
        })
    }
}

/// `owner/name`: what `resolve` looks up on the hub when no directory has that name.
pub fn looks_like_hub_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// Distinct shard file names of the index's weight map, sorted.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index)
        .with_context(|| format!("cannot read {}", index.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", index.display()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{} has no `weight_map` object", index.display()))?;
    let mut names: Vec<String> = Vec::new();
    for v in map.values() {
        let s = v.as_str().with_context(|| {
            format!("{}: weight_map values must be file names", index.display())
        })?;
        if s.is_empty() {
            bail!(
                "{}: weight_map names an empty shard file name",
                index.display()
            );
        }
        if !names.iter().any(|n| n == s) {
            names.push(s.to_string());
        }
    }
    if names.is_empty() {
        bail!("{}: weight_map lists no shard", index.display());
    }
    names.sort();
    Ok(names)
}

pub fn hub_offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE").as_deref(),
        Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes") | Ok("ON") | Ok("on")
    )
}

fn from_hub(id: &str) -> Result<ModelFiles> {
    let cache = hf_hub::Cache::from_env();
    let repo = cache.model(id.to_string());
    let cached = |f: &str| repo.get(f);
    // A complete cached snapshot needs no network at all.
    if let (Some(config), Some(tokenizer)) = (cached("config.json"), cached("tokenizer.json")) {
        if let Some(w) = cached(SINGLE) {
            return Ok(files(id, config, tokenizer, vec![w]));
        } else if let Some(index) = cached(INDEX) {
            let shards: Option<Vec<PathBuf>> =
                shard_names(&index)?.iter().map(|s| cached(s)).collect();
            if let Some(weights) = shards {
                return Ok(files(id, config, tokenizer, weights));
            }
        }
    }
    if hub_offline() {
        bail!(
            "model {id} is not a local directory and is not complete in the Hugging Face cache at {} (HF_HUB_OFFLINE=1 forbids downloading)",
            cache.path().display()
        );
    }
    download(id)
}

fn files(id: &str, config: PathBuf, tokenizer: PathBuf, weights: Vec<PathBuf>) -> ModelFiles {
    ModelFiles {
        id: id.to_string(),
        config,
        tokenizer,
        weights,
    }
}

/// Files beside the weights that a model uses when it has them: generation settings (the
/// EOS ids FreebaseQA stops at) and the tokenizer's configuration and chat template. They
/// are fetched with the model and copied into every export.
pub const SIDE_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
];

fn download(id: &str) -> Result<ModelFiles> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let api = hf_hub::api::tokio::ApiBuilder::from_env()
            .build()
            .context("cannot set up the Hugging Face client")?;
        let repo = api.model(id.to_string());
        let get = |f: &'static str| {
            let repo = &repo;
            async move {
                repo.get(f)
                    .await
                    .with_context(|| format!("cannot fetch {f} of {id} from the Hugging Face hub"))
            }
        };
        let config = get("config.json").await?;
        let tokenizer = get("tokenizer.json").await?;
        // Only the side files the repository lists: asking for absent ones would be
        // errors that cannot be told from a failing network.
        match repo.info().await {
            Ok(info) => {
                for f in SIDE_FILES {
                    if info.siblings.iter().any(|s| s.rfilename == *f) {
                        get(f).await?;
                    }
                }
            }
            Err(e) => tracing::warn!(
                "cannot list the files of {id} on the Hugging Face hub ({e}); generation_config.json and the tokenizer's other files are not fetched"
            ),
        }
        let weights = match repo.get(SINGLE).await {
            Ok(single) => vec![single],
            Err(_) => {
                let index = get(INDEX).await?;
                let mut out = Vec::new();
                for s in shard_names(&index)? {
                    out.push(repo.get(&s).await.with_context(|| {
                        format!("cannot fetch {s} of {id} from the Hugging Face hub")
                    })?);
                }
                out
            }
        };
        Ok(files(id, config, tokenizer, weights))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_and_paths_are_told_apart() {
        assert!(looks_like_hub_id("Qwen/Qwen3-4B"));
        assert!(looks_like_hub_id("meta-llama/Llama-3.1-8B"));
        assert!(!looks_like_hub_id("./models/x"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
        assert!(!looks_like_hub_id("plain"));
    }
}
