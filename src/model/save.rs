//! Weights written as transformers' `save_pretrained` writes them: one safetensors file
//! with the `{"format": "pt"}` metadata (transformers before 4.48 refuses a file without
//! it), holding one tensor in memory at a time, so a streamed layer is read, masked,
//! written and dropped, and a model that only runs streamed can still be written.

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use super::Linear;

/// A tensor to write: held already, or a linear layer's masked weight, made when written.
pub enum Stored<'a> {
    Tensor(Tensor),
    Linear(&'a Linear),
}

impl Stored<'_> {
    pub(super) fn shape(&self) -> Vec<usize> {
        match self {
            Stored::Tensor(t) => t.dims().to_vec(),
            Stored::Linear(l) => vec![l.out_features(), l.in_features()],
        }
    }
    pub fn tensor(&self) -> Result<Tensor> {
        match self {
            Stored::Tensor(t) => Ok(t.clone()),
            Stored::Linear(l) => Ok(l.weight()?),
        }
    }
}

struct Lazy<'a, 'e> {
    stored: Stored<'a>,
    dtype: DType,
    shape: Vec<usize>,
    /// The first failure: `View::data` cannot return one, so the bytes are zeros and the
    /// caller fails after the write (the file is then discarded).
    failed: &'e RefCell<Option<anyhow::Error>>,
}

impl Lazy<'_, '_> {
    fn bytes(&self) -> Result<Vec<u8>> {
        let t = self.stored.tensor()?.to_dtype(self.dtype)?.flatten_all()?;
        Ok(match self.dtype {
            DType::F16 => le(t.to_vec1::<half::f16>()?, half::f16::to_le_bytes),
            DType::BF16 => le(t.to_vec1::<half::bf16>()?, half::bf16::to_le_bytes),
            DType::F32 => le(t.to_vec1::<f32>()?, f32::to_le_bytes),
            DType::F64 => le(t.to_vec1::<f64>()?, f64::to_le_bytes),
            other => anyhow::bail!("cannot write a {other:?} tensor"),
        })
    }
}

fn le<T: Copy, const N: usize>(v: Vec<T>, f: fn(T) -> [u8; N]) -> Vec<u8> {
    v.into_iter().flat_map(f).collect()
}

impl View for Lazy<'_, '_> {
    fn dtype(&self) -> Dtype {
        self.dtype.into()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        match self.bytes() {
            Ok(b) => Cow::Owned(b),
            Err(e) => {
                self.failed.borrow_mut().get_or_insert(e);
                Cow::Owned(vec![0; self.data_len()])
            }
        }
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size_in_bytes()
    }
}

/// Elements compared per step: the round trip's copies of a whole embedding (622M values
/// at Qwen3-8B's) would take gigabytes.
const COMPARE_CHUNK: usize = 1 << 22;

/// The `tokenizer_config.json` of a model directory that has none (the bundled model, the
/// exports of such models): without it transformers' `AutoTokenizer` picks the tokenizer
/// class of `model_type` (Qwen2Tokenizer for qwen3), which re-splits the text with its own
/// pre-tokenizer and gives other ids than `tokenizer.json`, which Arborist uses.
pub const FAST_TOKENIZER_CONFIG: &str =
    "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}\n";

/// Whether `t` keeps its exact values in `dtype` (so writing it there loses nothing):
/// pruning that only masks leaves a bf16 model's weights bf16 values even when it ran in
/// f32, while SparseGPT's updates do not.
pub fn exact_in(t: &Tensor, dtype: DType) -> Result<bool> {
    if t.dtype() == dtype {
        return Ok(true);
    }
    let flat = t.flatten_all()?;
    let n = flat.elem_count();
    for start in (0..n).step_by(COMPARE_CHUNK) {
        let c = flat.narrow(0, start, COMPARE_CHUNK.min(n - start))?;
        let back = c.to_dtype(dtype)?.to_dtype(c.dtype())?;
        if c.ne(&back)?.max_all()?.to_scalar::<u8>()? != 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Write `tensors` to `path` in `dtype`, with the metadata transformers expects; on a
/// failure nothing is left at `path`.
pub fn write_safetensors(
    tensors: Vec<(String, Stored<'_>)>,
    dtype: DType,
    path: &Path,
) -> Result<()> {
    let failed = RefCell::new(None);
    let views: Vec<(String, Lazy)> = tensors
        .into_iter()
        .map(|(name, stored)| {
            let shape = stored.shape();
            (
                name,
                Lazy {
                    stored,
                    dtype,
                    shape,
                    failed: &failed,
                },
            )
        })
        .collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let written = safetensors::tensor::serialize_to_file(views, Some(metadata), path)
        .with_context(|| format!("cannot write {}", path.display()));
    let failed = failed.into_inner();
    if written.is_err() || failed.is_some() {
        let _ = std::fs::remove_file(path);
    }
    match failed {
        Some(e) => Err(e.context(format!("cannot write {}", path.display()))),
        None => written,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn writes_the_metadata_and_every_tensor_in_the_dtype_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let a = Tensor::new(&[[1.5f32, -2.0], [0.25, 3.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[7.0f32, -0.5, 1.0], &Device::Cpu).unwrap();
        let tensors = vec![
            ("a".to_string(), Stored::Tensor(a.clone())),
            ("b".to_string(), Stored::Tensor(b.clone())),
        ];
        write_safetensors(tensors, DType::BF16, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let md = meta.metadata().as_ref().unwrap();
        assert_eq!(md.get("format").map(String::as_str), Some("pt"));
        let read = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
        assert_eq!(st.names().len(), 2);
        for (name, t) in [("a", &a), ("b", &b)] {
            let r = &read[name];
            assert_eq!(r.dtype(), DType::BF16);
            assert_eq!(r.dims(), t.dims());
            let want = t.to_dtype(DType::BF16).unwrap().flatten_all().unwrap();
            let got = r.flatten_all().unwrap();
            assert_eq!(
                got.to_vec1::<half::bf16>().unwrap(),
                want.to_vec1::<half::bf16>().unwrap()
            );
        }
    }

    #[test]
    fn exact_in_tells_bf16_values_from_others() {
        let dev = Device::Cpu;
        let bf16_values = Tensor::new(&[1.5f32, -2.0, 0.0, 3.0], &dev).unwrap();
        let other = Tensor::new(&[1.5f32, 0.1], &dev).unwrap();
        assert!(exact_in(&bf16_values, DType::BF16).unwrap());
        assert!(!exact_in(&other, DType::BF16).unwrap());
        assert!(exact_in(&other, DType::F32).unwrap());
        // A value that rounds, past the first chunk, is found.
        let mut v = vec![0.5f32; COMPARE_CHUNK + 3];
        v[COMPARE_CHUNK + 1] = 0.1;
        let long = Tensor::from_vec(v, (COMPARE_CHUNK + 3,), &dev).unwrap();
        assert!(!exact_in(&long, DType::BF16).unwrap());
        let zeros = long.zeros_like().unwrap();
        assert!(exact_in(&zeros, DType::BF16).unwrap());
    }

    #[test]
    fn a_tensor_that_cannot_be_written_fails_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let ids = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
        let err = write_safetensors(vec![("ids".into(), Stored::Tensor(ids))], DType::U32, &path)
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot write a U32 tensor"),
            "{err:#}"
        );
        assert!(!path.exists());
    }
}
