//! The command line: argument definitions and dispatch. Handlers stay thin.

mod calib;
pub mod error_line;
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
        let files = crate::model::ModelFiles::resolve(&self.model)?;
        // Reading a large model takes a while (40 s for 8 GB here): say what is going on.
        let bytes: u64 = files
            .weights
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        if let Some(line) = loading_line(&files.id, bytes, files.weights.len(), self.stream_layers)
        {
            errln!("{line}");
        }
        let m = crate::model::LoadedModel::from_files(
            files,
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
        crate::model::device::parse_device(&self.device)
    }
    pub fn dtype(&self) -> Result<candle_core::DType> {
        crate::model::device::parse_dtype(&self.dtype)
    }
}

impl Cli {
    /// Whether this invocation runs a session or writes a model, which a closed pipe on
    /// stdout or stderr must not stop halfway (`run --headless 2>&1 | head` killed the
    /// session at its first lines): there the write fails and what it said is dropped.
    pub fn outlives_its_pipes(&self) -> bool {
        matches!(
            &self.command,
            None | Some(
                Command::Run(_) | Command::Demo(_) | Command::Export(_) | Command::Prune(_)
            )
        )
    }

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
        // Bare `arborist` takes no flags, so the hint names the subcommand that does.
        if !crate::tui::is_interactive() {
            anyhow::bail!(
                "the demo's TUI needs a terminal: run `arborist demo --headless --auto-approve` for it without one"
            );
        }
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

/// What loading says of a model of at least 1 GiB of weights (smaller ones load at once).
fn loading_line(id: &str, bytes: u64, files: usize, stream: bool) -> Option<String> {
    (bytes >= 1 << 30).then(|| {
        let how = if stream {
            " (their headers: --stream-layers)"
        } else {
            ""
        };
        format!(
            "loading {id}: {:.1} GB of weights in {files} file(s){how}",
            bytes as f64 / 1e9
        )
    })
}

/// Progress on stderr: overwritten in place on a terminal; in a log, a line when at least
/// `LOG_EVERY` has passed since the last one, and the last (a 4B model's evaluation said
/// nothing there for minutes).
pub fn progress(label: &str, done: usize, total: usize) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        err!("\r{label} {done}/{total}");
        if done == total {
            errln!();
        }
    } else if log_due(
        &LAST_LOGGED,
        label,
        done == total,
        std::time::Instant::now(),
    ) {
        errln!("{label} {done}/{total}");
    }
}

type Logged = std::sync::Mutex<Option<(String, std::time::Instant)>>;
static LAST_LOGGED: Logged = std::sync::Mutex::new(None);

const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether a log line of `label` is due: at the end, or `LOG_EVERY` after the last line
/// (or the first report) of the same label.
fn log_due(last: &Logged, label: &str, end: bool, now: std::time::Instant) -> bool {
    let mut last = last
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if end {
        *last = None;
        return true;
    }
    match last.as_ref() {
        Some((l, at)) if l == label && now.duration_since(*at) < LOG_EVERY => false,
        Some((l, _)) if l == label => {
            *last = Some((label.to_string(), now));
            true
        }
        _ => {
            *last = Some((label.to_string(), now));
            false
        }
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

    // In a log a long pass says where it is every LOG_EVERY, and always at its end.
    #[test]
    fn progress_in_a_log_is_a_line_every_so_often_and_the_last() {
        let last = super::Logged::new(None);
        let t0 = std::time::Instant::now();
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        let due = |label, end, s| super::log_due(&last, label, end, at(s));
        assert!(
            !due("windows", false, 0),
            "the first report starts the clock"
        );
        assert!(!due("windows", false, 29));
        assert!(due("windows", false, 30));
        assert!(!due("windows", false, 45));
        assert!(due("windows", false, 61));
        assert!(due("windows", true, 62), "the last is always said");
        // Another label starts its own clock.
        assert!(!due("blocks", false, 100));
        assert!(!due("windows", false, 101));
        assert!(due("windows", false, 132));
    }

    #[test]
    fn loading_is_said_of_models_of_a_gigabyte_or_more() {
        assert_eq!(super::loading_line("m", (1 << 30) - 1, 1, false), None);
        assert_eq!(
            super::loading_line("Qwen/Qwen3-4B", 8_044_982_080, 3, false).as_deref(),
            Some("loading Qwen/Qwen3-4B: 8.0 GB of weights in 3 file(s)")
        );
        assert!(super::loading_line("m", 1 << 30, 1, true)
            .unwrap()
            .ends_with("(their headers: --stream-layers)"));
    }

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
