//! Models named by Hugging Face id download through hf-hub from a scripted hub on
//! 127.0.0.1 (HF_ENDPOINT): the repository listing, then each file by HTTP range
//! requests, answered with the headers the real hub sends (`x-repo-commit`, `etag`,
//! `content-range`). The files the repository lists beside the weights come too.

mod common;
#[path = "common/scripted_hub.rs"]
mod scripted_hub;
use candle_core::DType;
use common::*;
use scripted_hub::{scripted_hub, scripted_hub_faulty, Faults, COMMIT, GATED, REPO};
use std::collections::HashMap;
use std::path::Path;

/// `eval --json` of `model` on `txt` at seqlen 64, which must succeed.
fn eval_json(model: &str, txt: &Path, envs: &[(&str, &str)]) -> serde_json::Value {
    let args = [
        "eval",
        "--model",
        model,
        "--ppl",
        &p(txt),
        "--seqlen",
        "64",
        "--json",
    ];
    let o = arborist(&args, envs);
    assert!(o.status.success(), "{model}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn model_files(dir: &Path) -> HashMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// The tiny Qwen3 model the scripted hub serves (`dir/src`) and a text to evaluate it on
/// (`dir/eval.txt`).
fn tiny_repo(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let model = dir.join("src");
    write_model_dir(&model, TINY_QWEN3, 9, DType::F32);
    let txt = dir.join("eval.txt");
    std::fs::write(&txt, text(2500)).unwrap();
    (model, txt)
}

#[test]
fn a_hub_id_downloads_the_model_and_the_files_listed_beside_it() {
    let d = tmp();
    let (model, txt) = tiny_repo(d.path());
    let side = [
        ("generation_config.json", r#"{"eos_token_id": [3, 4]}"#),
        ("chat_template.jinja", "{{ messages }}"),
        ("tokenizer_config.json", r#"{"model_max_length": 256}"#),
    ];
    for (f, text) in side {
        std::fs::write(model.join(f), text).unwrap();
    }
    let (endpoint, seen) = scripted_hub(model_files(&model));
    let home = d.path().join("hf");
    let envs = [
        ("HF_HOME", p(&home)),
        ("HF_ENDPOINT", endpoint),
        ("HF_HUB_OFFLINE", "0".to_string()),
        ("HF_TOKEN", "hf_scripted".to_string()),
    ];
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let eval = |m: &str, envs: &[(&str, &str)]| eval_json(m, &txt, envs)["ppl"]["value"].clone();
    assert_eq!(eval(REPO, &envs), eval(&p(&model), &[]));
    let snapshot = home
        .join("hub/models--acme--tiny-qwen3/snapshots")
        .join(COMMIT);
    for f in ["config.json", "tokenizer.json", "model.safetensors"]
        .into_iter()
        .chain(side.iter().map(|(f, _)| *f))
    {
        let got = std::fs::read(snapshot.join(f)).unwrap_or_default();
        assert_eq!(got, std::fs::read(model.join(f)).unwrap(), "{f}");
    }
    // Side files the listing does not name are never asked for.
    let paths = seen.lock().unwrap().clone();
    assert!(
        paths.iter().any(|p| p.starts_with("/api/models/")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.ends_with("/vocab.json")),
        "{paths:?}"
    );
    // HF_TOKEN is sent, as huggingface_hub sends it.
    assert!(
        paths
            .iter()
            .any(|p| p == "authorization Bearer hf_scripted"),
        "{paths:?}"
    );
    // An export of the downloaded model carries them.
    let out = d.path().join("pruned");
    let o = arborist(
        &[
            "prune",
            "--model",
            REPO,
            "--method",
            "wanda",
            "--sparsity",
            "0.5",
            "--calib",
            &p(&txt),
            "--seqlen",
            "64",
            "--calib-windows",
            "2",
            "--out",
            &p(&out),
        ],
        &envs,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (f, text) in side {
        assert_eq!(std::fs::read_to_string(out.join(f)).unwrap(), text, "{f}");
    }
}

#[test]
fn a_revision_downloads_that_revision_and_its_additional_chat_templates() {
    let d = tmp();
    let (model, txt) = tiny_repo(d.path());
    let mut files = model_files(&model);
    let template = "additional_chat_templates/tool_use.jinja";
    files.insert(template.to_string(), b"{{ tools }}".to_vec());
    let (endpoint, seen) = scripted_hub(files);
    let home = d.path().join("hf");
    let h = p(&home);
    let online = [("HF_HOME", h.as_str()), ("HF_ENDPOINT", endpoint.as_str())];
    let eval = |m: &str, envs: &[(&str, &str)]| eval_json(m, &txt, envs);
    let local = eval(&p(&model), &[])["ppl"]["value"].as_f64().unwrap();
    for rev in ["v1", "refs/pr/2"] {
        let v = eval(&format!("{REPO}@{rev}"), &online);
        assert_eq!(v["ppl"]["value"].as_f64().unwrap(), local, "{rev}");
        assert_eq!(v["model_commit"], COMMIT, "{rev}");
        // hf-hub keeps the ref as huggingface_hub does.
        let r = home.join("hub/models--acme--tiny-qwen3/refs").join(rev);
        assert_eq!(std::fs::read_to_string(&r).unwrap(), COMMIT, "{rev}");
    }
    let paths = seen.lock().unwrap().clone();
    let asked = |p: &str| paths.iter().any(|x| x == p);
    // The revision is asked once for its commit; the listing and every file are then
    // fetched at that commit, so a branch moving in between cannot mix two commits.
    assert!(
        asked(&format!("/{REPO}/resolve/v1/config.json")),
        "{paths:?}"
    );
    assert!(
        asked(&format!("/api/models/{REPO}/revision/{COMMIT}")),
        "{paths:?}"
    );
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        template,
    ] {
        assert!(
            asked(&format!("/{REPO}/resolve/{COMMIT}/{f}")),
            "{f}: {paths:?}"
        );
    }
    assert!(
        !home
            .join("hub/models--acme--tiny-qwen3/refs")
            .join(COMMIT)
            .exists(),
        "a ref named by the commit (huggingface_hub writes none)"
    );
    assert!(
        asked(&format!("/{REPO}/resolve/refs%2Fpr%2F2/config.json")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|x| x.contains("/main")),
        "only the revisions asked for: {paths:?}"
    );
    let snapshot = home
        .join("hub/models--acme--tiny-qwen3/snapshots")
        .join(COMMIT);
    assert_eq!(
        std::fs::read_to_string(snapshot.join(template)).unwrap(),
        "{{ tools }}"
    );

    // Offline, the cache answers for the revision and for its commit.
    let offline = [("HF_HOME", h.as_str()), ("HF_HUB_OFFLINE", "1")];
    let at_commit = format!("{REPO}@{COMMIT}");
    for m in [format!("{REPO}@v1"), at_commit.clone()] {
        assert_eq!(
            eval(&m, &offline)["ppl"]["value"].as_f64().unwrap(),
            local,
            "{m}"
        );
    }
    // A prune names the revision and the commit, and its export carries the templates.
    let out = d.path().join("pruned");
    let o = arborist(
        &[
            "prune",
            "--model",
            &at_commit,
            "--method",
            "magnitude",
            "--sparsity",
            "0.5",
            "--out",
            &p(&out),
        ],
        &offline,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("arborist.json")).unwrap()).unwrap();
    assert_eq!(meta["source_model"], at_commit.as_str());
    assert_eq!(meta["source_commit"], COMMIT);
    assert_eq!(
        std::fs::read_to_string(out.join(template)).unwrap(),
        "{{ tools }}"
    );
}

#[test]
fn a_failed_download_says_what_to_do_about_it() {
    let d = tmp();
    let model = d.path().join("src");
    write_model_dir(&model, TINY_QWEN3, 9, DType::F32);
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(500)).unwrap();
    let (endpoint, _) = scripted_hub(model_files(&model));
    let h = p(&d.path().join("hf"));
    let err = |model: &str, envs: &[(&str, &str)]| {
        let mut all = vec![("HF_HOME", h.as_str()), ("HF_HUB_OFFLINE", "0")];
        all.extend(envs);
        let o = arborist(&["eval", "--model", model, "--ppl", &p(&txt)], &all);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        e
    };
    let e = err(GATED, &[("HF_ENDPOINT", &endpoint), ("HF_TOKEN", "")]);
    assert!(e.contains("401 Unauthorized"), "{e}");
    assert!(
        e.contains("gated or private, or does not exist: set HF_TOKEN"),
        "{e}"
    );
    let e = err(
        GATED,
        &[("HF_ENDPOINT", &endpoint), ("HF_TOKEN", "hf_scripted")],
    );
    assert!(e.contains("403 Forbidden"), "{e}");
    assert!(e.contains("needs its terms accepted"), "{e}");
    let e = err(
        &format!("{REPO}@v9"),
        &[("HF_ENDPOINT", &endpoint), ("HF_TOKEN", "")],
    );
    assert!(
        e.contains("no such file at that revision, or no such revision"),
        "{e}"
    );
    // Nothing listens on port 9.
    let e = err(
        REPO,
        &[("HF_ENDPOINT", "http://127.0.0.1:9"), ("HF_TOKEN", "")],
    );
    assert!(e.contains("the hub cannot be reached"), "{e}");
    assert!(e.contains("HF_HUB_OFFLINE=1"), "{e}");
}

/// A cache as an older commit left it: every file's blob (named by its etag, as the
/// scripted hub's are), and that commit's snapshot with config.json only, `main` naming it.
fn older_commit_cache(home: &Path, files: &HashMap<String, Vec<u8>>) -> std::path::PathBuf {
    const OLD: &str = "0123456789abcdef0123456789abcdef01234567";
    let repo = home.join("hub/models--acme--tiny-qwen3");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    for (name, bytes) in files {
        std::fs::write(repo.join("blobs").join(format!("etag-{name}")), bytes).unwrap();
    }
    let snap = repo.join("snapshots").join(OLD);
    std::fs::create_dir_all(&snap).unwrap();
    std::os::unix::fs::symlink("../../blobs/etag-config.json", snap.join("config.json")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), OLD).unwrap();
    repo
}

#[test]
fn blobs_cached_under_another_commit_are_linked_not_downloaded_again() {
    let d = tmp();
    let (model, txt) = tiny_repo(d.path());
    let files = model_files(&model);
    let (endpoint, seen) = scripted_hub(files.clone());
    let local = eval_json(&p(&model), &txt, &[])["ppl"]["value"].clone();
    let weights = format!("/{REPO}/resolve/{COMMIT}/model.safetensors");
    // Requests for more than the first byte (hf-hub's metadata probe asks for 0-0).
    let fetched = |seen: &[String], path: &str| {
        seen.iter()
            .filter(|x| {
                x.starts_with("range ") && x.ends_with(path) && !x.starts_with("range 0-0 ")
            })
            .count()
    };
    for truncated in [false, true] {
        let home = d.path().join(format!("hf-{truncated}"));
        let repo = older_commit_cache(&home, &files);
        let blob = repo.join("blobs/etag-model.safetensors");
        if truncated {
            // An interrupted copy is not whole: it is downloaded again.
            let bytes = &files["model.safetensors"];
            std::fs::write(&blob, &bytes[..bytes.len() / 2]).unwrap();
        }
        seen.lock().unwrap().clear();
        let h = p(&home);
        let envs = [
            ("HF_HOME", h.as_str()),
            ("HF_ENDPOINT", endpoint.as_str()),
            ("HF_HUB_OFFLINE", "0"),
        ];
        let v = eval_json(REPO, &txt, &envs);
        assert_eq!(v["ppl"]["value"], local, "truncated {truncated}");
        // Every file in the snapshot of the commit the hub names now.
        assert_eq!(v["model_commit"], COMMIT);
        assert_eq!(
            std::fs::read_to_string(repo.join("refs/main")).unwrap(),
            COMMIT
        );
        let snap = repo.join("snapshots").join(COMMIT);
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            assert_eq!(std::fs::read(snap.join(f)).unwrap(), files[f], "{f}");
        }
        assert_eq!(std::fs::read(&blob).unwrap(), files["model.safetensors"]);
        let log = seen.lock().unwrap().clone();
        let n = fetched(&log, &weights);
        if truncated {
            assert!(n > 0, "the partial blob was kept: {log:?}");
        } else {
            assert_eq!(n, 0, "the weights were downloaded again: {log:?}");
        }
        if !truncated {
            assert_eq!(
                std::fs::read_link(snap.join("model.safetensors")).unwrap(),
                Path::new("../../blobs/etag-model.safetensors")
            );
            for f in ["config.json", "tokenizer.json"] {
                let path = format!("/{REPO}/resolve/{COMMIT}/{f}");
                assert_eq!(fetched(&log, &path), 0, "{f}: {log:?}");
            }
        }
    }
}

/// The one error line of a failed command, holding each of `needles` (warnings, such as
/// a retry's, may come before it).
fn assert_one_line_error(o: &std::process::Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {err}");
    }
}

/// `eval` of `REPO` through a hub with `faults`, in `home`.
fn eval_faulty(
    files: &HashMap<String, Vec<u8>>,
    faults: Faults,
    home: &Path,
    txt: &Path,
) -> std::process::Output {
    eval_timed(files, faults, home, txt, &[])
}

/// As `eval_faulty`, with hub timeouts set: `(variable, seconds)`.
fn eval_timed(
    files: &HashMap<String, Vec<u8>>,
    faults: Faults,
    home: &Path,
    txt: &Path,
    timeouts: &[(&str, &str)],
) -> std::process::Output {
    let (endpoint, _) = scripted_hub_faulty(files.clone(), faults);
    let h = p(home);
    let mut envs = vec![
        ("HF_HOME", h.as_str()),
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HUB_OFFLINE", "0"),
    ];
    envs.extend_from_slice(timeouts);
    let args = ["eval", "--model", REPO, "--ppl", &p(txt), "--seqlen", "64"];
    arborist(&args, &envs)
}

/// `eval --model REPO --ppl txt` against a scripted hub serving `files` (cache in
/// `dir/hf`); with the requests the hub saw.
fn eval_from_scripted_hub(
    dir: &Path,
    files: HashMap<String, Vec<u8>>,
    txt: &Path,
) -> (
    std::process::Output,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let (endpoint, seen) = scripted_hub(files);
    let h = p(&dir.join("hf"));
    let envs = [
        ("HF_HOME", h.as_str()),
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HUB_OFFLINE", "0"),
    ];
    let o = arborist(&["eval", "--model", REPO, "--ppl", &p(txt)], &envs);
    (o, seen)
}

// A model the decoder cannot run was refused only after all its weights had downloaded
// (93 GB for Mixtral): its config is checked first.
#[test]
fn an_unsupported_config_is_refused_before_the_weights_download() {
    let d = tmp();
    let (model, txt) = tiny_repo(d.path());
    let mut files = model_files(&model);
    let cfg = String::from_utf8(files["config.json"].clone()).unwrap();
    let mixtral = cfg.replace("\"model_type\":\"qwen3\"", "\"model_type\":\"mixtral\"");
    assert_ne!(cfg, mixtral, "the fixture names its model_type as expected");
    files.insert("config.json".into(), mixtral.into_bytes());
    let (o, seen) = eval_from_scripted_hub(d.path(), files, &txt);
    assert_one_line_error(&o, &["unsupported model_type `mixtral`"]);
    let seen = seen.lock().unwrap();
    assert!(
        !seen.iter().any(|r| r.contains("safetensors")),
        "weights were fetched: {seen:?}"
    );
}

// A repository with PyTorch .bin weights only was a 404 on the index ("no such file"):
// its listing now says what it holds instead.
#[test]
fn a_repository_without_safetensors_says_what_it_has() {
    let d = tmp();
    let (model, txt) = tiny_repo(d.path());
    let mut files = model_files(&model);
    let weights = files.remove("model.safetensors").unwrap();
    files.insert("pytorch_model.bin".into(), weights);
    let (o, seen) = eval_from_scripted_hub(d.path(), files, &txt);
    assert_one_line_error(
        &o,
        &[
            "neither model.safetensors nor model.safetensors.index.json",
            "PyTorch pickle weights",
        ],
    );
    let seen = seen.lock().unwrap();
    assert!(
        !seen.iter().any(|r| r.contains("index.json")),
        "the index was asked for: {seen:?}"
    );
}

// hf-hub sets no read timeout: a hub that stopped sending held the download, and the
// session waiting on it, forever (noticed in an audit of the download path). Silence is
// now a transient failure after huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT and
// HF_HUB_ETAG_TIMEOUT.
#[test]
fn a_hub_that_stops_sending_is_asked_again_and_then_named() {
    let d = tmp();
    let (model, txt) = tiny_repo(d.path());
    let files = model_files(&model);
    let weights = "model.safetensors".to_string();
    let short = [
        ("HF_HUB_DOWNLOAD_TIMEOUT", "0.5"),
        ("HF_HUB_ETAG_TIMEOUT", "0.5"),
    ];

    // Half the weights, then silence, once: the download is asked again and completes,
    // and the blob is the file.
    let home = d.path().join("hf-stall-once");
    let faults = Faults {
        stall: [(weights.clone(), 1)].into(),
        ..Default::default()
    };
    let o = eval_timed(&files, faults, &home, &txt, &short);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("sent nothing for 0.5 s"),
        "{}",
        stderr(&o)
    );
    let snapshot = home.join(format!(
        "hub/models--acme--tiny-qwen3/snapshots/{COMMIT}/model.safetensors"
    ));
    assert_eq!(std::fs::read(snapshot).unwrap(), files[&weights]);

    // A metadata probe that gets no answer, once, is asked again too.
    let home = d.path().join("hf-probe-once");
    let faults = Faults {
        stall_probe: [("config.json".to_string(), 1)].into(),
        ..Default::default()
    };
    let o = eval_timed(&files, faults, &home, &txt, &short);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("did not answer"), "{}", stderr(&o));

    // Silent for good: one error naming the file and the variable that sets the wait.
    let home = d.path().join("hf-stall-always");
    let faults = Faults {
        stall: [(weights.clone(), 100)].into(),
        ..Default::default()
    };
    let o = eval_timed(&files, faults, &home, &txt, &short);
    assert_one_line_error(
        &o,
        &[
            "cannot fetch model.safetensors of acme/tiny-qwen3",
            "sent nothing for 0.5 s",
            "HF_HUB_DOWNLOAD_TIMEOUT",
        ],
    );

    // A timeout that is not a number of seconds is refused by name.
    let home = d.path().join("hf-bad-timeout");
    let bad = [("HF_HUB_DOWNLOAD_TIMEOUT", "soon")];
    let o = eval_timed(&files, Faults::default(), &home, &txt, &bad);
    assert_one_line_error(
        &o,
        &[
            "HF_HUB_DOWNLOAD_TIMEOUT=\"soon\"",
            "positive number of seconds",
        ],
    );
}

// What hf-hub takes on trust is checked (found by an audit of the download path, 2026-12-02):
// an etag naming a path outside the cache, bytes that are not the file the hub names, a
// failure on the weights reported as a missing index, a hub that fails once.
#[test]
fn downloads_are_checked_and_retried() {
    use sha2::Digest;
    let d = tmp();
    let (model, txt) = tiny_repo(d.path());
    let files = model_files(&model);
    let weights = "model.safetensors".to_string();
    let blobs = |home: &Path| home.join("hub/models--acme--tiny-qwen3/blobs");

    // An etag that climbs out of the cache is refused before anything is written.
    let home = d.path().join("hf-etag");
    let faults = Faults {
        etag: [(weights.clone(), "../../../../evil".into())].into(),
        ..Default::default()
    };
    let o = eval_faulty(&files, faults, &home, &txt);
    assert_one_line_error(&o, &["model.safetensors", "not a plain name"]);
    assert!(!d.path().join("evil").exists());

    // Bytes that do not hash to the sha256 the hub names are not kept; the next run, from
    // a sound hub, fetches the file anew.
    let sha = format!("{:x}", sha2::Sha256::digest(&files[&weights]));
    let home = d.path().join("hf-corrupt");
    let faults = Faults {
        etag: [(weights.clone(), sha.clone())].into(),
        corrupt: vec![weights.clone()],
        ..Default::default()
    };
    let o = eval_faulty(&files, faults, &home, &txt);
    assert_one_line_error(&o, &["model.safetensors", "is damaged (sha256", &sha]);
    assert!(
        !blobs(&home).join(&sha).exists(),
        "the damaged blob was kept"
    );
    let faults = Faults {
        etag: [(weights.clone(), sha.clone())].into(),
        ..Default::default()
    };
    let o = eval_faulty(&files, faults, &home, &txt);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(blobs(&home).join(&sha)).unwrap(),
        files[&weights]
    );

    // A 503 on the weights once is asked again; for good, it is what the error names.
    let home = d.path().join("hf-503");
    let faults = Faults {
        fail: [(weights.clone(), (503, 1))].into(),
        ..Default::default()
    };
    let o = eval_faulty(&files, faults, &home, &txt);
    assert!(o.status.success(), "{}", stderr(&o));
    let home = d.path().join("hf-503-always");
    let faults = Faults {
        fail: [(weights.clone(), (503, 100))].into(),
        ..Default::default()
    };
    let o = eval_faulty(&files, faults, &home, &txt);
    assert_one_line_error(
        &o,
        &["cannot fetch model.safetensors of acme/tiny-qwen3", "503"],
    );
    assert!(!stderr(&o).contains("index"), "{}", stderr(&o));
}
