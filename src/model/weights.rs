//! Reading safetensors weights (single file or shards) with shape checks against the config.

use anyhow::{bail, Context, Result};
use candle_core::{safetensors::MmapedSafetensors, DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::config::ModelConfig;
use super::linear::LinearKind;

/// Memory-mapped weight files with a name → shard routing.
pub struct WeightFiles {
    files: Vec<PathBuf>,
    st: MmapedSafetensors,
    owner: HashMap<String, PathBuf>,
}

/// The first tensor whose header entry does not fit its data (a dtype or shape that needs
/// other than its `data_offsets` span, or a span past the end), in words.
fn header_problem(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut head = [0u8; 8];
    f.read_exact(&mut head).ok()?;
    let n = u64::from_le_bytes(head);
    // Only the header is read (a shard is gigabytes); safetensors caps it at 100 MB.
    let data = len.checked_sub(8 + n).filter(|_| n <= 100_000_000)?;
    let mut text = vec![0u8; n as usize];
    f.read_exact(&mut text).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&text).ok()?;
    for (name, t) in header
        .as_object()?
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
    {
        let dtype = t["dtype"].as_str().unwrap_or("?");
        let size = match dtype {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
            _ => return Some(format!("tensor {name}: unknown dtype `{dtype}`")),
        };
        let dims = t["shape"].as_array()?;
        let shape: Vec<u64> = dims.iter().filter_map(|d| d.as_u64()).collect();
        if shape.len() != dims.len() {
            let shape = serde_json::Value::Array(dims.clone());
            return Some(format!(
                "tensor {name}: shape {shape} is not a list of whole numbers"
            ));
        }
        let offsets: Vec<u64> = t["data_offsets"]
            .as_array()?
            .iter()
            .filter_map(|d| d.as_u64())
            .collect();
        let [begin, end] = offsets[..] else {
            return Some(format!("tensor {name}: data_offsets is not [begin, end]"));
        };
        // A hand-made or damaged header can hold any numbers: the product may not fit.
        let Some(need) = shape.iter().try_fold(size, |n: u64, &d| n.checked_mul(d)) else {
            return Some(format!(
                "tensor {name}: shape {shape:?} is too large (over 2^64 bytes)"
            ));
        };
        if end < begin || end.saturating_sub(begin) != need {
            return Some(format!(
                "tensor {name}: {dtype} {shape:?} needs {need} bytes, data_offsets [{begin}, {end}] give {}",
                end.saturating_sub(begin)
            ));
        }
        if end > data {
            return Some(format!(
                "tensor {name}: data_offsets [{begin}, {end}] run past the {data} bytes of data"
            ));
        }
    }
    None
}

impl WeightFiles {
    pub fn open(files: &[PathBuf]) -> Result<Self> {
        let mut owner = HashMap::new();
        for f in files {
            // Map each file on its own first, so a corrupt or truncated shard is named.
            // SAFETY: read-only mapping; like every mmap reader we assume the file is not
            // modified while Arborist runs.
            let st = unsafe { MmapedSafetensors::new(f) }.map_err(|e| {
                // The crate's message names neither the tensor nor what is wrong with it.
                // Its `path: "FILE"` repeats what the line starts with.
                let e = match e {
                    candle_core::Error::WithPath { inner, .. } => *inner,
                    e => e,
                };
                let why = header_problem(f).unwrap_or_else(|| e.to_string());
                anyhow::anyhow!("{}: not a valid safetensors file ({why})", f.display())
            })?;
            for (name, _) in st.tensors() {
                if let Some(first) = owner.insert(name.clone(), f.clone()) {
                    bail!(
                        "tensor `{name}` is in both {} and {}: which one is meant is ambiguous",
                        first.display(),
                        f.display()
                    );
                }
            }
        }
        // SAFETY: as above.
        let st = unsafe { MmapedSafetensors::multi(files) }
            .with_context(|| format!("cannot map weights {}", files[0].display()))?;
        Ok(WeightFiles {
            files: files.to_vec(),
            st,
            owner,
        })
    }

    /// Tensors of the files that a model of `cfg` does not use, sorted (rotary frequency
    /// buffers of old checkpoints and a tied head's copy excepted, as transformers ignores
    /// them too): a config that names fewer blocks than the weights hold, or a stray tensor.
    pub fn unused(&self, cfg: &ModelConfig) -> Vec<String> {
        let used: std::collections::HashSet<String> =
            expected_tensors(cfg).into_iter().map(|(n, _)| n).collect();
        let mut out: Vec<String> = self
            .owner
            .keys()
            .filter(|n| !used.contains(*n))
            .filter(|n| !n.ends_with("rotary_emb.inv_freq"))
            .filter(|n| !(cfg.tie_word_embeddings && *n == "lm_head.weight"))
            .cloned()
            .collect();
        out.sort();
        out
    }

    pub fn contains(&self, name: &str) -> bool {
        self.owner.contains_key(name)
    }

    /// The dtype tensor `name` is stored in, when it is one the models load.
    pub fn stored_dtype(&self, name: &str) -> Option<DType> {
        use safetensors::Dtype as S;
        match self.st.get(name).ok()?.dtype() {
            S::F32 => Some(DType::F32),
            S::F16 => Some(DType::F16),
            S::BF16 => Some(DType::BF16),
            _ => None,
        }
    }

    fn where_(&self, name: &str) -> String {
        match self.owner.get(name) {
            Some(p) => p.display().to_string(),
            None => self.files[0].display().to_string(),
        }
    }

    /// Load one tensor, check its shape, convert to `dtype` on `device`.
    pub fn load(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        self.check(name, shape)?;
        let t = self
            .st
            .load(name, &Device::Cpu)
            .with_context(|| format!("tensor `{name}` in {}", self.where_(name)))?;
        self.release(name);
        Ok(t.to_dtype(dtype)?.to_device(device)?)
    }

    /// Unmaps the pages of tensor `name` once it is copied: they stay in the page cache,
    /// but mapped they count in the resident set, so loading peaked at the weights twice
    /// over (a Qwen3-4B-shaped model of 8 GB in bf16: 15.7 GB).
    fn release(&self, name: &str) {
        let Ok(view) = self.st.get(name) else {
            return;
        };
        let data = view.data();
        if data.is_empty() {
            return;
        }
        release_pages(data);
    }

    /// "tensor `name` is missing from the weights", with the file or the shards' folder,
    /// and the name it is stored under when only its prefix differs.
    fn missing(&self, name: &str) -> String {
        let where_ = match self.files.as_slice() {
            [one] => format!(" ({})", one.display()),
            many => format!(
                ": none of the {} shards in {} holds it",
                many.len(),
                many[0].parent().unwrap_or(Path::new(".")).display()
            ),
        };
        format!(
            "tensor `{name}` is missing from the weights{where_}{}",
            self.prefix_hint(name)
        )
    }

    /// A base model saved without its head (`layers.0…`), or a model nested in another
    /// (`language_model.model.layers.0…`), stores the tensor under another prefix.
    fn prefix_hint(&self, name: &str) -> String {
        let tail = name.strip_prefix("model.").unwrap_or(name);
        let mut found: Vec<&String> = self
            .owner
            .keys()
            .filter(|k| k.as_str() != name && k.ends_with(tail))
            .filter(|k| k.len() == tail.len() || k[..k.len() - tail.len()].ends_with('.'))
            .collect();
        found.sort();
        match found.first() {
            Some(other) => format!(
                "; it is stored as `{other}`: these weights are not laid out as transformers' *ForCausalLM (`model.…` and `lm_head.weight`)"
            ),
            None => String::new(),
        }
    }

    /// That tensor `name` exists with `shape` and a supported dtype, reading only the header.
    pub fn check(&self, name: &str, shape: &[usize]) -> Result<()> {
        if !self.contains(name) {
            bail!("{}", self.missing(name));
        }
        let view = self
            .st
            .get(name)
            .with_context(|| format!("tensor `{name}`"))?;
        if view.shape() != shape {
            bail!(
                "tensor `{name}` in {} has shape {:?} but the config implies {:?}",
                self.where_(name),
                view.shape(),
                shape
            );
        }
        if self.stored_dtype(name).is_none() {
            bail!(
                "tensor `{name}` in {} is stored as {:?}; only f32, f16 and bf16 are supported",
                self.where_(name),
                view.dtype()
            );
        }
        Ok(())
    }
}

/// Drops the whole pages under `data`, part of a read-only file mapping, from this
/// process (rounded out: a neighbour's pages come back from the file when it is read).
#[cfg(unix)]
fn release_pages(data: &[u8]) {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => return,
    };
    let start = data.as_ptr() as usize / page * page;
    let end = (data.as_ptr() as usize + data.len()).div_ceil(page) * page;
    // SAFETY: the pages belong to a read-only mapping of a file, which begins on a page
    // and covers the file's last page whole; MADV_DONTNEED only unmaps them, and the next
    // read faults them back in from the file, unchanged. A failure only leaves them mapped.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

#[cfg(not(unix))]
fn release_pages(_data: &[u8]) {}

/// Re-reads unmasked linear weights from the model's files, mapping only the shard that
/// holds the tensor and only for the read (a mapping kept open would count the whole file
/// in the resident set once touched).
pub struct FileSource {
    /// Each tensor's shard and that shard's size and modification time at load.
    owner: HashMap<String, PathBuf>,
    stamps: HashMap<PathBuf, Option<(u64, std::time::SystemTime)>>,
    dtype: DType,
    device: Device,
}

fn stamp(p: &std::path::Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.len(), m.modified().ok()?))
}

impl FileSource {
    pub fn new(files: &WeightFiles, dtype: DType, device: &Device) -> Self {
        FileSource {
            owner: files.owner.clone(),
            stamps: files.files.iter().map(|f| (f.clone(), stamp(f))).collect(),
            dtype,
            device: device.clone(),
        }
    }
}

impl super::linear::DenseSource for FileSource {
    fn load(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = format!("{name}.weight");
        let Some(file) = self.owner.get(&tensor) else {
            bail!("tensor `{tensor}` is missing from the weights; cannot read `{name}`");
        };
        if stamp(file) != self.stamps[file] {
            bail!(
                "{} changed on disk since the model was loaded; cannot restore `{name}`",
                file.display()
            );
        }
        WeightFiles::open(std::slice::from_ref(file))?.load(
            &tensor,
            shape,
            self.dtype,
            &self.device,
        )
    }
}

/// Expected tensor names and shapes of a model, in load order.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (h, v) = (cfg.hidden_size, cfg.vocab_size);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
    for b in 0..cfg.num_layers {
        let p = format!("model.layers.{b}");
        let mut push = |n: &str, s: Vec<usize>| out.push((format!("{p}.{n}"), s));
        push("input_layernorm.weight", vec![h]);
        push("post_attention_layernorm.weight", vec![h]);
        for kind in LinearKind::ALL {
            let shape = kind.shape(cfg);
            push(&format!("{}.weight", kind.path()), shape.to_vec());
            if kind.has_bias(cfg) {
                push(&format!("{}.bias", kind.path()), vec![shape[0]]);
            }
        }
        if cfg.qk_norm {
            push("self_attn.q_norm.weight", vec![cfg.head_dim]);
            push("self_attn.k_norm.weight", vec![cfg.head_dim]);
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, h]));
    }
    out
}

const EMBED: &str = "model.embed_tokens.weight";
const HEAD: &str = "lm_head.weight";

/// The tensor of the files the embedding is read from: `model.embed_tokens.weight`, or,
/// when config.json ties the head and the files hold only `lm_head.weight`, that head.
/// transformers' tying at load is symmetric: with the embedding missing and the head
/// there, it ties both to the stored head, silently (5.24, `tie_weights`).
pub fn embed_source(files: &WeightFiles, cfg: &ModelConfig) -> &'static str {
    if cfg.tie_word_embeddings && !files.contains(EMBED) && files.contains(HEAD) {
        HEAD
    } else {
        EMBED
    }
}

/// transformers' tying at load: with `tie_word_embeddings` true and an `lm_head.weight` in
/// the files whose values (in the dtype the model runs in) differ from the embedding, it
/// warns and does not tie. Then this returns the stored head, to be used untied; an
/// identical copy (or none) gives `None`, and the head stays the embedding, as it does
/// when the head is all the files hold (the embedding was read from it).
pub fn stored_head_differs(
    files: &WeightFiles,
    cfg: &ModelConfig,
    embed: &Tensor,
    dtype: DType,
    device: &Device,
) -> Result<Option<Tensor>> {
    if !cfg.tie_word_embeddings || !files.contains(HEAD) || embed_source(files, cfg) == HEAD {
        return Ok(None);
    }
    // A head of another shape differs too; loading it then names the shape.
    let head = files.load(HEAD, &[cfg.vocab_size, cfg.hidden_size], dtype, device)?;
    // torch.equal: any NaN makes the two differ.
    let differing = head.ne(embed)?.to_dtype(DType::F32)?.sum_all()?;
    Ok((differing.to_scalar::<f32>()? > 0.0).then_some(head))
}

/// Load every tensor the config implies; with `skip_linears` the linear weights are only
/// checked (they are streamed from the files).
pub fn load_all(
    files: &WeightFiles,
    cfg: &ModelConfig,
    dtype: DType,
    device: &Device,
    skip_linears: bool,
) -> Result<HashMap<String, Tensor>> {
    let linear = |n: &str| {
        LinearKind::ALL
            .iter()
            .any(|k| n.ends_with(&format!("{}.weight", k.path())))
    };
    let mut map = HashMap::new();
    // A shape or a missing tensor may come from a default the config left to its class.
    let note = |e: anyhow::Error| {
        let said = format!("{e:#}");
        let shape = said.contains("but the config implies");
        let tensor = said.split('`').nth(1).unwrap_or("");
        let from = if shape {
            cfg.shape_note(tensor)
        } else {
            String::new()
        };
        match shape || said.contains("is missing from") {
            true => anyhow::anyhow!("{said}{from}{}", cfg.defaulted_note()),
            false => e,
        }
    };
    // Every header first, so that a tensor missing or misshapen in the last shard is said
    // at once, not after gigabytes of the others are read (39 s into a 4B model).
    let mut load = Vec::new();
    for (name, shape) in expected_tensors(cfg) {
        if skip_linears && linear(&name) {
            files.check(&name, &shape).map_err(note)?;
            continue;
        }
        let stored = if name == EMBED {
            embed_source(files, cfg)
        } else {
            &name
        };
        if stored == EMBED && !files.contains(EMBED) {
            // Said of the head too: tied, it is missing as well (else `embed_source` took
            // it); untied, it is there but may not stand in.
            let head = match cfg.tie_word_embeddings {
                true => format!(", and so is `{HEAD}`, which tie_word_embeddings true would use in its place"),
                false if files.contains(HEAD) => format!(", though the files hold `{HEAD}`, which tie_word_embeddings true would use in its place: config.json sets it false"),
                false => String::new(),
            };
            bail!("{}{head}", files.missing(EMBED));
        }
        files.check(stored, &shape).map_err(note)?;
        let stored = stored.to_string();
        load.push((name, stored, shape));
    }
    for (name, stored, shape) in load {
        let t = files.load(&stored, &shape, dtype, device).map_err(note)?;
        map.insert(name, t);
    }
    Ok(map)
}
