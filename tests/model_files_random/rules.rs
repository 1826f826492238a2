//! What every run must do (README, "Bad input": one line on stderr naming the file, field
//! or tensor, and exit status 1; no panic, hang or huge allocation), and what each damage
//! allows.

use crate::bases::{Base, INDEX};
use crate::child::{Ending, Ran};
use crate::damage::{Blame, Damage, Expect};
use std::path::Path;

/// Peak resident memory a run of these tiny models may reach (they use about 20 MB).
pub const MAX_RSS_MIB: u64 = 512;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cmd {
    Eval,
    Profile,
    Prune,
}

pub struct Seen<'a> {
    pub cmd: Cmd,
    pub damage: &'a Damage,
    pub base: &'a Base,
    pub model: &'a Path,
    pub out: &'a Path,
    pub ran: &'a Ran,
    pub inputs_kept: bool,
}

/// A progress line (`evaluating windows 46/46`, `profile: gradient blocks 2/2`).
fn is_progress(line: &str) -> bool {
    let last = line.rsplit(' ').next().unwrap_or("");
    !line.starts_with("error")
        && last
            .split_once('/')
            .is_some_and(|(a, b)| a.parse::<usize>().is_ok() && b.parse::<usize>().is_ok())
}

fn is_benign(line: &str) -> bool {
    line.starts_with("warning: ") || is_progress(line)
}

/// Whether the error line names what the damage hit.
fn names_blamed(line: &str, d: &Damage, model: &Path) -> bool {
    let has = |name: &str| line.contains(&model.join(name).display().to_string());
    let tensor = ["tensor `", "tensor model.", "tensor lm_head"]
        .iter()
        .any(|t| line.contains(t));
    match &d.blame {
        Blame::Config { keys, value } => {
            let field = keys.is_empty()
                || keys.iter().any(|k| line.contains(k.as_str()))
                || value
                    .as_ref()
                    .is_some_and(|v| line.contains(&format!("`{v}`")));
            (has("config.json") && field) || tensor
        }
        Blame::Weights(file) => line.contains(&file.display().to_string()) || tensor,
        Blame::Tensor(name) => {
            line.contains(name.as_str()) && line.contains(&model.display().to_string())
        }
        Blame::Tokenizer => has("tokenizer.json"),
        Blame::Index { shards } => {
            let shard = shards.iter().any(|s| line.contains(s.as_str()));
            has(INDEX) || line.contains("weight shard ") || tensor || shard
        }
        Blame::Nothing => false,
    }
}

/// Every rule the run broke, in words.
pub fn problems(s: &Seen) -> Vec<String> {
    let mut out = Vec::new();
    let ran = s.ran;
    let code = match ran.ending {
        Ending::TimedOut => {
            out.push(format!("hung: killed after {:?}", crate::child::DEADLINE));
            return out;
        }
        Ending::Signalled(sig) => {
            let oom = ran.stderr.contains("memory allocation");
            out.push(match oom {
                true => format!(
                    "killed by signal {sig} at the ulimit -v memory limit: a huge allocation"
                ),
                false => format!("killed by signal {sig}"),
            });
            None
        }
        Ending::Exited(c) => Some(c),
    };
    let panic_text = ["panicked at", "RUST_BACKTRACE", "stack backtrace"]
        .into_iter()
        .find(|t| ran.stderr.contains(t));
    if panic_text.is_some() || code == Some(101) {
        let said = panic_text
            .map(|t| format!(", `{t}` in stderr"))
            .unwrap_or_default();
        out.push(format!("panicked (exit status {code:?}{said})"));
    }
    let mib = ran.max_rss_kib / 1024;
    if mib > MAX_RSS_MIB {
        out.push(format!("peak memory {mib} MiB, above {MAX_RSS_MIB} MiB"));
    }
    if !s.inputs_kept {
        out.push("an input file changed".into());
    }
    let lines: Vec<&str> = ran.stderr.lines().collect();
    match code {
        Some(0) => succeeded(s, &lines, &mut out),
        Some(1) => failed(s, &lines, &mut out),
        Some(101) => {}
        Some(c) => out.push(format!("exit status {c}, expected 0 or 1")),
        None => {}
    }
    out
}

fn succeeded(s: &Seen, lines: &[&str], out: &mut Vec<String>) {
    let d = s.damage;
    if d.expect == Expect::MustFail {
        out.push("succeeded on a file no reader can take".into());
    }
    if let Some(l) = lines.iter().find(|l| !is_benign(l)) {
        out.push(format!("stderr line neither a warning nor progress: {l:?}"));
    }
    if d.expect == Expect::MustRunSame && lines.iter().any(|l| l.starts_with("warning")) {
        out.push("a warning about a file the command does not read".into());
    }
    let stdout = s.ran.stdout.trim_end();
    if stdout.lines().count() != 1 {
        out.push(format!("stdout is not one line: {stdout:?}"));
        return;
    }
    let v: serde_json::Value = match serde_json::from_str::<serde_json::Value>(stdout) {
        Ok(v) if v.is_object() => v,
        _ => {
            out.push(format!("stdout is not a JSON object: {stdout:?}"));
            return;
        }
    };
    match s.cmd {
        Cmd::Eval => {
            let ppl = &v["ppl"];
            let value = &ppl["value"];
            let finite = value.as_f64().is_some_and(f64::is_finite);
            if !(finite || (value.is_null() && d.non_finite_ok)) {
                out.push(format!(
                    "perplexity {value} (only finite, or null from weights that overflow)"
                ));
            }
            if ppl["seqlen"] != 64 || ppl["windows"].as_u64().is_none_or(|w| w == 0) {
                out.push(format!("ppl report malformed: {ppl}"));
            }
            if d.expect == Expect::MustRunSame && *ppl != s.base.ppl {
                out.push(format!("result changed: {ppl}, undamaged {}", s.base.ppl));
            }
        }
        Cmd::Profile => {}
        Cmd::Prune => {
            let has_weights = ["model.safetensors", INDEX]
                .iter()
                .any(|f| s.out.join(f).is_file());
            let complete = ["config.json", "tokenizer.json", "arborist.json"]
                .iter()
                .all(|f| s.out.join(f).is_file());
            if !(has_weights && complete) {
                out.push("the export is incomplete".into());
            }
        }
    }
}

fn failed(s: &Seen, lines: &[&str], out: &mut Vec<String>) {
    let d = s.damage;
    if d.expect == Expect::MustRunSame {
        out.push("failed, though the damaged file is one the command does not read".into());
    }
    if !s.ran.stdout.is_empty() {
        out.push(format!("stdout not empty on failure: {:?}", s.ran.stdout));
    }
    let errors = lines.iter().filter(|l| l.starts_with("error")).count();
    let last = lines.last().copied().unwrap_or("");
    if errors != 1 || !last.starts_with("error: ") {
        out.push(format!(
            "{errors} error lines, the last line {last:?}: expected one `error: ` line, last"
        ));
    }
    if let Some(l) = lines[..lines.len().saturating_sub(1)]
        .iter()
        .find(|l| !is_benign(l))
    {
        out.push(format!("the error is more than one line: {l:?}"));
    }
    if d.expect != Expect::MustRunSame && !names_blamed(last, d, s.model) {
        out.push(format!(
            "the error does not name what is damaged ({:?})",
            d.blame
        ));
    }
    if s.cmd == Cmd::Prune && s.out.exists() {
        out.push("a failed prune left its --out directory".into());
    }
}
