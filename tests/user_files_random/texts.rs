//! Text a model reads: the perplexity text of `eval --ppl` (UTF-8 or parquet), the
//! calibration text of `profile --calib`, and the JSON-lines documents of
//! `--calib-sample documents`.

use crate::benchmarks::{codec, damage_parquet, write_text_parquet};
use crate::damage;
use crate::{command_line, judge, Case, Outcome, Report, Workspace};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::path::Path;

const PPL_CASES: usize = 50;
const PPL_PARQUET_CASES: usize = 30;
const CALIB_CASES: usize = 40;
const DOCUMENTS_CASES: usize = 50;

/// English with a few characters of two to four bytes, so a cut can split one.
fn base_text() -> String {
    let mut s = crate::common::text(1500);
    for (at, word) in [
        (200, " café "),
        (600, " Ωmega "),
        (900, " 日本 "),
        (1200, " 🙂 "),
    ] {
        let at = (at..s.len()).find(|i| s.is_char_boundary(*i)).unwrap();
        s.insert_str(at, word);
    }
    s
}

/// Damage to a UTF-8 text, with what a refusal must say.
fn damage_text(rng: &mut StdRng, bytes: &mut Vec<u8>) -> (String, Vec<&'static str>) {
    match rng.gen_range(0..9) {
        0 | 1 => (damage::truncate(rng, bytes), vec![]),
        2 | 3 => (damage::not_utf8(rng, bytes), vec!["not UTF-8"]),
        4 => {
            let keep = [0, 1, 5, 15].choose(rng).copied().unwrap();
            bytes.truncate(keep);
            (
                format!("cut to {keep} bytes"),
                vec!["too short for one window"],
            )
        }
        5 => (damage::insert(rng, bytes, &["\0\0\0"]), vec![]),
        6 => (damage::bom(bytes), vec![]),
        7 => {
            let magic: &[u8] = [&b"\x1f\x8b\x08\x00"[..], b"PAR1"].choose(rng).unwrap();
            bytes.splice(0..0, magic.iter().copied());
            (format!("{magic:02x?} put first"), vec![])
        }
        _ => (damage::crlf(bytes), vec![]),
    }
}

/// One command on one damaged file: the rules of every run; a success prints JSON; a
/// refusal names the file and says what `promise` holds; the file is as it was.
#[allow(clippy::too_many_arguments)]
fn check_run(
    ws: &Workspace,
    report: &mut Report,
    index: usize,
    damage: String,
    args: &[&str],
    file: &Path,
    names: &[&str],
    promise: &[&str],
) {
    let before = std::fs::read(file).unwrap_or_default();
    let case = Case {
        index,
        damage,
        command: command_line(args),
        shown: damage::show(&before),
    };
    let r = ws.run(args, &[]);
    let verdict = judge(&r, names);
    match &verdict {
        Ok(Outcome::Accepted) => {
            if serde_json::from_str::<serde_json::Value>(r.stdout.trim()).is_err() {
                report.fail(&case, Some(&r), "success without one JSON object on stdout");
            }
            if !promise.is_empty() {
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
    if std::fs::read(file).unwrap_or_default() != before {
        report.fail(&case, Some(&r), "the file was changed");
    }
    report.check(&case, &r, verdict);
}

/// `cases` damaged copies of the base text, each given to `command` (its flag `flag`
/// reads the text).
fn text_cases(kind: &'static str, cases: usize, flag: &str, command: &[&str]) {
    let ws = Workspace::create();
    let mut report = Report::new(kind);
    let mut rng = StdRng::seed_from_u64(report.seed());
    for index in 0..cases {
        let file = ws.path(&format!("data/{kind}{index}.txt"));
        let mut bytes = base_text().into_bytes();
        let (what, promise) = match index {
            0 => ("none".into(), vec![]),
            _ => damage_text(&mut rng, &mut bytes),
        };
        std::fs::write(&file, &bytes).unwrap();
        let f = crate::common::p(&file);
        let mut args = vec![command[0], "--model", &ws.model, flag, &f];
        args.extend(&command[1..]);
        let names = [f.as_str(), flag];
        check_run(
            &ws,
            &mut report,
            index,
            what,
            &args,
            &file,
            &names,
            &promise,
        );
    }
    report.finish();
}

#[test]
fn damaged_perplexity_texts_are_evaluated_or_refused_in_one_line() {
    let eval = ["eval", "--seqlen", "16", "--max-windows", "2", "--json"];
    text_cases("ppl-text", PPL_CASES, "--ppl", &eval);
}

#[test]
fn damaged_perplexity_parquet_files_are_evaluated_or_refused_in_one_line() {
    let ws = Workspace::create();
    let mut report = Report::new("ppl-parquet");
    let mut rng = StdRng::seed_from_u64(report.seed());
    let text = base_text();
    let rows: Vec<&str> = text.split(". ").collect();
    for index in 0..PPL_PARQUET_CASES {
        let file = ws.path(&format!("data/wiki{index}.parquet"));
        let c = codec(&mut rng);
        write_text_parquet(&file, &rows, c);
        let mut bytes = std::fs::read(&file).unwrap();
        let what = match index {
            0 => "none".into(),
            _ => damage_parquet(&mut rng, &mut bytes),
        };
        std::fs::write(&file, &bytes).unwrap();
        let f = crate::common::p(&file);
        let args = [
            "eval",
            "--model",
            &ws.model,
            "--ppl",
            &f,
            "--seqlen",
            "16",
            "--max-windows",
            "2",
            "--json",
        ];
        let what = format!("{c:?}: {what}");
        check_run(
            &ws,
            &mut report,
            index,
            what,
            &args,
            &file,
            &[&f, "--ppl"],
            &[],
        );
    }
    report.finish();
}

#[test]
fn damaged_calibration_texts_are_profiled_or_refused_in_one_line() {
    let profile = [
        "profile",
        "--seqlen",
        "16",
        "--calib-windows",
        "2",
        "--grad-windows",
        "1",
        "--json",
    ];
    text_cases("calib-text", CALIB_CASES, "--calib", &profile);
}

/// Damage to a JSON-lines file of documents, with what a refusal must say.
fn damage_documents(rng: &mut StdRng, docs: &mut Vec<String>) -> (String, Vec<String>) {
    let i = rng.gen_range(0..docs.len());
    let line = format!("line {}", i + 1);
    match rng.gen_range(0..7) {
        0 => {
            docs[i] = r#"{"url": "https://example.com"}"#.into();
            (format!("{line}: no text"), vec![line])
        }
        1 => {
            let bad = ["5", "null", "[\"a\"]", "{\"t\": 1}"].choose(rng).unwrap();
            docs[i] = format!("{{\"text\": {bad}}}");
            (format!("{line}: text is {bad}"), vec![line])
        }
        2 => {
            let mut cut = rng.gen_range(1..docs[i].len() - 1);
            while !docs[i].is_char_boundary(cut) {
                cut -= 1;
            }
            docs[i].truncate(cut);
            (format!("{line}: cut to {cut} bytes"), vec![line])
        }
        3 => {
            docs[i] = ["[1, 2]", "\"text\"", "plain words", "{"]
                .choose(rng)
                .unwrap()
                .to_string();
            (format!("{line}: {:?}", docs[i]), vec![line])
        }
        4 => {
            // No document is longer than a window: Wanda's loop would draw forever.
            for d in docs.iter_mut() {
                *d = r#"{"text": "a few words"}"#.into();
            }
            ("every document shorter than a window".into(), vec![])
        }
        5 => {
            docs.clear();
            ("no documents".into(), vec![])
        }
        _ => {
            docs.insert(i, String::new());
            (format!("a blank line before {line}"), vec![])
        }
    }
}

#[test]
fn damaged_calibration_documents_are_drawn_or_refused_in_one_line() {
    let ws = Workspace::create();
    let mut report = Report::new("calib-documents");
    let mut rng = StdRng::seed_from_u64(report.seed());
    let text = base_text();
    for index in 0..DOCUMENTS_CASES {
        let mut docs: Vec<String> = text
            .as_bytes()
            .chunks(200)
            .map(|c| serde_json::json!({"text": String::from_utf8_lossy(c)}).to_string())
            .collect();
        let (mut what, mut promise) = match index {
            0 => ("none".into(), vec![]),
            _ => damage_documents(&mut rng, &mut docs),
        };
        let mut bytes = docs
            .iter()
            .map(|d| format!("{d}\n"))
            .collect::<String>()
            .into_bytes();
        let gzip = rng.gen_bool(0.3);
        if gzip {
            use std::io::Write;
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&bytes).unwrap();
            bytes = z.finish().unwrap();
            if index > 0 && rng.gen_bool(0.5) {
                // The cut may come before the damaged line.
                promise.clear();
                what += &format!("; gzipped, then {}", damage::truncate(&mut rng, &mut bytes));
            } else {
                what += "; gzipped";
            }
        }
        let file = ws.path(&format!(
            "data/docs{index}.json{}",
            if gzip { ".gz" } else { "" }
        ));
        std::fs::write(&file, &bytes).unwrap();
        let f = crate::common::p(&file);
        let args = [
            "profile",
            "--model",
            &ws.model,
            "--calib",
            &f,
            "--calib-sample",
            "documents",
            "--seed",
            "0",
            "--seqlen",
            "16",
            "--calib-windows",
            "2",
            "--grad-windows",
            "1",
            "--json",
        ];
        let promise: Vec<&str> = promise.iter().map(String::as_str).collect();
        check_run(
            &ws,
            &mut report,
            index,
            what,
            &args,
            &file,
            &[&f, "--calib"],
            &promise,
        );
    }
    report.finish();
}
