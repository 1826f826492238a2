//! The compute device and dtype as the command line names them, and how many batches a
//! device runs at once.

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
            let why = if cfg!(feature = "cuda") {
                "no usable GPU at that index (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
            } else {
                "this build has no CUDA backend (build with --features cuda)"
            };
            Device::new_cuda(idx)
                .with_context(|| format!("--device {s}: CUDA is unavailable: {why}"))
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

/// How many batches of windows to run at once on `dev` when each needs about `bytes` of
/// working memory: the compute threads on CPU, where one batch's small matmuls leave cores
/// idle, but no more than fit in half the memory available now (a large model's batch can
/// take gigabytes); one elsewhere (a GPU queue is already parallel).
pub fn batch_parallelism(dev: &Device, bytes: usize) -> usize {
    if !dev.is_cpu() {
        return 1;
    }
    let threads = rayon::current_num_threads().max(1);
    match available_memory_bytes() {
        Some(avail) => threads.min(avail / 2 / bytes.max(1)).max(1),
        None => threads,
    }
}

/// MemAvailable from /proc/meminfo (Linux); None elsewhere.
fn available_memory_bytes() -> Option<usize> {
    crate::runtime::proc_kb_field("/proc/meminfo", "MemAvailable:").map(|b| b as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_at_once_are_bounded_by_threads_and_memory() {
        let threads = rayon::current_num_threads();
        assert_eq!(batch_parallelism(&Device::Cpu, 1), threads);
        // Linux (CI included) reports it; elsewhere the bound is not applied.
        let avail = available_memory_bytes();
        assert!(avail.is_some() || !cfg!(target_os = "linux"));
        if let Some(avail) = avail {
            assert!(avail > 0);
            // A batch bigger than half the free memory runs alone.
            assert_eq!(batch_parallelism(&Device::Cpu, avail), 1);
            assert_eq!(batch_parallelism(&Device::Cpu, usize::MAX), 1);
        }
    }
}
