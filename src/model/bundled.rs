//! The bundled fact-world model, embedded in the binary: `--model bundled` anywhere a model
//! is accepted, and `arborist bundled --out DIR` to get it as ordinary files.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub const NAME: &str = "bundled";

macro_rules! asset {
    ($p:literal) => {
        (
            $p,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/bundled/", $p)) as &[u8],
        )
    };
}

/// Every embedded file, by its path under the model directory.
pub const FILES: &[(&str, &[u8])] = &[
    asset!("config.json"),
    asset!("tokenizer.json"),
    asset!("tokenizer_config.json"),
    asset!("model.safetensors"),
    asset!("CARD.md"),
    asset!("data/train.txt"),
    asset!("data/calib.txt"),
    asset!("data/eval.txt"),
    asset!("data/freebaseqa.json"),
    asset!("data/mmlu/dev/residence_dev.csv"),
    asset!("data/mmlu/dev/occupation_dev.csv"),
    asset!("data/mmlu/dev/birth_year_dev.csv"),
    asset!("data/mmlu/dev/possession_dev.csv"),
    asset!("data/mmlu/dev/geography_dev.csv"),
    asset!("data/mmlu/dev/capital_cities_dev.csv"),
    asset!("data/mmlu/test/residence_test.csv"),
    asset!("data/mmlu/test/occupation_test.csv"),
    asset!("data/mmlu/test/birth_year_test.csv"),
    asset!("data/mmlu/test/possession_test.csv"),
    asset!("data/mmlu/test/geography_test.csv"),
    asset!("data/mmlu/test/capital_cities_test.csv"),
];

/// FNV-1a of every embedded byte: names the extracted copy, so a new build never reuses a
/// stale one.
fn content_hash() -> u64 {
    let mut h = crate::runtime::Fnv1a::new();
    for (name, bytes) in FILES {
        h.eat(name.as_bytes());
        h.eat(bytes);
    }
    h.value()
}

/// Write every file under `dir`.
pub fn write_files(dir: &Path) -> Result<()> {
    for (name, bytes) in FILES {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// The extracted model directory (extracted once per build into the cache, atomically).
pub fn dir() -> Result<PathBuf> {
    let dir = crate::runtime::cache_root().join(format!("bundled-{:016x}", content_hash()));
    if dir.join("config.json").is_file() {
        return Ok(dir);
    }
    let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_files(&tmp).and_then(|_| {
        std::fs::rename(&tmp, &dir).or_else(|e| {
            // Another process may have won the race.
            if dir.join("config.json").is_file() {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(())
            } else {
                Err(e).with_context(|| format!("cannot create {}", dir.display()))
            }
        })
    });
    if let Err(e) = written {
        // A full disk must not leave a partial copy behind under a name never reused.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!(
            "cannot extract the bundled model into {} (ARBORIST_CACHE chooses another directory)",
            crate::runtime::cache_root().display()
        )));
    }
    Ok(dir)
}

pub fn data_dir() -> Result<PathBuf> {
    Ok(dir()?.join("data"))
}
