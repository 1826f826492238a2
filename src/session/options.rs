//! Every option of a run, as recorded in the session header (never an API key).

use serde::{Deserialize, Serialize};

use super::machine::LoopOptions;
use crate::data::CalibSample;
use crate::eval::mmlu_prompt::MmluPrompt;
use crate::profile::grad_average::GradAverage;

/// Unknown keys are refused (a misspelt key, or an `api_key`: keys come only from the
/// environment); every field ever written is still known, so old headers read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSpec {
    /// builtin, openai or anthropic.
    pub backend: String,
    pub model: Option<String>,
    pub base_url: Option<String>,
    /// Directory whose templates override the built-in prompts.
    pub prompts: Option<String>,
    /// Seconds per agent request (and to connect); default 120.
    pub timeout_s: Option<u64>,
    /// Most tokens one reply may have (`max_tokens`); default: Anthropic 4096, OpenAI unset.
    pub max_tokens: Option<u32>,
}

impl Default for AgentSpec {
    fn default() -> Self {
        AgentSpec {
            backend: "builtin".into(),
            model: None,
            base_url: None,
            prompts: None,
            timeout_s: None,
            max_tokens: None,
        }
    }
}

/// The optional knowledge probe evaluated after every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeSpec {
    /// freebaseqa or mmlu.
    pub kind: String,
    /// The benchmark file (MMLU: a CSV root or parquet); default: the bundled model's set.
    pub file: Option<String>,
    /// FreebaseQA: the first N questions; MMLU: the first N per subject.
    pub limit: usize,
    /// MMLU few-shot examples.
    pub shots: usize,
    /// MMLU prompt spelling (headers without it: see `file::upgrade_old_header`).
    pub mmlu_prompt: MmluPrompt,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            kind: "freebaseqa".into(),
            file: None,
            limit: 40,
            shots: 0,
            mmlu_prompt: MmluPrompt::Hendrycks,
        }
    }
}

/// Options of a run. `--config FILE` takes the same keys; flags win over the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunOptions {
    pub model: String,
    pub device: String,
    pub dtype: String,
    pub agent: AgentSpec,
    /// Calibration text (profile statistics and Wanda masks).
    pub calib: Option<String>,
    /// Evaluation text (the guard's perplexity).
    pub eval: Option<String>,
    pub seqlen: Option<usize>,
    pub calib_windows: usize,
    pub eval_windows: usize,
    pub calib_sample: CalibSample,
    pub seed: u64,
    pub grad_windows: usize,
    /// How the gradient windows' dL/dW are averaged into the profile's G.
    pub grad_average: GradAverage,
    pub batch: usize,
    /// MiB for the cached block-boundary states of the evaluation, and as much again for
    /// the profile's calibration pass (0: full passes).
    pub eval_cache_mb: usize,
    /// Linear weights read from the files block by block instead of held in memory.
    pub stream_layers: bool,
    #[serde(rename = "loop")]
    pub loop_opts: LoopOptions,
    pub probe: Option<ProbeSpec>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            model: "bundled".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            agent: AgentSpec::default(),
            calib: None,
            eval: None,
            seqlen: None,
            calib_windows: 16,
            eval_windows: 16,
            calib_sample: CalibSample::Sequential,
            seed: 0,
            grad_windows: crate::profile::grad_average::DEFAULT_GRAD_WINDOWS,
            grad_average: GradAverage::MeanOfAbs,
            batch: 4,
            eval_cache_mb: 1024,
            stream_layers: false,
            loop_opts: LoopOptions::default(),
            probe: None,
        }
    }
}
