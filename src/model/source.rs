//! Where a model's files come from: a local directory or the Hugging Face cache (via hf-hub).

use super::blob_reuse;
use super::hub_watch::{self, answered};
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
    /// The hub commit the files are a snapshot of (a model named by hub id).
    pub commit: Option<String>,
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
        if let Some((id, revision)) = split_hub_spec(spec) {
            if let Some(r) = revision.filter(|r| !valid_revision(r)) {
                bail!("model {spec}: `{r}` after the @ is not a branch, tag or commit name (letters, digits, `-_./`, no empty or `..` part)");
            }
            return from_hub(id, revision).with_context(|| {
                format!("model {spec}: no local directory has that name, so it was taken as a Hugging Face id")
            });
        }
        bail!("model directory {spec} does not exist")
    }

    /// A hub id's files when the cache holds them whole; never downloads.
    pub fn from_hub_cache(spec: &str) -> Option<Self> {
        let (id, revision) = split_hub_spec(spec)?;
        if !revision.is_none_or(valid_revision) {
            return None;
        }
        from_cache(&hub_cache_dir(), id, revision).ok()
    }

    pub fn from_dir(dir: &Path) -> Result<Self> {
        let need = |name: &str, what: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            match (p.is_file(), p.exists()) {
                (true, _) => Ok(p),
                (false, true) => bail!("{what} {} is not a file", p.display()),
                (false, false) => bail!("{what} {} is missing", p.display()),
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
        } else if dir.join(SINGLE).exists() {
            // It read "it has safetensors files (model.safetensors) but no index".
            need(SINGLE, "weights file").map(|p| vec![p])?
        } else {
            let names: Vec<String> = std::fs::read_dir(dir)
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default();
            bail!(
                "weights are missing in {}: expected {SINGLE} or {INDEX}{}",
                dir.display(),
                weights_hint(names.iter().map(String::as_str))
            )
        };
        Ok(ModelFiles {
            id: dir.display().to_string(),
            config,
            tokenizer,
            weights,
            commit: None,
        })
    }
}

/// `owner/name` or `owner/name@revision`: what `resolve` looks up on the hub when no
/// directory has that name.
pub fn looks_like_hub_id(spec: &str) -> bool {
    split_hub_spec(spec).is_some()
}

/// The hub id and the revision after its `@` (which `resolve` checks), when `spec` names
/// one.
pub fn split_hub_spec(spec: &str) -> Option<(&str, Option<&str>)> {
    let (id, revision) = match spec.split_once('@') {
        Some((id, r)) => (id, Some(r)),
        None => (spec, None),
    };
    let parts: Vec<&str> = id.split('/').collect();
    let ok = parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    ok.then_some((id, revision))
}

/// A branch, tag, `refs/pr/N` or commit: a path under the cache's `refs/`, so no empty,
/// `.` or `..` part.
fn valid_revision(r: &str) -> bool {
    r.split('/')
        .all(|part| !part.is_empty() && part != "." && part != "..")
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

/// `spec` pinned to `commit`: its hub id at that commit, or `None` for a directory.
pub fn pinned_spec(spec: &str, commit: &str) -> Option<String> {
    let (id, _) = split_hub_spec(spec)?;
    Some(format!("{id}@{commit}"))
}

/// What the files of a model without `model.safetensors` or its index hold instead, as
/// the end of the error that says so.
fn weights_hint<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names
        .iter()
        .any(|n| n.ends_with(".bin") || n.ends_with(".pt"))
    {
        "; it has PyTorch pickle weights (pytorch_model*.bin), which are not read here: save them as safetensors (transformers' save_pretrained writes them by default)".into()
    } else if names.contains(&"consolidated.safetensors") {
        "; consolidated.safetensors is Mistral's own layout, not transformers' (use a repository or revision with transformers weights)".into()
    } else if let Some(shard) = names.iter().find(|n| n.ends_with(".safetensors")) {
        format!("; it has safetensors files ({shard}) but no {INDEX} that lists them")
    } else {
        String::new()
    }
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
        // A shard is read from the model's own directory: `../` or an absolute path
        // reached files elsewhere (until 2026-12-03).
        let escapes = Path::new(s)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)));
        if escapes {
            bail!(
                "{}: weight_map names shard `{s}` outside the model's directory (only names within it are read)",
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

fn from_hub(id: &str, revision: Option<&str>) -> Result<ModelFiles> {
    let cache = hub_cache_dir();
    // A complete cached snapshot needs no network at all.
    let why = match from_cache(&cache, id, revision) {
        Ok(files) => return Ok(files),
        Err(why) => why,
    };
    if let Some((var, value)) = hub_offline_var() {
        bail!(
            "model {id} is not a local directory and is not complete in the Hugging Face cache at {}: {why} ({var}={value} forbids downloading)",
            cache.display()
        );
    }
    download(id, revision, &cache)
}

/// The model's files in the snapshot `refs/<revision>` names (`main` by default) or, as
/// huggingface_hub looks a revision up, the snapshot of that name; or what is wrong with
/// the cache.
fn from_cache(
    cache: &Path,
    id: &str,
    revision: Option<&str>,
) -> std::result::Result<ModelFiles, String> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    if !repo.is_dir() {
        return Err(format!("{} does not exist", repo.display()));
    }
    let rev = revision.unwrap_or("main");
    let named = repo.join("refs").join(rev);
    let snapshots = repo.join("snapshots");
    let commit = match std::fs::read_to_string(&named) {
        Ok(c) => c.trim().to_string(),
        // A commit is a snapshot's name, with no ref.
        Err(_) if revision.is_some() && snapshots.join(rev).is_dir() => rev.to_string(),
        Err(_) if revision.is_some() => {
            return Err(format!(
                "revision `{rev}` is neither a ref in {} nor a snapshot in {}",
                repo.join("refs").display(),
                snapshots.display()
            ))
        }
        Err(e) => return Err(format!("cannot read {} ({e})", named.display())),
    };
    let snap = snapshots.join(&commit);
    if commit.is_empty() || !snap.is_dir() {
        return Err(format!(
            "{} names snapshot `{commit}`, which is not in {}",
            named.display(),
            snapshots.display()
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
    Ok(files(id, revision, config, tokenizer, weights))
}

/// The files of a snapshot: its commit is the name of the directory they are in.
fn files(
    id: &str,
    revision: Option<&str>,
    config: PathBuf,
    tokenizer: PathBuf,
    weights: Vec<PathBuf>,
) -> ModelFiles {
    let commit = config
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    ModelFiles {
        id: match revision {
            Some(r) => format!("{id}@{r}"),
            None => id.to_string(),
        },
        config,
        tokenizer,
        weights,
        commit,
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

/// A file being downloaded: bytes so far and its size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Download {
    pub file: String,
    pub done: u64,
    pub size: u64,
}

type Observer = std::sync::Arc<dyn Fn(&Download) + Send + Sync>;

static OBSERVER: std::sync::Mutex<Option<Observer>> = std::sync::Mutex::new(None);

/// Send the progress of model downloads to `f` from now on, instead of hf-hub's progress
/// bars on stderr, which would draw over a terminal interface.
pub fn observe_downloads(f: impl Fn(&Download) + Send + Sync + 'static) {
    *OBSERVER.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::sync::Arc::new(f));
}

/// hf-hub's progress calls, passed to an observer about every MiB. The chunks of one file
/// download in parallel tasks, each with a clone, so the count is shared.
#[derive(Clone)]
struct Observed {
    observer: Observer,
    state: std::sync::Arc<std::sync::Mutex<(Download, u64)>>,
}

impl Observed {
    fn new(observer: Observer) -> Self {
        Observed {
            observer,
            state: Default::default(),
        }
    }

    fn step(&self, f: impl FnOnce(&mut Download)) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s.0);
        if s.0.done == 0 || s.0.done >= s.0.size || s.0.done >= s.1 + (1 << 20) {
            s.1 = s.0.done;
            (self.observer)(&s.0);
        }
    }
}

impl hf_hub::api::tokio::Progress for Observed {
    async fn init(&mut self, size: usize, filename: &str) {
        self.step(|d| {
            *d = Download {
                file: filename.to_string(),
                done: 0,
                size: size as u64,
            }
        });
    }

    async fn update(&mut self, size: usize) {
        self.step(|d| d.done += size as u64);
    }

    async fn finish(&mut self) {}
}

fn download(id: &str, revision: Option<&str>, cache: &Path) -> Result<ModelFiles> {
    let at = revision.map_or(String::new(), |r| format!(" at revision {r}"));
    let limits = hub_watch::Timeouts::from_env()?;
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
                .with_token(token.clone());
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
            builder = builder.with_endpoint(endpoint);
        }
        let observer = OBSERVER.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let api = builder
            .build()
            .context("cannot set up the Hugging Face client")?;
        let rev = revision.unwrap_or("main");
        let target = hf_hub::Repo::with_revision(
            id.to_string(),
            hf_hub::RepoType::Model,
            rev.to_string(),
        );
        let cached_rev = hf_hub::Cache::new(cache.to_path_buf()).repo(target.clone());
        let context = |f: &str, e: hf_hub::api::tokio::ApiError| {
            let advice = hub_advice(&e, token.is_some()).map_or(String::new(), |a| format!(" ({a})"));
            anyhow::Error::new(e).context(format!(
                "cannot fetch {f} of {id}{at} from the Hugging Face hub{advice}"
            ))
        };
        // The revision's commit now: every file is fetched at it, so that all land in one
        // snapshot even when the branch moves during the download (files were fetched at
        // the branch, and a push between two of them mixed two commits under one).
        let api_rev = api.repo(target);
        let probe = || answered(limits, blob_reuse::metadata(&api, &api_rev, "config.json"));
        let commit = with_retries(probe)
            .await
            .map_err(|e| context("config.json", e))?
            .commit_hash()
            .to_string();
        let pinned =
            hf_hub::Repo::with_revision(id.to_string(), hf_hub::RepoType::Model, commit.clone());
        let cached = hf_hub::Cache::new(cache.to_path_buf()).repo(pinned.clone());
        let repo = api.repo(pinned);
        // A blob the cache holds under another commit is linked, not downloaded; a
        // download's progress goes to the observer when there is one, and its bytes are
        // checked against the hub's size and checksum.
        let get = |f: String| {
            let (api, repo, cached, observer) = (&api, &repo, &cached, &observer);
            with_retries(move || {
                let f = f.clone();
                async move {
                    let meta = answered(limits, blob_reuse::metadata(api, repo, &f)).await?;
                    if let Some(path) = blob_reuse::link_cached_blob(cached, &meta, &f)? {
                        return Ok(path);
                    }
                    let path = match observer {
                        Some(o) => {
                            hub_watch::download(repo, &f, limits, Observed::new(o.clone())).await?
                        }
                        None => {
                            let bar = indicatif::ProgressBar::new(0);
                            hub_watch::download(repo, &f, limits, bar).await?
                        }
                    };
                    blob_reuse::check_download(cached, &meta, &f, &path)?;
                    Ok(path)
                }
            })
        };
        let fetch = |f: String| {
            let (get, context) = (&get, &context);
            async move { get(f.clone()).await.map_err(|e| context(&f, e)) }
        };
        let config = fetch("config.json".into()).await?;
        // A model this decoder cannot run (mixtral, a yarn rope) is refused from its config,
        // before the weights: it was refused after downloading them all (93 GB for Mixtral).
        super::config::ModelConfig::from_file(&config)?;
        let tokenizer = fetch("tokenizer.json".into()).await?;
        // Only the side files the repository lists: asking for absent ones would be
        // errors that cannot be told from a failing network.
        let listed: Option<Vec<String>> =
            match with_retries(|| answered(limits, repo.info())).await {
                Ok(info) => {
                    for s in &info.siblings {
                        if is_side_file(&s.rfilename) {
                            fetch(s.rfilename.clone()).await?;
                        }
                    }
                    Some(info.siblings.into_iter().map(|s| s.rfilename).collect())
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot list the files of {id}{at} on the Hugging Face hub ({e}); generation_config.json and the tokenizer's other files are not fetched"
                    );
                    None
                }
            };
        // The index only when the hub has no single file: any other failure (a dropped
        // connection, a 503) was reported as a 404 on the index.
        let weights = match get(SINGLE.into()).await {
            Ok(single) => vec![single],
            Err(e) if status_of(&e) == Some(404) => {
                // A repository with .bin weights only was a bare 404 on the index.
                if let Some(names) = listed.filter(|n| !n.iter().any(|n| n == INDEX)) {
                    bail!(
                        "{id}{at} on the Hugging Face hub has neither {SINGLE} nor {INDEX}{}",
                        weights_hint(names.iter().map(String::as_str))
                    );
                }
                let index = fetch(INDEX.into()).await?;
                let mut out = Vec::new();
                for s in shard_names(&index)? {
                    out.push(fetch(s).await?);
                }
                out
            }
            Err(e) => return Err(context(SINGLE, e)),
        };
        // The revision names the commit its files came from; hf-hub wrote a ref named by
        // the commit itself, which huggingface_hub does not.
        cached_rev
            .create_ref(&commit)
            .with_context(|| format!("cannot write the ref of {id}{at} in {}", cache.display()))?;
        if rev != commit {
            // blobs/<x> sits beside refs/ in the repository's directory.
            let blobs = cached.blob_path("x");
            if let Some(dir) = blobs.parent().and_then(Path::parent) {
                let _ = std::fs::remove_file(dir.join("refs").join(&commit));
            }
        }
        Ok(files(id, revision, config, tokenizer, weights))
    })
}

/// The HTTP request behind a failed hub call, through hf-hub's retry wrapper.
fn request_error(e: &hf_hub::api::tokio::ApiError) -> Option<&reqwest::Error> {
    use hf_hub::api::tokio::ApiError;
    match e {
        ApiError::RequestError(r) => Some(r),
        ApiError::TooManyRetries(inner) => request_error(inner),
        _ => None,
    }
}

/// The HTTP status of a failed hub request, if it got one.
fn status_of(e: &hf_hub::api::tokio::ApiError) -> Option<u16> {
    request_error(e)?.status().map(|s| s.as_u16())
}

/// Worth asking again: the hub was busy or failing (429, 5xx), the body stopped coming, or
/// it answered or sent nothing for too long.
fn transient(e: &hf_hub::api::tokio::ApiError) -> bool {
    hub_watch::is_timeout(e)
        || request_error(e).is_some_and(|r| {
            r.is_body()
                || r.is_decode()
                || r.status()
                    .is_some_and(|s| s.as_u16() == 429 || s.is_server_error())
        })
}

/// `f` again after a transient failure (three more tries, 1, 2 and 4 s apart), and while
/// another process holds the file's download lock (up to 30 minutes: its blob is then
/// linked, not downloaded twice). hf-hub retries nothing, and gave up on a lock after 5 s.
async fn with_retries<T, F, Fut>(mut f: F) -> Result<T, hf_hub::api::tokio::ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, hf_hub::api::tokio::ApiError>>,
{
    use hf_hub::api::tokio::ApiError;
    let (mut tries, mut waited) = (0u32, std::time::Duration::ZERO);
    loop {
        let pause = match f().await {
            Err(e) if tries < 3 && transient(&e) => {
                tracing::warn!("the hub failed ({e}); asking again");
                tries += 1;
                std::time::Duration::from_secs(1 << (tries - 1))
            }
            Err(ApiError::LockAcquisition(p)) if waited.as_secs() < 1800 => {
                if waited.is_zero() {
                    tracing::warn!(
                        "another process is downloading {} (its lock is held); waiting for it",
                        p.display()
                    );
                }
                std::time::Duration::from_secs(2)
            }
            r => return r,
        };
        waited += pause;
        tokio::time::sleep(pause).await;
    }
}

/// What to do about a failed hub request, when its cause says: the network, a gated or
/// private repository, a token without access, a name or revision the hub does not have.
fn hub_advice(e: &hf_hub::api::tokio::ApiError, token: bool) -> Option<&'static str> {
    let r = request_error(e)?;
    if r.is_connect() || r.is_timeout() {
        return Some("the hub cannot be reached: check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use only the cache");
    }
    Some(match (r.status()?.as_u16(), token) {
        (401, false) => "the repository is gated or private, or does not exist: set HF_TOKEN to a token with access to it",
        (401, true) => "the hub refused the token, or the repository does not exist: check HF_TOKEN (or $HF_HOME/token) and the name",
        (403, _) => "the token has no access to this repository: a gated model needs its terms accepted on its page on the hub",
        (404, _) => "the repository has no such file at that revision, or no such revision",
        _ => return None,
    })
}

/// A file of the repository fetched with the model: one of `SIDE_FILES`, or a chat
/// template under `additional_chat_templates/`.
fn is_side_file(name: &str) -> bool {
    SIDE_FILES.contains(&name)
        || name
            .strip_prefix("additional_chat_templates/")
            .is_some_and(|t| !t.is_empty() && !t.contains('/'))
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

    #[test]
    fn download_progress_reaches_the_observer_about_every_mib_and_at_the_end() {
        use hf_hub::api::tokio::Progress;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&seen);
        let mut p = Observed::new(std::sync::Arc::new(move |d: &Download| {
            log.lock().unwrap().push((d.file.clone(), d.done, d.size));
        }));
        let size = 3 * (1 << 20) + 5;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            p.init(size, "model.safetensors").await;
            // Chunks in parallel tasks share the count through their clones.
            let mut q = p.clone();
            for k in 0..size.div_ceil(1 << 16) {
                let n = (1 << 16).min(size - k * (1 << 16));
                if k % 2 == 0 {
                    p.update(n).await
                } else {
                    q.update(n).await
                }
            }
        });
        let done: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.1).collect();
        let mib = 1 << 20;
        assert_eq!(done, vec![0, mib, 2 * mib, 3 * mib, 3 * mib + 5]);
        assert!(seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.0 == "model.safetensors" && s.2 == 3 * mib + 5));
    }

    #[test]
    fn a_revision_follows_the_id_after_an_at() {
        assert_eq!(
            split_hub_spec("Qwen/Qwen3-4B"),
            Some(("Qwen/Qwen3-4B", None))
        );
        assert_eq!(
            split_hub_spec("acme/m@refs/pr/1"),
            Some(("acme/m", Some("refs/pr/1")))
        );
        assert_eq!(split_hub_spec("./dir@v1"), None);
        for ok in [
            "main",
            "v1.0",
            "refs/pr/1",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(valid_revision(ok), "{ok}");
        }
        for bad in ["", "..", "a/../b", "/main", "main/", "a//b", "v 1", "a@b"] {
            assert!(!valid_revision(bad), "{bad}");
        }
        assert_eq!(
            pinned_spec("acme/m@v1", "abc").as_deref(),
            Some("acme/m@abc")
        );
        assert_eq!(pinned_spec("models/m", "abc"), Some("models/m@abc".into()));
        assert_eq!(pinned_spec("./models/m", "abc"), None);
    }
}
