//! `arborist run --config FILE`: the run options as YAML (the keys of a session header's
//! `options`), damaged line by line and byte by byte.

use crate::damage;
use crate::{command_line, judge, session_after, Case, Outcome, Report, Workspace};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const CASES: usize = 400;

/// One line of the config: a section header (`value` None) or a key and its value.
#[derive(Clone)]
struct Line {
    indent: usize,
    key: String,
    value: Option<String>,
}

impl Line {
    fn new(indent: usize, key: &str, value: Option<&str>) -> Line {
        Line {
            indent,
            key: key.into(),
            value: value.map(str::to_string),
        }
    }
}

/// The keys each section takes (`RunOptions` and its parts).
const SECTIONS: [(&str, &[&str]); 5] = [
    (
        "",
        &[
            "model",
            "device",
            "dtype",
            "agent",
            "calib",
            "eval",
            "seqlen",
            "calib_windows",
            "eval_windows",
            "calib_sample",
            "seed",
            "grad_windows",
            "grad_average",
            "batch",
            "eval_cache_mb",
            "stream_layers",
            "loop",
            "probe",
        ],
    ),
    (
        "agent",
        &[
            "backend",
            "model",
            "base_url",
            "prompts",
            "timeout_s",
            "max_tokens",
        ],
    ),
    (
        "loop",
        &[
            "target",
            "threshold",
            "ceiling",
            "max_iters",
            "bounds",
            "profile_every",
            "probe_max_drop",
        ],
    ),
    (
        "loop.bounds",
        &["max_step", "max_layers", "max_layer_sparsity"],
    ),
    ("probe", &["kind", "file", "limit", "shots", "mmlu_prompt"]),
];

fn fields(section: &str) -> &'static [&'static str] {
    SECTIONS.iter().find(|(s, _)| *s == section).unwrap().1
}

/// A valid config that runs a short session on the tiny model, with or without a probe.
fn base(text: &str, probe: Option<&str>) -> Vec<Line> {
    let mut v = vec![
        Line::new(0, "model", Some("bundled")),
        Line::new(0, "device", Some("cpu")),
        Line::new(0, "dtype", Some("f32")),
        Line::new(0, "calib", Some(text)),
        Line::new(0, "eval", Some(text)),
        Line::new(0, "seqlen", Some("32")),
        Line::new(0, "calib_windows", Some("2")),
        Line::new(0, "eval_windows", Some("2")),
        Line::new(0, "calib_sample", Some("sequential")),
        Line::new(0, "seed", Some("0")),
        Line::new(0, "grad_windows", Some("1")),
        Line::new(0, "grad_average", Some("mean-of-abs")),
        Line::new(0, "batch", Some("2")),
        Line::new(0, "eval_cache_mb", Some("16")),
        Line::new(0, "stream_layers", Some("false")),
        Line::new(0, "agent", None),
        Line::new(2, "backend", Some("builtin")),
        Line::new(0, "loop", None),
        Line::new(2, "target", Some("0.45")),
        Line::new(2, "threshold", Some("0.05")),
        Line::new(2, "ceiling", Some("3.0")),
        Line::new(2, "max_iters", Some("2")),
        Line::new(2, "profile_every", Some("1")),
        Line::new(2, "bounds", None),
        Line::new(4, "max_step", Some("0.1")),
        Line::new(4, "max_layers", Some("8")),
        Line::new(4, "max_layer_sparsity", Some("0.9")),
    ];
    if let Some(f) = probe {
        v.insert(23, Line::new(2, "probe_max_drop", Some("0.5")));
        v.push(Line::new(0, "probe", None));
        v.push(Line::new(2, "kind", Some("freebaseqa")));
        v.push(Line::new(2, "file", Some(f)));
        v.push(Line::new(2, "limit", Some("2")));
    }
    v
}

fn render(lines: &[Line]) -> Vec<u8> {
    let mut s = String::from("# run options for a short session on the tiny model\n");
    for l in lines {
        s += &" ".repeat(l.indent);
        s += &l.key;
        s.push(':');
        if let Some(v) = &l.value {
            s.push(' ');
            s += v;
        }
        s.push('\n');
    }
    s.into_bytes()
}

/// The dotted section line `i` is in ("" at the top).
fn section_of(lines: &[Line], i: usize) -> String {
    let mut path: Vec<&str> = Vec::new();
    let mut indent = lines[i].indent;
    for l in lines[..i].iter().rev() {
        if l.indent < indent && l.value.is_none() {
            path.insert(0, &l.key);
            indent = l.indent;
        }
    }
    path.join(".")
}

fn dotted(lines: &[Line], i: usize) -> String {
    match section_of(lines, i) {
        s if s.is_empty() => lines[i].key.clone(),
        s => format!("{s}.{}", lines[i].key),
    }
}

/// What a single damage must lead to, beyond the rules of every run.
#[derive(Default)]
struct Promise {
    /// Refused, with a line holding one of each group's texts.
    refused: Option<Vec<Vec<String>>>,
}

impl Promise {
    fn refused(groups: &[&[&str]]) -> Promise {
        Promise {
            refused: Some(
                groups
                    .iter()
                    .map(|g| g.iter().map(|s| s.to_string()).collect())
                    .collect(),
            ),
        }
    }
}

/// Values a hand-written or damaged config may hold: out of range, of the wrong type.
const EVIL: [&str; 19] = [
    "-1",
    "0",
    "1",
    "2",
    "-0.5",
    "0.5",
    ".nan",
    ".inf",
    "-.inf",
    "1e400",
    "1000000000000",
    "18446744073709551616",
    "\"text\"",
    "[1, 2]",
    "{a: 1}",
    "null",
    "true",
    "''",
    "1_0",
];

/// Other words for the keys that take one.
fn alternatives(key: &str) -> &'static [&'static str] {
    match key {
        "device" => &["cuda:0", "cuda:99", "gpu", "CPU", "\"cpu\\ncpu\""],
        "dtype" => &["f16", "bf16", "f64", "int8", "\"f32\\nf32\""],
        "calib_sample" => &["random", "documents", "shuffled", "\"random\\nrandom\""],
        "grad_average" => &["abs-of-mean", "mean", "Mean-Of-Abs"],
        "backend" => &["openai", "anthropic", "gpt", "\"builtin\\nbuiltin\""],
        "kind" => &["mmlu", "trivia", "\"mmlu\\nmmlu\""],
        "calib" | "eval" | "file" => &["/dev/zero", "data", "data/missing.txt", "model"],
        _ => &[],
    }
}

/// Whether `value` at key `path` must be refused: the groups of words its refusal holds
/// one of each (the key or its flag; for a word, what is wrong with it). None: it may
/// run, or fail later for a reason of its own.
fn must_refuse(path: &str, value: &str) -> Option<Vec<Vec<String>>> {
    let key = path.rsplit('.').next().unwrap();
    let flag = match key {
        "backend" => "--agent".to_string(),
        "kind" => "--probe".to_string(),
        k => format!("--{}", k.replace('_', "-")),
    };
    let name = vec![key.to_string(), flag];
    // What is wrong: the choices, or that a list or map is no word.
    let says = |words: &[&str]| {
        let mut what: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        what.push("invalid type".into());
        Some(vec![name.clone(), what])
    };
    let word = value.trim_matches('"');
    match key {
        "device" if word != "cpu" => return says(&["expected cpu or cuda:N", "CUDA"]),
        "dtype" if !["f32", "f16", "bf16"].contains(&word) => {
            return says(&["expected f32, f16 or bf16"])
        }
        "backend" if !["builtin", "openai", "anthropic"].contains(&word) => {
            return says(&["(builtin, openai or anthropic)"])
        }
        "backend" if word != "builtin" => return says(&["needs --agent-model"]),
        "kind" if !["freebaseqa", "mmlu"].contains(&word) => return says(&["freebaseqa or mmlu"]),
        "calib_sample" if !["sequential", "random", "documents"].contains(&word) => {
            return says(&["unknown variant"])
        }
        _ => {}
    }
    let int: Option<u64> = value.parse().ok();
    let float: Option<f64> = match value {
        ".nan" => Some(f64::NAN),
        ".inf" => Some(f64::INFINITY),
        "-.inf" => Some(f64::NEG_INFINITY),
        v => v.parse().ok(),
    };
    let refused = match key {
        "calib_windows" | "eval_windows" | "grad_windows" | "batch" | "max_iters"
        | "profile_every" | "max_layers" | "limit" => int.is_none_or(|n| n == 0),
        "seqlen" => value != "null" && int.is_none_or(|n| n < 2),
        "eval_cache_mb" => int.is_none(),
        // A seed draws nothing from sequential windows.
        "seed" => value != "0",
        "stream_layers" => value != "true",
        "target" => float.is_none_or(|x| !(0.0..1.0).contains(&x)),
        "threshold" => float.is_none_or(|x| !(x.is_finite() && x >= 0.0)),
        "ceiling" => value != "null" && float.is_none_or(|x| !(x.is_finite() && x > 0.0)),
        "probe_max_drop" => value != "null" && float.is_none_or(|x| !(x.is_finite() && x >= 0.0)),
        "max_step" | "max_layer_sparsity" => float.is_none_or(|x| !(x > 0.0 && x < 1.0)),
        _ => false,
    };
    refused.then(|| vec![name])
}

/// One damage to the lines (the file is rendered afterwards), with its promise.
fn damage_lines(rng: &mut StdRng, lines: &mut Vec<Line>) -> (String, Promise) {
    let leaves: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].value.is_some())
        .collect();
    let pick = rng.gen_range(0..7);
    match pick {
        0 => {
            let i = rng.gen_range(0..lines.len());
            let what = format!("line `{}` removed", dotted(lines, i));
            lines.remove(i);
            (what, Promise::default())
        }
        1 | 2 => {
            let i = *leaves.choose(rng).unwrap();
            let path = dotted(lines, i);
            let alt = alternatives(&lines[i].key);
            let value = if !alt.is_empty() && rng.gen_bool(0.5) {
                alt.choose(rng).unwrap().to_string()
            } else {
                EVIL.choose(rng).unwrap().to_string()
            };
            let promise = Promise {
                refused: must_refuse(&path, &value),
            };
            lines[i].value = Some(value.clone());
            (format!("`{path}` set to `{value}`"), promise)
        }
        3 => {
            // A misspelt or foreign key in a section that has no such key.
            let heads: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].value.is_none())
                .collect();
            let at = heads.choose(rng).copied().filter(|_| rng.gen_bool(0.7));
            let (section, indent, pos) = match at {
                Some(h) => (dotted(lines, h), lines[h].indent + 2, h + 1),
                None => (String::new(), 0, lines.len()),
            };
            let key = loop {
                let k = misspelt(rng);
                if !SECTIONS.iter().any(|(_, f)| f.contains(&k.as_str())) {
                    break k;
                }
            };
            lines.insert(pos, Line::new(indent, &key, Some("0.3")));
            let unknown = format!("unknown field `{key}`");
            let where_ = if section.is_empty() {
                "the top"
            } else {
                &section
            };
            (
                format!("unknown key `{key}` put in {where_}"),
                Promise::refused(&[&[unknown.as_str()]]),
            )
        }
        4 => {
            // A known key moved to a section that does not take it.
            let i = *leaves.choose(rng).unwrap();
            let key = lines[i].key.clone();
            let from = section_of(lines, i);
            // Sections an earlier damage removed are no destination.
            let heads: Vec<String> = (0..lines.len())
                .filter(|&j| lines[j].value.is_none())
                .map(|j| dotted(lines, j))
                .collect();
            let targets: Vec<&str> = ["", "agent", "loop", "loop.bounds"]
                .into_iter()
                .filter(|s| s.is_empty() || heads.iter().any(|h| h == s))
                .filter(|s| *s != from && !fields(s).contains(&key.as_str()))
                .collect();
            let to = *targets.choose(rng).unwrap();
            let mut moved = lines.remove(i);
            let (indent, pos) = match to {
                "" => (0, lines.len()),
                s => {
                    let h = (0..lines.len())
                        .find(|&j| lines[j].value.is_none() && dotted(lines, j) == s)
                        .unwrap();
                    (lines[h].indent + 2, h + 1)
                }
            };
            moved.indent = indent;
            lines.insert(pos, moved);
            let unknown = format!("unknown field `{key}`");
            (
                format!("`{key}` moved from `{from}` to `{to}`"),
                Promise::refused(&[&[unknown.as_str()], &["belongs"]]),
            )
        }
        5 => {
            let i = rng.gen_range(0..lines.len());
            let what = format!("line `{}` doubled", dotted(lines, i));
            let l = lines[i].clone();
            lines.insert(i, l);
            (what, Promise::refused(&[&["duplicate field"]]))
        }
        _ => {
            let h = match (0..lines.len()).find(|&j| lines[j].key == "agent") {
                Some(h) => h,
                None => {
                    lines.push(Line::new(0, "agent", None));
                    lines.len() - 1
                }
            };
            let key = ["api_key", "token", "OPENAI_API_KEY"].choose(rng).unwrap();
            lines.insert(h + 1, Line::new(2, key, Some("sk-test-not-a-real-key")));
            (
                format!("`agent.{key}` given"),
                Promise::refused(&[&["API keys are never read from files"], &["OPENAI_API_KEY"]]),
            )
        }
    }
}

fn misspelt(rng: &mut StdRng) -> String {
    let all: Vec<&str> = SECTIONS
        .iter()
        .flat_map(|(_, f)| f.iter().copied())
        .collect();
    let mut k: Vec<char> = all.choose(rng).unwrap().chars().collect();
    match rng.gen_range(0..4) {
        0 if k.len() > 2 => {
            let i = rng.gen_range(0..k.len() - 1);
            k.swap(i, i + 1);
        }
        1 => {
            k.remove(rng.gen_range(0..k.len()));
        }
        2 => k.insert(rng.gen_range(0..=k.len()), 'x'),
        _ => {
            return [
                "learning_rate",
                "sparsity",
                "targets",
                "max_iter",
                "windows",
            ]
            .choose(rng)
            .unwrap()
            .to_string()
        }
    }
    k.into_iter().collect()
}

/// One damage to the rendered bytes, with its promise.
fn damage_bytes(rng: &mut StdRng, bytes: &mut Vec<u8>) -> (String, Promise) {
    let lines = damage::split_lines(bytes).len();
    match rng.gen_range(0..8) {
        0 | 1 => (damage::truncate(rng, bytes), Promise::default()),
        2 => (
            damage::not_utf8(rng, bytes),
            Promise::refused(&[&["cannot read config"], &["UTF-8"]]),
        ),
        3 => {
            // Not the comment on line 1: a tab before a comment is no indentation.
            let i = rng.gen_range(1..lines.max(2)).min(lines.saturating_sub(1));
            // libyaml says "tab" or "cannot start any token", and where.
            (damage::tab_indent(bytes, i), Promise::refused(&[&["line"]]))
        }
        4 => {
            let g = [
                "[",
                "{",
                "]",
                "}",
                ": x",
                "*alias",
                "&a",
                "!!binary ",
                "|",
                "\"",
                "'",
                "%YAML 1.1\n",
                "? ",
                "- ",
                "---\n",
                "...\n",
                "<<: *a\n",
                "key: value: more\n",
            ];
            (damage::insert(rng, bytes, &g), Promise::default())
        }
        5 => {
            let blank = [
                "",
                "\n\n  \n",
                "# nothing\n  # here\n",
                "---\n",
                "---\n# only this\n",
            ];
            let b = blank.choose(rng).unwrap();
            *bytes = b.as_bytes().to_vec();
            (
                format!("the whole file replaced by {b:?}"),
                Promise::refused(&[&["holds no settings"]]),
            )
        }
        6 => (damage::bom(bytes), Promise::default()),
        _ => (damage::crlf(bytes), Promise::default()),
    }
}

#[test]
fn damaged_run_configs_are_run_or_refused_in_one_line() {
    let ws = Workspace::create();
    let mut report = Report::new("config");
    let mut rng = StdRng::seed_from_u64(report.seed());
    let text = crate::common::p(&ws.text);
    let data = crate::common::p(&ws.path("data"));
    let fqa = crate::benchmarks::write_freebaseqa_sample(&ws.path("data/freebaseqa.json"));
    std::fs::create_dir_all(ws.path("cfg")).unwrap();
    for index in 0..CASES {
        let with_probe = rng.gen_bool(0.25);
        let mut lines = base(&text, with_probe.then_some(fqa.as_str()));
        // Case 0 is the undamaged file: it must run.
        let n = match index {
            0 => 0,
            _ if rng.gen_bool(0.75) => 1,
            _ => rng.gen_range(2..=3),
        };
        let mut what = Vec::new();
        let mut promise = Promise::default();
        // Lines first: once its bytes are damaged, the lines no longer describe the file.
        let mut structural = true;
        let mut bytes = render(&lines);
        for _ in 0..n {
            if structural && rng.gen_bool(0.6) {
                let (w, p) = damage_lines(&mut rng, &mut lines);
                bytes = render(&lines);
                what.push(w);
                promise = p;
            } else {
                structural = false;
                let (w, p) = damage_bytes(&mut rng, &mut bytes);
                what.push(w);
                promise = p;
            }
        }
        if n > 1 {
            promise = Promise::default();
        }
        let cfg = ws.path(&format!("cfg/c{index}.yaml"));
        std::fs::write(&cfg, &bytes).unwrap();
        let session = ws.path(&format!("s{index}.yaml"));
        let (cfg_s, session_s) = (crate::common::p(&cfg), crate::common::p(&session));
        let args = [
            "run",
            "--model",
            &ws.model,
            "--config",
            &cfg_s,
            "--headless",
            "--auto-approve",
            "--session",
            &session_s,
            "--json",
        ];
        let case = Case {
            index,
            damage: if what.is_empty() {
                "none".into()
            } else {
                what.join("; ")
            },
            command: command_line(&args),
            shown: damage::show(&bytes),
        };
        let r = ws.run(&args, &[]);
        // The config, or a data file it names (by its path or the option that reads it).
        let names = [
            cfg_s.as_str(),
            data.as_str(),
            "/dev/zero",
            "--calib",
            "--eval",
            "--probe-file",
            // Not a refusal: options that ran a session the built-in agent could not go
            // on with (`threshold: 0` rolls back every step) end it so.
            "the agent failed three times in a row",
        ];
        let verdict = judge(&r, &names);
        if let Ok(outcome) = &verdict {
            if let Err(why) = session_after(&session, outcome) {
                report.fail(&case, Some(&r), &why);
            }
            if let Err(why) = keeps_its_promise(&promise, outcome, index, &cfg_s) {
                report.fail(&case, Some(&r), &why);
            }
        }
        if std::fs::read(&cfg).ok().as_ref() != Some(&bytes) {
            report.fail(&case, Some(&r), "the config file was changed");
        }
        report.check(&case, &r, verdict);
    }
    report.finish();
}

fn keeps_its_promise(
    promise: &Promise,
    outcome: &Outcome,
    index: usize,
    cfg: &str,
) -> Result<(), String> {
    match (outcome, &promise.refused) {
        (Outcome::Accepted, None) => Ok(()),
        (Outcome::Refused(line), None) if index == 0 => {
            Err(format!("the undamaged config was refused: {line}"))
        }
        (Outcome::Refused(_), None) => Ok(()),
        (Outcome::Accepted, Some(_)) => Err("accepted, but the README has it refused".into()),
        (Outcome::Refused(line), Some(groups)) => {
            // A config's own refusals name the file, a flag's never do.
            if !line.contains(cfg) {
                return Err(format!("the refusal does not name the config: {line}"));
            }
            match groups
                .iter()
                .find(|g| !g.iter().any(|s| line.contains(s.as_str())))
            {
                Some(g) => Err(format!("the refusal says none of {g:?}: {line}")),
                None => Ok(()),
            }
        }
    }
}
