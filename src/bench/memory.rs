//! The session suite's memory figures, each from a fresh process: the whole session's peak
//! RSS against the working set of its first iteration alone. In one process, every phase
//! after the first starts on a heap that earlier phases left fragmented, and a single
//! iteration's peak moves by about ±8% between identical runs (two threads interleave their
//! allocations differently), so the figures are medians over alternating runs.

use crate::cli::outln;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::{median, peak_rss_bytes, rss_bytes, BenchArgs};
use crate::session::RunOptions;
use crate::worker::launch;

/// What one child process measured.
#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
pub struct Sample {
    pub iterations: usize,
    pub rss_start_bytes: u64,
    pub rss_loaded_bytes: u64,
    pub peak_rss_bytes: u64,
    pub weight_bytes: u64,
    /// At the end of the session: heap bytes in use, and bytes malloc holds (glibc only).
    #[serde(default)]
    pub heap_in_use_end_bytes: Option<u64>,
    #[serde(default)]
    pub heap_held_end_bytes: Option<u64>,
    /// malloc's arenas at the end (glibc only; one unless the user chose more).
    #[serde(default)]
    pub heap_arenas: Option<usize>,
}

impl Sample {
    /// What the session added to the resident set after loading.
    fn added(&self) -> u64 {
        self.peak_rss_bytes.saturating_sub(self.rss_loaded_bytes)
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub weight_bytes: u64,
    /// One iteration's peak minus the RSS after loading, median over the runs.
    pub working_set_bytes: u64,
    /// The whole session's peak RSS, median over the runs.
    pub peak_rss_bytes: u64,
    /// RSS before and after loading the model in the whole-session runs, medians (what is
    /// neither weights nor working set: the executable's pages, the tokenizer, the runtime).
    pub rss_start_bytes: u64,
    pub rss_loaded_bytes: u64,
    /// peak / (weights + working set), from the medians.
    pub peak_over_weights_plus_working_set: f64,
    /// The same ratio for each pair of runs, in the order they ran.
    pub per_run: Vec<f64>,
    /// What the session added after loading over what one iteration added (medians).
    pub added_over_working_set: f64,
    /// Medians at the end of the one-iteration runs and of the whole sessions: heap bytes
    /// in use and held by malloc (glibc only). Equal use with more held is fragmentation.
    pub heap_in_use_end_bytes: Option<[u64; 2]>,
    pub heap_held_end_bytes: Option<[u64; 2]>,
    pub one_iteration: Vec<Sample>,
    pub session: Vec<Sample>,
}

/// Child side (`bench --suite session-memory`): load the engine, run the built-in session
/// for `--session-iters`, print one JSON line.
pub fn child(a: &BenchArgs) -> Result<()> {
    let rss_start = rss_bytes();
    let opts = super::session::options(a, a.session_model(), false)?;
    let files = crate::model::ModelFiles::resolve(&opts.model)?;
    let mut engine = launch::load_engine(files, &opts)?;
    let rss_loaded = rss_bytes();
    let run = super::session::session(&opts, &mut engine)?;
    let heap = crate::runtime::heap_bytes();
    let s = Sample {
        iterations: run.iterations.len(),
        rss_start_bytes: rss_start,
        rss_loaded_bytes: rss_loaded,
        peak_rss_bytes: peak_rss_bytes(),
        weight_bytes: engine.model.decoder.weight_bytes() as u64,
        heap_in_use_end_bytes: heap.map(|h| h.0),
        heap_held_end_bytes: heap.map(|h| h.1),
        heap_arenas: crate::runtime::heap_arenas(),
    };
    outln!("{}", serde_json::to_string(&s)?)?;
    Ok(())
}

fn spawn(opts: &RunOptions, iters: usize) -> Result<Sample> {
    let exe = crate::runtime::this_executable().context("bench: finding this executable")?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["bench", "--suite", "session-memory", "--model", &opts.model]);
    cmd.env(super::MEMORY_CHILD_ENV, "1");
    cmd.args(["--device", &opts.device, "--dtype", &opts.dtype]);
    for (flag, v) in [("--calib", &opts.calib), ("--eval", &opts.eval)] {
        if let Some(v) = v {
            cmd.args([flag, v]);
        }
    }
    let out = cmd
        .args(["--session-iters", &iters.to_string()])
        .args([
            "--threads",
            &candle_core::utils::get_num_threads().to_string(),
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("bench: running {}", exe.display()))?;
    ensure!(
        out.status.success(),
        "bench: the session-memory child ({iters} iterations) failed: {}",
        out.status
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let s: Sample = serde_json::from_str(line.trim())
        .with_context(|| format!("bench: the session-memory child printed {line:?}"))?;
    ensure!(
        s.iterations == iters,
        "bench: the session-memory child stopped after {} of {iters} iterations",
        s.iterations
    );
    Ok(s)
}

/// `runs` pairs of children, one iteration then `a.session_iters`, alternating.
pub fn measure(a: &BenchArgs, opts: &RunOptions, runs: usize) -> Result<Summary> {
    let (mut one, mut whole) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        one.push(spawn(opts, 1)?);
        whole.push(spawn(opts, a.session_iters)?);
    }
    let weights = one[0].weight_bytes;
    let med = |v: &[Sample], f: fn(&Sample) -> u64| median(v.iter().map(|s| f(s) as f64).collect());
    let ws = med(&one, Sample::added);
    let peak = med(&whole, |s| s.peak_rss_bytes);
    let per_run = one
        .iter()
        .zip(&whole)
        .map(|(o, w)| w.peak_rss_bytes as f64 / (weights + o.added()) as f64)
        .collect();
    Ok(Summary {
        runs,
        weight_bytes: weights,
        working_set_bytes: ws as u64,
        peak_rss_bytes: peak as u64,
        rss_start_bytes: med(&whole, |s| s.rss_start_bytes) as u64,
        rss_loaded_bytes: med(&whole, |s| s.rss_loaded_bytes) as u64,
        peak_over_weights_plus_working_set: peak / (weights as f64 + ws),
        per_run,
        added_over_working_set: med(&whole, Sample::added) / ws,
        heap_in_use_end_bytes: pair(&one, &whole, |s| s.heap_in_use_end_bytes),
        heap_held_end_bytes: pair(&one, &whole, |s| s.heap_held_end_bytes),
        one_iteration: one,
        session: whole,
    })
}

/// The medians of `f` over the one-iteration runs and over the sessions, where every run has it.
fn pair(one: &[Sample], whole: &[Sample], f: fn(&Sample) -> Option<u64>) -> Option<[u64; 2]> {
    let med = |v: &[Sample]| -> Option<u64> {
        let xs: Option<Vec<f64>> = v.iter().map(|s| f(s).map(|x| x as f64)).collect();
        Some(median(xs?) as u64)
    };
    Some([med(one)?, med(whole)?])
}
