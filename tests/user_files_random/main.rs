//! Seeded random damage to the files users write or download and hand to Arborist, other
//! than model directories and session files (tested elsewhere): `run --config` files,
//! `--prompts` templates, `--decisions` files, `prune --allocation` files, benchmark data
//! (MMLU CSV and parquet, FreebaseQA, perplexity text and parquet), calibration text and
//! documents, and the TUI's themes and keymap.
//!
//! Every damaged file is either accepted or refused, never with a panic, a signal or a
//! hang. A refusal is one `error:` line, the last on stderr, that names the file (or the
//! field or layer in it), and leaves nothing behind. Where the README promises a particular
//! refusal (an unknown config key named, an empty template named, ...) that is checked too.
//! A failure prints the seed, the case, the damage and the command, and the damaged file.
//! `USER_FILES_SEED=N` draws other cases.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/scripted_server.rs"]
mod scripted_server;

mod benchmarks;
mod config;
mod damage;
mod decisions;
mod prompts;
mod texts;
mod ui_files;

use common::Ran;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The seed every file kind's draws derive from.
pub const SEED: u64 = 20261205;

/// A hung child is killed at this deadline and reported.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Address-space limit of each child: a damaged length must not take the machine's memory.
const MEMORY_KB: u64 = 6_000_000;

/// $USER_FILES_SEED, else `SEED`.
fn base_seed() -> u64 {
    std::env::var("USER_FILES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}

/// The seed of one file kind: the base seed mixed with its name.
pub fn seed(kind: &str) -> u64 {
    kind.bytes()
        .fold(base_seed() ^ 0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The tiny Qwen3 model and a text long enough for a few windows of 32 tokens.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub model: String,
    pub text: PathBuf,
}

impl Workspace {
    pub fn create() -> Workspace {
        let dir = common::tmp();
        let model = dir.path().join("model");
        common::write_model_dir(&model, common::TINY_QWEN3, 3, candle_core::DType::F32);
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let text = data.join("text.txt");
        std::fs::write(&text, common::text(4000)).unwrap();
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        Workspace {
            model: common::p(&model),
            text,
            dir,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A session on the workspace's model over its text, at a protocol small enough for
    /// hundreds of runs, for `iters` iterations; the caller adds how it is reviewed.
    pub fn session_args(&self, iters: &str) -> Vec<String> {
        let text = common::p(&self.text);
        [
            "run",
            "--model",
            &self.model,
            "--calib",
            &text,
            "--eval",
            &text,
            "--seqlen",
            "32",
            "--calib-windows",
            "2",
            "--eval-windows",
            "2",
            "--grad-windows",
            "1",
            "--max-iters",
            iters,
        ]
        .map(String::from)
        .to_vec()
    }

    /// Run the binary in the workspace, under the memory limit and the deadline.
    pub fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Ran {
        let cache = common::p(&self.path("cache"));
        let mut all = vec![("ARBORIST_CACHE", cache.as_str())];
        all.extend(envs);
        run_limited(args, &all, self.dir.path())
    }
}

/// `common::arborist_timed`, with the binary started under `ulimit -v`.
fn run_limited(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Ran {
    common::arborist_timed_vm(args, envs, cwd, DEADLINE, MEMORY_KB)
}

/// How a run ended, once it kept the rules every run keeps.
#[derive(Debug)]
pub enum Outcome {
    Accepted,
    /// The one error line.
    Refused(String),
}

/// The rules of every run, whatever the file: it ends in time, by itself, without a panic;
/// it succeeds, or exits 1 with exactly one `error:` line, the last line of stderr, naming
/// one of `names` (the file, or the field or layer in it).
pub fn judge(r: &Ran, names: &[&str]) -> Result<Outcome, String> {
    if r.timed_out {
        return Err(format!("no end within {DEADLINE:?} (a hang?)"));
    }
    if r.stderr.contains("panicked") || r.stderr.contains("RUST_BACKTRACE") {
        return Err("panicked".into());
    }
    let errors = r.error_lines();
    match r.code {
        None => Err("killed by a signal".into()),
        Some(0) if errors.is_empty() => Ok(Outcome::Accepted),
        Some(0) => Err(format!("exit status 0 with an error line: {}", errors[0])),
        Some(1) => {
            let [line] = errors[..] else {
                return Err(format!("{} error lines, not one", errors.len()));
            };
            let last = r.stderr.lines().rfind(|l| !l.trim().is_empty());
            if last != Some(line) {
                return Err(format!("the error is not the last line: {line}"));
            }
            if !names.iter().any(|n| line.contains(n)) {
                return Err(format!("the error names none of {names:?}: {line}"));
            }
            Ok(Outcome::Refused(line.to_string()))
        }
        Some(c) => Err(format!("exit status {c}")),
    }
}

/// Reads a session file as YAML documents: header first, then at least `min_events`.
fn session_reads(path: &std::path::Path, min_events: usize) -> Result<(), String> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut n = 0;
    for d in serde_yaml::Deserializer::from_str(&text) {
        serde_yaml::Value::deserialize(d).map_err(|e| format!("a document is not YAML: {e}"))?;
        n += 1;
    }
    if n < 1 + min_events {
        return Err(format!(
            "{n} document(s), expected a header and {min_events}+ events"
        ));
    }
    Ok(())
}

/// A run's session file after it ended: a success keeps it whole; a failure keeps either
/// nothing or a file that reads back, and says which.
pub fn session_after(session: &std::path::Path, outcome: &Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Accepted => session_reads(session, 1).map_err(|e| format!("session file: {e}")),
        Outcome::Refused(line) => {
            match (session.exists(), line.contains("the session is saved in")) {
                (false, false) => Ok(()),
                (true, true) => session_reads(session, 1).map_err(|e| format!("kept session: {e}")),
                (true, false) => Err("a session file was left behind by a refusal".into()),
                (false, true) => {
                    Err("the error says the session is saved, but there is none".into())
                }
            }
        }
    }
}

/// One damaged file and what was done to it.
pub struct Case {
    pub index: usize,
    pub damage: String,
    pub command: String,
    /// The damaged file's bytes, shown with a failure.
    pub shown: String,
}

/// The problems found in one file kind, reported together at the end.
pub struct Report {
    kind: &'static str,
    seed: u64,
    problems: Vec<String>,
    accepted: usize,
    refused: usize,
    started: std::time::Instant,
}

impl Report {
    pub fn new(kind: &'static str) -> Report {
        Report {
            kind,
            seed: seed(kind),
            problems: Vec::new(),
            accepted: 0,
            refused: 0,
            started: std::time::Instant::now(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Count the outcome, or record why the case broke a rule.
    pub fn check(&mut self, case: &Case, r: &Ran, verdict: Result<Outcome, String>) {
        if std::env::var_os("USER_FILES_VERBOSE").is_some() {
            eprintln!(
                "{} {} [{:.2} s] {}: {:?}",
                self.kind, case.index, r.seconds, case.damage, verdict
            );
        }
        match verdict {
            Ok(Outcome::Accepted) => self.accepted += 1,
            Ok(Outcome::Refused(_)) => self.refused += 1,
            Err(why) => self.fail(case, Some(r), &why),
        }
    }

    /// An outcome judged by the caller (files loaded in this process).
    pub fn accepted_ok(&mut self) {
        self.accepted += 1;
    }

    pub fn refused_ok(&mut self) {
        self.refused += 1;
    }

    pub fn fail(&mut self, case: &Case, r: Option<&Ran>, why: &str) {
        let mut s = format!(
            "[{} case {}, USER_FILES_SEED={}] {why}\n  damage: {}\n  command: {}\n  file: {}",
            self.kind,
            case.index,
            base_seed(),
            case.damage,
            case.command,
            case.shown
        );
        if let Some(r) = r {
            let tail: Vec<&str> = r.stderr.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            s += &format!(
                "\n  exit {:?} after {:.1} s; stderr ends:\n    {}",
                r.code,
                r.seconds,
                tail.join("\n    ")
            );
        }
        self.problems.push(s);
    }

    /// Fails with every problem; a kind whose cases were all accepted or all refused did
    /// not exercise both paths.
    pub fn finish(self) {
        eprintln!(
            "{}: USER_FILES_SEED={}, {} accepted, {} refused, {} problem(s), {:.1} s",
            self.kind,
            base_seed(),
            self.accepted,
            self.refused,
            self.problems.len(),
            self.started.elapsed().as_secs_f64()
        );
        assert!(
            self.problems.is_empty(),
            "{} problem(s):\n{}",
            self.problems.len(),
            self.problems.join("\n\n")
        );
        assert!(
            self.accepted > 0 && self.refused > 0,
            "{}: {} accepted and {} refused: the damage does not exercise both paths",
            self.kind,
            self.accepted,
            self.refused
        );
    }
}

/// The arguments as a shell line, for a failure's report.
pub fn command_line(args: &[&str]) -> String {
    let mut s = String::from("arborist");
    for a in args {
        s.push(' ');
        if a.is_empty() || a.contains([' ', '\'', '"', '$', '`']) {
            s += &format!("'{}'", a.replace('\'', "'\\''"));
        } else {
            s += a;
        }
    }
    s
}
