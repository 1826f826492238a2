//! Benchmark data for `arborist eval`: an MMLU CSV root (Hendrycks' layout) and cais/mmlu
//! parquet, and FreebaseQA JSON, each copied from the bundled sets and damaged.

use crate::damage;
use crate::{command_line, judge, Case, Outcome, Report, Workspace};
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MMLU_CSV_CASES: usize = 60;
const MMLU_PARQUET_CASES: usize = 60;
const FREEBASEQA_CASES: usize = 80;

fn bundled(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/bundled/data")
        .join(rel)
}

/// The first six questions of the bundled FreebaseQA set, written to `path`.
pub fn write_freebaseqa_sample(path: &Path) -> String {
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(bundled("freebaseqa.json")).unwrap()).unwrap();
    v["Questions"].as_array_mut().unwrap().truncate(6);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    crate::common::p(path)
}

/// `eval` of the tiny model on `flag FILE` plus `extra`; the rules of every run, then: a
/// success prints one JSON object with `key`; a refusal names the file (or `names`); the
/// file is as it was.
struct Eval<'a> {
    ws: &'a Workspace,
    flag: &'static str,
    key: &'static str,
    extra: &'static [&'static str],
}

impl Eval<'_> {
    fn run(
        &self,
        report: &mut Report,
        index: usize,
        damage: String,
        file: &Path,
        names: &[&str],
        promise: &[&str],
    ) {
        let file_s = crate::common::p(file);
        let mut args = vec!["eval", "--model", &self.ws.model, self.flag, &file_s];
        args.extend(self.extra);
        args.push("--json");
        let before = snapshot(file);
        let case = Case {
            index,
            damage,
            command: command_line(&args),
            shown: shown(file),
        };
        let r = self.ws.run(&args, &[]);
        let mut all = vec![file_s.as_str(), self.flag];
        all.extend(names);
        let verdict = judge(&r, &all);
        match &verdict {
            Ok(Outcome::Accepted) => {
                let v: Option<Value> = serde_json::from_str(r.stdout.trim()).ok();
                if v.as_ref().is_none_or(|v| v.get(self.key).is_none()) {
                    report.fail(&case, Some(&r), "success without a JSON result on stdout");
                }
                if index != 0 && !promise.is_empty() {
                    let why = format!("accepted, but must be refused saying {promise:?}");
                    report.fail(&case, Some(&r), &why);
                }
            }
            Ok(Outcome::Refused(line)) => {
                if index == 0 {
                    report.fail(&case, Some(&r), "the undamaged file was refused");
                }
                if let Some(p) = promise.iter().find(|p| !line.contains(*p)) {
                    report.fail(&case, Some(&r), &format!("the refusal does not say `{p}`"));
                }
                if !r.stdout.trim().is_empty() {
                    report.fail(&case, Some(&r), "a refusal printed on stdout");
                }
            }
            Err(_) => {}
        }
        if snapshot(file) != before {
            report.fail(&case, Some(&r), "the data file was changed");
        }
        report.check(&case, &r, verdict);
    }
}

/// A file's bytes, or a directory's files and their bytes.
fn snapshot(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    if path.is_dir() {
        let mut v = Vec::new();
        for e in std::fs::read_dir(path).unwrap().flatten() {
            v.extend(snapshot(&e.path()));
        }
        v.sort();
        v
    } else {
        vec![(path.to_path_buf(), std::fs::read(path).unwrap_or_default())]
    }
}

fn shown(path: &Path) -> String {
    if path.is_dir() {
        "(a directory; the damage says which file)".into()
    } else {
        damage::show(&std::fs::read(path).unwrap_or_default())
    }
}

// ---- MMLU, Hendrycks CSV ----

#[test]
fn damaged_mmlu_csv_roots_are_evaluated_or_refused_in_one_line() {
    let ws = Workspace::create();
    let mut report = Report::new("mmlu-csv");
    let mut rng = StdRng::seed_from_u64(report.seed());
    let eval = Eval {
        ws: &ws,
        flag: "--mmlu",
        key: "mmlu",
        extra: &["--shots", "1", "--limit", "2"],
    };
    let subjects: Vec<String> = std::fs::read_dir(bundled("mmlu/test"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .replace("_test.csv", "")
        })
        .collect();
    for index in 0..MMLU_CSV_CASES {
        let root = ws.path(&format!("mmlu{index}"));
        for split in ["test", "dev"] {
            std::fs::create_dir_all(root.join(split)).unwrap();
            for s in &subjects {
                let name = format!("{split}/{s}_{split}.csv");
                std::fs::copy(bundled(&format!("mmlu/{name}")), root.join(&name)).unwrap();
            }
        }
        let split = ["test", "dev"].choose(&mut rng).unwrap();
        let subject = subjects.choose(&mut rng).unwrap();
        let name = format!("{s}_{split}.csv", s = subject);
        let file = root.join(split).join(&name);
        let mut bytes = std::fs::read(&file).unwrap();
        let rows = damage::split_lines(&bytes).len();
        let row = rng.gen_range(0..rows);
        let (what, promise): (String, Vec<&str>) = match (index, rng.gen_range(0..12)) {
            (0, _) => ("none".into(), vec![]),
            (_, 0) => (damage::truncate(&mut rng, &mut bytes), vec![]),
            (_, 1) => (damage::not_utf8(&mut rng, &mut bytes), vec![name.as_str()]),
            (_, 2) => (damage::flip(&mut rng, &mut bytes), vec![]),
            (_, 3) => {
                let w = edit_row(&mut bytes, row, |f| {
                    f.remove(1);
                });
                (w, vec![name.as_str(), "columns, expected 6"])
            }
            (_, 4) => {
                let w = edit_row(&mut bytes, row, |f| f.insert(2, "\"extra\"".into()));
                (w, vec![name.as_str(), "columns, expected 6"])
            }
            (_, 5) => {
                let letter = ["E", "AB", "1", "a", "", " B", "\"C\""]
                    .choose(&mut rng)
                    .unwrap();
                let w = edit_row(&mut bytes, row, |f| {
                    *f.last_mut().unwrap() = letter.to_string()
                });
                let promise = match *letter {
                    "E" | "AB" | "1" | "" => vec![name.as_str(), "is not one of A, B, C, D"],
                    _ => vec![],
                };
                (w, promise)
            }
            (_, 6) => (damage::insert(&mut rng, &mut bytes, &["\""]), vec![]),
            (_, 7) => {
                bytes.clear();
                ("the file emptied".into(), vec![name.as_str()])
            }
            (_, 8) => {
                std::fs::remove_file(&file).unwrap();
                let promise = if *split == "dev" {
                    vec![name.as_str()]
                } else {
                    vec![]
                };
                (format!("{split}/{name} removed"), promise)
            }
            (_, 9) => {
                std::fs::write(
                    root.join("test/_test.csv"),
                    "\"q\",\"a\",\"b\",\"c\",\"d\",A\n",
                )
                .unwrap();
                ("test/_test.csv added".into(), vec!["_test.csv"])
            }
            (_, 10) => (damage::crlf(&mut bytes), vec![]),
            _ => (damage::bom(&mut bytes), vec![]),
        };
        if file.exists() {
            std::fs::write(&file, &bytes).unwrap();
        }
        let damage = format!("{split}/{name}: {what}");
        eval.run(&mut report, index, damage, &root, &[], &promise);
        let _ = std::fs::remove_dir_all(&root);
    }
    report.finish();
}

/// Row `i` of a CSV file of simple quoted fields, split at commas, edited and joined.
fn edit_row(bytes: &mut Vec<u8>, i: usize, edit: impl FnOnce(&mut Vec<String>)) -> String {
    let mut lines = damage::split_lines(bytes);
    let text = String::from_utf8(lines[i].clone()).unwrap();
    let mut fields: Vec<String> = split_csv(text.trim_end()).collect();
    edit(&mut fields);
    lines[i] = format!("{}\n", fields.join(",")).into_bytes();
    *bytes = lines.concat();
    format!("row {} now {:?}", i + 1, fields.join(","))
}

/// The fields of one line of quoted fields without embedded quotes.
fn split_csv(line: &str) -> impl Iterator<Item = String> + '_ {
    let mut quoted = false;
    let mut start = 0;
    let mut out = Vec::new();
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(line[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(line[start..].to_string());
    out.into_iter()
}

// ---- MMLU, cais/mmlu parquet ----

/// The rows of a bundled CSV file: question, four choices, answer index.
fn csv_items(rel: &str, n: usize) -> Vec<(String, Vec<String>, i64)> {
    let text = std::fs::read_to_string(bundled(rel)).unwrap();
    text.lines()
        .take(n)
        .map(|l| {
            let f: Vec<String> = split_csv(l)
                .map(|s| s.trim_matches('"').to_string())
                .collect();
            let answer = "ABCD".find(f[5].as_str()).unwrap() as i64;
            (f[0].clone(), f[1..5].to_vec(), answer)
        })
        .collect()
}

/// A string column's values, definition levels and repetition levels.
type StringColumn = (Vec<ByteArray>, Vec<i16>, Option<Vec<i16>>);

/// cais/mmlu's schema as pyarrow writes it: question, subject, choices (a list), answer.
fn write_mmlu_parquet(
    path: &Path,
    subject: &str,
    items: &[(String, Vec<String>, i64)],
    c: Compression,
) {
    let schema = "message schema {
        optional binary question (STRING);
        optional binary subject (STRING);
        optional group choices (LIST) { repeated group list { optional binary element (STRING); } }
        optional int64 answer;
    }";
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props = Arc::new(WriterProperties::builder().set_compression(c).build());
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let strings = |v: Vec<&str>| v.into_iter().map(ByteArray::from).collect::<Vec<_>>();
    let n = items.len();
    let columns: [StringColumn; 3] = [
        (
            strings(items.iter().map(|i| i.0.as_str()).collect()),
            vec![1; n],
            None,
        ),
        (strings(vec![subject; n]), vec![1; n], None),
        (
            strings(
                items
                    .iter()
                    .flat_map(|i| i.1.iter().map(String::as_str))
                    .collect(),
            ),
            vec![3; 4 * n],
            Some((0..4 * n).map(|j| i16::from(j % 4 > 0)).collect()),
        ),
    ];
    for (values, def, rep) in &columns {
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>()
            .write_batch(values, Some(def), rep.as_deref())
            .unwrap();
        c.close().unwrap();
    }
    let mut c = rg.next_column().unwrap().unwrap();
    let answers: Vec<i64> = items.iter().map(|i| i.2).collect();
    match c.untyped() {
        ColumnWriter::Int64ColumnWriter(w) => w.write_batch(&answers, Some(&vec![1; n]), None),
        _ => unreachable!("answer is int64"),
    }
    .unwrap();
    c.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
}

/// A text column, as wikitext's parquet holds it.
pub fn write_text_parquet(path: &Path, rows: &[&str], c: Compression) {
    let schema = "message schema { optional binary text (STRING); }";
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props = Arc::new(WriterProperties::builder().set_compression(c).build());
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    let values: Vec<ByteArray> = rows.iter().map(|s| ByteArray::from(*s)).collect();
    col.typed::<ByteArrayType>()
        .write_batch(&values, Some(&vec![1; rows.len()]), None)
        .unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
}

pub fn codec(rng: &mut StdRng) -> Compression {
    match rng.gen_range(0..4) {
        0 => Compression::UNCOMPRESSED,
        1 => Compression::SNAPPY,
        2 => Compression::GZIP(GzipLevel::default()),
        _ => Compression::ZSTD(ZstdLevel::default()),
    }
}

/// Damage to a parquet file's bytes: flips, cuts, a zeroed run, a footer length that lies.
pub fn damage_parquet(rng: &mut StdRng, bytes: &mut Vec<u8>) -> String {
    let n = bytes.len();
    match rng.gen_range(0..6) {
        0 | 1 => damage::flip(rng, bytes),
        2 => damage::truncate(rng, bytes),
        3 => {
            let at = rng.gen_range(0..n.saturating_sub(16).max(1));
            let end = (at + 16).min(n);
            bytes[at..end].fill(0);
            format!("bytes {at}..{end} zeroed")
        }
        4 if n >= 8 => {
            // The footer: a 4-byte metadata length, then "PAR1".
            let len: u32 = [0x7fff_ffff, 0xffff_fff0, 1, n as u32]
                .choose(rng)
                .copied()
                .unwrap();
            bytes[n - 8..n - 4].copy_from_slice(&len.to_le_bytes());
            format!("footer length set to {len}")
        }
        _ => {
            // A flip in the metadata, just before the footer (lengths and offsets live there).
            let at = rng.gen_range(n.saturating_sub(200)..n.saturating_sub(8).max(1));
            bytes[at] = rng.gen();
            format!("metadata byte {at} overwritten")
        }
    }
}

#[test]
fn damaged_mmlu_parquet_files_are_evaluated_or_refused_in_one_line() {
    let ws = Workspace::create();
    let mut report = Report::new("mmlu-parquet");
    let mut rng = StdRng::seed_from_u64(report.seed());
    let eval = Eval {
        ws: &ws,
        flag: "--mmlu",
        key: "mmlu",
        extra: &["--shots", "0", "--limit", "2"],
    };
    let items = csv_items("mmlu/test/geography_test.csv", 8);
    for index in 0..MMLU_PARQUET_CASES {
        let dir = ws.path(&format!("parquet{index}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("test-00000-of-00001.parquet");
        let c = codec(&mut rng);
        write_mmlu_parquet(&file, "geography", &items, c);
        let mut bytes = std::fs::read(&file).unwrap();
        let what = match index {
            0 => "none".into(),
            _ => damage_parquet(&mut rng, &mut bytes),
        };
        std::fs::write(&file, &bytes).unwrap();
        let damage = format!("{c:?}: {what}");
        eval.run(&mut report, index, damage, &file, &[], &[]);
        let _ = std::fs::remove_dir_all(&dir);
    }
    report.finish();
}

// ---- FreebaseQA ----

/// One structural damage to the parsed file, with what a refusal must say.
fn damage_freebaseqa(rng: &mut StdRng, v: &mut Value) -> (String, Vec<String>) {
    let qs = v["Questions"].as_array().unwrap().len();
    let i = rng.gen_range(0..qs);
    let q = &mut v["Questions"][i];
    let at = format!("question {}", i + 1);
    match rng.gen_range(0..10) {
        0 => {
            q.as_object_mut().unwrap().remove("RawQuestion");
            (
                format!("{at}: RawQuestion removed"),
                vec![at, "RawQuestion".into()],
            )
        }
        1 => {
            let bad = [json!(5), json!(null), json!([]), json!({"a": 1})]
                .choose(rng)
                .unwrap()
                .clone();
            q["RawQuestion"] = bad.clone();
            (
                format!("{at}: RawQuestion set to {bad}"),
                vec![at, "RawQuestion".into()],
            )
        }
        2 => {
            q["Parses"] = json!([]);
            (
                format!("{at}: Parses emptied"),
                vec![at, "Parses is empty".into()],
            )
        }
        3 => {
            q["Parses"][0]["Answers"] = json!([]);
            (
                format!("{at}: Answers emptied"),
                vec![at, "Answers is empty".into()],
            )
        }
        4 => {
            let blank = [json!([]), json!([""]), json!(["  ", "\t"])]
                .choose(rng)
                .unwrap()
                .clone();
            q["Parses"][0]["Answers"][0]["AnswersName"] = blank.clone();
            (
                format!("{at}: AnswersName set to {blank}"),
                vec![at, "no non-empty alias".into()],
            )
        }
        5 => {
            let bad = [
                json!("Paris"),
                json!([1, 2]),
                json!(null),
                json!({"x": "y"}),
            ]
            .choose(rng)
            .unwrap()
            .clone();
            q["Parses"][0]["Answers"][0]["AnswersName"] = bad.clone();
            (format!("{at}: AnswersName set to {bad}"), vec![at])
        }
        6 => {
            q.as_object_mut().unwrap().remove("Parses");
            (format!("{at}: Parses removed"), vec![at, "Parses".into()])
        }
        7 => {
            let bad = [json!([]), json!({}), json!("q"), json!(null)]
                .choose(rng)
                .unwrap()
                .clone();
            v["Questions"] = bad.clone();
            (format!("Questions set to {bad}"), vec!["Questions".into()])
        }
        8 => {
            v.as_object_mut().unwrap().remove("Questions");
            ("Questions removed".into(), vec!["Questions".into()])
        }
        _ => {
            let id = [json!(7), json!(null), json!(""), json!("x".repeat(5000))]
                .choose(rng)
                .unwrap()
                .clone();
            q["Question-ID"] = id.clone();
            let shown: String = id.to_string().chars().take(20).collect();
            (format!("{at}: Question-ID set to {shown}"), vec![])
        }
    }
}

#[test]
fn damaged_freebaseqa_files_are_evaluated_or_refused_in_one_line() {
    let ws = Workspace::create();
    let mut report = Report::new("freebaseqa");
    let mut rng = StdRng::seed_from_u64(report.seed());
    let eval = Eval {
        ws: &ws,
        flag: "--freebaseqa",
        key: "freebaseqa",
        extra: &["--limit", "2", "--max-new-tokens", "2"],
    };
    let base = ws.path("data/base.json");
    write_freebaseqa_sample(&base);
    let original: Value = serde_json::from_slice(&std::fs::read(&base).unwrap()).unwrap();
    for index in 0..FREEBASEQA_CASES {
        let file = ws.path(&format!("data/f{index}.json"));
        let mut v = original.clone();
        let (what, promise): (String, Vec<String>) = match index {
            0 => ("none".into(), vec![]),
            _ if rng.gen_bool(0.6) => damage_freebaseqa(&mut rng, &mut v),
            _ => (String::new(), vec![]),
        };
        let mut bytes = serde_json::to_string_pretty(&v).unwrap().into_bytes();
        let (what, promise) = match (index, what.is_empty()) {
            (0, _) | (_, false) => (what, promise),
            _ => match rng.gen_range(0..5) {
                0 => (damage::truncate(&mut rng, &mut bytes), vec![]),
                1 => (damage::not_utf8(&mut rng, &mut bytes), vec![]),
                2 => (damage::flip(&mut rng, &mut bytes), vec![]),
                3 => (damage::bom(&mut bytes), vec![]),
                _ => {
                    // Nesting deep enough to overflow a recursive reader's stack.
                    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
                    let s = String::from_utf8(bytes).unwrap();
                    bytes = s
                        .replacen(
                            "\"Questions\": [",
                            &format!("\"Deep\": {deep}, \"Questions\": ["),
                            1,
                        )
                        .into_bytes();
                    ("100,000 nested lists put before Questions".into(), vec![])
                }
            },
        };
        std::fs::write(&file, &bytes).unwrap();
        let promise: Vec<&str> = promise.iter().map(String::as_str).collect();
        eval.run(&mut report, index, what, &file, &[], &promise);
    }
    report.finish();
}
