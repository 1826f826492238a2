//! Damaged benchmark files: one line naming the file and row, never a panic.

use super::*;

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
