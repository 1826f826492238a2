//! Run-time choices shared by every command: device, dtype and compute threads.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};

pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        _ if s == "cuda" || s.starts_with("cuda:") => {
            let idx: usize = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("--device {s}: expected cuda:N with N a number"))?,
                None => 0,
            };
            Device::new_cuda(idx).with_context(|| {
                format!("--device {s}: CUDA is unavailable (build with --features cuda on a machine with a GPU)")
            })
        }
        _ => bail!("--device {s}: expected cpu or cuda:N"),
    }
}

pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        _ => bail!("--dtype {s}: expected f32, f16 or bf16"),
    }
}

pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        _ => "other",
    }
}

/// Default compute threads: every core but one, which stays free for the interface and
/// the agent (one thread on a 2-core machine).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// Fix the number of compute threads for candle and gemm. Must run before any compute,
/// because both read the environment when their pools start.
pub fn set_compute_threads(n: usize) {
    let n = n.max(1).to_string();
    // Safe in edition 2021; called at start-up before other threads exist.
    std::env::set_var("RAYON_NUM_THREADS", &n);
    std::env::set_var("CANDLE_NUM_THREADS", &n);
}

/// FNV-1a (64-bit): a stable, dependency-free hash for fingerprints and cache names
/// (std's hasher may change between Rust versions).
#[derive(Clone, Copy)]
pub struct Fnv1a(u64);

impl Fnv1a {
    pub fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    pub fn eat(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn value(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a::new()
    }
}
