//! `arborist run` (and `demo`): an agent-guided session, headless or in the TUI.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

use crate::data::CalibSample;
use crate::eval::mmlu::MmluPrompt;
use crate::profile::GradAverage;
use crate::session::{file, RunOptions};

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// A local model directory, a Hugging Face id, or `bundled` [default: bundled]. With
    /// --resume: where the session's model is now (its fingerprint is checked).
    #[arg(long)]
    pub model: Option<String>,
    /// cpu or cuda:N [default: cpu].
    #[arg(long)]
    pub device: Option<String>,
    /// f32, f16 or bf16 [default: f32].
    #[arg(long)]
    pub dtype: Option<String>,
    /// builtin, openai or anthropic [default: builtin].
    #[arg(long)]
    pub agent: Option<String>,
    /// Model name for the openai/anthropic agent.
    #[arg(long)]
    pub agent_model: Option<String>,
    /// The openai/anthropic agent's server (default: the vendor's; any OpenAI-compatible
    /// server, e.g. http://127.0.0.1:8000/v1).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Directory with prompt templates that override the built-in ones.
    #[arg(long)]
    pub prompts: Option<String>,
    /// Seconds per agent request before it times out (default 120).
    #[arg(long)]
    pub agent_timeout: Option<u64>,
    /// Most tokens per agent reply (default: Anthropic 4096, OpenAI the server's).
    #[arg(long)]
    pub agent_max_tokens: Option<u32>,
    /// Target global sparsity over the blocks' linear layers [default: 0.45].
    #[arg(long, allow_negative_numbers = true)]
    pub target: Option<f64>,
    /// Relative perplexity increase per step that triggers a rollback [default: 0.05].
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// Optional ceiling on total perplexity increase over the dense model (relative)
    /// [default: none].
    #[arg(long, allow_negative_numbers = true)]
    pub ceiling: Option<f64>,
    /// Iterations after which the session stops short of the target [default: 60].
    #[arg(long)]
    pub max_iters: Option<usize>,
    /// Largest sparsity increase of one layer per step [default: 0.1].
    #[arg(long, allow_negative_numbers = true)]
    pub max_step: Option<f64>,
    /// Most layers changed per step [default: 8].
    #[arg(long)]
    pub max_layers: Option<usize>,
    /// Recompute the sensitivity profile after every N-th accepted step [default: 1].
    #[arg(long)]
    pub profile_every: Option<usize>,
    /// Knowledge probe after every step: freebaseqa or mmlu.
    #[arg(long)]
    pub probe: Option<String>,
    /// The probe's benchmark file (default: the bundled model's set). With --resume: where
    /// the session's file is now (its hash is checked).
    #[arg(long)]
    pub probe_file: Option<String>,
    /// Probe items (FreebaseQA: first N; MMLU: first N per subject) [default: 40].
    #[arg(long)]
    pub probe_limit: Option<usize>,
    /// Roll back when probe accuracy drops more than this (absolute, 0.05 = 5 points).
    #[arg(long, allow_negative_numbers = true)]
    pub probe_max_drop: Option<f64>,
    /// The MMLU probe's prompt: hendrycks (default) or lm-eval.
    #[arg(long)]
    pub mmlu_prompt: Option<MmluPrompt>,
    /// Calibration text: profile statistics and Wanda masks (default: the bundled model's
    /// calib.txt; required for other models). With --resume: where the session's file is
    /// now (its hash is checked).
    #[arg(long)]
    pub calib: Option<String>,
    /// Evaluation text (UTF-8, or a parquet file with a `text` column) for the guard's
    /// perplexity (default: the bundled model's eval.txt; required for other models). With
    /// --resume: as --calib.
    #[arg(long)]
    pub eval: Option<String>,
    /// Tokens per window (default: 2048, capped at the model's max_position_embeddings).
    #[arg(long)]
    pub seqlen: Option<usize>,
    /// Calibration windows [default: 16].
    #[arg(long)]
    pub calib_windows: Option<usize>,
    /// Evaluation windows [default: 16].
    #[arg(long)]
    pub eval_windows: Option<usize>,
    /// sequential, random or documents (JSON lines such as C4's json.gz, drawn as Wanda's get_c4 draws) [default: sequential].
    #[arg(long)]
    pub calib_sample: Option<CalibSample>,
    /// Seed of --calib-sample random or documents [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Calibration windows (the first ones) for the gradient score [default: 4].
    #[arg(long)]
    pub grad_windows: Option<usize>,
    /// The profile's G: mean-of-abs (the paper's, default) or abs-of-mean.
    #[arg(long)]
    pub grad_average: Option<GradAverage>,
    /// Windows per forward pass [default: 4].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Memory for cached block-boundary states, in MiB (0: full passes) [default: 1024];
    /// the evaluation and the profile's calibration pass each hold up to this much.
    #[arg(long)]
    pub eval_cache_mb: Option<usize>,
    /// Keep no linear weight resident: each block reads its weights from the memory-mapped
    /// files when it computes (models larger than memory; slower).
    #[arg(long)]
    pub stream_layers: bool,
    /// Session file (default sessions/<unix seconds>-<model>.yaml, numbered -2, -3, ... when
    /// one of that second exists or another run has claimed it).
    #[arg(long)]
    pub session: Option<PathBuf>,
    /// Continue the session in --session where it stopped (its header's options; of those
    /// only --base-url, --agent-timeout, --agent-max-tokens, --prompts and moved files'
    /// paths may be given, besides how to review: --headless, --auto-approve, --decisions).
    #[arg(long)]
    pub resume: bool,
    /// No TUI: review with --auto-approve or --decisions.
    #[arg(long)]
    pub headless: bool,
    /// Approve every valid proposal (in the TUI: start with auto-approve on).
    #[arg(long)]
    pub auto_approve: bool,
    /// Scripted review decisions (YAML list of {iteration, action, layers, feedback}).
    #[arg(long)]
    pub decisions: Option<PathBuf>,
    /// Print one JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// YAML file with run options (the keys of the session header's `options`).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl RunArgs {
    /// The flags that set run options (a resumed session keeps the ones in its header).
    pub fn option_flags(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        macro_rules! flags {
            ($($field:ident => $name:literal),* $(,)?) => {
                $(if self.$field.is_some() { given.push($name); })*
            };
        }
        flags!(
            model => "--model", device => "--device", dtype => "--dtype", agent => "--agent",
            agent_model => "--agent-model", base_url => "--base-url", prompts => "--prompts",
            agent_timeout => "--agent-timeout", agent_max_tokens => "--agent-max-tokens", target => "--target", threshold => "--threshold",
            ceiling => "--ceiling", max_iters => "--max-iters", max_step => "--max-step",
            max_layers => "--max-layers", profile_every => "--profile-every", probe => "--probe",
            probe_file => "--probe-file", probe_limit => "--probe-limit",
            probe_max_drop => "--probe-max-drop", mmlu_prompt => "--mmlu-prompt", calib => "--calib", eval => "--eval",
            seqlen => "--seqlen", calib_windows => "--calib-windows",
            eval_windows => "--eval-windows", calib_sample => "--calib-sample", seed => "--seed",
            grad_windows => "--grad-windows", grad_average => "--grad-average", batch => "--batch", eval_cache_mb => "--eval-cache-mb",
            config => "--config",
        );
        if self.stream_layers {
            given.push("--stream-layers");
        }
        given
    }

    /// Flags win over the config file, which wins over the defaults.
    pub fn options(&self) -> Result<RunOptions> {
        let mut o = match &self.config {
            Some(p) => read_config(p)?,
            None => RunOptions::default(),
        };
        macro_rules! set {
            ($flag:expr, $field:expr) => {
                if let Some(v) = $flag.clone() {
                    $field = v;
                }
            };
        }
        set!(self.model, o.model);
        set!(self.device, o.device);
        set!(self.dtype, o.dtype);
        if self.stream_layers {
            o.stream_layers = true;
        }
        set!(self.agent, o.agent.backend);
        if self.agent_model.is_some() {
            o.agent.model = self.agent_model.clone();
        }
        if self.base_url.is_some() {
            o.agent.base_url = self.base_url.clone();
        }
        if self.prompts.is_some() {
            o.agent.prompts = self.prompts.clone();
        }
        if self.agent_timeout.is_some() {
            o.agent.timeout_s = self.agent_timeout;
        }
        if self.agent_max_tokens.is_some() {
            o.agent.max_tokens = self.agent_max_tokens;
        }
        set!(self.target, o.loop_opts.target);
        set!(self.threshold, o.loop_opts.threshold);
        if self.ceiling.is_some() {
            o.loop_opts.ceiling = self.ceiling;
        }
        set!(self.max_iters, o.loop_opts.max_iters);
        set!(self.max_step, o.loop_opts.bounds.max_step);
        set!(self.max_layers, o.loop_opts.bounds.max_layers);
        set!(self.profile_every, o.loop_opts.profile_every);
        if self.calib.is_some() {
            o.calib = self.calib.clone();
        }
        if self.eval.is_some() {
            o.eval = self.eval.clone();
        }
        if self.seqlen.is_some() {
            o.seqlen = self.seqlen;
        }
        set!(self.calib_windows, o.calib_windows);
        set!(self.eval_windows, o.eval_windows);
        set!(self.calib_sample, o.calib_sample);
        set!(self.seed, o.seed);
        set!(self.grad_windows, o.grad_windows);
        set!(self.grad_average, o.grad_average);
        set!(self.batch, o.batch);
        set!(self.eval_cache_mb, o.eval_cache_mb);
        if let Some(kind) = &self.probe {
            let p = o.probe.get_or_insert_with(Default::default);
            p.kind = kind.clone();
        }
        if let Some(p) = o.probe.as_mut() {
            if self.probe_file.is_some() {
                p.file = self.probe_file.clone();
            }
            set!(self.probe_limit, p.limit);
            set!(self.mmlu_prompt, p.mmlu_prompt);
        }
        if self.probe_max_drop.is_some() {
            o.loop_opts.probe_max_drop = self.probe_max_drop;
        }
        if (self.probe_file.is_some() || self.probe_limit.is_some()) && o.probe.is_none() {
            bail!("--probe-file and --probe-limit need --probe freebaseqa|mmlu");
        }
        if self.mmlu_prompt.is_some() && o.probe.as_ref().is_none_or(|p| p.kind != "mmlu") {
            bail!("--mmlu-prompt sets the MMLU probe's prompt: it needs --probe mmlu");
        }
        let checked = || -> Result<()> {
            // A seed that draws nothing would be recorded as if it had.
            if o.seed != 0 && !o.calib_sample.is_seeded() {
                bail!(super::calib::SEED_NEEDS_RANDOM);
            }
            check(&o)?;
            prompts_need_an_llm(&o)?;
            let backend = &o.agent.backend;
            if backend != "builtin" && o.agent.model.is_none() {
                bail!("--agent {backend} needs --agent-model NAME");
            }
            Ok(())
        };
        // A value the flags did not set came from the config file: name it (until
        // 2026-12-02 a seed, an agent without its model and prompts for the built-in
        // agent, set there, were blamed on flags never given, or not refused at all).
        checked().map_err(|e| match &self.config {
            Some(p) if !self.option_flags().contains(&flag_of(&e.to_string())) => {
                e.context(format!("config {}", p.display()))
            }
            _ => e,
        })?;
        Ok(o)
    }
}

/// The options of a `--config` file: refused in one line when it cannot be read, holds a
/// key, holds nothing, or does not parse (with where a misplaced key belongs).
fn read_config(p: &std::path::Path) -> Result<RunOptions> {
    crate::runtime::refuse_device(p).context("--config")?;
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read config {}", p.display()))?;
    refuse_keys_in_config(&text, p)?;
    // An empty document read as all defaults: a truncated or wrong file ran a
    // session nobody asked for (`{}` still says "defaults" on purpose).
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
    anyhow::ensure!(
        !blank,
        "config {}: holds no settings (empty, or only comments); write `{{}}` for the defaults",
        p.display()
    );
    serde_yaml::from_str(&text).map_err(|e| {
        let e = collapse_whitespace(&e.to_string());
        let hint = section_hint(&e).unwrap_or_default();
        anyhow::anyhow!("config {}: {e}{hint}", p.display())
    })
}

/// The flag an option error starts with (`--seqlen 0: ...` gives `--seqlen`), else "".
fn flag_of(message: &str) -> &str {
    let head = message.split([' ', ':', ',']).next().unwrap_or("");
    if head.starts_with("--") {
        head
    } else {
        ""
    }
}

/// For an unknown key of a config file that is a field elsewhere (`target` is
/// `loop.target`, `max_step` is `loop.bounds.max_step`, `seqlen` is top-level): where it
/// goes. The error listed only the keys of the section it was written in.
fn section_hint(error: &str) -> Option<String> {
    let key = error.split("unknown field `").nth(1)?.split('`').next()?;
    // With a probe: the default has none, so its keys were never found.
    let defaults = RunOptions {
        probe: Some(Default::default()),
        ..RunOptions::default()
    };
    let defaults = serde_yaml::to_value(defaults).ok()?;
    let top = defaults.as_mapping()?;
    if top.contains_key(key) {
        return Some(format!(" (`{key}` belongs at the top level)"));
    }
    let section = top
        .iter()
        .find_map(|(name, fields)| section_path(name.as_str()?, fields, key))?;
    Some(format!(" (`{key}` belongs in section `{section}`)"))
}

/// `section` (dotted, as `loop.bounds`) or the nested section of `fields` that has `key`.
fn section_path(section: &str, fields: &serde_yaml::Value, key: &str) -> Option<String> {
    let m = fields.as_mapping()?;
    if m.contains_key(key) {
        return Some(section.to_string());
    }
    m.iter().find_map(|(name, inner)| {
        section_path(&format!("{section}.{}", name.as_str()?), inner, key)
    })
}

/// An API key in a config file is refused, naming where keys come from (the file would
/// otherwise be read without it, or the key copied into a session header).
fn refuse_keys_in_config(text: &str, p: &std::path::Path) -> Result<()> {
    let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return Ok(()); // serde_yaml's own error follows
    };
    let agent = &v["agent"];
    let keyish = [
        "api_key",
        "apikey",
        "key",
        "token",
        "openai_api_key",
        "anthropic_api_key",
    ];
    if let Some(m) = agent.as_mapping() {
        for k in m.keys().filter_map(|k| k.as_str()) {
            if keyish.contains(&k.to_ascii_lowercase().as_str()) {
                bail!(
                    "config {}: agent.{k}: API keys are never read from files; set OPENAI_API_KEY or ANTHROPIC_API_KEY in the environment",
                    p.display()
                );
            }
        }
    }
    Ok(())
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A session header's options, checked as flags are. Replay and export (`resuming`
/// false) never reach the agent, so how it is reached (timeout, reply limit) is not checked there;
/// a resume says which flag replaces a bad timeout.
pub(super) fn header_options_ok(
    o: &RunOptions,
    path: &std::path::Path,
    resuming: bool,
) -> Result<()> {
    let mut o = o.clone();
    if !resuming {
        o.agent.timeout_s = None;
        o.agent.max_tokens = None;
    }
    check(&o).map_err(|e| {
        let hint = if o.agent.timeout_s == Some(0) {
            " (a resume takes --agent-timeout N to replace it)"
        } else {
            ""
        };
        anyhow::anyhow!(
            "{}: the options in its header are invalid: {e:#}{hint}",
            path.display()
        )
    })
}

/// Templates are for an LLM agent: the built-in one writes no prompts.
pub(super) fn prompts_need_an_llm(o: &RunOptions) -> Result<()> {
    if o.agent.backend == "builtin" && o.agent.prompts.is_some() {
        bail!("--prompts: the built-in agent writes no prompts (they are for --agent openai or anthropic)");
    }
    Ok(())
}

/// The options' ranges and names; errors name the flag that sets each option.
pub(super) fn check(o: &RunOptions) -> Result<()> {
    let l = &o.loop_opts;
    if !(0.0..1.0).contains(&l.target) || !l.target.is_finite() {
        bail!("--target {} is outside [0, 1)", l.target);
    }
    // 0 is refused too: a step of 0 prunes nothing.
    let step = l.bounds.max_step;
    if !(step > 0.0 && step < 1.0) {
        bail!("--max-step {step} is outside (0, 1)");
    }
    if !(l.threshold.is_finite() && l.threshold >= 0.0) {
        bail!(
            "--threshold {} must be a non-negative fraction (0.05 = 5%)",
            l.threshold
        );
    }
    // Set only in a --config file or a header, so the error names the key.
    let cap = l.bounds.max_layer_sparsity;
    if !(cap.is_finite() && cap > 0.0 && cap < 1.0) {
        bail!("loop.bounds.max_layer_sparsity {cap} is outside (0, 1)");
    }
    super::seqlen_ok(o.seqlen)?;
    use super::at_least_one;
    at_least_one(
        "max-layers",
        l.bounds.max_layers,
        "a step prunes at least one layer",
    )?;
    at_least_one(
        "max-iters",
        l.max_iters,
        "a session runs at least one iteration",
    )?;
    at_least_one(
        "calib-windows",
        o.calib_windows,
        "the profile needs at least one window",
    )?;
    at_least_one(
        "eval-windows",
        o.eval_windows,
        "the perplexity needs at least one window",
    )?;
    at_least_one("batch", o.batch, "a forward pass needs at least one window")?;
    at_least_one(
        "grad-windows",
        o.grad_windows,
        "the gradient score needs at least one window",
    )?;
    at_least_one(
        "profile-every",
        l.profile_every,
        "the profile is recomputed after every N accepted steps, N >= 1",
    )?;
    if let Some(c) = l.ceiling {
        if !(c.is_finite() && c > 0.0) {
            bail!("--ceiling {c} must be above 0 (a relative increase over the dense model: 0.5 = 50%)");
        }
    }
    if let Some(d) = l.probe_max_drop {
        if !(d.is_finite() && d >= 0.0) {
            bail!("--probe-max-drop {d} must be a non-negative accuracy drop (0.05 = 5 points)");
        }
        if o.probe.is_none() {
            bail!("--probe-max-drop needs --probe freebaseqa|mmlu");
        }
    }
    if let Some(p) = &o.probe {
        // Here, not when the probe is loaded after the model (a config's kind was blamed
        // on a flag never given, a minute into loading an 8B model).
        if !matches!(p.kind.as_str(), "freebaseqa" | "mmlu") {
            bail!("--probe {} is unknown (freebaseqa or mmlu)", p.kind);
        }
        at_least_one("probe-limit", p.limit, "the probe needs at least one item")?;
    }
    if !matches!(o.agent.backend.as_str(), "builtin" | "openai" | "anthropic") {
        bail!(
            "--agent {} is unknown (builtin, openai or anthropic)",
            o.agent.backend
        );
    }
    if o.agent.backend == "builtin" {
        let given: Vec<&str> = [
            ("--agent-model", o.agent.model.is_some()),
            ("--base-url", o.agent.base_url.is_some()),
            ("--agent-max-tokens", o.agent.max_tokens.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(f, _)| *f)
        .collect();
        if let Some((last, rest)) = given.split_last() {
            let (flags, verb, which) = match rest {
                [] => (last.to_string(), "is", "it"),
                _ => (format!("{} and {last}", rest.join(", ")), "are", "them"),
            };
            bail!(
                "{flags} {verb} for an LLM agent (--agent openai|anthropic); the built-in agent (the default) does not use {which}"
            );
        }
    }
    // Checked before any file is written (the session header records the URL).
    // (`builtin` with a URL was refused above.)
    if let Some(u) = &o.agent.base_url {
        let backend: crate::agent::Backend = o.agent.backend.parse()?;
        crate::agent::llm::base_url(u, backend.env_key())?;
    }
    if o.agent.timeout_s == Some(0) {
        bail!("--agent-timeout 0: must be at least 1 second (every request would time out)");
    }
    if o.agent.max_tokens == Some(0) {
        bail!("--agent-max-tokens 0: must be at least 1 (no reply could hold a proposal)");
    }
    crate::model::device::parse_device(&o.device)?;
    crate::model::device::parse_dtype(&o.dtype)?;
    Ok(())
}

/// The default session path, claimed for this run: sessions/<unix seconds>-<model
/// name>.yaml, or -2, -3, ... before `.yaml` when that name is taken or claimed.
pub fn default_session_path(
    model: &str,
) -> Result<(PathBuf, crate::session::reserve::Reservation)> {
    let name: String = model
        .rsplit(['/', '\\'])
        .find(|s| !s.is_empty())
        .unwrap_or("model")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = format!("{}-{name}", file::now_ms() / 1000);
    crate::session::reserve::claim(std::path::Path::new("sessions"), &stem)
}

pub fn run(a: RunArgs) -> Result<()> {
    if a.headless {
        return super::headless::run(&a);
    }
    // A finished session's resume only says so, as headless does, without a terminal or
    // the model (it loaded the model and opened the TUI on the finished state).
    let resumed = match a.resume {
        true => Some(super::headless::open(&a)?),
        false => None,
    };
    let finish = resumed
        .as_ref()
        .and_then(|o| o.log.as_ref())
        .and_then(crate::worker::setup::recorded_finish);
    if let (Some(reason), Some(o)) = (finish, &resumed) {
        let line = crate::worker::setup::already_finished(&o.path, &reason, "");
        super::errln!("{line}");
        return Ok(());
    }
    if !crate::tui::is_interactive() {
        bail!("the TUI needs a terminal: pass --headless with --auto-approve or --decisions FILE");
    }
    let opened = match resumed {
        Some(o) => o,
        None => super::headless::open(&a)?,
    };
    // Runs on the TUI's loader thread: resolving (maybe downloading) and loading the model.
    crate::tui::run_live(opened, a.auto_approve, |mut s| {
        let (workers, files) = crate::worker::setup::start(&s)?;
        let data = crate::worker::launch::wait_ready(&workers)?;
        crate::worker::setup::attach(&mut s, workers, &files, data)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of `run` is either a run option, named by `option_flags` and reaching the
    /// option it sets, or one of the session's own flags: a flag added to `RunArgs` and
    /// left out of `option_flags` had its errors blamed on the config file, and one left
    /// out of `options` did nothing.
    #[test]
    fn every_run_flag_reaches_its_option_or_is_the_sessions_own() {
        use clap::{Args, FromArgMatches};
        // (flag, value, where the value lands in the options as YAML; a switch reads `true`)
        let options: [(&str, &str, &str); 33] = [
            ("--model", "m", "model"),
            // The default, since the check opens the device; cuda:7 is tried below.
            ("--device", "cpu", "device"),
            ("--dtype", "bf16", "dtype"),
            ("--agent", "openai", "agent.backend"),
            ("--agent-model", "gpt", "agent.model"),
            ("--base-url", "http://127.0.0.1:9/v1", "agent.base_url"),
            ("--prompts", "p", "agent.prompts"),
            ("--agent-timeout", "7", "agent.timeout_s"),
            ("--agent-max-tokens", "99", "agent.max_tokens"),
            ("--target", "0.3", "loop.target"),
            ("--threshold", "0.02", "loop.threshold"),
            ("--ceiling", "0.5", "loop.ceiling"),
            ("--max-iters", "3", "loop.max_iters"),
            ("--max-step", "0.05", "loop.bounds.max_step"),
            ("--max-layers", "2", "loop.bounds.max_layers"),
            ("--profile-every", "2", "loop.profile_every"),
            ("--probe", "mmlu", "probe.kind"),
            ("--probe-file", "f", "probe.file"),
            ("--probe-limit", "3", "probe.limit"),
            ("--probe-max-drop", "0.1", "loop.probe_max_drop"),
            ("--mmlu-prompt", "lm-eval", "probe.mmlu_prompt"),
            ("--calib", "c.txt", "calib"),
            ("--eval", "e.txt", "eval"),
            ("--seqlen", "64", "seqlen"),
            ("--calib-windows", "3", "calib_windows"),
            ("--eval-windows", "5", "eval_windows"),
            ("--calib-sample", "random", "calib_sample"),
            ("--seed", "5", "seed"),
            ("--grad-windows", "2", "grad_windows"),
            ("--grad-average", "abs-of-mean", "grad_average"),
            ("--batch", "2", "batch"),
            ("--eval-cache-mb", "5", "eval_cache_mb"),
            ("--stream-layers", "", "stream_layers"),
        ];
        let own = [
            "--session",
            "--resume",
            "--headless",
            "--auto-approve",
            "--decisions",
            "--json",
            "--config",
        ];
        let cmd = RunArgs::augment_args(clap::Command::new("run"));
        let longs: Vec<String> = (cmd.get_arguments())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        for l in &longs {
            let known = options.iter().any(|o| o.0 == l) || own.contains(&l.as_str());
            assert!(
                known,
                "{l}: neither a run option in this test nor the session's own"
            );
        }
        assert_eq!(longs.len(), options.len() + own.len(), "{longs:?}");
        let mut argv = vec!["run".to_string()];
        for (flag, value, ..) in options {
            argv.push(flag.into());
            if !value.is_empty() {
                argv.push(value.into());
            }
        }
        let m = cmd.try_get_matches_from(&argv).unwrap();
        let a = RunArgs::from_arg_matches(&m).unwrap();
        let mut named = a.option_flags();
        named.sort();
        let mut want: Vec<&str> = options.iter().map(|o| o.0).collect();
        want.sort();
        assert_eq!(named, want);
        let o = serde_yaml::to_value(a.options().unwrap()).unwrap();
        for (flag, value, path) in options {
            let read = if value.is_empty() { "true" } else { value };
            let got = path.split('.').fold(&o, |v, k| &v[k]);
            let got = serde_yaml::to_string(got).unwrap();
            assert_eq!(got.trim(), read, "{flag} -> {path}");
        }
        // A device other than the default reaches the options too: the check that opens
        // it names it (no such GPU here, or no CUDA in this build).
        let mut a = a;
        a.device = Some("cuda:7".into());
        match a.options() {
            Ok(o) => assert_eq!(o.device, "cuda:7"),
            Err(e) => assert!(e.to_string().starts_with("--device cuda:7"), "{e}"),
        }
    }

    fn with_config(yaml: &str) -> Result<RunOptions> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cfg.yaml");
        std::fs::write(&p, yaml).unwrap();
        RunArgs {
            config: Some(p),
            ..Default::default()
        }
        .options()
    }

    fn err(r: Result<RunOptions>) -> String {
        let e = format!("{:#}", r.unwrap_err());
        assert!(!e.contains('\n'), "{e}");
        e
    }

    // An unknown probe kind is refused with the options, naming the config it came
    // from: it was found only after the model loaded, blamed on `--probe`.
    #[test]
    fn an_unknown_probe_kind_in_a_config_is_refused_naming_it() {
        let e = err(with_config("probe:\n  kind: trivia\n"));
        assert!(e.contains("cfg.yaml: --probe trivia is unknown"), "{e}");
    }

    // An unknown sample in a config is refused with the file, the key and the choices.
    #[test]
    fn an_unknown_calibration_sample_in_a_config_is_refused() {
        let e = err(with_config("calib_sample: shuffled\n"));
        assert!(e.contains("cfg.yaml"), "{e}");
        assert!(
            e.contains("calib_sample: unknown variant `shuffled`"),
            "{e}"
        );
        assert!(e.contains("`sequential`, `random`, `documents`"), "{e}");
        assert_eq!(
            with_config("calib_sample: documents\n")
                .unwrap()
                .calib_sample,
            CalibSample::Documents
        );
    }

    // A seed that draws nothing (sequential windows), from the flag or a config, is refused.
    #[test]
    fn a_seed_needs_random_calibration_windows() {
        let seeded = |sample: Option<&str>| {
            RunArgs {
                seed: Some(3),
                calib_sample: sample.map(|s| s.parse().unwrap()),
                ..Default::default()
            }
            .options()
        };
        let e = err(seeded(None));
        assert!(e.contains("--seed draws random calibration windows"), "{e}");
        assert_eq!(seeded(Some("random")).unwrap().seed, 3);
        let e = err(with_config("seed: 3\n"));
        assert!(e.contains("--seed draws random calibration windows"), "{e}");
        assert_eq!(
            with_config("seed: 3\ncalib_sample: random\n").unwrap().seed,
            3
        );
    }

    // The per-layer cap has no flag; a config that sets it out of range is refused by key
    // (it once gave a session of agent failures at -0.5, and no cap at all at NaN).
    #[test]
    fn a_config_cap_on_layer_sparsity_outside_0_1_is_refused() {
        for v in ["-0.5", ".nan", "2.0", "1.0", "0"] {
            let e = err(with_config(&format!(
                "loop:\n  bounds:\n    max_layer_sparsity: {v}\n"
            )));
            assert!(
                e.contains("loop.bounds.max_layer_sparsity") && e.contains("outside (0, 1)"),
                "{v}: {e}"
            );
        }
        let o = with_config("loop:\n  bounds:\n    max_layer_sparsity: 0.8\n").unwrap();
        assert_eq!(o.loop_opts.bounds.max_layer_sparsity, 0.8);
    }

    // A step of 0 was refused as "outside [0, 1)", a range that holds it: the range
    // shown is the one accepted.
    #[test]
    fn a_step_outside_0_1_names_the_open_range() {
        for v in ["0", "-0.1", "1", "1.5", ".nan"] {
            let e = err(with_config(&format!(
                "loop:\n  bounds:\n    max_step: {v}\n"
            )));
            assert!(
                e.contains("--max-step") && e.contains("is outside (0, 1)"),
                "{v}: {e}"
            );
        }
        let o = with_config("loop:\n  bounds:\n    max_step: 0.05\n").unwrap();
        assert_eq!(o.loop_opts.bounds.max_step, 0.05);
    }

    #[test]
    fn unknown_agent_keys_in_a_config_are_refused_and_keys_point_at_the_environment() {
        let e = err(with_config(
            "agent:\n  backend: openai\n  api_key: sk-abc\n",
        ));
        assert!(
            e.contains("agent.api_key")
                && e.contains("OPENAI_API_KEY")
                && e.contains("environment"),
            "{e}"
        );
        assert!(!e.contains("sk-abc"), "{e}");
        let e = err(with_config(
            "agent:\n  backend: openai\n  temperature: 0.2\n",
        ));
        assert!(e.contains("unknown field `temperature`"), "{e}");
        let o = with_config("agent:\n  backend: openai\n  model: m\n  timeout_s: 30\n").unwrap();
        assert_eq!(o.agent.timeout_s, Some(30));
    }

    // `target: 0.3` at the top was refused with the top-level keys only: the error now
    // says it belongs under `loop:`. A key misspelled everywhere gets no hint.
    #[test]
    fn a_section_key_at_the_top_of_a_config_is_pointed_to_its_section() {
        let e = err(with_config("target: 0.3\n"));
        assert!(e.contains("unknown field `target`"), "{e}");
        assert!(e.contains("(`target` belongs in section `loop`)"), "{e}");
        let e = err(with_config("max_step: 0.1\n"));
        assert!(
            e.contains("(`max_step` belongs in section `loop.bounds`)"),
            "{e}"
        );
        let e = err(with_config("targte: 0.3\n"));
        assert!(!e.contains("belongs"), "{e}");
        // Inside the wrong section (the loop's keys ran on their defaults until
        // 2026-12-04: `loop` and `loop.bounds` took any key).
        let e = err(with_config("agent:\n  target: 0.3\n"));
        assert!(e.contains("(`target` belongs in section `loop`)"), "{e}");
        let e = err(with_config("loop:\n  max_iters: 1\n  max_step: 0.02\n"));
        assert!(e.contains("unknown field `max_step`"), "{e}");
        assert!(
            e.contains("(`max_step` belongs in section `loop.bounds`)"),
            "{e}"
        );
        let e = err(with_config("loop:\n  seqlen: 128\n"));
        assert!(e.contains("(`seqlen` belongs at the top level)"), "{e}");
        // The probe's keys, though the default options have no probe (found by
        // tests/user_files_random).
        let e = err(with_config("agent:\n  limit: 2\n"));
        assert!(e.contains("(`limit` belongs in section `probe`)"), "{e}");
        let e = err(with_config("loop:\n  targt: 0.3\n"));
        assert!(
            e.contains("unknown field `targt`") && !e.contains("belongs"),
            "{e}"
        );
        let e = err(with_config("loop:\n  bounds:\n    max_stepp: 0.1\n"));
        assert!(e.contains("unknown field `max_stepp`"), "{e}");
        assert_eq!(
            with_config("loop:\n  target: 0.3\n")
                .unwrap()
                .loop_opts
                .target,
            0.3
        );
    }

    #[test]
    fn old_session_headers_still_read() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/sessions/legacy-abs-of-mean.yaml"),
        )
        .unwrap();
        let header = text.split("\n---\n").next().unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(header).unwrap();
        let o: RunOptions = serde_yaml::from_value(v["options"].clone()).unwrap();
        assert_eq!(o.agent.backend, "builtin");
        check(&o).unwrap();
    }

    #[test]
    fn agent_timeout_zero_and_llm_flags_with_the_builtin_agent_are_refused() {
        let e = err(RunArgs {
            agent: Some("openai".into()),
            agent_model: Some("m".into()),
            agent_timeout: Some(0),
            ..Default::default()
        }
        .options());
        assert!(e.starts_with("--agent-timeout 0"), "{e}");
        let e = err(RunArgs {
            agent_model: Some("gpt-4o".into()),
            base_url: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        }
        .options());
        assert!(
            e.starts_with("--agent-model and --base-url are for an LLM agent"),
            "{e}"
        );
        let e = err(RunArgs {
            agent_max_tokens: Some(100),
            ..Default::default()
        }
        .options());
        assert!(
            e.starts_with("--agent-max-tokens is for an LLM agent"),
            "{e}"
        );
        let e = err(RunArgs {
            agent: Some("anthropic".into()),
            agent_model: Some("m".into()),
            agent_max_tokens: Some(0),
            ..Default::default()
        }
        .options());
        assert!(e.starts_with("--agent-max-tokens 0"), "{e}");
        RunArgs {
            agent: Some("openai".into()),
            agent_model: Some("m".into()),
            agent_timeout: Some(1),
            ..Default::default()
        }
        .options()
        .unwrap();
    }
}
