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

/// huggingface_hub's `_is_true`: 1, ON, YES or TRUE in any case.
fn env_true(value: &str) -> bool {
    ["1", "ON", "YES", "TRUE"]
        .iter()
        .any(|t| value.eq_ignore_ascii_case(t))
}

/// The variable that forbids downloads and its value, as huggingface_hub reads them:
/// `HF_HUB_OFFLINE`, or `TRANSFORMERS_OFFLINE` when that is unset or empty.
pub fn hub_offline_var() -> Option<(&'static str, String)> {
    let var = |k: &'static str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| (k, v))
    };
    var("HF_HUB_OFFLINE")
        .or_else(|| var("TRANSFORMERS_OFFLINE"))
        .filter(|(_, v)| env_true(v))
}

pub fn hub_offline() -> bool {
    hub_offline_var().is_some()
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A directory variable with `~` expanded, as huggingface_hub's `os.path.expanduser`.
fn env_dir(key: &str) -> Option<PathBuf> {
    let v = std::env::var_os(key).filter(|v| !v.is_empty())?;
    let s = v.to_string_lossy();
    match (s.strip_prefix('~'), home()) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            Some(home.join(rest.trim_start_matches('/')))
        }
        _ => Some(PathBuf::from(v)),
    }
}

/// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`, as
/// huggingface_hub's constants resolve it: where the `token` file is.
pub fn hf_home() -> PathBuf {
    env_dir("HF_HOME").unwrap_or_else(|| {
        env_dir("XDG_CACHE_HOME")
            .or_else(|| home().map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("huggingface")
    })
}

/// The hub cache: `HF_HUB_CACHE`, else the legacy `HUGGINGFACE_HUB_CACHE`, else
/// `hf_home()/hub`, as huggingface_hub resolves it.
pub fn hub_cache_dir() -> PathBuf {
    env_dir("HF_HUB_CACHE")
        .or_else(|| env_dir("HUGGINGFACE_HUB_CACHE"))
        .unwrap_or_else(|| hf_home().join("hub"))
}

fn from_hub(id: &str) -> Result<ModelFiles> {
    let cache = hub_cache_dir();
    // A complete cached snapshot needs no network at all.
    let why = match from_cache(&cache, id) {
        Ok(files) => return Ok(files),
        Err(why) => why,
    };
    if let Some((var, value)) = hub_offline_var() {
        bail!(
            "model {id} is not a local directory and is not complete in the Hugging Face cache at {}: {why} ({var}={value} forbids downloading)",
            cache.display()
        );
    }
    download(id, &cache)
}

/// The model's files in the snapshot `refs/main` names, or what is wrong with the cache.
fn from_cache(cache: &Path, id: &str) -> std::result::Result<ModelFiles, String> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    if !repo.is_dir() {
        return Err(format!("{} does not exist", repo.display()));
    }
    let main = repo.join("refs").join("main");
    let commit = match std::fs::read_to_string(&main) {
        Ok(c) => c.trim().to_string(),
        Err(e) => return Err(format!("cannot read {} ({e})", main.display())),
    };
    let snap = repo.join("snapshots").join(&commit);
    if commit.is_empty() || !snap.is_dir() {
        return Err(format!(
            "{} names snapshot `{commit}`, which is not in {}",
            main.display(),
            repo.join("snapshots").display()
        ));
    }
    let file = |name: &str, listed: Option<&str>| -> std::result::Result<PathBuf, String> {
        let p = snap.join(name);
        if p.is_file() {
            return Ok(p);
        }
        let what = match listed {
            Some(index) => format!("{name}, listed in {index},"),
            None => name.to_string(),
        };
        Err(match std::fs::read_link(&p) {
            Ok(target) => format!(
                "{} is a broken link: its blob {} is missing",
                p.display(),
                target.display()
            ),
            Err(_) if p.exists() => format!("{} is not a file", p.display()),
            Err(_) => format!("{what} is not in snapshot {}", snap.display()),
        })
    };
    let config = file("config.json", None)?;
    let tokenizer = file("tokenizer.json", None)?;
    let present = |name: &str| std::fs::symlink_metadata(snap.join(name)).is_ok();
    let weights = if present(SINGLE) || !present(INDEX) {
        if !present(SINGLE) {
            return Err(format!(
                "snapshot {} has neither {SINGLE} nor {INDEX}",
                snap.display()
            ));
        }
        vec![file(SINGLE, None)?]
    } else {
        let index = file(INDEX, None)?;
        shard_names(&index)
            .map_err(|e| format!("{e:#}"))?
            .iter()
            .map(|s| file(s, Some(INDEX)))
            .collect::<std::result::Result<Vec<_>, _>>()?
    };
    Ok(files(id, config, tokenizer, weights))
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

fn download(id: &str, cache: &Path) -> Result<ModelFiles> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // The cache and token as huggingface_hub finds them: HF_TOKEN, else the token file
        // of HF_HOME (hf-hub itself reads only HF_HOME, and takes the token from beside the
        // cache).
        let token = std::env::var("HF_TOKEN")
            .ok()
            .or_else(|| std::fs::read_to_string(hf_home().join("token")).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let mut builder =
            hf_hub::api::tokio::ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf()))
                .with_token(token);
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
            builder = builder.with_endpoint(endpoint);
        }
        let api = builder
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
