//! The benchmark files as published upstream: MMLU CSV trees and parquet, FreebaseQA JSON
//! and wikitext-like parquet, written here from items the tests choose.

use super::*;

#[derive(Clone)]
pub(crate) struct Item {
    pub(crate) subject: &'static str,
    pub(crate) question: String,
    pub(crate) choices: [String; 4],
    pub(crate) answer: usize,
}

pub(crate) fn shots(n: usize) -> arborist::data::mmlu::Shots {
    arborist::data::mmlu::Shots {
        n,
        option: "--shots",
    }
}

pub(crate) fn item(subject: &'static str, q: &str, c: [&str; 4], answer: usize) -> Item {
    Item {
        subject,
        question: q.to_string(),
        choices: c.map(str::to_string),
        answer,
    }
}

/// (test, dev) items. World religions' dev examples are long, so 5 shots overflow the
/// fixture's 512 positions and the prompt must drop examples.
pub(crate) fn mmlu_items() -> (Vec<Item>, Vec<Item>) {
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
pub(crate) fn csv_row(fields: &[&str]) -> String {
    let q: Vec<String> = fields
        .iter()
        .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
        .collect();
    q.join(",") + "\n"
}

pub(crate) fn item_row(it: &Item) -> String {
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
pub(crate) fn write_csv_tree(root: &Path, test: &[Item], dev: &[Item]) {
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
pub(crate) fn write_mmlu_parquet(path: &Path, items: &[Item], answers: &[i64]) {
    write_mmlu_parquet_as(path, items, answers, "int64 answer", Compression::SNAPPY);
}

/// The same with `answer` of another physical type (e.g. `int32 answer (INTEGER(8,true))`,
/// as pyarrow writes int8) and another codec.
pub(crate) fn write_mmlu_parquet_as(
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

pub(crate) enum Col<'a> {
    Str(&'a [&'a str]),
    List(&'a [Vec<&'a str>]),
    Int(&'a [i64]),
}

pub(crate) fn write_parquet(path: &Path, schema: &str, cols: &[Col], codec: Compression) {
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
pub(crate) fn write_parquet_tree(root: &Path, test: &[Item], dev: &[Item]) -> PathBuf {
    let all = root.join("all");
    std::fs::create_dir_all(&all).unwrap();
    let answers = |v: &[Item]| v.iter().map(|i| i.answer as i64).collect::<Vec<_>>();
    let test_file = all.join("test-00000-of-00001.parquet");
    write_mmlu_parquet(&test_file, test, &answers(test));
    write_mmlu_parquet(&all.join("dev-00000-of-00001.parquet"), dev, &answers(dev));
    test_file
}

pub(crate) fn write_text_parquet(path: &Path, rows: &[&str]) {
    write_parquet(
        path,
        "message schema { optional binary text (STRING); }",
        &[Col::Str(rows)],
        Compression::SNAPPY,
    );
}

pub(crate) fn freebase_question(id: &str, q: &str, aliases: &[&str]) -> Value {
    json!({"Question-ID": id, "RawQuestion": q, "ProcessedQuestion": q.to_lowercase(),
        "Parses": [{"Parse-Id": format!("{id}.P0"), "PotentialTopicEntityMention": "x",
            "TopicEntityName": "x", "TopicEntityMid": "m.0x", "InferentialChain": "a.b.c",
            "Answers": [{"AnswersMid": "m.0y", "AnswersName": aliases}]}]})
}

pub(crate) fn write_freebaseqa(path: &Path, questions: Vec<Value>) {
    let doc = json!({"Dataset": "FreebaseQA-eval", "Version": "1.0", "Questions": questions});
    std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}
