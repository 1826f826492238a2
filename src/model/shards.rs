//! Weights split into shards as transformers' `save_pretrained(max_shard_size=...)` splits
//! them (huggingface_hub's `split_state_dict_into_shards_factory`): one `model.safetensors`
//! when everything fits, else `model-0000i-of-0000N.safetensors` and
//! `model.safetensors.index.json`. The tensors go in the order transformers 5 saves a model
//! loaded by `from_pretrained` in (its `dot_natural_key`), so the same limit gives the same
//! shards.

use anyhow::{bail, Result};
use candle_core::DType;
use std::collections::BTreeMap;
use std::path::Path;

use super::save::{write_safetensors, Stored};

/// transformers 5's default `max_shard_size` ("50GB"), which is also the largest file the
/// Hugging Face Hub takes.
pub const DEFAULT_MAX_SHARD_SIZE: u64 = 50_000_000_000;

/// A size as `max_shard_size` reads it: a number with KB, MB, GB or TB (powers of 1000,
/// case ignored, a fraction allowed: "1.5GB"), or a whole number of bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    let units = [("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12)];
    let bytes = match units
        .iter()
        .find_map(|(u, m)| upper.strip_suffix(u).map(|n| (n.trim(), *m)))
    {
        Some((n, m)) => n
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(|v| v * m),
        None => t.parse::<u64>().ok().map(|b| b as f64),
    };
    match bytes {
        // A limit past what a u64 holds is one file of any size.
        Some(b) if b >= u64::MAX as f64 => Ok(u64::MAX),
        Some(b) if b >= 1.0 => Ok(b as u64),
        Some(_) => bail!("--max-shard-size {s}: a shard must hold at least one byte"),
        None => bail!(
            "--max-shard-size {s}: expected a size such as 5GB or 500MB (KB, MB, GB, TB are powers of 1000, as transformers reads them) or a number of bytes"
        ),
    }
}

/// transformers' `dot_natural_key`: a name's dot-separated parts compared in turn, numbers
/// by value and before words, a word's trailing digits by value.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Part<'a> {
    Number(u128),
    Word(&'a str, Option<u128>),
}

fn natural_key(name: &str) -> Vec<Part<'_>> {
    let number = |s: &str| s.parse::<u128>().ok();
    name.split('.')
        .map(|part| {
            let digits = part.len() - part.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            let (word, tail) = part.split_at(part.len() - digits);
            match (word.is_empty(), number(tail)) {
                (true, Some(n)) => Part::Number(n),
                (_, n) => Part::Word(word, n),
            }
        })
        .collect()
}

/// The tensors of each shard, by index into `sizes`: in order, a shard is closed when the
/// next tensor would take it past `max`; a tensor larger than `max` gets a shard of its
/// own, placed before the one being filled (as huggingface_hub places it).
pub fn plan(sizes: &[u64], max: u64) -> Vec<Vec<usize>> {
    let mut shards = Vec::new();
    let (mut current, mut filled) = (Vec::new(), 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        if size > max {
            shards.push(vec![i]);
            continue;
        }
        if filled + size > max {
            shards.push(std::mem::take(&mut current));
            filled = 0;
        }
        current.push(i);
        filled += size;
    }
    if !current.is_empty() {
        shards.push(current);
    }
    shards
}

/// Write `tensors` into `dir` in `dtype`, split as `plan` says at `max` bytes a shard, and
/// return the names of the files written.
pub fn write_weights(
    tensors: Vec<(String, Stored<'_>)>,
    dtype: DType,
    dir: &Path,
    max: u64,
) -> Result<Vec<String>> {
    let mut tensors = tensors;
    tensors.sort_by(|(a, _), (b, _)| natural_key(a).cmp(&natural_key(b)));
    let numels: Vec<usize> = tensors
        .iter()
        .map(|(_, s)| s.shape().iter().product())
        .collect();
    let sizes: Vec<u64> = numels
        .iter()
        .map(|n| (n * dtype.size_in_bytes()) as u64)
        .collect();
    let shards = plan(&sizes, max);
    if shards.len() <= 1 {
        write_safetensors(tensors, dtype, &dir.join("model.safetensors"))?;
        return Ok(vec!["model.safetensors".into()]);
    }
    let n = shards.len();
    let params: usize = numels.iter().sum();
    let mut slots: Vec<Option<(String, Stored)>> = tensors.into_iter().map(Some).collect();
    let mut weight_map = BTreeMap::new();
    let mut files = Vec::with_capacity(n + 1);
    for (k, members) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", k + 1);
        let part: Vec<(String, Stored)> = members.iter().filter_map(|&i| slots[i].take()).collect();
        for (name, _) in &part {
            weight_map.insert(name.clone(), file.clone());
        }
        write_safetensors(part, dtype, &dir.join(&file))?;
        files.push(file);
    }
    let index = serde_json::json!({
        "metadata": { "total_parameters": params, "total_size": sizes.iter().sum::<u64>() },
        "weight_map": weight_map,
    });
    let name = "model.safetensors.index.json";
    std::fs::write(dir.join(name), serde_json::to_string_pretty(&index)? + "\n")
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", dir.join(name).display()))?;
    files.push(name.into());
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_transformers_reads_them() {
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("200KB").unwrap(), 200_000);
        assert_eq!(parse_size(" 1.5 gb ").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("2TB").unwrap(), 2_000_000_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("99999999TB").unwrap(), u64::MAX);
        assert_eq!(parse_size("18446744073709551615").unwrap(), u64::MAX);
        for bad in [
            "", "GB", "5GiB", "5 G", "-1GB", "infGB", "nanMB", "1e400GB", "x",
        ] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--max-shard-size {bad}:")), "{e}");
        }
        for empty in ["0", "0GB", "0.0000001KB"] {
            let e = parse_size(empty).unwrap_err().to_string();
            assert!(e.contains("at least one byte"), "{e}");
        }
    }

    #[test]
    fn names_sort_as_transformers_sorts_them() {
        let mut names = vec![
            "model.norm.weight",
            "model.layers.10.mlp.up_proj.weight",
            "model.layers.2.self_attn.q_proj.weight",
            "model.layers.2.self_attn.k_norm.weight",
            "model.layers.2.input_layernorm.weight",
            "lm_head.weight",
            "model.embed_tokens.weight",
            "x.shard_11",
            "x.shard_2",
            "x.shard",
            "x.7",
        ];
        names.sort_by(|a, b| natural_key(a).cmp(&natural_key(b)));
        assert_eq!(
            names,
            [
                "lm_head.weight",
                "model.embed_tokens.weight",
                "model.layers.2.input_layernorm.weight",
                "model.layers.2.self_attn.k_norm.weight",
                "model.layers.2.self_attn.q_proj.weight",
                "model.layers.10.mlp.up_proj.weight",
                "model.norm.weight",
                "x.7",
                "x.shard",
                "x.shard_2",
                "x.shard_11",
            ]
        );
    }

    #[test]
    fn shards_close_before_they_overflow_and_big_tensors_stand_alone() {
        // huggingface_hub's docstring example: [6, 6, 2, 6, 2, 2] GB at 10 GB.
        assert_eq!(
            plan(&[6, 6, 2, 6, 2, 2], 10),
            vec![vec![0], vec![1, 2], vec![3, 4, 5]]
        );
        // A tensor over the limit takes a shard of its own, before the one being filled.
        assert_eq!(plan(&[1, 100, 1], 10), vec![vec![1], vec![0, 2]]);
        // Exactly full stays one shard.
        assert_eq!(plan(&[5, 5], 10), vec![vec![0, 1]]);
        assert_eq!(plan(&[], 10), Vec::<Vec<usize>>::new());
    }
}
