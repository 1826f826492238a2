//! Every bad input of `arborist eval` (and of a few other commands' flags) gets one line
//! on stderr that names the culprit, a non-zero exit, no panic and nothing on stdout.

#[path = "../common/mod.rs"]
mod common;
mod data_files;
mod flag_combinations;
mod flag_values;
mod model_files;
mod sessions;

use candle_core::DType;
use common::*;

fn assert_one_line_error(o: &std::process::Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        o.stdout.is_empty(),
        "stdout not empty: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {err}");
    }
}

fn setup() -> (tempfile::TempDir, String, String) {
    let d = tmp();
    let model = d.path().join("m");
    write_model_dir(&model, TINY_QWEN3, 1, DType::F32);
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(3000)).unwrap();
    let (m, t) = (p(&model), p(&txt));
    (d, m, t)
}

fn eval(model: &str, txt: &str) -> std::process::Output {
    arborist(
        &["eval", "--model", model, "--ppl", txt, "--seqlen", "64"],
        &[],
    )
}
