//! Perplexity on wikitext parquet, as `eval`, `prune` and `run` read it.

use super::*;

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
