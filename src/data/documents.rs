//! Calibration windows drawn from documents as Wanda's and SparseGPT's `get_c4` draws them:
//! a random document longer than the window, then a random start within it, with Python's
//! `random` generator, so the same shard, tokenizer and seed give the same windows.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{read_text, Windows};

/// How calibration windows are taken from a file (`--calib-sample`, a session's
/// `calib_sample`, a profile's protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibSample {
    /// The first K non-overlapping windows (deterministic).
    #[default]
    Sequential,
    /// K windows at seeded random offsets into the whole text.
    Random,
    /// K windows drawn from JSON-lines documents (C4's json.gz) as Wanda's and SparseGPT's
    /// get_c4 draws them, with Python's generator: the same windows for the same seed.
    Documents,
}

impl CalibSample {
    pub fn name(self) -> &'static str {
        match self {
            CalibSample::Sequential => "sequential",
            CalibSample::Random => "random",
            CalibSample::Documents => "documents",
        }
    }

    /// Whether a seed chooses the windows.
    pub fn is_seeded(self) -> bool {
        self != CalibSample::Sequential
    }
}

impl std::fmt::Display for CalibSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CalibSample {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [
            CalibSample::Sequential,
            CalibSample::Random,
            CalibSample::Documents,
        ]
        .into_iter()
        .find(|c| c.name() == s)
        .ok_or_else(|| {
            format!("unknown calibration sample `{s}` (sequential, random or documents)")
        })
    }
}

/// The calibration windows of `--calib FILE --calib-sample SAMPLE`: `sequential` and
/// `random` cut the text `encode` gives (no special tokens); `documents` draws from the
/// JSON-lines documents of FILE, each tokenized by `encode_doc` (special tokens included).
pub fn calibration_windows(
    path: &Path,
    sample: CalibSample,
    (seqlen, count, seed): (usize, usize, u64),
    encode: impl Fn(&str) -> Result<Vec<u32>>,
    encode_doc: impl Fn(&str) -> Result<Vec<u32>>,
) -> Result<Windows> {
    let name = path.display().to_string();
    if sample == CalibSample::Documents {
        let docs = read_documents(path)?;
        let windows = Windows::documents(&docs, encode_doc, seqlen, count, seed, &name);
        // A C4 shard is about 750 MB of text, needed only for the draw.
        drop(docs);
        crate::runtime::return_free_heap();
        return windows;
    }
    if is_gzip(path)? {
        bail!("{name} is gzip-compressed: calibration text is read as UTF-8, and JSON lines such as C4's json.gz shards need --calib-sample documents");
    }
    let text = read_text(path)?;
    if looks_like_documents(&text) {
        tracing::warn!("{name} looks like JSON lines with a `text` field (as C4's shards); it is read as plain text, braces and all: --calib-sample documents reads the documents");
    }
    let ids = encode(&text)?;
    match sample {
        CalibSample::Random => Windows::random(&ids, seqlen, count, seed, &name),
        _ => Windows::sequential(&ids, seqlen, Some(count), &name),
    }
}

/// The first non-blank line is a JSON object with a string `text`.
fn looks_like_documents(text: &str) -> bool {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str::<serde_json::Value>(first).is_ok_and(|v| v["text"].is_string())
}

fn is_gzip(path: &Path) -> Result<bool> {
    super::text::starts_with(path, super::text::GZIP_MAGIC)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// The `text` field of every line of a JSON-lines file (C4's `c4-train.*.json.gz` layout),
/// gzip-compressed or not, in file order.
pub fn read_documents(path: &Path) -> Result<Vec<String>> {
    crate::runtime::refuse_device(path)?;
    let name = path.display();
    let gz = is_gzip(path)?;
    if super::text::starts_with(path, super::text::PARQUET_MAGIC).unwrap_or(false) {
        bail!("{}", super::text::parquet_refusal(path));
    }
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {name}"))?;
    let reader: Box<dyn BufRead> = if gz {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut docs = Vec::new();
    for (k, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{name}: line {}: cannot read", k + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let not_object = || format!("{name}: line {}: not a JSON object", k + 1);
        let row: serde_json::Value = serde_json::from_str(&line).with_context(not_object)?;
        let serde_json::Value::Object(mut row) = row else {
            bail!("{} (a JSON {})", not_object(), json_kind(&row));
        };
        match row.remove("text") {
            Some(serde_json::Value::String(t)) => docs.push(t),
            _ => bail!(
                "{name}: line {}: no string field `text` (documents are JSON lines with a `text` field, as C4's json.gz shards)",
                k + 1
            ),
        }
    }
    if docs.is_empty() {
        bail!("{name}: no documents (expected JSON lines with a `text` field)");
    }
    Ok(docs)
}

/// What a JSON value is, for an error that names it.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Python's `random` module: MT19937 seeded as `random.seed(n)` seeds it (the 32-bit
/// words of |n|, least significant first, through init_by_array), and `randint` as
/// `_randbelow_with_getrandbits` draws.
pub struct PyRandom(rand_mt::Mt);

impl PyRandom {
    pub fn seed(n: u64) -> Self {
        let key: Vec<u32> = if n >> 32 == 0 {
            vec![n as u32]
        } else {
            vec![n as u32, (n >> 32) as u32]
        };
        PyRandom(rand_mt::Mt::new_with_key(key))
    }

    /// `random.getrandbits(k)` for 1 ≤ k ≤ 32.
    pub fn getrandbits(&mut self, k: u32) -> u32 {
        assert!((1..=32).contains(&k), "getrandbits({k}) outside 1..=32");
        self.0.next_u32() >> (32 - k)
    }

    /// `random.randint(a, b)`: a + a draw below b − a + 1 by rejection.
    pub fn randint(&mut self, a: usize, b: usize) -> usize {
        let n = (b - a + 1) as u64;
        assert!(n <= 1 << 32, "randint over {n} values");
        let k = 64 - n.leading_zeros();
        loop {
            let r = if k > 32 {
                // n == 2^32 exactly: Python joins two words; one is never enough.
                let lo = self.0.next_u32() as u64;
                lo | ((self.getrandbits(k - 32) as u64) << 32)
            } else {
                self.getrandbits(k) as u64
            };
            if r < n {
                return a + r as usize;
            }
        }
    }
}

impl Windows {
    /// `k` windows of `seqlen` tokens as `get_c4` draws them (see the module comment).
    /// `encode` tokenizes one document as the Hugging Face tokenizer does by default,
    /// special tokens included. Stops with an error, where the published loop would spin,
    /// once every document has been tokenized and none is longer than `seqlen`.
    pub fn documents(
        docs: &[String],
        mut encode: impl FnMut(&str) -> Result<Vec<u32>>,
        seqlen: usize,
        k: usize,
        seed: u64,
        source: &str,
    ) -> Result<Self> {
        if seqlen < 2 {
            bail!("--seqlen {seqlen}: a window needs at least 2 tokens");
        }
        if docs.is_empty() {
            bail!("{source}: no documents");
        }
        let mut rng = PyRandom::seed(seed);
        // Token counts of the documents tried so far (None: not yet tokenized).
        let mut lengths: Vec<Option<usize>> = vec![None; docs.len()];
        let (mut short, mut tokens) = (0usize, 0usize);
        let mut windows = Vec::with_capacity(k);
        for _ in 0..k {
            let ids = loop {
                let i = rng.randint(0, docs.len() - 1);
                if lengths[i].is_some_and(|n| n <= seqlen) {
                    continue; // known too short: the same rejection, without tokenizing again
                }
                let ids = encode(&docs[i])?;
                if lengths[i].is_none() {
                    lengths[i] = Some(ids.len());
                    tokens += ids.len();
                    short += (ids.len() <= seqlen) as usize;
                }
                if ids.len() > seqlen {
                    break ids;
                }
                if short == docs.len() {
                    bail!(
                        "{source}: none of its {} documents is longer than {seqlen} tokens, so no window can be drawn (the longest has {})",
                        docs.len(),
                        lengths.iter().flatten().max().unwrap_or(&0)
                    );
                }
            };
            let start = rng.randint(0, ids.len() - seqlen - 1);
            windows.push(ids[start..start + seqlen].to_vec());
        }
        Ok(Windows {
            seqlen,
            tokens,
            windows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randint_covers_its_range_and_no_more() {
        let mut r = PyRandom::seed(5);
        let mut seen = [false; 7];
        for _ in 0..500 {
            seen[r.randint(3, 9) - 3] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(PyRandom::seed(1).randint(4, 4), 4);
    }
}
