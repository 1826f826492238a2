//! The synthetic fact world, its benchmark files and the bundled-model trainer.

use arborist::data::{freebaseqa::read_freebaseqa, mmlu::read_mmlu};
use arborist::train::{self, learning_rate, tokenizer, TrainOptions};
use arborist::world::render::{
    practice_question, question, training_docs, training_docs_with, PRACTICE_VARIANTS,
};
use arborist::world::{sets, Relation, World, WorldSize};

fn world() -> World {
    World::generate(2026, &WorldSize::default())
}

#[test]
fn generation_is_deterministic_and_has_hundreds_of_facts() {
    let a = world().facts();
    let b = world().facts();
    assert!(a.len() >= 300, "{} facts", a.len());
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    let c = World::generate(2027, &WorldSize::default()).facts();
    assert_ne!(format!("{a:?}"), format!("{c:?}"));
    let subjects: std::collections::HashSet<_> =
        world().people.iter().map(|p| p.name.clone()).collect();
    assert_eq!(
        subjects.len(),
        world().people.len(),
        "person names must be unique"
    );
}

#[test]
fn the_corpus_states_and_practises_every_fact_but_never_uses_the_benchmark_phrasing() {
    let w = world();
    let facts = w.facts();
    for seed in [1000u64, 1001, 1002] {
        let text: String = training_docs(&w, seed)
            .iter()
            .map(|d| d.joined())
            .collect::<Vec<_>>()
            .join("\n\n");
        for f in &facts {
            assert!(
                !text.contains(&question(f)),
                "benchmark phrasing leaked: {}",
                question(f)
            );
            let practised = (0..PRACTICE_VARIANTS).any(|v| text.contains(&practice_question(f, v)));
            assert!(practised, "fact never asked in practice: {f:?}");
            assert!(text.contains(&f.subject) && text.contains(&f.answer));
        }
    }
}

#[test]
fn qa_repeats_ask_each_fact_in_distinct_practice_phrasings() {
    let w = world();
    let facts = w.facts();
    let docs = training_docs_with(&w, 1000, 3, 1);
    for f in &facts {
        let forms: Vec<String> = (0..PRACTICE_VARIANTS)
            .map(|v| practice_question(f, v))
            .collect();
        let distinct: std::collections::HashSet<_> = forms.iter().collect();
        assert_eq!(distinct.len(), PRACTICE_VARIANTS, "{f:?}");
        assert!(forms.iter().all(|q| !q.contains(&question(f))), "{f:?}");
        let asked = forms
            .iter()
            .filter(|q| {
                let prompt = arborist::world::render::qa_prompt(q);
                docs.iter().any(|d| d.segments[0] == prompt)
            })
            .count();
        assert_eq!(asked, 3, "{} asked in {asked} phrasings", f.subject);
    }
}

/// The corpus and benchmark files are those the bundled model was trained and measured on
/// (world seed 2026), byte for byte: `train-tiny` reproduces `assets/bundled`'s data, and
/// the evaluator's prompt spelling cannot leak into the training corpus.
#[test]
fn world_2026_writes_the_bundled_data_files() {
    let dir = tempfile::tempdir().unwrap();
    sets::write_datasets(&world(), dir.path()).unwrap();
    let bundled = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/bundled/data");
    let mut files = 0;
    for entry in walkdir(&bundled) {
        let rel = entry.strip_prefix(&bundled).unwrap();
        let ours = std::fs::read(dir.path().join("data").join(rel)).unwrap();
        assert!(
            ours == std::fs::read(&entry).unwrap(),
            "{} differs",
            rel.display()
        );
        files += 1;
    }
    assert!(files >= 5, "{files} files");
}

/// Every file under `dir`, recursively.
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn benchmark_files_read_back_with_the_real_readers() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    sets::write_datasets(&w, dir.path()).unwrap();
    let facts = w.facts();
    let held: Vec<_> = facts.iter().filter(|f| f.held_out).collect();

    let qa = read_freebaseqa(&dir.path().join("data/freebaseqa.json")).unwrap();
    assert_eq!(qa.len(), held.len());
    for (item, f) in qa.iter().zip(&held) {
        assert_eq!(item.question, question(f));
        assert!(item.aliases.contains(&f.answer));
    }

    let mmlu = read_mmlu(
        &dir.path().join("data/mmlu"),
        arborist::data::mmlu::Shots {
            n: sets::DEV_PER_SUBJECT,
            option: "--shots",
        },
    )
    .unwrap();
    for rel in Relation::ALL {
        let test = &mmlu.test[rel.subject()];
        let of_rel: Vec<_> = held.iter().filter(|f| f.relation == rel).collect();
        assert_eq!(test.len(), of_rel.len(), "{}", rel.subject());
        for (item, f) in test.iter().zip(&of_rel) {
            assert_eq!(item.choices[item.answer], f.answer);
            assert_eq!(item.question, question(f));
            let distinct: std::collections::HashSet<_> = item.choices.iter().collect();
            assert_eq!(distinct.len(), 4, "options must differ: {:?}", item.choices);
        }
        let dev = &mmlu.dev[rel.subject()];
        assert_eq!(dev.len(), sets::DEV_PER_SUBJECT);
        for d in dev {
            assert!(
                !test.iter().any(|t| t.question == d.question),
                "dev overlaps test"
            );
        }
    }
}

#[test]
fn tokenizer_round_trips_exactly() {
    let w = world();
    let texts: Vec<String> = training_docs(&w, 1000).iter().map(|d| d.joined()).collect();
    let tok = tokenizer::train_tokenizer(&texts, 600).unwrap();
    assert!(tokenizer::eos_id(&tok).is_ok());
    let held = arborist::world::render::heldout_text(&w, 5, 20);
    for s in [held.as_str(), " leading space", "tabs\tand\nnewlines  "] {
        let ids = tok.encode(s, false).unwrap().get_ids().to_vec();
        assert_eq!(tok.decode(&ids, false).unwrap(), s);
    }
}

/// The segments training may weight (`--answer-weight`) are exactly the letters of the
/// multiple-choice practice and the practice answers; the joined text is unchanged.
#[test]
fn answer_segments_are_the_letters_and_practice_answers() {
    let w = world();
    let answers: std::collections::HashSet<String> =
        w.facts().iter().map(|f| format!("{}.", f.answer)).collect();
    let docs = training_docs(&w, 1000);
    let (mut letters, mut facts) = (0, 0);
    for d in &docs {
        assert_eq!(d.segments.len(), d.answers.len());
        for (i, (seg, &a)) in d.segments.iter().zip(&d.answers).enumerate() {
            if !a {
                continue;
            }
            if [" A", " B", " C", " D"].contains(&seg.as_str()) {
                letters += 1;
                let before = d.segments[..i].concat();
                assert!(before.ends_with("\nAnswer:"), "{before:?}");
            } else {
                assert!(answers.contains(seg), "{seg:?} is not a fact's answer");
                facts += 1;
            }
        }
        // A multiple-choice document reads exactly as the evaluator's dev examples.
        if d.answers.iter().filter(|&&a| a).count() > 1 {
            let text = d.joined();
            assert!(text.starts_with("The following are multiple choice questions"));
            assert_eq!(text.matches("\nAnswer: ").count(), d.segments.len() / 2);
        }
    }
    assert_eq!(
        facts,
        w.facts().len(),
        "every fact is practised once as a QA"
    );
    assert!(letters >= w.facts().len(), "{letters} letters");
}

#[test]
fn schedule_warms_up_then_decays_to_a_tenth() {
    let o = TrainOptions {
        steps: 100,
        warmup: 10,
        lr: 1e-3,
        ..TrainOptions::default()
    };
    assert!((learning_rate(&o, 0) - 1e-4).abs() < 1e-12);
    assert!((learning_rate(&o, 9) - 1e-3).abs() < 1e-12);
    assert!(learning_rate(&o, 50) < 1e-3 && learning_rate(&o, 50) > 1e-4);
    assert!((learning_rate(&o, 100) - 1e-4).abs() < 1e-9);
}

#[test]
fn a_few_training_steps_lower_the_loss() {
    let o = TrainOptions {
        vocab_size: 400,
        hidden: 32,
        layers: 2,
        intermediate: 64,
        heads: 2,
        kv_heads: 1,
        head_dim: 16,
        seqlen: 32,
        batch: 4,
        steps: 40,
        warmup: 5,
        lr: 3e-3,
        probe_every: 1000,
        ..TrainOptions::default()
    };
    let t = train::train(&o, |_| {}).unwrap();
    let first = t.log.first().unwrap().loss;
    let last = t.log.last().unwrap().loss;
    assert!(last < first - 0.5, "loss {first} -> {last}");
    let dir = tempfile::tempdir().unwrap();
    train::save_model(&t, dir.path()).unwrap();
    let m = arborist::model::LoadedModel::load(
        dir.path().to_str().unwrap(),
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    assert_eq!(m.cfg.num_layers, 2);
}

/// Repeat counts outside what the corpus can render are refused in one line, before any
/// output is written.
#[test]
fn train_tiny_refuses_repeat_counts_it_cannot_render() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let out_s = out.to_str().unwrap();
    for (flag, value, needle) in [
        ("--qa-repeats", "6", "--qa-repeats must be between 1 and 5"),
        ("--qa-repeats", "0", "--qa-repeats must be between 1 and 5"),
        ("--mc-repeats", "0", "--mc-repeats must be at least 1"),
        // It said only that no tokenizer.json could be loaded there.
        (
            "--init",
            "/no/such/model",
            "--init /no/such/model: not a model directory (it does not exist)",
        ),
        // A directory without a model's files failed at the tokenizer.
        (
            "--init",
            "/etc",
            "--init /etc: not a model directory (it has no config.json, tokenizer.json, model.safetensors)",
        ),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"))
            .args(["train-tiny", "--out", out_s, "--steps", "1", flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flag} {value}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(needle), "{err}");
        assert!(!out.exists(), "{flag} {value} left {out_s}");
    }
}
