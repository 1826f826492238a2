//! Hugging Face model directories damaged at random, one damage per case, from a fixed
//! seed, and read by `arborist eval --ppl` (a tenth of the cases by `profile`, a tenth by
//! `prune`). Each run must end in time under `ulimit -v`, without a panic, a signal or a
//! large allocation, leave its inputs as they were, and either succeed with a well-formed
//! report or fail with exit status 1 and one `error:` line (after any warnings) that names
//! the damaged file, field or tensor (README, "Perplexity protocol" and "Bad input").
//!
//! A failure prints the seed, the case, the damage and the command.
//! `MODEL_FILES_RANDOM_CASE=weights:17` runs that case alone and keeps its directory;
//! `MODEL_FILES_RANDOM_LOG=1` prints every case with the last line of its stderr.
// Linux: wait4's ru_maxrss is in KiB there (bytes on macOS).
#![cfg(target_os = "linux")]

#[path = "../common/mod.rs"]
mod common;

mod bases;
mod child;
mod config_damage;
mod damage;
mod index_damage;
mod rules;
mod tokenizer_damage;
mod weights_damage;

use bases::Base;
use damage::pick;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rules::Cmd;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SEED: u64 = 0x6d66_7261_6e64;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Part {
    Config,
    Weights,
    Tokenizer,
    Index,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Config => "config",
            Part::Weights => "weights",
            Part::Tokenizer => "tokenizer",
            Part::Index => "index",
        }
    }
}

pub fn eval_args(model: &Path, text: &Path) -> Vec<String> {
    args(Cmd::Eval, model, text, Path::new(""))
}

/// The command line of `cmd`, with M, T and O the model, the text and --out.
fn args(cmd: Cmd, model: &Path, text: &Path, out: &Path) -> Vec<String> {
    let line = match cmd {
        Cmd::Eval => "eval --model M --ppl T --seqlen 64 --json",
        Cmd::Profile => {
            "profile --model M --calib T --seqlen 64 --calib-windows 2 --grad-windows 1 --json"
        }
        Cmd::Prune => "prune --model M --method magnitude --sparsity 0.5 --out O --json",
    };
    (line.split(' '))
        .map(|w| match w {
            "M" => common::p(model),
            "T" => common::p(text),
            "O" => common::p(out),
            w => w.to_string(),
        })
        .collect()
}

/// Every file of the model directory and the text, to see that a run changed none.
fn snapshot(model: &Path, text: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(model)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(text.to_path_buf());
    files
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap();
            (f, bytes)
        })
        .collect()
}

struct Bench {
    root: PathBuf,
    text: PathBuf,
    bases: Vec<Base>,
}

/// One damaged copy of a base, run and checked: a report of the rules it broke, if any.
fn run_case(b: &Bench, part: Part, n: u64, keep: bool) -> Option<String> {
    let case_seed = SEED ^ ((part as u64) << 40) ^ n;
    let mut rng = StdRng::seed_from_u64(case_seed);
    let bases: Vec<&Base> = b
        .bases
        .iter()
        .filter(|x| x.sharded == (part == Part::Index) || part == Part::Weights)
        .collect();
    let base = pick(&mut rng, &bases);
    let case = b.root.join(format!("{}-{n}", part.name()));
    let model = case.join("m");
    std::fs::create_dir_all(&model).unwrap();
    for e in std::fs::read_dir(&base.dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    let damage = match part {
        Part::Config => config_damage::damage(&mut rng, &model),
        Part::Weights => weights_damage::damage(&mut rng, &model),
        Part::Tokenizer if rng.gen_ratio(1, 4) => tokenizer_damage::damage_config(&mut rng, &model),
        Part::Tokenizer => tokenizer_damage::damage(&mut rng, &model),
        Part::Index => index_damage::damage(&mut rng, &model),
    };
    let cmd = match rng.gen_range(0..10) {
        0 => Cmd::Profile,
        1 => Cmd::Prune,
        _ => Cmd::Eval,
    };
    let out = case.join("out");
    let args = args(cmd, &model, &b.text, &out);
    let before = snapshot(&model, &b.text);
    let ran = child::run(&args, &case);
    let seen = rules::Seen {
        cmd,
        damage: &damage,
        base,
        model: &model,
        out: &out,
        ran: &ran,
        inputs_kept: snapshot(&model, &b.text) == before,
    };
    let problems = rules::problems(&seen);
    if std::env::var_os("MODEL_FILES_RANDOM_LOG").is_some() {
        let last = ran.stderr.lines().last().unwrap_or("");
        eprintln!(
            "{} {n} {:?} {}: {} => {last}",
            part.name(),
            cmd,
            base.name,
            damage.what
        );
    }
    if keep {
        eprintln!("case directory kept: {}", case.display());
    } else {
        std::fs::remove_dir_all(&case).unwrap();
    }
    if problems.is_empty() {
        return None;
    }
    let stderr: Vec<&str> = ran.stderr.lines().take(12).collect();
    Some(format!(
        "{part} case {n} (seed {SEED:#x}, case seed {case_seed:#x}; rerun alone: MODEL_FILES_RANDOM_CASE={part}:{n})\n  \
         model: {base}; damage: {what}\n  command: arborist {cmd}\n  {ending}, peak {rss} MiB\n  \
         broke: {problems}\n  stderr: {stderr}",
        part = part.name(),
        base = base.name,
        what = damage.what,
        cmd = args.join(" "),
        ending = ran.ending,
        rss = ran.max_rss_kib / 1024,
        problems = problems.join("; "),
        stderr = stderr.join("\n          "),
    ))
}

/// `cases` damaged directories of `part`, from the fixed seed; all of them before any
/// assertion, so that one run reports every broken rule.
fn run_part(part: Part, cases: u64) {
    let only = std::env::var("MODEL_FILES_RANDOM_CASE").ok();
    let selected: Vec<u64> = match only.as_deref().and_then(|s| s.split_once(':')) {
        Some((p, n)) if p == part.name() => vec![n.parse().expect("CASE is PART:N")],
        Some(_) => return,
        None => (0..cases).collect(),
    };
    let keep = only.is_some();
    let dir = common::tmp();
    let root = match keep {
        true => dir.keep(),
        false => dir.path().to_path_buf(),
    };
    let text = root.join("eval.txt");
    std::fs::write(&text, common::text(3000)).unwrap();
    let bases = bases::build(&root, &text);
    let bench = Bench { root, text, bases };
    let failures: Vec<String> = (selected.iter())
        .filter_map(|&n| run_case(&bench, part, n, keep))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {} cases broke a rule:\n\n{}",
        failures.len(),
        selected.len(),
        part.name(),
        failures.join("\n\n")
    );
}

// 2,000 cases in all: about 15 s in the debug profile on two cores (the tests run side by
// side, each case a few milliseconds of its own and one run of the binary).
#[test]
fn damaged_config_json_is_refused_by_name() {
    run_part(Part::Config, 500);
}

#[test]
fn damaged_safetensors_are_refused_by_name() {
    run_part(Part::Weights, 800);
}

#[test]
fn damaged_tokenizer_files_are_refused_by_name() {
    run_part(Part::Tokenizer, 400);
}

#[test]
fn damaged_shard_indexes_are_refused_by_name() {
    run_part(Part::Index, 300);
}
