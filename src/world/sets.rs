//! The benchmark files of the world, in the real formats: FreebaseQA JSON (kelvin-jiang)
//! and the Hendrycks MMLU CSV tree, in the benchmark phrasing the corpus never uses. Test
//! splits ask about the held-out half of the facts; dev examples come from the other half.

use anyhow::{Context, Result};
use rand::{rngs::StdRng, SeedableRng};
use serde_json::json;
use std::path::Path;

use super::render::question;
use super::{Relation, World};

/// Dev examples per subject for few-shot prompts (MMLU ships 5).
pub const DEV_PER_SUBJECT: usize = 5;

pub fn freebaseqa_json(world: &World) -> serde_json::Value {
    let questions: Vec<_> = world
        .facts()
        .iter()
        .filter(|f| f.held_out)
        .enumerate()
        .map(|(i, f)| {
            let mut aliases = vec![f.answer.clone()];
            if matches!(f.relation, Relation::Occupation | Relation::Owns) {
                aliases.push(format!("a {}", f.answer));
            }
            json!({
                "Question-ID": format!("World-{i}"),
                "RawQuestion": question(f),
                "ProcessedQuestion": question(f).to_lowercase(),
                "Parses": [{
                    "Parse-Id": format!("World-{i}.P0"),
                    "TopicEntityName": f.subject.to_lowercase(),
                    "InferentialChain": f.relation.subject(),
                    "Answers": [{"AnswersMid": format!("m.world{i}"), "AnswersName": aliases}],
                }],
            })
        })
        .collect();
    json!({"Dataset": "FreebaseQA-world", "Version": "1.0", "Questions": questions})
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn csv_row(q: &str, opts: &[String], gold: usize) -> String {
    let mut cols: Vec<String> = std::iter::once(q)
        .chain(opts.iter().map(|s| s.as_str()))
        .map(csv_field)
        .collect();
    cols.push(((b'A' + gold as u8) as char).to_string());
    cols.join(",") + "\n"
}

/// (subject, dev rows, test rows) per relation; options are drawn with a fixed seed.
pub fn mmlu_rows(world: &World) -> Vec<(&'static str, String, String)> {
    let mut rng = StdRng::seed_from_u64(world.seed ^ 0x6d6d_6c75);
    let facts = world.facts();
    Relation::ALL
        .iter()
        .map(|&rel| {
            let mut dev = String::new();
            let mut test = String::new();
            let of_rel = facts.iter().filter(|f| f.relation == rel);
            for f in of_rel.clone().filter(|f| !f.held_out).take(DEV_PER_SUBJECT) {
                let (opts, gold) = world.options(f, &mut rng);
                dev.push_str(&csv_row(&question(f), &opts, gold));
            }
            for f in of_rel.filter(|f| f.held_out) {
                let (opts, gold) = world.options(f, &mut rng);
                test.push_str(&csv_row(&question(f), &opts, gold));
            }
            (rel.subject(), dev, test)
        })
        .collect()
}

/// Writes `dir/dev/SUBJECT_dev.csv` and `dir/test/SUBJECT_test.csv`.
pub fn write_mmlu(world: &World, dir: &Path) -> Result<()> {
    for split in ["dev", "test"] {
        std::fs::create_dir_all(dir.join(split))
            .with_context(|| format!("creating {}", dir.join(split).display()))?;
    }
    for (subject, dev, test) in mmlu_rows(world) {
        for (split, body) in [("dev", dev), ("test", test)] {
            let p = dir.join(split).join(format!("{subject}_{split}.csv"));
            std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
        }
    }
    Ok(())
}

/// The world's text and benchmark files under `dir/data`: the training corpus as one
/// rendering, held-out calibration and evaluation prose, FreebaseQA JSON and MMLU CSVs.
pub fn write_datasets(world: &World, dir: &Path) -> Result<()> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let corpus: Vec<String> = super::render::training_docs(world, 1000)
        .iter()
        .map(|d| d.joined())
        .collect();
    let files = [
        ("train.txt", corpus.join("\n\n")),
        ("calib.txt", super::render::heldout_text(world, 11, 400)),
        ("eval.txt", super::render::heldout_text(world, 12, 400)),
        (
            "freebaseqa.json",
            serde_json::to_string_pretty(&freebaseqa_json(world))?,
        ),
    ];
    for (name, body) in files {
        let p = data.join(name);
        std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
    }
    write_mmlu(world, &data.join("mmlu"))
}
