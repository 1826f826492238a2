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

/// The paths a file names from the crate's root, with `crate::{a::X, b::{Y, Z}}` groups
/// spread out (`crate::a::X`, `crate::b::Y`, ...), `super::super::` (a root from one
/// folder down) read as `crate::`, and a bare `crate::model;` kept as `crate::model::`.
fn crate_paths(code: &str) -> Vec<String> {
    let code = code.replace("super::super::", "crate::");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        out.extend(expand("crate::", rest));
    }
    out
}

/// The paths of the item starting `rest` (after `prefix`): a name, a path, or a group.
fn expand(prefix: &str, rest: &str) -> Vec<String> {
    if let Some(inner) = rest.strip_prefix('{') {
        // Up to the matching brace, split at commas outside nested groups.
        let (mut depth, mut start, mut out) = (0usize, 0usize, Vec::new());
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.extend(expand(prefix, inner[start..i].trim_start()));
                    return out;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(expand(prefix, inner[start..i].trim_start()));
                    start = i + 1;
                }
                _ => {}
            }
        }
        return out;
    }
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(rest.len());
    let path = &rest[..end];
    if rest[end..].starts_with('{') {
        return expand(&format!("{prefix}{path}"), &rest[end..]);
    }
    let full = format!("{prefix}{path}");
    // A module named whole (`use crate::model;`) counts as everything in it.
    vec![if full.ends_with("::") {
        full
    } else {
        format!("{full}::")
    }]
}

#[test]
fn crate_paths_read_groups_and_bare_modules() {
    let code = "use crate::{model::{Decoder, kind::LinearKind}, session::Event};\n\
                use crate::profile;\nlet x = super::super::eval::ppl::run();";
    assert_eq!(
        crate_paths(code),
        [
            "crate::model::Decoder::",
            "crate::model::kind::LinearKind::",
            "crate::session::Event::",
            "crate::profile::",
            "crate::eval::ppl::run::",
        ]
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
            for line in c.lines().filter(|l| CANDLE.iter().any(|k| l.contains(k))) {
                bad.push(format!("{}: {}", f.display(), line.trim()));
            }
            for path in crate_paths(&c) {
                let model_side = MODEL_SIDE.iter().any(|k| path.starts_with(k));
                if model_side && !FREE.iter().any(|free| path.starts_with(free)) {
                    bad.push(format!("{}: {path}", f.display()));
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
