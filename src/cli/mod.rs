//! The command line: argument definitions and dispatch. Handlers stay thin.

mod calib;
mod eval;
mod headless;
mod profile;
mod prune;
mod relocate;
mod replay;
mod run;
pub mod stderr_log;
mod train;
pub mod usage_error;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// `println!` that returns an error instead of panicking: stdout on a full disk (`> run.log`)
/// must not kill a session or turn finished work into a crash.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
            .map_err(|e| anyhow::anyhow!("cannot write to standard output: {e}"))
    }};
}

/// `eprintln!` that drops what stderr cannot take: progress and warnings on a full disk
/// are not worth stopping a session for (`eprintln!` panicked).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!`, likewise.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub(crate) use {errln, outln};

#[derive(Parser, Debug)]
#[command(
    name = "arborist",
    version,
    about = "Agent-guided pruning workbench for LLMs"
)]
pub struct Cli {
    /// Compute threads for candle and gemm (default: every core; every core but one under
    /// the terminal interface).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Without a subcommand: the demo (a TUI session on the bundled model).
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Evaluate a model: perplexity on a text file, MMLU, FreebaseQA.
    Eval(eval::EvalArgs),
    /// Per-layer sensitivity profile (Wanda score, gradient importance, z-scores).
    Profile(profile::ProfileArgs),
    /// One-shot pruning (magnitude, Wanda, SparseGPT, OWL; ShortGPT and width baselines) and export as a Hugging Face directory.
    Prune(prune::PruneArgs),
    /// Benchmarks: throughput against a GEMM of matching shape, profile, prune, knowledge, sessions, memory, streaming.
    Bench(crate::bench::BenchArgs),
    /// An agent-guided pruning session (TUI, or --headless).
    Run(run::RunArgs),
    /// `run` on the bundled model with the built-in agent.
    Demo(run::RunArgs),
    /// Show a saved session; --verify re-executes it.
    Replay(replay::ReplayArgs),
    /// Export a session's last checkpoint (or the one after iteration N) as a Hugging Face model directory.
    Export(replay::ExportArgs),
    /// Write the bundled model and its evaluation sets to a directory.
    Bundled(BundledArgs),
    /// Train the bundled fact-world model from scratch (reproduces assets/bundled).
    TrainTiny(train::TrainArgs),
}

#[derive(Args, Debug)]
pub struct BundledArgs {
    /// Directory for the model files, data/ and CARD.md.
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub force: bool,
}

/// Where and how a model runs.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A local model directory, a Hugging Face id (owner/name), or `bundled` (the
    /// fact-world model shipped in assets/bundled).
    #[arg(long)]
    pub model: String,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Keep no linear weight resident: each block reads its weights from the memory-mapped
    /// files when it computes (for models larger than memory; slower).
    #[arg(long)]
    pub stream_layers: bool,
}

impl ModelArgs {
    pub fn load(&self) -> Result<crate::model::LoadedModel> {
        let m = crate::model::LoadedModel::load_with(
            &self.model,
            &self.device()?,
            self.dtype()?,
            self.stream_layers,
        )?;
        for note in m.load_notes() {
            errln!("warning: {note}");
        }
        Ok(m)
    }
    pub fn device(&self) -> Result<candle_core::Device> {
        crate::runtime::parse_device(&self.device)
    }
    pub fn dtype(&self) -> Result<candle_core::DType> {
        crate::runtime::parse_dtype(&self.dtype)
    }
}

impl Cli {
    /// Whether this invocation draws the terminal interface (and so leaves a core to it).
    pub fn interactive(&self) -> bool {
        match &self.command {
            None => true,
            Some(Command::Run(a) | Command::Demo(a)) => !a.headless,
            Some(Command::Replay(a)) => !a.verify && !a.headless,
            Some(_) => false,
        }
    }

    /// The compute threads this invocation uses: `--threads`, or the default for its mode.
    pub fn compute_threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| crate::runtime::default_threads(self.interactive()))
    }
}

/// The parser: every value may be a negative number, so `--seqlen -5` gets its flag's own
/// error (clap otherwise says "unexpected argument '-5'", with a `-- -5` tip that does not
/// work for a flag's value).
pub fn command() -> clap::Command {
    fn negatives(c: clap::Command) -> clap::Command {
        c.mut_args(|a| {
            let takes = a.get_action().takes_values();
            a.allow_negative_numbers(takes)
        })
        .mut_subcommands(negatives)
    }
    negatives(<Cli as clap::CommandFactory>::command())
}

/// Parse the process's arguments with `command`.
pub fn parse() -> std::result::Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
}

pub fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        return run::run(run::RunArgs::default());
    };
    match command {
        Command::Eval(a) => eval::run(a),
        Command::Profile(a) => profile::run(a),
        Command::Prune(a) => prune::run(a),
        Command::Bench(a) => crate::bench::run(a),
        Command::TrainTiny(a) => train::run(a),
        Command::Run(a) => run::run(a),
        Command::Replay(a) => replay::replay(a),
        Command::Export(a) => replay::export(a),
        Command::Demo(a) => run::run(a),
        Command::Bundled(a) => {
            crate::prune::export::write_dir_atomically(&a.out, a.force, |d| {
                crate::model::bundled::write_files(d)
            })?;
            errln!(
                "wrote the bundled model and its data to {}",
                a.out.display()
            );
            Ok(())
        }
    }
}

/// `--max-shard-size`, transformers' default when not given.
pub fn max_shard_size(flag: Option<&str>) -> Result<u64> {
    flag.map_or(Ok(crate::model::shards::DEFAULT_MAX_SHARD_SIZE), |s| {
        crate::model::shards::parse_size(s)
    })
}

/// What `prune --out` and `export` print once the directory is written: one JSON object
/// with `--json` (the directory and its arborist.json), else the command's own lines. An
/// error here says the directory is there all the same.
pub fn report_written(
    out: &std::path::Path,
    meta: &serde_json::Value,
    json: bool,
    lines: &[String],
) -> Result<()> {
    let printed = if json {
        let doc = serde_json::json!({ "out": out.display().to_string(), "result": meta });
        outln!("{doc}")
    } else {
        lines.iter().try_for_each(|l| outln!("{l}"))
    };
    anyhow::Context::with_context(printed, || {
        format!("wrote {}, but not its report", out.display())
    })
}

/// A count flag of 0 refused in one line that names it and says why.
pub fn at_least_one(flag: &str, value: usize, why: &str) -> Result<()> {
    if value == 0 {
        anyhow::bail!("--{flag} 0: {why}");
    }
    Ok(())
}

/// Below 2 tokens a window predicts nothing: refused before any file is read.
pub fn seqlen_ok(seqlen: Option<usize>) -> Result<()> {
    match seqlen {
        Some(s) if s < 2 => anyhow::bail!("--seqlen {s}: a window needs at least 2 tokens"),
        _ => Ok(()),
    }
}

/// `--seqlen`, or the model's default; a window longer than the context is warned about.
pub fn seqlen_warned(flag: Option<usize>, m: &crate::model::LoadedModel) -> usize {
    let s = m.seqlen_or_default(flag);
    if let Some(note) = m.seqlen_note(s) {
        errln!("warning: {note}");
    }
    s
}

/// Progress on stderr, overwritten in place on a terminal.
pub fn progress(label: &str, done: usize, total: usize) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        err!("\r{label} {done}/{total}");
        if done == total {
            errln!();
        }
    } else if done == total {
        errln!("{label} {done}/{total}");
    }
}

/// A progress bar per phase on a terminal; nothing when stderr is a file.
pub fn bar(label: &str, done: usize, total: usize) {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || total == 0 {
        return;
    }
    let width = 30;
    let fill = width * done.min(total) / total;
    err!(
        "\r{label:<20} [{}{}] {done}/{total}\x1b[K",
        "#".repeat(fill),
        " ".repeat(width - fill)
    );
    if done >= total {
        err!("\r\x1b[K");
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    // `arborist CMD --help` is the reference a user reads first: every flag and argument
    // says what it is (several said nothing until 2026-12-01).
    #[test]
    fn every_flag_and_argument_has_help() {
        let mut missing = Vec::new();
        let root = super::Cli::command();
        for cmd in root.get_subcommands() {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{} {id}", cmd.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
