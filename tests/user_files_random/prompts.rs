//! `arborist run --prompts DIR`: a copy of the built-in templates with one of them
//! damaged, for an OpenAI-compatible agent scripted on 127.0.0.1. Templates are checked as
//! they load, before the model; one that passes runs a one-iteration session.

use crate::damage;
use crate::scripted_server::{Scripted, ScriptedServer};
use crate::{command_line, judge, session_after, Case, Outcome, Report, Workspace};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::path::Path;

const CASES: usize = 40;
const TEMPLATES: [&str; 4] = ["system.j2", "step.j2", "reflection.j2", "repair.j2"];

/// One damage to the template `name` in `dir`, with what a refusal must say.
fn damage_template(rng: &mut StdRng, dir: &Path, name: &str) -> (String, Vec<String>) {
    let file = dir.join(name);
    let mut bytes = std::fs::read(&file).unwrap();
    let lines = damage::split_lines(&bytes).len();
    let name_s = name.to_string();
    let (what, promise) = match rng.gen_range(0..12) {
        0 => (damage::truncate(rng, &mut bytes), vec![]),
        1 => (
            damage::delete_line(&mut bytes, rng.gen_range(0..lines)),
            vec![],
        ),
        2 | 3 => {
            let var = ["itertion", "ceilng", "modle", "global_sparsty"]
                .choose(rng)
                .unwrap();
            let i = rng.gen_range(0..lines);
            let mut all = damage::split_lines(&bytes);
            all.insert(i, format!("{{{{ {var} }}}}\n").into_bytes());
            bytes = all.concat();
            let w = format!("`{{{{ {var} }}}}` put in as line {}", i + 1);
            (w, vec![name_s, "undefined".into(), format!("`{var}`")])
        }
        4 => {
            let i = rng.gen_range(0..lines);
            let mut all = damage::split_lines(&bytes);
            all.insert(i, b"{% if true %}\n".to_vec());
            bytes = all.concat();
            let w = format!("`{{% if true %}}` put in as line {}", i + 1);
            (w, vec![name_s, "syntax error".into()])
        }
        5 => {
            let g = [
                "{{",
                "}}",
                "{%",
                "%}",
                "{#",
                "{{ x |",
                "{% endfor %}",
                "{% for %}",
                "{{ 1/0 }}",
            ];
            (damage::insert(rng, &mut bytes, &g), vec![])
        }
        6 => (damage::not_utf8(rng, &mut bytes), vec![name_s]),
        7 => {
            bytes.clear();
            (
                "emptied".into(),
                vec![format!("{name} is empty (remove it to use the built-in)")],
            )
        }
        8 => {
            bytes = b" \n\t\n  ".to_vec();
            (
                "only whitespace left".into(),
                vec![format!("{name} holds only whitespace")],
            )
        }
        9 => {
            let capital = name[..1].to_uppercase() + &name[1..];
            let to = [name.to_uppercase(), capital, name.replace(".j2", ".jinja")];
            let to = to.choose(rng).unwrap().clone();
            std::fs::rename(&file, dir.join(&to)).unwrap();
            return (format!("renamed to {to}"), vec![to]);
        }
        10 => {
            std::fs::remove_file(&file).unwrap();
            std::fs::create_dir(&file).unwrap();
            let w = "made a directory".to_string();
            return (
                w,
                vec![format!("{name} is a directory, not a template file")],
            );
        }
        _ => {
            bytes = b"{# nothing to say #}\n{% if false %}never{% endif %}\n".to_vec();
            (
                "only a comment and a branch never taken".into(),
                vec![name_s, "renders blank".into()],
            )
        }
    };
    std::fs::write(&file, &bytes).unwrap();
    (what, promise)
}

/// The tiny model's layers: a proposal the session can apply.
fn proposal() -> String {
    serde_json::json!({"layers": [{"name": "model.layers.0.mlp.down_proj", "sparsity": 0.05}],
        "reasoning": "a small first step"})
    .to_string()
}

#[test]
fn damaged_prompt_templates_are_used_or_refused_in_one_line() {
    let ws = Workspace::create();
    let mut report = Report::new("prompts");
    let mut rng = StdRng::seed_from_u64(report.seed());
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    for index in 0..CASES {
        let dir = ws.path(&format!("prompts{index}"));
        std::fs::create_dir_all(&dir).unwrap();
        for t in TEMPLATES {
            std::fs::copy(builtin.join(t), dir.join(t)).unwrap();
        }
        let name = TEMPLATES.choose(&mut rng).unwrap();
        let (what, promise) = match index {
            0 => ("none".into(), vec![]),
            _ => damage_template(&mut rng, &dir, name),
        };
        let server = ScriptedServer::start(vec![
            Scripted::openai(&proposal(), 100, 20),
            Scripted::openai("It held.", 50, 5),
        ]);
        let url = server.url();
        let session = ws.path(&format!("s{index}.yaml"));
        let (d, s) = (crate::common::p(&dir), crate::common::p(&session));
        let mut args = ws.session_args("1");
        let rest = [
            "--agent",
            "openai",
            "--agent-model",
            "scripted",
            "--base-url",
            &url,
            "--prompts",
            &d,
            "--headless",
            "--auto-approve",
            "--session",
            &s,
            "--json",
        ];
        args.extend(rest.map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let shown_file = dir.join(name);
        let case = Case {
            index,
            damage: format!("{name}: {what}"),
            command: command_line(&args),
            shown: if shown_file.is_file() {
                damage::show(&std::fs::read(&shown_file).unwrap())
            } else {
                "(not a file)".into()
            },
        };
        let before = snapshot(&dir);
        let r = ws.run(&args, &[("OPENAI_API_KEY", "sk-test-not-a-real-key")]);
        let verdict = judge(&r, &[&d, "--prompts"]);
        match &verdict {
            Ok(Outcome::Refused(line)) => {
                if index == 0 {
                    report.fail(&case, Some(&r), "the built-in templates were refused");
                }
                if let Some(p) = promise.iter().find(|p| !line.contains(p.as_str())) {
                    report.fail(&case, Some(&r), &format!("the refusal does not say `{p}`"));
                }
                // Refused as they load: nothing was sent, so nothing was paid for.
                if !session.exists() && !server.requests().is_empty() {
                    report.fail(
                        &case,
                        Some(&r),
                        "a refused template still reached the server",
                    );
                }
            }
            Ok(Outcome::Accepted) if !promise.is_empty() => {
                let why = format!("accepted, but must be refused saying {promise:?}");
                report.fail(&case, Some(&r), &why);
            }
            // The templates were used: a proposal was asked for, and a reflection.
            Ok(Outcome::Accepted) if server.requests().len() < 2 => {
                let why = format!("{} request(s) reached the server", server.requests().len());
                report.fail(&case, Some(&r), &why);
            }
            _ => {}
        }
        if let Ok(outcome) = &verdict {
            if let Err(why) = session_after(&session, outcome) {
                report.fail(&case, Some(&r), &why);
            }
        }
        if snapshot(&dir) != before {
            report.fail(&case, Some(&r), "the templates were changed");
        }
        report.check(&case, &r, verdict);
        drop(server);
    }
    report.finish();
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap_or_default())
        })
        .collect();
    v.sort();
    v
}
