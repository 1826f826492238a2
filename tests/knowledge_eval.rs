//! MMLU, FreebaseQA and wikitext-parquet evaluation on data files built here, in the
//! formats published upstream, checked against computations from `Decoder::forward`.

mod common;
use arborist::data::mmlu::read_mmlu;
use arborist::eval::freebaseqa::{first_line, is_correct};
use arborist::eval::mmlu::{evaluate_mmlu, MmluOptions, MmluPrompt};
use arborist::model::LoadedModel;
use candle_core::{DType, Device, Tensor, D};
use common::*;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

// ---------------------------------------------------------------- data builders

#[derive(Clone)]
struct Item {
    subject: &'static str,
    question: String,
    choices: [String; 4],
    answer: usize,
}

fn shots(n: usize) -> arborist::data::mmlu::Shots {
    arborist::data::mmlu::Shots {
        n,
        option: "--shots",
    }
}

fn item(subject: &'static str, q: &str, c: [&str; 4], answer: usize) -> Item {
    Item {
        subject,
        question: q.to_string(),
        choices: c.map(str::to_string),
        answer,
    }
}

/// (test, dev) items. World religions' dev examples are long, so 5 shots overflow the
/// fixture's 512 positions and the prompt must drop examples.
fn mmlu_items() -> (Vec<Item>, Vec<Item>) {
    let alg = "abstract_algebra";
    let rel = "world_religions";
    let long = |i: usize| {
        format!(
            "In the tradition described by the old river texts, number {i}, which of the \
             following stones is kept by the heron while the light falls on the water near the mill?"
        )
    };
    let test = vec![
        item(
            rel,
            "Which river, \"old\" or new,\nkeeps the stones?",
            ["old", "new", "both", "neither"],
            0,
        ),
        item(alg, "1+1=?", ["0", "1", "2", "3"], 2),
        item(
            alg,
            "Which, of these \"numbers\"\nis even?",
            ["3", "5", "8", "9"],
            2,
        ),
        item(
            rel,
            "The heron waits where?",
            ["mill", "river", "stone", "light"],
            1,
        ),
        item(alg, "2*3=?", ["6", "5", "4", "1"], 0),
        item(
            rel,
            "What falls on water?",
            ["stones", "light", "heron", "mill"],
            1,
        ),
        // Surrounding whitespace: kept by Hendrycks' code, stripped by lm-eval's.
        item(alg, " 0-0=? \n", ["1", "2", "3", "0"], 3),
    ];
    let mut dev: Vec<Item> = (0..5)
        .map(|i| item(alg, &format!("{i}+0=?"), ["0", "1", "2", "3"], i % 4))
        .collect();
    dev.extend((0..5).map(|i| {
        item(
            rel,
            &long(i),
            ["the first", "the second", "the third", "none"],
            (i + 1) % 4,
        )
    }));
    (test, dev)
}

/// Quote every field, doubling inner quotes, as pandas' to_csv(quoting=ALL) does.
fn csv_row(fields: &[&str]) -> String {
    let q: Vec<String> = fields
        .iter()
        .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
        .collect();
    q.join(",") + "\n"
}

fn item_row(it: &Item) -> String {
    let c = &it.choices;
    csv_row(&[
        &it.question,
        &c[0],
        &c[1],
        &c[2],
        &c[3],
        ["A", "B", "C", "D"][it.answer],
    ])
}

/// The Hendrycks layout: test/SUBJECT_test.csv and dev/SUBJECT_dev.csv.
fn write_csv_tree(root: &Path, test: &[Item], dev: &[Item]) {
    for (split, items) in [("test", test), ("dev", dev)] {
        std::fs::create_dir_all(root.join(split)).unwrap();
        for subject in ["abstract_algebra", "world_religions"] {
            let body: String = items
                .iter()
                .filter(|i| i.subject == subject)
                .map(item_row)
                .collect();
            std::fs::write(
                root.join(split).join(format!("{subject}_{split}.csv")),
                body,
            )
            .unwrap();
        }
    }
}

/// cais/mmlu's schema as pyarrow writes it, snappy-compressed, one row group.
fn write_mmlu_parquet(path: &Path, items: &[Item], answers: &[i64]) {
    write_mmlu_parquet_as(path, items, answers, "int64 answer", Compression::SNAPPY);
}

/// The same with `answer` of another physical type (e.g. `int32 answer (INTEGER(8,true))`,
/// as pyarrow writes int8) and another codec.
fn write_mmlu_parquet_as(
    path: &Path,
    items: &[Item],
    answers: &[i64],
    answer: &str,
    c: Compression,
) {
    let schema = format!(
        "message schema {{
        optional binary question (STRING);
        optional binary subject (STRING);
        optional group choices (LIST) {{ repeated group list {{ optional binary element (STRING); }} }}
        optional {answer};
    }}"
    );
    let choices: Vec<Vec<&str>> = items
        .iter()
        .map(|i| i.choices.iter().map(String::as_str).collect())
        .collect();
    let questions: Vec<&str> = items.iter().map(|i| i.question.as_str()).collect();
    let subjects: Vec<&str> = items.iter().map(|i| i.subject).collect();
    write_parquet(
        path,
        &schema,
        &[
            Col::Str(&questions),
            Col::Str(&subjects),
            Col::List(&choices),
            Col::Int(answers),
        ],
        c,
    );
}

enum Col<'a> {
    Str(&'a [&'a str]),
    List(&'a [Vec<&'a str>]),
    Int(&'a [i64]),
}

fn write_parquet(path: &Path, schema: &str, cols: &[Col], codec: Compression) {
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props = WriterProperties::builder().set_compression(codec).build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, Arc::new(props)).unwrap();
    let mut rg = w.next_row_group().unwrap();
    for col in cols {
        let mut c = rg.next_column().unwrap().unwrap();
        match col {
            Col::Str(v) => {
                let vals: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(*s)).collect();
                let def = vec![1i16; v.len()];
                c.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&def), None)
                    .unwrap();
            }
            Col::List(rows) => {
                // Levels: definition 3 = element present; repetition 0 starts a row.
                let vals: Vec<ByteArray> =
                    rows.iter().flatten().map(|s| ByteArray::from(*s)).collect();
                let def = vec![3i16; vals.len()];
                let rep: Vec<i16> = rows
                    .iter()
                    .flat_map(|r| (0..r.len()).map(|j| i16::from(j > 0)))
                    .collect();
                c.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&def), Some(&rep))
                    .unwrap();
            }
            Col::Int(v) => {
                let def = vec![1i16; v.len()];
                match c.untyped() {
                    ColumnWriter::Int64ColumnWriter(w) => w.write_batch(v, Some(&def), None),
                    ColumnWriter::Int32ColumnWriter(w) => {
                        let v: Vec<i32> = v.iter().map(|&x| x as i32).collect();
                        w.write_batch(&v, Some(&def), None)
                    }
                    _ => panic!("an integer column"),
                }
                .unwrap();
            }
        }
        c.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();
}

/// Hugging Face's `all/` config: test rows with the subjects interleaved, and dev rows.
fn write_parquet_tree(root: &Path, test: &[Item], dev: &[Item]) -> PathBuf {
    let all = root.join("all");
    std::fs::create_dir_all(&all).unwrap();
    let answers = |v: &[Item]| v.iter().map(|i| i.answer as i64).collect::<Vec<_>>();
    let test_file = all.join("test-00000-of-00001.parquet");
    write_mmlu_parquet(&test_file, test, &answers(test));
    write_mmlu_parquet(&all.join("dev-00000-of-00001.parquet"), dev, &answers(dev));
    test_file
}

fn write_text_parquet(path: &Path, rows: &[&str]) {
    write_parquet(
        path,
        "message schema { optional binary text (STRING); }",
        &[Col::Str(rows)],
        Compression::SNAPPY,
    );
}

fn freebase_question(id: &str, q: &str, aliases: &[&str]) -> Value {
    json!({"Question-ID": id, "RawQuestion": q, "ProcessedQuestion": q.to_lowercase(),
        "Parses": [{"Parse-Id": format!("{id}.P0"), "PotentialTopicEntityMention": "x",
            "TopicEntityName": "x", "TopicEntityMid": "m.0x", "InferentialChain": "a.b.c",
            "Answers": [{"AnswersMid": "m.0y", "AnswersName": aliases}]}]})
}

fn write_freebaseqa(path: &Path, questions: Vec<Value>) {
    let doc = json!({"Dataset": "FreebaseQA-eval", "Version": "1.0", "Questions": questions});
    std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}

// ---------------------------------------------------------------- model helpers

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

fn load(dir: &Path) -> LoadedModel {
    LoadedModel::load(dir.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap()
}

/// The qwen3 fixture with its last four merges replaced by "Ġ A".."Ġ D" (same vocab
/// size), so that " A".." D" are single tokens and MMLU takes the batched path.
fn qwen3_single_letter_tokens(dir: &Path) -> PathBuf {
    let src = fixture("qwen3");
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut tok: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    let model = &mut tok["model"];
    let vocab = model["vocab"].as_object_mut().unwrap();
    let last: Vec<(String, u64)> = {
        let mut v: Vec<(String, u64)> = vocab
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        v.sort_by_key(|x| x.1);
        v[v.len() - 4..].to_vec()
    };
    for ((old, id), l) in last.iter().zip(["A", "B", "C", "D"]) {
        vocab.remove(old);
        vocab.insert(format!("Ġ{l}"), json!(id));
    }
    let merges = model["merges"].as_array_mut().unwrap();
    let n = merges.len();
    for (j, l) in ["A", "B", "C", "D"].iter().enumerate() {
        merges[n - 4 + j] = json!(["Ġ", l]);
    }
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    dir.to_path_buf()
}

fn log_softmax_rows(model: &LoadedModel, ids: &[u32]) -> Vec<Vec<f32>> {
    let t = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.decoder.forward(&t, None).unwrap();
    candle_nn::ops::log_softmax(&logits, D::Minus1)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec2()
        .unwrap()
}

/// A solved or open example: Hendrycks' `format_example`, or lm-eval's `doc_to_text`
/// (which strips the question).
fn reference_example(it: &Item, answer: bool, lm_eval: bool) -> String {
    let c = &it.choices;
    let q = if lm_eval {
        it.question.trim()
    } else {
        &it.question
    };
    let mut s = format!(
        "{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:",
        q, c[0], c[1], c[2], c[3]
    );
    if answer {
        s += &format!(" {}\n\n", ["A", "B", "C", "D"][it.answer]);
    }
    s
}

/// The task description. Hendrycks' `format_subject` puts a space before every word of
/// the subject, after "about " ("about  abstract algebra."); lm-eval writes one space.
fn reference_header(subject: &str, lm_eval: bool) -> String {
    let words: Vec<&str> = subject.split('_').collect();
    let about = if lm_eval {
        words.join(" ")
    } else {
        words.iter().map(|w| format!(" {w}")).collect()
    };
    format!("The following are multiple choice questions (with answers) about {about}.\n\n")
}

/// (predicted letter, log-probs, shots) from full forwards of prompt + continuation,
/// fitted to `max` positions as each protocol fits it: Hendrycks drops the last examples
/// until the prompt fits; lm-eval keeps them all and feeds the last `max` tokens of
/// prompt + continuation but its last (`(context + continuation)[-(max + 1):][:-1]`).
fn reference_prediction(
    model: &LoadedModel,
    it: &Item,
    dev: &[&Item],
    lm_eval: bool,
    max: usize,
) -> (String, [f64; 4], usize) {
    reference_prediction_by(model, it, dev, lm_eval, max, |t| model.encode(t).unwrap())
}

/// `reference_prediction` with the prompts tokenized by `encode`.
fn reference_prediction_by(
    model: &LoadedModel,
    it: &Item,
    dev: &[&Item],
    lm_eval: bool,
    max: usize,
    encode: impl Fn(&str) -> Vec<u32>,
) -> (String, [f64; 4], usize) {
    for k in (0..=5).rev() {
        let mut prompt = reference_header(it.subject, lm_eval);
        for d in &dev[..k] {
            prompt += &reference_example(d, true, lm_eval);
        }
        prompt += &reference_example(it, false, lm_eval);
        let ids = encode(&prompt);
        let conts: Vec<Vec<u32>> = ["A", "B", "C", "D"]
            .iter()
            .map(|l| {
                let joint = encode(&format!("{prompt} {l}"));
                assert!(joint.starts_with(&ids));
                joint[ids.len()..].to_vec()
            })
            .collect();
        let longest = conts.iter().map(Vec::len).max().unwrap();
        if !lm_eval && ids.len() + longest - 1 > max {
            continue;
        }
        let lp: Vec<f64> = conts
            .iter()
            .map(|c| {
                let all: Vec<u32> = ids.iter().chain(c).copied().collect();
                let from = all.len().saturating_sub(max + 1);
                let seq = &all[from..all.len() - 1];
                let rows = log_softmax_rows(model, seq);
                let first = ids.len() - from - 1;
                c.iter()
                    .enumerate()
                    .map(|(j, &t)| rows[first + j][t as usize] as f64)
                    .sum()
            })
            .collect();
        let best = (0..4).fold(0, |b, j| if lp[j] > lp[b] { j } else { b });
        return (
            ["A", "B", "C", "D"][best].to_string(),
            [lp[0], lp[1], lp[2], lp[3]],
            k,
        );
    }
    panic!("0-shot prompt does not fit");
}

// ---------------------------------------------------------------- MMLU

#[test]
fn mmlu_predictions_equal_full_forward_reference() {
    let d = tmp();
    let (test, dev) = mmlu_items();
    write_csv_tree(&d.path().join("csv"), &test, &dev);
    let variant = qwen3_single_letter_tokens(&d.path().join("qwen3_letters"));
    let styles = [(MmluPrompt::Hendrycks, false), (MmluPrompt::LmEval, true)];
    let mut logprobs_by_style = Vec::new();
    for ((dir, batch), (style, lm_eval)) in [(fixture("qwen3"), 1), (variant, 3)]
        .into_iter()
        .flat_map(|m| styles.map(|s| (m.clone(), s)))
    {
        let model = load(&dir);
        let data = read_mmlu(&d.path().join("csv"), shots(5)).unwrap();
        let opts = MmluOptions {
            shots: 5,
            prompt: style,
            limit: None,
            batch,
            max_context: None,
        };
        let res = evaluate_mmlu(&model, &data, &opts, "csv", |_, _| {}).unwrap();
        assert_eq!(res.prompt, style);
        // Subjects sorted, file order within a subject.
        let mut order: Vec<&Item> = test.iter().collect();
        order.sort_by_key(|i| i.subject);
        assert_eq!(res.items, order.len());
        let mut correct = 0;
        for (it, p) in order.iter().zip(&res.predictions) {
            let devs: Vec<&Item> = dev.iter().filter(|x| x.subject == it.subject).collect();
            let max = model.cfg.max_position_embeddings;
            let (pred, lp, k) = reference_prediction(&model, it, &devs, lm_eval, max);
            assert_eq!(p.subject, it.subject);
            assert_eq!(
                p.predicted, pred,
                "{}: {:?} vs {:?}",
                it.question, p.logprobs, lp
            );
            assert_eq!(p.shots, k, "{}", it.question);
            for j in 0..4 {
                assert!(
                    (p.logprobs[j] - lp[j]).abs() < 1e-4,
                    "{:?} vs {lp:?}",
                    p.logprobs
                );
            }
            correct += usize::from(pred == ["A", "B", "C", "D"][it.answer]);
        }
        assert_eq!(res.correct, correct);
        assert!((res.accuracy - correct as f64 / order.len() as f64).abs() < 1e-12);
        // The long world_religions examples do not fit: Hendrycks drops shots, lm-eval
        // cuts the prompt's start; the short algebra ones fit whole.
        let cut: Vec<&str> = res
            .predictions
            .iter()
            .filter(|p| p.shots < 5 || p.truncated > 0)
            .map(|p| p.subject.as_str())
            .collect();
        let (dropped, truncated) = match lm_eval {
            false => (cut.len(), 0),
            true => (0, cut.len()),
        };
        assert_eq!((res.reduced_shots, res.truncated), (dropped, truncated));
        assert!(
            !cut.is_empty() && cut.iter().all(|s| *s == "world_religions"),
            "{cut:?}"
        );
        logprobs_by_style.push(
            res.predictions
                .iter()
                .map(|p| p.logprobs)
                .collect::<Vec<_>>(),
        );
    }
    // The two spellings are different prompts: every item's scores move.
    for pair in logprobs_by_style.chunks(2) {
        assert!(pair[0].iter().zip(&pair[1]).all(|(a, b)| a != b));
    }
}

/// Hendrycks' code drops shots until the prompt fits 2048 tokens whatever the model's
/// context; lm-eval fits max_position_embeddings and cuts from the left;
/// `--mmlu-max-context` moves either limit within the model's context.
#[test]
fn mmlu_context_is_hendrycks_2048_unless_set() {
    let d = tmp();
    let dir = d.path().join("qwen3_4k");
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("qwen3");
    for f in [
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["max_position_embeddings"] = json!(4096);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let rel = "world_religions";
    let passage = "The heron keeps the stones by the old mill while the light falls on the river. ";
    let dev: Vec<Item> = (0..5)
        .map(|i| {
            item(
                rel,
                &format!("{i}. {}", passage.repeat(12)),
                ["a", "b", "c", "d"],
                i % 4,
            )
        })
        .collect();
    let test = vec![item(
        rel,
        "Where does the heron wait?",
        ["mill", "river", "stone", "light"],
        0,
    )];
    write_csv_tree(&d.path().join("csv"), &test, &dev);
    // The tree holds both subjects; only world_religions is written here.
    std::fs::remove_file(d.path().join("csv/test/abstract_algebra_test.csv")).unwrap();
    std::fs::remove_file(d.path().join("csv/dev/abstract_algebra_dev.csv")).unwrap();
    let model = load(&dir);
    let devs: Vec<&Item> = dev.iter().collect();
    // The setup must put the 5-shot prompt between 2048 and 4096 tokens.
    let (_, _, k_2048) = reference_prediction(&model, &test[0], &devs, false, 2048);
    let (_, lp_4096, k_4096) = reference_prediction(&model, &test[0], &devs, false, 4096);
    assert!(k_2048 < 5 && k_2048 > 0, "{k_2048}");
    assert_eq!(k_4096, 5);
    let data = read_mmlu(&d.path().join("csv"), shots(5)).unwrap();
    let run_as = |prompt, max_context| {
        let opts = MmluOptions {
            shots: 5,
            prompt,
            limit: None,
            batch: 1,
            max_context,
        };
        evaluate_mmlu(&model, &data, &opts, "csv", |_, _| {})
    };
    let run = |max_context| run_as(MmluPrompt::Hendrycks, max_context);
    let default = run(None).unwrap();
    assert_eq!((default.max_context, default.reduced_shots), (2048, 1));
    assert_eq!(default.predictions[0].shots, k_2048);
    let long = run(Some(4096)).unwrap();
    assert_eq!((long.max_context, long.reduced_shots), (4096, 0));
    assert_eq!(long.predictions[0].shots, 5);
    for (got, want) in long.predictions[0].logprobs.iter().zip(lp_4096) {
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
    // lm-eval's rule: its max_length is max_position_embeddings, and a prompt too long
    // for a smaller one keeps every example and loses tokens from its start.
    let lm_eval = |max_context| run_as(MmluPrompt::LmEval, max_context).unwrap();
    let whole = lm_eval(None);
    assert_eq!(
        (whole.max_context, whole.reduced_shots, whole.truncated),
        (4096, 0, 0)
    );
    let cut = lm_eval(Some(2048));
    assert_eq!(
        (cut.max_context, cut.reduced_shots, cut.truncated),
        (2048, 0, 1)
    );
    let one = &cut.predictions[0];
    assert_eq!(one.shots, 5);
    assert!(one.truncated > 0, "{one:?}");
    let (_, lp_cut, _) = reference_prediction(&model, &test[0], &devs, true, 2048);
    for (got, want) in one.logprobs.iter().zip(lp_cut) {
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
    let err = run(Some(4097)).unwrap_err().to_string();
    assert_eq!(
        err,
        "--mmlu-max-context 4097 is above the model's max_position_embeddings 4096"
    );
    // The CLI refuses the flag where it cannot apply, before reading any weights.
    let o = arborist(
        &[
            "eval",
            "--model",
            &p(&dir),
            "--ppl",
            &p(&fixture("eval.txt")),
            "--mmlu-max-context",
            "64",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "--mmlu-max-context tunes an evaluation that was not requested: it needs --mmlu PATH"
        ),
        "{}",
        stderr(&o)
    );
    let (model_dir, csv) = (p(&dir), p(&d.path().join("csv")));
    let eval_mmlu = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", &model_dir, "--mmlu", &csv];
        args.extend(extra);
        args.push("--json");
        eval_json(&args)
    };
    let v = eval_mmlu(&["--mmlu-max-context", "4096"]);
    assert_eq!(v["mmlu"]["max_context"], json!(4096));
    assert_eq!(v["mmlu"]["reduced_shots"], json!(0));
    let v = eval_mmlu(&["--mmlu-prompt", "lm-eval", "--mmlu-max-context", "2048"]);
    assert_eq!(v["mmlu"]["max_context"], json!(2048));
    assert_eq!(v["mmlu"]["truncated"], json!(1));
}

// lm-eval leaves BOS to the tokenizer (its PR #3347): with a tokenizer that puts one
// first, the lm-eval protocol's prompts start with it, Hendrycks' (his evaluate.py sends
// text to an API) and ours elsewhere do not.
#[test]
fn mmlu_lm_eval_prompts_start_with_the_tokenizers_bos() {
    let d = tmp();
    let (test, dev) = mmlu_items();
    write_csv_tree(&d.path().join("csv"), &test, &dev);
    let dir = d.path().join("qwen3_bos");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("qwen3").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(
        fixture("c4_ref/tokenizer_bos.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let model = load(&dir);
    assert_eq!(model.encode_document("x").unwrap()[0], 0, "the BOS is id 0");
    let data = read_mmlu(&d.path().join("csv"), shots(5)).unwrap();
    let mut order: Vec<&Item> = test.iter().collect();
    order.sort_by_key(|i| i.subject);
    for (style, lm_eval) in [(MmluPrompt::Hendrycks, false), (MmluPrompt::LmEval, true)] {
        let opts = MmluOptions {
            shots: 5,
            prompt: style,
            limit: None,
            batch: 2,
            max_context: Some(512),
        };
        let res = evaluate_mmlu(&model, &data, &opts, "csv", |_, _| {}).unwrap();
        let mut moved = 0;
        for (it, p) in order.iter().zip(&res.predictions) {
            let devs: Vec<&Item> = dev.iter().filter(|x| x.subject == it.subject).collect();
            let plain = |t: &str| model.encode(t).unwrap();
            let bos = |t: &str| model.encode_document(t).unwrap();
            let (_, want, _) = match lm_eval {
                true => reference_prediction_by(&model, it, &devs, true, 512, bos),
                false => reference_prediction_by(&model, it, &devs, false, 512, plain),
            };
            let (_, other, _) = match lm_eval {
                true => reference_prediction_by(&model, it, &devs, true, 512, plain),
                false => reference_prediction_by(&model, it, &devs, false, 512, bos),
            };
            for j in 0..4 {
                assert!(
                    (p.logprobs[j] - want[j]).abs() < 1e-4,
                    "{:?} vs {want:?}",
                    p.logprobs
                );
            }
            moved += usize::from((0..4).any(|j| (p.logprobs[j] - other[j]).abs() > 1e-4));
        }
        // The BOS changes the scores (the check above could not pass both ways).
        assert!(moved > 0, "{style:?}");
    }
}

fn eval_json(args: &[&str]) -> Value {
    let o = arborist(args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn mmlu_csv_and_parquet_give_identical_results() {
    let d = tmp();
    let (test, dev) = mmlu_items();
    // Parquet rows interleave the subjects (as `test` lists them); CSV files are per subject.
    write_csv_tree(&d.path().join("csv"), &test, &dev);
    let test_file = write_parquet_tree(&d.path().join("pq"), &test, &dev);
    let m = p(&fixture("qwen3"));
    let run = |path: &Path, shots: &str| {
        eval_json(&[
            "eval",
            "--model",
            &m,
            "--mmlu",
            &p(path),
            "--shots",
            shots,
            "--json",
            "--per-item",
        ])
    };
    let key = |v: &Value| -> Vec<(Value, Value, Value, Value)> {
        v["mmlu"]["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["subject"].clone(),
                    x["answer"].clone(),
                    x["predicted"].clone(),
                    x["logprobs"].clone(),
                )
            })
            .collect()
    };
    // The file by its bare name, from its folder: its dev-*.parquet sibling is found there.
    let by_name = |shots: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"))
            .current_dir(test_file.parent().unwrap())
            .args([
                "eval",
                "--model",
                &m,
                "--json",
                "--per-item",
                "--shots",
                shots,
            ])
            .args(["--mmlu", "test-00000-of-00001.parquet"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    for shots in ["0", "5"] {
        let csv = run(&d.path().join("csv"), shots);
        let pqs = [
            run(&d.path().join("pq"), shots),
            run(&test_file, shots),
            by_name(shots),
        ];
        for pq in pqs {
            assert_eq!(csv["mmlu"]["accuracy"], pq["mmlu"]["accuracy"]);
            assert_eq!(csv["mmlu"]["subjects"], pq["mmlu"]["subjects"]);
            assert_eq!(key(&csv), key(&pq));
        }
        let r = &csv["mmlu"];
        assert_eq!(r["shots"].as_u64().unwrap().to_string(), shots);
        assert_eq!(r["items"], 7);
        assert_eq!(r["split"], "test");
        assert_eq!(r["dtype"], "f32");
        assert_eq!(r["subjects"].as_array().unwrap().len(), 2);
    }
    // --limit takes the first N items of each subject; without --per-item no predictions.
    let v = eval_json(&[
        "eval",
        "--model",
        &m,
        "--mmlu",
        &p(&d.path().join("csv")),
        "--limit",
        "2",
        "--json",
    ]);
    assert_eq!(v["mmlu"]["items"], 4);
    assert_eq!(v["mmlu"]["limit"], 2);
    assert!(v["mmlu"].get("predictions").is_none());
}

/// What the evaluator reads of each item (its file aside), with `--shots 0`.
// Evaluating the dev split itself put each item, answer and all, among its own shots (an
// audit found 5-shot dev accuracy computed so). An item's shots are now the other dev
// items, as lm-eval leaves the document out when the few-shot split is the one evaluated:
// its scores equal those of the same item evaluated as a test item against the others.
#[test]
fn an_evaluated_dev_item_is_not_its_own_example() {
    let d = tmp();
    let (_, dev) = mmlu_items();
    let alg: Vec<Item> = dev
        .into_iter()
        .filter(|i| i.subject == "abstract_algebra")
        .collect();
    let test_file = write_parquet_tree(&d.path().join("a"), &alg[..1], &alg);
    let dev_file = test_file.with_file_name("dev-00000-of-00001.parquet");
    let m = p(&fixture("qwen3"));
    let run = |f: &Path| {
        eval_json(&[
            "eval",
            "--model",
            &m,
            "--mmlu",
            &p(f),
            "--shots",
            "2",
            "--json",
            "--per-item",
        ])
    };
    let v = run(&dev_file);
    assert_eq!(v["mmlu"]["split"], "dev");
    let preds = v["mmlu"]["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), alg.len());
    for (i, x) in alg.iter().enumerate() {
        let others: Vec<Item> = (0..alg.len())
            .filter(|&j| j != i)
            .map(|j| alg[j].clone())
            .collect();
        let t = write_parquet_tree(
            &d.path().join(format!("t{i}")),
            std::slice::from_ref(x),
            &others,
        );
        let want = run(&t);
        assert_eq!(preds[i]["shots"], 2, "item {i}");
        assert_eq!(
            preds[i]["logprobs"], want["mmlu"]["predictions"][0]["logprobs"],
            "item {i}"
        );
    }
    // Five dev examples leave four for each: --shots 5 needs a sixth.
    let o = arborist(
        &[
            "eval",
            "--model",
            &m,
            "--mmlu",
            &p(&dev_file),
            "--shots",
            "5",
        ],
        &[],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("has 5 dev examples, fewer than the 6 --shots 5 needs when the dev split itself is evaluated"),
        "{err}"
    );
}

fn item_keys(path: &Path) -> Vec<(String, String, [String; 4], usize)> {
    let d = read_mmlu(path, shots(0)).unwrap();
    d.test
        .values()
        .flatten()
        .map(|i| {
            (
                i.subject.clone(),
                i.question.clone(),
                i.choices.clone(),
                i.answer,
            )
        })
        .collect()
}

#[test]
fn mmlu_parquet_reads_every_integer_answer_type_and_codec() {
    let d = tmp();
    let (test, _) = mmlu_items();
    let answers: Vec<i64> = test.iter().map(|i| i.answer as i64).collect();
    let base = d.path().join("base.parquet");
    write_mmlu_parquet(&base, &test, &answers);
    let want = item_keys(&base);
    assert_eq!(want.len(), test.len());
    // What pandas/pyarrow write for int8, int16, uint8 ... answers.
    let types = [
        "int32 answer",
        "int32 answer (INTEGER(8,true))",
        "int32 answer (INTEGER(16,true))",
        "int32 answer (INTEGER(8,false))",
        "int32 answer (INTEGER(16,false))",
        "int32 answer (INTEGER(32,false))",
        "int64 answer (INTEGER(64,false))",
    ];
    for (i, ty) in types.iter().enumerate() {
        let f = d.path().join(format!("t{i}.parquet"));
        write_mmlu_parquet_as(&f, &test, &answers, ty, Compression::SNAPPY);
        assert_eq!(item_keys(&f), want, "{ty}");
    }
    for (name, codec) in [
        ("gzip", Compression::GZIP(GzipLevel::default())),
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
    ] {
        let f = d.path().join(format!("{name}.parquet"));
        write_mmlu_parquet_as(&f, &test, &answers, "int64 answer", codec);
        assert_eq!(item_keys(&f), want, "{name}");
    }
}

// ---------------------------------------------------------------- FreebaseQA

#[test]
fn freebaseqa_scoring_rules() {
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(is_correct(" It is New York City.", &a(&["new york"])));
    assert!(is_correct("NEWYORK", &a(&["New  York"])));
    assert!(is_correct(
        "the answer: new\tyork",
        &a(&["Boston", "NEW YORK"])
    ));
    assert!(!is_correct("Boston", &a(&["New York"])));
    assert!(
        !is_correct("anything", &a(&["", "  "])),
        "an empty alias matches nothing"
    );
    // The answer starts at the first non-whitespace character and ends at the next newline.
    assert_eq!(first_line("\n\n Paris\nQuestion: x"), "Paris");
    assert_eq!(first_line(" Paris, France"), "Paris, France");
    assert_eq!(first_line("\n \n"), "");
    assert!(is_correct(first_line("\nParis\nLondon"), &a(&["paris"])));
    assert!(!is_correct(first_line("\nParis\nLondon"), &a(&["london"])));
}

/// Greedy continuation by full forwards: stop at EOS (id 0) or a newline, cut there.
fn reference_continuation(model: &LoadedModel, question: &str, max_new: usize) -> String {
    let prompt = format!("Please give answer to this question: {question}\nThe answer is ");
    let mut seq = model.encode(&prompt).unwrap();
    let start = seq.len();
    for _ in 0..max_new {
        let rows = log_softmax_rows(model, &seq);
        let last = rows.last().unwrap();
        let next = (0..last.len()).fold(0, |b, j| if last[j] > last[b] { j } else { b }) as u32;
        if next == 0 {
            break;
        }
        seq.push(next);
        if model
            .tokenizer
            .decode(&seq[start..], true)
            .unwrap()
            .contains('\n')
        {
            break;
        }
    }
    let text = model.tokenizer.decode(&seq[start..], true).unwrap();
    text.split('\n').next().unwrap().to_string()
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

#[test]
fn freebaseqa_scores_the_continuation_only() {
    let model = load(&fixture("qwen3"));
    let candidates = [
        "who keeps the stones",
        "where does the heron wait",
        "what falls on the water",
        "which mill is old",
    ];
    let (q1, c1) = candidates
        .iter()
        .map(|q| (q.to_string(), reference_continuation(&model, q, 24)))
        .find(|(_, c)| squash(c).chars().count() >= 3)
        .expect("a question with a non-trivial continuation");
    // An alias taken from the continuation, upper-cased and spaced out: right.
    let alias: String = squash(&c1)
        .chars()
        .take(3)
        .map(|c| format!("{} ", c.to_ascii_uppercase()))
        .collect();
    // An alias that is in the question (so in the prompt) but not in the answer: wrong.
    let q2 = "which zebra drinks at the river".to_string();
    let c2 = reference_continuation(&model, &q2, 24);
    assert!(!squash(&c2).contains("zebra"), "{c2}");
    let d = tmp();
    let f = d.path().join("FreebaseQA-eval.json");
    write_freebaseqa(
        &f,
        vec![
            freebase_question("FreebaseQA-eval-0", &q1, &["no such thing", &alias]),
            freebase_question("FreebaseQA-eval-1", &q2, &["zebra"]),
        ],
    );
    let m = p(&fixture("qwen3"));
    let v = eval_json(&[
        "eval",
        "--model",
        &m,
        "--freebaseqa",
        &p(&f),
        "--json",
        "--per-item",
    ]);
    let r = &v["freebaseqa"];
    assert_eq!(r["items"], 2);
    assert_eq!(r["max_new_tokens"], 24);
    assert_eq!(r["stop_ids"], json!([0]));
    let rec = r["records"].as_array().unwrap();
    assert_eq!(rec[0]["generated"], c1);
    assert_eq!(rec[1]["generated"], c2);
    assert_eq!(rec[0]["correct"], true, "alias `{alias}` vs `{c1}`");
    assert_eq!(rec[1]["correct"], false);
    assert_eq!(r["accuracy"], 0.5);
    let v = eval_json(&[
        "eval",
        "--model",
        &m,
        "--freebaseqa",
        &p(&f),
        "--limit",
        "1",
        "--json",
    ]);
    assert_eq!(v["freebaseqa"]["items"], 1);
    assert_eq!(v["freebaseqa"]["limit"], 1);
}

// ---------------------------------------------------------------- wikitext parquet

/// Wikitext-like rows (headings, paragraphs, empty rows) as a parquet file in `dir`, and
/// the same rows joined by blank lines as a text file: (parquet, text, rows).
fn wikitext_pair(dir: &Path) -> (PathBuf, PathBuf, Vec<String>) {
    let text = std::fs::read_to_string(fixture("eval.txt")).unwrap();
    let mut rows: Vec<String> = ["", " = Heading = ", ""].map(String::from).to_vec();
    rows.extend(text.lines().map(String::from));
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let pq = dir.join("test-00000-of-00001.parquet");
    write_text_parquet(&pq, &refs);
    let txt = dir.join("joined.txt");
    std::fs::write(&txt, rows.join("\n\n")).unwrap();
    (pq, txt, rows)
}

#[test]
fn ppl_on_parquet_equals_ppl_on_rows_joined_by_blank_lines() {
    let d = tmp();
    let (pq, txt, rows) = wikitext_pair(d.path());
    let m = p(&fixture("qwen3"));
    let a = eval_json(&[
        "eval",
        "--model",
        &m,
        "--ppl",
        &p(&pq),
        "--seqlen",
        "64",
        "--json",
    ]);
    let b = eval_json(&[
        "eval",
        "--model",
        &m,
        "--ppl",
        &p(&txt),
        "--seqlen",
        "64",
        "--json",
    ]);
    assert_eq!(a["ppl"]["value"], b["ppl"]["value"]);
    assert_eq!(a["ppl"]["tokens"], b["ppl"]["tokens"]);
    // A parquet file without the extension is known by its first bytes (it was "not
    // UTF-8 text").
    let renamed = d.path().join("test-00000-of-00001");
    std::fs::copy(&pq, &renamed).unwrap();
    let r = eval_json(&[
        "eval",
        "--model",
        &m,
        "--ppl",
        &p(&renamed),
        "--seqlen",
        "64",
        "--json",
    ]);
    assert_eq!(a["ppl"]["value"], r["ppl"]["value"]);
    // Joining with single newlines would give other tokens.
    std::fs::write(&txt, rows.join("\n")).unwrap();
    let c = eval_json(&[
        "eval",
        "--model",
        &m,
        "--ppl",
        &p(&txt),
        "--seqlen",
        "64",
        "--json",
    ]);
    assert_ne!(a["ppl"]["tokens"], c["ppl"]["tokens"]);
}

/// A text cell that is not UTF-8 is named by its row in one short line: parquet's own
/// error quotes every byte of the cell.
#[test]
fn a_parquet_cell_that_is_not_utf8_is_one_short_line() {
    let d = tmp();
    let path = d.path().join("bad.parquet");
    let schema = "message schema { optional binary text (STRING); }";
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props = Arc::new(WriterProperties::builder().build());
    let file = std::fs::File::create(&path).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut c = rg.next_column().unwrap().unwrap();
    let mut bad = vec![b'x'; 20_000];
    bad.push(0xff);
    let vals = [ByteArray::from("fine"), ByteArray::from(bad)];
    c.typed::<ByteArrayType>()
        .write_batch(&vals, Some(&[1, 1]), None)
        .unwrap();
    c.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
    let o = arborist(
        &["eval", "--model", &p(&fixture("qwen3")), "--ppl", &p(&path)],
        &[],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.ends_with("row 2: a text value is not valid UTF-8\n"),
        "{err}"
    );
}

/// A data page that claims more values than it holds made the parquet crate assert: `eval`
/// panicked with a backtrace, and a headless run waited forever for its data (both found
/// by an audit). Each is now one line naming the file.
#[test]
fn a_malformed_parquet_page_is_one_line_not_a_panic() {
    let d = tmp();
    let path = d.path().join("bad.parquet");
    let schema = "message schema { required binary text (STRING); }";
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_compression(Compression::UNCOMPRESSED)
        .build();
    let file = std::fs::File::create(&path).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, Arc::new(props)).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut c = rg.next_column().unwrap().unwrap();
    let rows: Vec<ByteArray> = (0..5)
        .map(|i| ByteArray::from(text(40 + i).as_str()))
        .collect();
    c.typed::<ByteArrayType>()
        .write_batch(&rows, None, None)
        .unwrap();
    c.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // The first page header (thrift compact): data_page_header's field 1, num_values,
    // zigzag 5 = 0x0a; 100 claims 50.
    let at = bytes[4..]
        .windows(3)
        .position(|w| w == [0x2c, 0x15, 0x0a])
        .expect("the data page header's num_values of 5")
        + 4;
    bytes[at + 2] = 100;
    std::fs::write(&path, &bytes).unwrap();
    let m = p(&fixture("qwen3"));
    let o = arborist(
        &["eval", "--model", &m, "--ppl", &p(&path), "--seqlen", "4"],
        &[],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.parquet: row 1: the parquet file is malformed"),
        "{err}"
    );
    // The same file as a session's evaluation text: the run ends instead of waiting.
    let txt = d.path().join("calib.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let session = p(&d.path().join("s.yaml"));
    let o = std::process::Command::new("timeout")
        .args(["120", env!("CARGO_BIN_EXE_arborist")])
        .args([
            "run",
            "--model",
            &m,
            "--calib",
            &p(&txt),
            "--eval",
            &p(&path),
        ])
        .args([
            "--seqlen",
            "64",
            "--calib-windows",
            "2",
            "--eval-windows",
            "2",
        ])
        .args([
            "--max-iters",
            "1",
            "--headless",
            "--auto-approve",
            "--session",
            &session,
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "124 is a hang: {err}");
    assert!(err.contains("the parquet file is malformed"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The dense perplexity a session file records (its `baseline` event).
fn session_dense_ppl(s: &Path) -> f64 {
    let (_, entries) = session_docs(s);
    let base = entries
        .iter()
        .find(|e| e["event"]["event"] == "baseline")
        .expect("a baseline event");
    base["event"]["eval"]["ppl"].as_f64().unwrap()
}

/// `prune --eval` and `run --eval` say they follow `eval`'s protocol: parquet included.
#[test]
fn prune_and_run_read_an_eval_parquet_as_eval_does() {
    let d = tmp();
    let (pq, txt, _) = wikitext_pair(d.path());
    let m = p(&fixture("qwen3"));
    let prune = |eval: &Path, out: &str| {
        let out = p(&d.path().join(out));
        let v = eval_json(&[
            "prune",
            "--model",
            &m,
            "--method",
            "magnitude",
            "--sparsity",
            "0.5",
            "--seqlen",
            "64",
            "--eval",
            &p(eval),
            "--eval-windows",
            "4",
            "--out",
            &out,
            "--json",
        ]);
        v["result"]["ppl"].clone()
    };
    let (a, b) = (prune(&pq, "a"), prune(&txt, "b"));
    assert_eq!(a["windows"], 4);
    assert_eq!(a["value"], b["value"]);
    assert_eq!(a["tokens"], b["tokens"]);
    // A session's dense perplexity (recorded in its header) likewise.
    let run = |eval: &Path, name: &str| {
        let s = d.path().join(name);
        let o = arborist(
            &[
                "run",
                "--model",
                &m,
                "--calib",
                &p(&txt),
                "--eval",
                &p(eval),
                "--seqlen",
                "64",
                "--calib-windows",
                "2",
                "--eval-windows",
                "4",
                "--max-iters",
                "1",
                "--headless",
                "--auto-approve",
                "--session",
                &p(&s),
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        session_dense_ppl(&s)
    };
    assert_eq!(run(&pq, "a.yaml"), run(&txt, "b.yaml"));
}

// ---------------------------------------------------------------- bad input

fn assert_one_line_error(args: &[&str], needles: &[&str]) {
    let o = arborist(args, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {err}");
    }
}

fn mmlu_err(path: &Path, shots: &str, needles: &[&str]) {
    let m = p(&fixture("qwen3"));
    assert_one_line_error(
        &["eval", "--model", &m, "--mmlu", &p(path), "--shots", shots],
        needles,
    );
}

#[test]
fn bad_mmlu_csv_gives_one_line_naming_file_and_row() {
    let (test, dev) = mmlu_items();
    let fresh = || {
        let d = tmp();
        write_csv_tree(d.path(), &test, &dev);
        d
    };
    let alg = |d: &Path| d.join("test/abstract_algebra_test.csv");
    let append = |f: &Path, row: &str| {
        let mut s = std::fs::read_to_string(f).unwrap();
        s.push_str(row);
        std::fs::write(f, s).unwrap();
    };
    // Row 5 of the algebra file (4 good rows before it).
    let d = fresh();
    append(&alg(d.path()), &csv_row(&["q", "a", "b", "c", "d"]));
    mmlu_err(
        d.path(),
        "0",
        &[&p(&alg(d.path())), "row 5", "5 columns, expected 6"],
    );
    let d = fresh();
    append(&alg(d.path()), &csv_row(&["q", "a", "b", "c", "d", "E"]));
    mmlu_err(d.path(), "0", &[&p(&alg(d.path())), "row 5", "`E`"]);
    // No items at all.
    let d = tmp();
    std::fs::create_dir_all(d.path().join("test")).unwrap();
    mmlu_err(d.path(), "0", &[&p(d.path()), "no MMLU items"]);
    // Shots without a dev split, and more shots than dev examples.
    let d = fresh();
    std::fs::remove_dir_all(d.path().join("dev")).unwrap();
    mmlu_err(d.path(), "5", &[&p(&d.path().join("dev")), "--shots 5"]);
    let d = fresh();
    let dev_file = d.path().join("dev/abstract_algebra_dev.csv");
    mmlu_err(
        d.path(),
        "6",
        &[
            &p(&dev_file),
            "abstract_algebra",
            "5 dev examples",
            "--shots 6",
        ],
    );
    // A missing dev file for one subject.
    std::fs::remove_file(&dev_file).unwrap();
    mmlu_err(d.path(), "1", &[&p(&dev_file), "missing"]);
    // An empty subject file would drop out of the average; a nameless one has no subject.
    let d = fresh();
    std::fs::write(alg(d.path()), "").unwrap();
    mmlu_err(d.path(), "0", &[&p(&alg(d.path())), "no questions"]);
    let d = fresh();
    let nameless = d.path().join("test/_test.csv");
    std::fs::write(&nameless, csv_row(&["q", "a", "b", "c", "d", "A"])).unwrap();
    mmlu_err(d.path(), "0", &[&p(&nameless), "no subject"]);
    // The test/ folder or a CSV file instead of the root that holds test/ and dev/.
    let d = fresh();
    let test_dir = d.path().join("test");
    for (path, shots) in [(&test_dir, "5"), (&test_dir, "0"), (&alg(d.path()), "0")] {
        mmlu_err(path, shots, &[&p(path), "test/ (or val/) and dev/"]);
    }
}

#[test]
fn bad_mmlu_parquet_gives_one_line_naming_file_and_row() {
    let (test, dev) = mmlu_items();
    let d = tmp();
    let mut answers: Vec<i64> = test.iter().map(|i| i.answer as i64).collect();
    answers[2] = 7;
    let f = d.path().join("test-00000-of-00001.parquet");
    write_mmlu_parquet(&f, &test, &answers);
    mmlu_err(&f, "0", &[&p(&f), "row 3", "answer 7"]);
    // A valid test file with no dev file beside it.
    let answers: Vec<i64> = test.iter().map(|i| i.answer as i64).collect();
    write_mmlu_parquet(&f, &test, &answers);
    mmlu_err(&f, "5", &[&p(d.path()), "--shots 5", "dev"]);
    // Dev rows of one subject only: the other subject lacks examples.
    let alg: Vec<Item> = dev
        .iter()
        .filter(|i| i.subject == "abstract_algebra")
        .cloned()
        .collect();
    let dev_file = d.path().join("dev-00000-of-00001.parquet");
    write_mmlu_parquet(&dev_file, &alg, &[0, 1, 2, 3, 0]);
    mmlu_err(
        &f,
        "5",
        &[&p(&dev_file), "world_religions", "0 dev examples"],
    );
    // An empty subject would head its prompts "... about ."
    let mut nameless = test.clone();
    nameless[1].subject = "";
    write_mmlu_parquet(&f, &nameless, &[0; 7]);
    mmlu_err(&f, "0", &[&p(&f), "row 2", "`subject` is empty"]);
    // A parquet file without the MMLU columns.
    let t = d.path().join("test-text.parquet");
    write_text_parquet(&t, &["a"]);
    mmlu_err(&t, "0", &[&p(&t), "no column `question`"]);
}

#[test]
fn bad_freebaseqa_and_text_parquet_give_one_line() {
    let d = tmp();
    let m = p(&fixture("qwen3"));
    let f = d.path().join("fb.json");
    let good = freebase_question("Q-0", "who?", &["me"]);
    let mut no_raw = freebase_question("Q-1", "what?", &["it"]);
    no_raw.as_object_mut().unwrap().remove("RawQuestion");
    write_freebaseqa(&f, vec![good.clone(), no_raw]);
    let fb = |needles: &[&str]| {
        assert_one_line_error(&["eval", "--model", &m, "--freebaseqa", &p(&f)], needles)
    };
    // Questions count from 1, as MMLU rows do.
    fb(&[&p(&f), "question 2", "Q-1", "RawQuestion"]);
    let mut no_names = freebase_question("Q-2", "what?", &["it"]);
    no_names["Parses"][0]["Answers"][0]
        .as_object_mut()
        .unwrap()
        .remove("AnswersName");
    write_freebaseqa(&f, vec![good.clone(), good.clone(), no_names]);
    fb(&[&p(&f), "question 3", "Q-2", "AnswersName"]);
    let mut no_parses = freebase_question("Q-3", "what?", &["it"]);
    no_parses["Parses"] = json!([]);
    write_freebaseqa(&f, vec![no_parses]);
    fb(&[&p(&f), "question 1", "Parses is empty"]);
    // A numeric id is named as the number; a string where a list belongs is named as such.
    let mut string_names = freebase_question("Q-5", "what?", &["it"]);
    string_names["Question-ID"] = json!(17);
    string_names["Parses"][0]["Answers"][0]["AnswersName"] = json!("it");
    write_freebaseqa(&f, vec![good.clone(), string_names]);
    fb(&[
        &p(&f),
        "question 2 (17)",
        "Parses[0].Answers[0].AnswersName is not a list",
    ]);
    write_freebaseqa(
        &f,
        vec![good.clone(), freebase_question("Q-4", "what?", &["", " "])],
    );
    fb(&[&p(&f), "question 2", "Q-4", "no non-empty alias"]);
    std::fs::write(&f, "{\"Questions\": [").unwrap();
    fb(&[&p(&f), "not valid JSON"]);
    write_freebaseqa(&f, vec![]);
    fb(&[&p(&f), "empty"]);
    // Perplexity on a parquet file without a `text` column.
    let pq = d.path().join("x.parquet");
    write_mmlu_parquet(&pq, &mmlu_items().0, &[0; 7]);
    assert_one_line_error(
        &["eval", "--model", &m, "--ppl", &p(&pq)],
        &[&p(&pq), "no column `text`"],
    );
    // Nothing to evaluate.
    assert_one_line_error(
        &["eval", "--model", &m],
        &["--ppl", "--mmlu", "--freebaseqa"],
    );
}

// An EOS id past the vocabulary can never be generated, so generation runs to its limit:
// warned about (the model-format audit of 2026-12-03 found it accepted without a word).
#[test]
fn an_eos_id_outside_the_vocabulary_is_warned_about() {
    let d = tmp();
    let dir = d.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("qwen3");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"eos_token_id": 99999}"#,
    )
    .unwrap();
    let f = d.path().join("FreebaseQA-eval.json");
    write_freebaseqa(
        &f,
        vec![freebase_question("FreebaseQA-eval-0", "Who?", &["x"])],
    );
    let args = [
        "eval",
        "--model",
        &p(&dir),
        "--freebaseqa",
        &p(&f),
        "--max-new-tokens",
        "2",
    ];
    let o = arborist(&args, &[]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains(
            "`eos_token_id` 99999 (config.json or generation_config.json) is not in the vocabulary"
        ),
        "{e}"
    );
}
