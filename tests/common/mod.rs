//! Helpers that build small model directories on disk, in real Hugging Face formats.
#![allow(dead_code)]

use arborist::model::{random::random_tensors, ModelConfig};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const TINY_QWEN3: &str = r#"{"model_type":"qwen3","vocab_size":260,"hidden_size":32,
  "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
  "head_dim":8,"max_position_embeddings":256,"tie_word_embeddings":true,"rope_theta":10000.0,
  "rms_norm_eps":1e-6}"#;

/// A byte-level BPE tokenizer.json with the 256 byte tokens and no merges.
pub fn write_byte_tokenizer(path: &Path) {
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort();
    let vocab: serde_json::Map<String, serde_json::Value> = alphabet
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), serde_json::Value::from(i)))
        .collect();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": true});
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
    });
    std::fs::write(path, serde_json::to_string(&tok).unwrap()).unwrap();
    tokenizers::Tokenizer::from_file(path).expect("written tokenizer loads");
}

/// A complete model directory with random weights stored as `dtype`.
pub fn write_model_dir(dir: &Path, config_json: &str, seed: u64, dtype: DType) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config_json).unwrap();
    write_byte_tokenizer(&dir.join("tokenizer.json"));
    let cfg = ModelConfig::from_json(config_json).unwrap();
    let t = random_tensors(&cfg, seed, 0.2, dtype, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
}

/// Some English text of about `n` bytes.
pub fn text(n: usize) -> String {
    let words = [
        "the", "river", "keeps", "its", "stones", "while", "a", "heron", "waits", "and", "watches",
        "light", "fall", "on", "water", "near", "old", "mill",
    ];
    let mut s = String::new();
    let mut i = 7usize;
    while s.len() < n {
        i = (i * 31 + 17) % 1009;
        s.push_str(words[i % words.len()]);
        s.push(if i.is_multiple_of(11) { '.' } else { ' ' });
        if i.is_multiple_of(11) {
            s.push(' ');
        }
    }
    s
}

pub fn arborist(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arborist"));
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn p(path: &Path) -> String {
    path.display().to_string()
}

pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

// ---- Session helpers (tests/session_cli.rs, tests/session_agents/) ----

/// A finished (or killed) child process.
pub struct Ran {
    /// None when the child was killed at the deadline.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub seconds: f64,
}

impl Ran {
    /// Lines of stderr that start with `error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }
}

/// A path under tests/fixtures/hf (the Hugging Face reference checkpoints), as a string.
pub fn fx(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(rel)
        .display()
        .to_string()
}

/// A small session protocol: one iteration takes a fraction of a second on the bundled model.
pub const SMALL: [&str; 8] = [
    "--seqlen",
    "64",
    "--calib-windows",
    "4",
    "--eval-windows",
    "4",
    "--grad-windows",
    "1",
];
/// Deadline of one child run in the session tests.
pub const LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The child exited 0 in time without a panic.
pub fn ok(r: &Ran) {
    assert!(
        !r.timed_out,
        "timed out after {:.0} s: {}",
        r.seconds, r.stderr
    );
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

/// As `ok`, and the last stdout line is exactly one JSON document.
pub fn ok_json(r: &Ran) -> serde_json::Value {
    ok(r);
    json_exact(r.stdout.lines().last().unwrap_or(""))
}

/// Run the binary in `cwd` with a deadline: a hung child is killed and reported, never
/// waited on.
pub fn arborist_timed(
    args: &[&str],
    envs: &[(&str, &str)],
    cwd: &Path,
    limit: std::time::Duration,
) -> Ran {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arborist"));
    c.args(args);
    run_timed(c, envs, cwd, limit)
}

/// `arborist_timed` with the binary started under `ulimit -v vm_kib`: bad input that
/// makes it allocate by its sizes is stopped there, not by the machine.
pub fn arborist_timed_vm(
    args: &[&str],
    envs: &[(&str, &str)],
    cwd: &Path,
    limit: std::time::Duration,
    vm_kib: u64,
) -> Ran {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -v {vm_kib} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_arborist"))
        .args(args);
    run_timed(c, envs, cwd, limit)
}

fn run_timed(mut c: Command, envs: &[(&str, &str)], cwd: &Path, limit: std::time::Duration) -> Ran {
    use std::io::Read;
    use std::process::Stdio;
    let start = std::time::Instant::now();
    c.current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn arborist");
    // Read lossily: output that is not UTF-8 read as nothing at all.
    let read = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = from.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let t_out = read(Box::new(child.stdout.take().unwrap()));
    let t_err = read(Box::new(child.stderr.take().unwrap()));
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            timed_out = true;
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Ran {
        code: status.and_then(|s| s.code()),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
        timed_out,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Byte offsets where the YAML documents of a session file start (`---` lines).
pub fn doc_starts(text: &str) -> Vec<usize> {
    let mut v: Vec<usize> = text
        .match_indices("---\n")
        .filter(|(i, _)| *i == 0 || text.as_bytes()[i - 1] == b'\n')
        .map(|(i, _)| i)
        .collect();
    v.dedup();
    v
}

/// A session file read as a YAML multi-document stream with an independent parser
/// (serde_yaml's document iterator): the header, then every entry (`seq`, `unix_ms`, `event`).
pub fn session_docs(path: &Path) -> (serde_json::Value, Vec<serde_json::Value>) {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs = Vec::new();
    for d in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_json::Value::deserialize(d)
            .unwrap_or_else(|e| panic!("{}: a document is not YAML: {e}", path.display()));
        docs.push(v);
    }
    assert!(!docs.is_empty(), "{}: empty session file", path.display());
    let header = docs.remove(0);
    (header, docs)
}

/// Parse JSON with correctly rounded floats. serde_json without its `float_roundtrip`
/// feature may be one ulp off (934.1955622086625 reads as ...624), which breaks exact
/// comparisons; YAML is a superset of JSON and serde_yaml parses floats exactly.
pub fn json_exact(text: &str) -> serde_json::Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The bits of each window's loss in a perplexity pass, `batch` windows per forward.
pub fn loss_bits(
    d: &arborist::model::Decoder,
    w: &arborist::data::Windows,
    batch: usize,
) -> Vec<u64> {
    arborist::eval::perplexity(d, w, batch, "eval.txt", |_, _| {})
        .unwrap()
        .window_loss
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// A mask of layer `id` pruning the flat indices `i` (row-major) where `pick(i)`.
pub fn mask_where(
    d: &arborist::model::Decoder,
    id: arborist::model::LinearId,
    pick: impl Fn(usize) -> bool,
) -> std::sync::Arc<arborist::model::Mask> {
    let l = d.linear(id);
    let mut k = arborist::model::Mask::empty(l.out_features(), l.in_features());
    for r in 0..k.rows() {
        for c in 0..k.cols() {
            if pick(r * k.cols() + c) {
                k.prune(r, c);
            }
        }
    }
    std::sync::Arc::new(k)
}
