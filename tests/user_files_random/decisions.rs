//! Files that script a human: a headless run's `--decisions FILE`, and the per-layer
//! sparsities of `prune --allocation FILE.yaml`.

use crate::damage;
use crate::{command_line, judge, session_after, Case, Outcome, Report, Workspace};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const DECISIONS_CASES: usize = 120;
const ALLOCATION_CASES: usize = 60;

/// README's example decisions, for the tiny model's two blocks.
const DECISIONS: &str = "\
- iteration: 1
  action: reject
  feedback: Leave the attention projections alone.
- iteration: 1
  action: approve
- iteration: 2
  action: edit
  layers:
    - name: model.layers.1.mlp.up_proj
      sparsity: 0.1
- iteration: 3
  action: override
  layers:
    - name: model.layers.0.mlp.down_proj
      sparsity: 0.1
  reasoning: mine
- iteration: 4
  action: stop
";

/// The key of a `key: value` line (a list item's `- ` taken off), and its value.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.trim_start().trim_start_matches("- ").split_once(':')?;
    Some((k.trim(), v.trim()))
}

/// A line's new value for `key`, and what a refusal of it must say (empty: it may run).
fn evil_decision_value(rng: &mut StdRng, key: &str) -> (String, Vec<String>) {
    let pick = |rng: &mut StdRng, v: &[&str]| v.choose(rng).unwrap().to_string();
    match key {
        "iteration" => {
            let v = pick(
                rng,
                &[
                    "0",
                    "-1",
                    "1.5",
                    "x",
                    "null",
                    "[1]",
                    "18446744073709551616",
                    "1000000",
                ],
            );
            let promise = match v.as_str() {
                "0" => vec!["iterations count from 1".into()],
                "1000000" => vec![],
                _ => vec!["iteration".into()],
            };
            (v, promise)
        }
        "action" => {
            let v = pick(
                rng,
                &[
                    "approve!",
                    "APPROVE",
                    "accept",
                    "''",
                    "null",
                    "5",
                    "[approve]",
                ],
            );
            let promise = match v.as_str() {
                "approve!" | "APPROVE" | "accept" | "''" => vec!["unknown action".into()],
                _ => vec![],
            };
            (v, promise)
        }
        "sparsity" => {
            let v = pick(
                rng,
                &[
                    "-0.1", "1", "1.5", ".nan", ".inf", "1e400", "x", "null", "[0.1]", "0.05",
                    "0.5",
                ],
            );
            let promise = match v.as_str() {
                "-0.1" | "1" | "1.5" | ".nan" | ".inf" => vec!["outside [0, 1)".into()],
                // YAML reads 1e400 as a word, not a number.
                "1e400" | "x" | "null" | "[0.1]" => vec!["sparsity".into()],
                // 0.5 is past one step's bound: refused when its iteration comes.
                "0.5" => vec!["model.layers".into()],
                _ => vec![],
            };
            (v, promise)
        }
        "name" => {
            let v = pick(
                rng,
                &[
                    "model.layers.9.mlp.up_proj",
                    "model.layers.0.mlp.up",
                    "lm_head",
                    "model.embed_tokens",
                ],
            );
            // Found when its iteration comes: the file, the iteration and the layer.
            (v.clone(), vec!["iteration ".into(), v])
        }
        "feedback" => {
            let v = pick(rng, &["''", "'   '", "null", "[a, b]", "5"]);
            let promise = match v.as_str() {
                // serde_yaml reads `null` into a string as the word "null".
                "''" | "'   '" => vec!["needs `feedback`".into()],
                _ => vec![],
            };
            (v, promise)
        }
        _ => (pick(rng, &["''", "5", "null", "[x]", "{a: 1}"]), vec![]),
    }
}

/// One damage to the decisions file, with what a refusal must say.
fn damage_decisions(rng: &mut StdRng, bytes: &mut Vec<u8>) -> (String, Vec<String>) {
    let lines = damage::split_lines(bytes);
    let i = rng.gen_range(0..lines.len());
    let line = String::from_utf8(lines[i].clone()).unwrap();
    match rng.gen_range(0..12) {
        0 => (damage::delete_line(bytes, i), vec![]),
        1..=4 => {
            let (key, _) = key_value(&line).unwrap();
            let (value, promise) = evil_decision_value(rng, key);
            let colon = line.find(':').unwrap();
            let new = format!("{} {value}\n", &line[..=colon]);
            let mut all = lines.clone();
            all[i] = new.clone().into_bytes();
            *bytes = all.concat();
            (format!("line {}: {:?}", i + 1, new.trim_end()), promise)
        }
        5 => {
            // An unknown key beside an entry's `action`.
            let at = (0..lines.len())
                .filter(|&j| lines[j].starts_with(b"  action"))
                .collect::<Vec<_>>();
            let j = *at.choose(rng).unwrap();
            let key = ["comment", "layer", "actions", "sparsity"]
                .choose(rng)
                .unwrap();
            let mut all = lines.clone();
            all.insert(j + 1, format!("  {key}: x\n").into_bytes());
            *bytes = all.concat();
            (
                format!("`{key}: x` put after line {}", j + 1),
                vec![format!("unknown field `{key}`")],
            )
        }
        6 if !line.trim_start().starts_with('-') => {
            let w = damage::duplicate_line(bytes, i);
            let key = key_value(&line).unwrap().0;
            (w, vec![format!("duplicate field `{key}`")])
        }
        6 => (damage::duplicate_line(bytes, i), vec![]),
        7 => {
            // Iteration 3's entry before iteration 2's.
            let text = String::from_utf8(bytes.clone()).unwrap();
            let two = text.find("- iteration: 2").unwrap();
            let three = text.find("- iteration: 3").unwrap();
            let four = text.find("- iteration: 4").unwrap();
            *bytes = format!(
                "{}{}{}{}",
                &text[..two],
                &text[three..four],
                &text[two..three],
                &text[four..]
            )
            .into_bytes();
            (
                "iteration 3's entry put before iteration 2's".into(),
                vec!["iteration order".into()],
            )
        }
        8 => (damage::truncate(rng, bytes), vec![]),
        9 => (
            damage::not_utf8(rng, bytes),
            vec!["cannot read decisions file".into()],
        ),
        10 if i > 0 => (damage::tab_indent(bytes, i), vec![]),
        10 => {
            let blank = ["", "\n\n", "# nothing here\n", "[]\n"]
                .choose(rng)
                .unwrap();
            *bytes = blank.as_bytes().to_vec();
            (
                format!("the file replaced by {blank:?}"),
                vec!["no decisions".into()],
            )
        }
        _ => {
            let g = [
                "[", "{", "}", ": x", "*a", "&a ", "!!int ", "|", "\"", "? ", "---\n",
            ];
            (damage::insert(rng, bytes, &g), vec![])
        }
    }
}

#[test]
fn damaged_decisions_files_are_followed_or_refused_in_one_line() {
    let ws = Workspace::create();
    let mut report = Report::new("decisions");
    let mut rng = StdRng::seed_from_u64(report.seed());
    for index in 0..DECISIONS_CASES {
        let mut bytes = DECISIONS.as_bytes().to_vec();
        let (what, promise) = match index {
            0 => ("none".into(), vec![]),
            _ => damage_decisions(&mut rng, &mut bytes),
        };
        let file = ws.path(&format!("d{index}.yaml"));
        std::fs::write(&file, &bytes).unwrap();
        let session = ws.path(&format!("s{index}.yaml"));
        let (f, s) = (crate::common::p(&file), crate::common::p(&session));
        let mut args = ws.session_args("5");
        args.extend(["--headless", "--decisions", &f, "--session", &s, "--json"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let case = Case {
            index,
            damage: what,
            command: command_line(&args),
            shown: damage::show(&bytes),
        };
        let r = ws.run(&args, &[]);
        let verdict = judge(&r, &[&f]);
        if let Ok(outcome) = &verdict {
            if let Err(why) = session_after(&session, outcome) {
                report.fail(&case, Some(&r), &why);
            }
            if let Err(why) = promised(outcome, index, &promise) {
                report.fail(&case, Some(&r), &why);
            }
        }
        if std::fs::read(&file).unwrap() != bytes {
            report.fail(&case, Some(&r), "the decisions file was changed");
        }
        report.check(&case, &r, verdict);
    }
    report.finish();
}

/// A promise of a refusal, whatever its words.
const MUST_REFUSE: &str = "";

/// Case 0 (undamaged) is accepted; a promise is a refusal saying each of its texts.
fn promised(outcome: &Outcome, index: usize, promise: &[String]) -> Result<(), String> {
    match outcome {
        Outcome::Refused(line) if index == 0 => {
            Err(format!("the undamaged file was refused: {line}"))
        }
        Outcome::Accepted if !promise.is_empty() => {
            Err(format!("accepted, but must be refused saying {promise:?}"))
        }
        Outcome::Refused(line) => match promise.iter().find(|p| !line.contains(p.as_str())) {
            Some(p) => Err(format!("the refusal does not say `{p}`")),
            None => Ok(()),
        },
        Outcome::Accepted => Ok(()),
    }
}

/// Sparsities for three of the tiny model's layers.
const ALLOCATION: &str = "\
model.layers.0.mlp.up_proj: 0.5
model.layers.1.self_attn.q_proj: 0.25
model.layers.1.mlp.down_proj: 0.75
";

fn damage_allocation(rng: &mut StdRng, bytes: &mut Vec<u8>) -> (String, Vec<String>) {
    let lines = damage::split_lines(bytes);
    let i = rng.gen_range(0..lines.len());
    let line = String::from_utf8(lines[i].clone()).unwrap();
    let (name, _) = line.split_once(':').unwrap();
    let mut set = |new: String| {
        let mut all = lines.clone();
        all[i] = format!("{new}\n").into_bytes();
        *bytes = all.concat();
        format!("line {}: {new:?}", i + 1)
    };
    match rng.gen_range(0..10) {
        0 | 1 => {
            let v = [
                "-0.1", "1", "1.5", ".nan", ".inf", "-.inf", "x", "[0.5]", "null", "true", "''",
                "0", "0.999", "1e-300",
            ]
            .choose(rng)
            .unwrap();
            let promise = match *v {
                "-0.1" | "1" | "1.5" | ".nan" | ".inf" | "-.inf" => vec![name.to_string()],
                "x" | "[0.5]" | "null" | "true" | "''" => {
                    vec![name.to_string(), "not a number".into()]
                }
                _ => vec![],
            };
            (set(format!("{name}: {v}")), promise)
        }
        2 | 3 => {
            let other = [
                "model.layers.2.mlp.up_proj",
                "model.layers.0.mlp.up",
                "lm_head",
                "model.norm",
                "up_proj",
                "",
            ]
            .choose(rng)
            .unwrap();
            let promise = if other.is_empty() {
                vec![]
            } else {
                vec![other.to_string()]
            };
            (set(format!("{other}: 0.5")), promise)
        }
        4 => (damage::duplicate_line(bytes, i), vec![name.to_string()]),
        5 => {
            let blank = ["", "\n", "# none\n", "{}\n"].choose(rng).unwrap();
            *bytes = blank.as_bytes().to_vec();
            (
                format!("the file replaced by {blank:?}"),
                vec![MUST_REFUSE.into()],
            )
        }
        6 => (damage::truncate(rng, bytes), vec![]),
        7 => (damage::not_utf8(rng, bytes), vec![]),
        8 => (damage::tab_indent(bytes, i.max(1)), vec![]),
        _ => {
            let g = [
                "[", "{", "- ", ": x", "*a", "&a ", "!!float ", "\"", "? ", "---\n", "...",
            ];
            (damage::insert(rng, bytes, &g), vec![])
        }
    }
}

#[test]
fn damaged_allocation_files_are_pruned_to_or_refused_in_one_line() {
    let ws = Workspace::create();
    let mut report = Report::new("allocation");
    let mut rng = StdRng::seed_from_u64(report.seed());
    for index in 0..ALLOCATION_CASES {
        let mut bytes = ALLOCATION.as_bytes().to_vec();
        let (what, promise) = match index {
            0 => ("none".into(), vec![]),
            _ => damage_allocation(&mut rng, &mut bytes),
        };
        let file = ws.path(&format!("a{index}.yaml"));
        std::fs::write(&file, &bytes).unwrap();
        let out = ws.path(&format!("pruned/out{index}"));
        let (f, o) = (crate::common::p(&file), crate::common::p(&out));
        let args = [
            "prune",
            "--model",
            &ws.model,
            "--method",
            "magnitude",
            "--sparsity",
            "0.2",
            "--allocation",
            &f,
            "--out",
            &o,
            "--json",
        ];
        let case = Case {
            index,
            damage: what,
            command: command_line(&args),
            shown: damage::show(&bytes),
        };
        let r = ws.run(&args, &[]);
        // Named by its path, or as the flag for one whose path is in the message already.
        let verdict = judge(&r, &[&f]);
        match &verdict {
            Ok(Outcome::Accepted) if !out.join("model.safetensors").is_file() => {
                report.fail(&case, Some(&r), "a success wrote no model.safetensors");
            }
            Ok(Outcome::Refused(_)) if out.exists() => {
                report.fail(&case, Some(&r), "a refusal left --out behind");
            }
            _ => {}
        }
        let leftovers: Vec<String> = std::fs::read_dir(ws.path("pruned"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(l) = leftovers.iter().find(|n| n.contains("partial")) {
            report.fail(
                &case,
                Some(&r),
                &format!("a temporary was left behind: {l}"),
            );
        }
        if let Ok(outcome) = &verdict {
            if let Err(why) = promised(outcome, index, &promise) {
                report.fail(&case, Some(&r), &why);
            }
        }
        if std::fs::read(&file).unwrap() != bytes {
            report.fail(&case, Some(&r), "the allocation file was changed");
        }
        report.check(&case, &r, verdict);
    }
    report.finish();
}
