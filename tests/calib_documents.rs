//! `--calib-sample documents` against Wanda's and SparseGPT's get_c4, run in Python on the
//! same C4-shaped shard (tests/fixtures/hf/make_c4_reference.py): Python's generator, the
//! documents drawn, the windows token for token (with and without a BOS-adding tokenizer),
//! the windows `profile` and a session calibrate on, and the errors of bad shards.

mod common;

use arborist::data::documents::PyRandom;
use arborist::data::{read_documents, Windows};
use arborist::model::LoadedModel;
use arborist::profile::{self, GradSpec};
use candle_core::{DType, Device};
use common::{arborist, fx, stderr, tmp};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fx("c4_ref/draws.json")).unwrap()).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn python_random_is_reproduced() {
    let py = &reference()["python_random"];
    let mut r = PyRandom::seed(0);
    let bits: Vec<u32> = (0..5).map(|_| r.getrandbits(32)).collect();
    assert_eq!(bits, ids_of(&py["seed0_getrandbits32"]));
    let mut r = PyRandom::seed((1 << 40) + 7);
    let mut draws: Vec<u32> = (0..10).map(|_| r.randint(0, 59) as u32).collect();
    draws.extend((0..5).map(|_| r.randint(0, 1000) as u32));
    assert_eq!(
        draws,
        ids_of(&py["seed_2p40_7_randint_0_59_x10_then_0_1000_x5"])
    );
}

#[test]
fn windows_equal_get_c4_draws() {
    let reference = reference();
    let docs = read_documents(Path::new(&fx("c4_ref/docs.jsonl.gz"))).unwrap();
    assert_eq!(docs.len() as u64, reference["documents"].as_u64().unwrap());
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    let mut bos_in_a_window = false;
    for case in cases {
        // The fixture model, with the case's tokenizer in its directory.
        let tok_name = case["tokenizer"].as_str().unwrap();
        let dir = tmp();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(Path::new(&fx("qwen3")).join(f), dir.path().join(f)).unwrap();
        }
        let tok_path = if tok_name == "tokenizer.json" {
            fx("tokenizer.json")
        } else {
            fx(&format!("c4_ref/{tok_name}"))
        };
        std::fs::copy(tok_path, dir.path().join("tokenizer.json")).unwrap();
        let lm = LoadedModel::load(dir.path().to_str().unwrap(), &Device::Cpu, DType::F32).unwrap();
        let encode = |t: &str| lm.encode_document(t);
        let (seqlen, k, seed) = (
            case["seqlen"].as_u64().unwrap() as usize,
            case["nsamples"].as_u64().unwrap() as usize,
            case["seed"].as_u64().unwrap(),
        );
        let w = Windows::documents(&docs, encode, seqlen, k, seed, "docs").unwrap();
        let want: Vec<Vec<u32>> = case["draws"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| ids_of(&d["ids"]))
            .collect();
        assert_eq!(w.windows, want, "{tok_name} seqlen {seqlen} seed {seed}");
        bos_in_a_window |= tok_name != "tokenizer.json" && want.iter().any(|w| w[0] == 0);
    }
    // The BOS-adding tokenizer's windows include its BOS where a window starts a document.
    assert!(bos_in_a_window);
}

/// `profile --calib-sample documents` calibrates on exactly the reference's windows: its
/// rows equal the library's profile over the windows taken from draws.json.
#[test]
fn profile_command_uses_the_drawn_windows() {
    let reference = reference();
    let case = &reference["cases"][0];
    assert_eq!(case["tokenizer"], "tokenizer.json");
    let windows: Vec<Vec<u32>> = case["draws"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| ids_of(&d["ids"]))
        .collect();
    let lm = LoadedModel::load(&fx("qwen3"), &Device::Cpu, DType::F32).unwrap();
    let calib = Windows {
        seqlen: 64,
        tokens: 0,
        windows,
    };
    let want = profile::compute(&lm.decoder, &calib, GradSpec::paper(4), 1, "x").unwrap();
    let o = arborist(
        &[
            "profile",
            "--model",
            &fx("qwen3"),
            "--calib",
            &fx("c4_ref/docs.jsonl.gz"),
            "--calib-sample",
            "documents",
            "--seqlen",
            "64",
            "--calib-windows",
            "8",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(got["protocol"]["calib_sample"], "documents");
    assert_eq!(got["protocol"]["seed"], 0);
    // Equal up to the last bits (thread counts differ between this process and the
    // command's); other windows would move every value in its second or third digit.
    let got = got["layers"].as_array().unwrap();
    assert_eq!(got.len(), want.layers.len());
    for (g, w) in got.iter().zip(&want.layers) {
        assert_eq!(g["name"], w.name.as_str());
        for (k, v) in [("s", w.s), ("s_mean", w.s_mean), ("g", w.g), ("z_g", w.z_g)] {
            let ours = g[k].as_f64().unwrap();
            assert!(
                (ours - v).abs() <= 1e-9 * v.abs().max(1.0),
                "{} {k}: command {ours} vs library {v}",
                w.name
            );
        }
    }
}

/// A session calibrating on documents records the sample and seed, and replays bit-exact.
#[test]
fn session_with_documents_replays() {
    let d = tmp();
    let session = d.path().join("s.yaml");
    let s = session.display().to_string();
    let mut args = vec![
        "run",
        "--headless",
        "--auto-approve",
        "--model",
        "bundled",
        "--calib",
        "",
        "--calib-sample",
        "documents",
        "--seed",
        "5",
        "--max-iters",
        "2",
        "--session",
        &s,
    ];
    let docs = d.path().join("docs.jsonl");
    let mut f = std::fs::File::create(&docs).unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/bundled/data/calib.txt"),
    )
    .unwrap();
    for chunk in text.as_bytes().chunks(900) {
        let chunk = String::from_utf8_lossy(chunk);
        writeln!(f, "{}", serde_json::json!({ "text": chunk })).unwrap();
    }
    drop(f);
    let docs = docs.display().to_string();
    args[6] = &docs;
    args.extend(common::SMALL);
    let o = arborist(&args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, _) = common::session_docs(&session);
    assert_eq!(header["options"]["calib_sample"], "documents");
    assert_eq!(header["options"]["seed"], 5);
    let o = arborist(&["replay", &s, "--verify", "--json"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["bit_exact"], true, "{v}");
}

#[test]
fn bad_shards_are_named() {
    let d = tmp();
    let write = |name: &str, body: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let run = |calib: &str, sample: &str| {
        arborist(
            &[
                "profile",
                "--model",
                &fx("qwen3"),
                "--calib",
                calib,
                "--calib-sample",
                sample,
                "--seqlen",
                "32",
                "--calib-windows",
                "2",
            ],
            &[],
        )
    };
    let one_line = |o: &std::process::Output, needles: &[&str]| {
        let err = stderr(o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        for n in needles {
            assert!(err.contains(n), "`{n}` not in {err}");
        }
    };
    let no_text = write("a.jsonl", "{\"text\": \"fine\"}\n{\"body\": \"x\"}\n");
    one_line(
        &run(&no_text, "documents"),
        &["a.jsonl: line 2: no string field `text`"],
    );
    let not_json = write("b.jsonl", "{\"text\": \"fine\"}\nplain words\n");
    one_line(
        &run(&not_json, "documents"),
        &["b.jsonl: line 2: not a JSON object"],
    );
    let array = write("d.jsonl", "{\"text\": \"fine\"}\n[1, 2]\n");
    one_line(
        &run(&array, "documents"),
        &["d.jsonl: line 2: not a JSON object (a JSON array)"],
    );
    let short = write("c.jsonl", "{\"text\": \"short\"}\n{\"text\": \"tiny\"}\n");
    one_line(
        &run(&short, "documents"),
        &["c.jsonl: none of its 2 documents is longer than 32 tokens"],
    );
    one_line(
        &run(&fx("c4_ref/docs.jsonl.gz"), "sequential"),
        &[
            "docs.jsonl.gz is gzip-compressed",
            "--calib-sample documents",
        ],
    );
    // Decompressed, the shard is text a plain draw reads braces and all: said, not refused.
    let text = fx("eval.txt");
    let text = std::fs::read_to_string(text).unwrap();
    let lines: String = text
        .as_bytes()
        .chunks(400)
        .map(|c| serde_json::json!({ "text": String::from_utf8_lossy(c) }).to_string() + "\n")
        .collect();
    let o = run(&write("shard.json", &lines), "sequential");
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("shard.json looks like JSON lines with a `text` field")
            && err.contains("--calib-sample documents"),
        "{err}"
    );
    // A gzip or parquet file (whatever its name) read as text is named as such.
    let gz = std::fs::read(fx("c4_ref/docs.jsonl.gz")).unwrap();
    let gz_path = d.path().join("docs.txt");
    std::fs::write(&gz_path, gz).unwrap();
    let eval = |path: &str| {
        arborist(
            &[
                "eval",
                "--model",
                &fx("qwen3"),
                "--ppl",
                path,
                "--seqlen",
                "32",
            ],
            &[],
        )
    };
    one_line(
        &eval(&gz_path.display().to_string()),
        &["docs.txt is gzip-compressed"],
    );
    // A parquet file whose bytes are all ASCII (a file of no rows) was read as text, and
    // one read as documents was "not valid UTF-8" without a word of parquet.
    let ascii = write("zero.parquet", "PAR1 a footer of no rows, all ASCII PAR1");
    one_line(
        &run(&ascii, "sequential"),
        &["zero.parquet is a parquet file; this option reads UTF-8 text"],
    );
    one_line(
        &run(&ascii, "documents"),
        &["zero.parquet is a parquet file; this option reads UTF-8 text"],
    );
}
