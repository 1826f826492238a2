//! Reading evaluation text and cutting it into token windows.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The first bytes of a gzip stream and of a parquet file.
pub const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
pub const PARQUET_MAGIC: &[u8] = b"PAR1";

/// Whether the file at `path` starts with `magic` (a shorter file does not).
pub fn starts_with(path: &Path, magic: &[u8]) -> std::io::Result<bool> {
    use std::io::Read;
    let mut head = vec![0u8; magic.len()];
    let mut f = std::fs::File::open(path)?;
    match f.read_exact(&mut head) {
        Ok(()) => Ok(head == magic),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Read a UTF-8 text file; any other encoding is refused with the byte offset.
pub fn read_text(path: &Path) -> Result<String> {
    crate::runtime::refuse_device(path)?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // A parquet file begins and ends with its magic; one whose bytes are all ASCII (no
    // rows) was read as text.
    let parquet =
        bytes.len() >= 8 && bytes.starts_with(PARQUET_MAGIC) && bytes.ends_with(PARQUET_MAGIC);
    if parquet {
        bail!("{}", parquet_refusal(path));
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) if e.as_bytes().starts_with(GZIP_MAGIC) => bail!(
            "{} is gzip-compressed; this option reads UTF-8 text (decompress it first)",
            path.display()
        ),
        Err(e)
            if path.extension().is_some_and(|e| e == "parquet")
                || e.as_bytes().starts_with(PARQUET_MAGIC) =>
        {
            bail!("{}", parquet_refusal(path))
        }
        Err(e) => bail!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ),
    }
}

pub fn parquet_refusal(path: &Path) -> String {
    format!(
        "{} is a parquet file; this option reads UTF-8 text (parquet is read by --ppl and --eval)",
        path.display()
    )
}

/// A batch of equal-length windows as a [batch, seq] id tensor.
pub fn ids_tensor(
    windows: &[Vec<u32>],
    device: &candle_core::Device,
) -> Result<candle_core::Tensor> {
    let flat: Vec<u32> = windows.iter().flatten().copied().collect();
    Ok(candle_core::Tensor::from_vec(
        flat,
        (windows.len(), windows[0].len()),
        device,
    )?)
}

/// The default window length: 2048 tokens, capped at the model's context.
pub fn default_seqlen(max_position_embeddings: usize) -> usize {
    2048.min(max_position_embeddings)
}

/// Non-overlapping windows of `seqlen` tokens, as in the Wanda/SparseGPT protocol.
#[derive(Debug, Clone)]
pub struct Windows {
    pub seqlen: usize,
    pub tokens: usize,
    pub windows: Vec<Vec<u32>>,
}

impl Windows {
    /// Warn when the text held fewer windows than `flag` asked for (None: nothing was
    /// asked); the run uses what there is, and the JSON and the session record the count.
    pub fn warn_if_fewer(&self, flag: &str, asked: Option<usize>, source: &str) {
        if let Some(asked) = asked.filter(|a| self.len() < *a) {
            tracing::warn!(
                "{flag} {asked}: {source} holds only {} windows of {} tokens; using {}",
                self.len(),
                self.seqlen,
                self.len()
            );
        }
    }

    /// The first `limit` (all when None) of `tokens.len() / seqlen` windows.
    pub fn sequential(
        ids: &[u32],
        seqlen: usize,
        limit: Option<usize>,
        source: &str,
    ) -> Result<Self> {
        if seqlen < 2 {
            bail!("--seqlen {seqlen}: a window needs at least 2 tokens");
        }
        let n = ids.len() / seqlen;
        if n == 0 {
            bail!(
                "{source} has {} tokens, too short for one window of {seqlen} tokens",
                ids.len()
            );
        }
        let n = limit.map_or(n, |l| l.min(n));
        Ok(Windows {
            seqlen,
            tokens: ids.len(),
            windows: (0..n)
                .map(|i| ids[i * seqlen..(i + 1) * seqlen].to_vec())
                .collect(),
        })
    }

    /// `k` windows at seeded random start positions over the whole text (Wanda draws a
    /// document first, then a start within it; a text file has no documents).
    pub fn random(ids: &[u32], seqlen: usize, k: usize, seed: u64, source: &str) -> Result<Self> {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        Self::sequential(ids, seqlen, Some(1), source)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let last = ids.len() - seqlen;
        let windows = (0..k)
            .map(|_| {
                let s = rng.gen_range(0..=last);
                ids[s..s + seqlen].to_vec()
            })
            .collect();
        Ok(Windows {
            seqlen,
            tokens: ids.len(),
            windows,
        })
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_floor_of_numel_over_seqlen() {
        let ids: Vec<u32> = (0..103).collect();
        let w = Windows::sequential(&ids, 10, None, "t").unwrap();
        assert_eq!(w.len(), 10);
        assert_eq!(w.windows[3][0], 30);
        let w = Windows::sequential(&ids, 10, Some(4), "t").unwrap();
        assert_eq!(w.len(), 4);
        let err = Windows::sequential(&ids[..5], 10, None, "short.txt").unwrap_err();
        assert!(err.to_string().contains("short.txt"));
    }
}
