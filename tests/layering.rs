//! The team's layering rules, checked on the source text: no file uses both candle and the
//! terminal crates, and the pure parts (session, agent, tui) name no candle type. A type
//! they share with the model lives in a candle-free file (`model/kind.rs`,
//! `profile/grad_average.rs`, `eval/mmlu_prompt.rs`) and is imported from there.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// What the file's code mentions, comments left out (a doc may say "never touches candle").
fn code(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap();
    (text.lines())
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

const CANDLE: [&str; 3] = ["candle_core", "candle_transformers", "candle_nn"];
const TERMINAL: [&str; 2] = ["ratatui", "crossterm"];
/// Paths into candle-bearing modules that a pure part must not take types from.
const MODEL_SIDE: [&str; 6] = [
    "crate::model::",
    "crate::profile::",
    "crate::eval::",
    "crate::prune::",
    "crate::bench::",
    "crate::runtime::parse_",
];
/// The candle-free files of those modules.
const FREE: [&str; 5] = [
    "crate::model::kind::",
    "crate::model::source::",
    "crate::profile::grad_average::",
    "crate::eval::mmlu_prompt::",
    "crate::prune::metadata::",
];

#[test]
fn no_file_knows_both_candle_and_the_terminal() {
    let mut files = Vec::new();
    rust_files(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut files,
    );
    assert!(files.len() > 100, "{} files", files.len());
    let mut both = Vec::new();
    for f in &files {
        let c = code(f);
        if CANDLE.iter().any(|k| c.contains(k)) && TERMINAL.iter().any(|k| c.contains(k)) {
            both.push(f.display().to_string());
        }
    }
    assert!(
        both.is_empty(),
        "files using both candle and ratatui/crossterm: {both:?}"
    );
}

#[test]
fn session_agent_and_tui_take_no_candle_types() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut bad = Vec::new();
    for part in ["session", "agent", "tui"] {
        let mut files = Vec::new();
        rust_files(&root.join(part), &mut files);
        assert!(!files.is_empty(), "{part}");
        for f in files {
            // The TUI's fixtures and tests build states only; they still must not use candle.
            let c = code(&f);
            for line in c.lines() {
                let candle = CANDLE.iter().any(|k| line.contains(k));
                let model_side = MODEL_SIDE.iter().any(|k| {
                    line.match_indices(k)
                        .any(|(i, _)| !FREE.iter().any(|free| line[i..].starts_with(free)))
                });
                if candle || model_side {
                    bad.push(format!("{}: {}", f.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "candle-side uses in the pure parts:\n{}",
        bad.join("\n")
    );
}
