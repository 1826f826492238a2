//! A session that cannot start leaves no file; bad options in a session header name it.

use super::*;

// A model whose dense perplexity is NaN cannot start a session: the error says so, and the
// file, which would hold only a header, is not left to block the same command again.
#[test]
fn a_session_that_cannot_start_leaves_no_file() {
    let (d, m, t) = setup();
    let weights = std::path::Path::new(&m).join("model.safetensors");
    let mut w = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    let norm = w["model.norm.weight"].clone();
    let nan = (norm.ones_like().unwrap() * f64::NAN).unwrap();
    w.insert("model.norm.weight".into(), nan);
    candle_core::safetensors::save(&w, &weights).unwrap();
    // So do the directories it created for the file (since 2026-12-02).
    let s = d.path().join("new/dirs/s.yaml");
    let o = arborist(
        &[
            "run",
            "--model",
            &m,
            "--calib",
            &t,
            "--eval",
            &t,
            "--seqlen",
            "64",
            "--calib-windows",
            "2",
            "--eval-windows",
            "2",
            "--headless",
            "--auto-approve",
            "--session",
            &p(&s),
        ],
        &[],
    );
    // The run announces the session first; the error is one line after it.
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("tensor model.norm.weight holds NaN or infinite values")
            && errors[0].ends_with("(nothing was recorded, so no session file was kept)"),
        "{err}"
    );
    assert!(!s.exists(), "a header-only session file was left");
    assert!(
        !d.path().join("new").exists(),
        "the session's new directories were left"
    );
}

// A session whose header holds an option the flags would refuse is reported as the file's,
// not as a flag the user never passed.
#[test]
fn bad_options_in_a_session_header_name_the_file() {
    let d = tmp();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
    let text = std::fs::read_to_string(example).unwrap();
    assert!(text.contains("\n  device: cpu\n"));
    let s = d.path().join("s.yaml");
    std::fs::write(&s, text.replace("\n  device: cpu\n", "\n  device: gpu\n")).unwrap();
    let out = d.path().join("out");
    for args in [
        vec!["replay", &p(&s), "--verify", "--headless"],
        vec!["export", &p(&s), "--out", &p(&out)],
        vec![
            "run",
            "--session",
            &p(&s),
            "--resume",
            "--headless",
            "--auto-approve",
        ],
    ] {
        assert_one_line_error(
            &arborist(&args, &[]),
            &[&p(&s), "options in its header", "--device gpu"],
        );
    }
    assert!(!out.exists());
}
