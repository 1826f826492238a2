//! What a case did to its directory, what may come of it, and byte-level damage any file
//! can take.

use rand::rngs::StdRng;
use rand::Rng;
use std::path::{Path, PathBuf};

/// What the run may do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Expect {
    /// No reading of the file can succeed (a truncated JSON, a header that does not fit).
    MustFail,
    /// Either a clean run or a clean error, depending on what the damage hit.
    MayRun,
    /// The file is not one the command depends on: the result is the undamaged one.
    MustRunSame,
}

/// What an error must name.
#[derive(Clone, Debug)]
pub enum Blame {
    /// config.json, and the damaged field's keys (outermost first) and new text value, if
    /// the damage was to one field. A config at odds with the weights may instead be said
    /// as the tensor that does not fit.
    Config {
        keys: Vec<String>,
        value: Option<String>,
    },
    /// A weights file; or a tensor in it.
    Weights(PathBuf),
    /// This tensor, by name (with the model's directory, as every path in it has).
    Tensor(String),
    Tokenizer,
    /// The shard index, a shard name it lists (given here when damaged), or a tensor.
    Index {
        shards: Vec<String>,
    },
    Nothing,
}

#[derive(Clone, Debug)]
pub struct Damage {
    /// Exactly what was done, to reproduce it by hand.
    pub what: String,
    pub expect: Expect,
    pub blame: Blame,
    /// A perplexity that is not finite may be printed (`null`): finite weights that
    /// overflow, which README says is printed rather than refused.
    pub non_finite_ok: bool,
}

impl Damage {
    pub fn new(what: String, expect: Expect, blame: Blame) -> Self {
        Damage {
            what,
            expect,
            blame,
            non_finite_ok: false,
        }
    }
}

/// The file's name within the case directory, for descriptions.
pub fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Cut `path` at a random byte (never its full length).
pub fn truncate(rng: &mut StdRng, path: &Path, within: Option<usize>) -> String {
    let mut bytes = std::fs::read(path).unwrap();
    let len = bytes.len();
    let at = rng.gen_range(0..within.unwrap_or(len).min(len));
    bytes.truncate(at);
    std::fs::write(path, bytes).unwrap();
    format!("{}: truncated to {at} of {len} bytes", name(path))
}

/// XOR `count` random bytes of `path` in `range` with random nonzero masks, half of them
/// under 0x80 (an ASCII byte stays ASCII: the damage reaches the parser, not UTF-8).
pub fn flip(rng: &mut StdRng, path: &Path, range: std::ops::Range<usize>, count: usize) -> String {
    let mut bytes = std::fs::read(path).unwrap();
    let mut done = Vec::new();
    for _ in 0..count {
        let at = rng.gen_range(range.clone());
        let top = if rng.gen_bool(0.5) { 0x7f } else { 0xff };
        let mask: u8 = rng.gen_range(1..=top);
        bytes[at] ^= mask;
        done.push(format!("byte {at} ^= {mask:#04x}"));
    }
    std::fs::write(path, bytes).unwrap();
    format!("{}: {}", name(path), done.join(", "))
}

/// A byte that is never valid UTF-8, put in at a random place.
pub fn invalid_utf8(rng: &mut StdRng, path: &Path) -> String {
    let mut bytes = std::fs::read(path).unwrap();
    let at = rng.gen_range(0..bytes.len());
    bytes.insert(at, 0xff);
    std::fs::write(path, bytes).unwrap();
    format!("{}: byte 0xff inserted at {at}", name(path))
}

/// One ASCII digit in `range` changed to another.
pub fn change_digit(rng: &mut StdRng, path: &Path, range: std::ops::Range<usize>) -> String {
    let mut bytes = std::fs::read(path).unwrap();
    let digits: Vec<usize> = range.filter(|&i| bytes[i].is_ascii_digit()).collect();
    let at = digits[rng.gen_range(0..digits.len())];
    let old = bytes[at];
    let new = loop {
        let d = b'0' + rng.gen_range(0..10u8);
        if d != old {
            break d;
        }
    };
    bytes[at] = new;
    std::fs::write(path, bytes).unwrap();
    format!(
        "{}: digit at byte {at} changed from {} to {}",
        name(path),
        old as char,
        new as char
    )
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn write_json(path: &Path, v: &serde_json::Value) {
    std::fs::write(path, v.to_string()).unwrap();
}

/// One of `items`, drawn.
pub fn pick<T: Clone>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())].clone()
}
