//! Models named by Hugging Face id resolve from a cache laid out on disk exactly as
//! hf-hub and huggingface_hub write it (refs/, blobs/, snapshots/ with symlinks), with
//! HF_HUB_OFFLINE=1 and an endpoint that nothing listens on.

mod common;
use candle_core::DType;
use common::*;
use std::path::Path;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// Nothing listens here, so any attempt to reach the network fails loudly.
const DEAD_ENDPOINT: &str = "http://127.0.0.1:9";

fn fill_cache(hf_home: &Path, repo: &str, model_dir: &Path) {
    fill_hub(&hf_home.join("hub"), repo, model_dir)
}

/// `repo` in the hub cache `hub` (what HF_HUB_CACHE names), each file a blob with a link.
fn fill_hub(hub: &Path, repo: &str, model_dir: &Path) {
    fill_snapshot(hub, repo, COMMIT, &["main"], model_dir);
}

/// `model_dir`'s files as snapshot `commit` of `repo`, which each of `refs` names.
fn fill_snapshot(hub: &Path, repo: &str, commit: &str, refs: &[&str], model_dir: &Path) {
    let root = hub.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(root.join("refs")).unwrap();
    for r in refs {
        std::fs::write(root.join("refs").join(r), commit).unwrap();
    }
    let snap = root.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    for entry in std::fs::read_dir(model_dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let blob = format!("blob-{commit}-{name}");
        std::fs::copy(entry.path(), root.join("blobs").join(&blob)).unwrap();
        std::os::unix::fs::symlink(Path::new("../../blobs").join(blob), snap.join(&name)).unwrap();
    }
}

/// Run the binary with none of the cache and offline variables but `envs`.
fn arborist_clean(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"));
    c.args(args);
    for k in [
        "HF_HOME",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "XDG_CACHE_HOME",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    ] {
        c.env_remove(k);
    }
    c.env("HF_ENDPOINT", DEAD_ENDPOINT);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn eval_ppl(model: &str, txt: &Path, envs: &[(&str, &str)]) -> Result<f64, String> {
    let o = arborist_clean(
        &[
            "eval",
            "--model",
            model,
            "--ppl",
            &p(txt),
            "--seqlen",
            "64",
            "--json",
        ],
        envs,
    );
    if !o.status.success() {
        return Err(stderr(&o));
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    Ok(v["ppl"]["value"].as_f64().unwrap())
}

#[test]
fn offline_cache_resolves_by_hub_id_and_matches_the_local_dir() {
    let d = tmp();
    let model = d.path().join("src");
    write_model_dir(&model, TINY_QWEN3, 9, DType::F16);
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(2500)).unwrap();
    let home = d.path().join("hf");
    fill_cache(&home, "acme/tiny-qwen3", &model);
    let envs = [
        ("HF_HOME", p(&home)),
        ("HF_HUB_OFFLINE", "1".to_string()),
        ("HF_ENDPOINT", DEAD_ENDPOINT.to_string()),
    ];
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let from_cache = eval_ppl("acme/tiny-qwen3", &txt, &envs).unwrap_or_else(|e| panic!("{e}"));
    let from_dir = eval_ppl(&p(&model), &txt, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_cache, from_dir);
}

#[test]
fn offline_miss_is_one_clear_line_and_no_network() {
    let d = tmp();
    let home = d.path().join("hf");
    std::fs::create_dir_all(&home).unwrap();
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(500)).unwrap();
    let o = arborist(
        &["eval", "--model", "acme/absent", "--ppl", &p(&txt)],
        &[
            ("HF_HOME", &p(&home)),
            ("HF_HUB_OFFLINE", "1"),
            ("HF_ENDPOINT", DEAD_ENDPOINT),
        ],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("acme/absent") && err.contains("HF_HUB_OFFLINE=1"),
        "{err}"
    );
    assert!(
        !err.contains("127.0.0.1"),
        "offline mode must not try the endpoint: {err}"
    );
}

#[test]
fn incomplete_cache_is_not_used_offline() {
    // A cache holding config and tokenizer but no weights must not pass for a model.
    let d = tmp();
    let model = d.path().join("src");
    write_model_dir(&model, TINY_QWEN3, 9, DType::F32);
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    let home = d.path().join("hf");
    fill_cache(&home, "acme/partial", &model);
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(500)).unwrap();
    let o = arborist(
        &["eval", "--model", "acme/partial", "--ppl", &p(&txt)],
        &[
            ("HF_HOME", &p(&home)),
            ("HF_HUB_OFFLINE", "1"),
            ("HF_ENDPOINT", DEAD_ENDPOINT),
        ],
    );
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("not complete in the Hugging Face cache"),
        "{err}"
    );
}

// huggingface_hub's cache: HF_HUB_CACHE, else HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
#[test]
fn the_cache_is_found_where_huggingface_hub_looks() {
    let d = tmp();
    let model = d.path().join("src");
    write_model_dir(&model, TINY_QWEN3, 4, DType::F32);
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(2500)).unwrap();
    let want = eval_ppl(&p(&model), &txt, &[]).unwrap();
    let (hub, home, xdg, user) = (
        d.path().join("hub-cache"),
        d.path().join("hf-home"),
        d.path().join("xdg"),
        d.path().join("user"),
    );
    fill_hub(&hub, "acme/by-hub-cache", &model);
    fill_hub(&home.join("hub"), "acme/by-hf-home", &model);
    fill_hub(&xdg.join("huggingface/hub"), "acme/by-xdg", &model);
    fill_hub(&user.join(".cache/huggingface/hub"), "acme/by-home", &model);
    let (hub, home, xdg, user) = (p(&hub), p(&home), p(&xdg), p(&user));
    let everything = [
        ("HF_HUB_CACHE", hub.as_str()),
        ("HF_HOME", home.as_str()),
        ("XDG_CACHE_HOME", xdg.as_str()),
        ("HOME", user.as_str()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let cases: [(&str, usize); 4] = [
        ("acme/by-hub-cache", 0),
        ("acme/by-hf-home", 1),
        ("acme/by-xdg", 2),
        ("acme/by-home", 3),
    ];
    for (repo, first) in cases {
        // Found with the variables from `first` on set, and not when one before is set.
        let envs = &everything[first..];
        assert_eq!(eval_ppl(repo, &txt, envs), Ok(want), "{repo}");
        if first > 0 {
            let err = eval_ppl(repo, &txt, &everything[first - 1..]).unwrap_err();
            assert!(
                err.contains("not complete in the Hugging Face cache"),
                "{err}"
            );
        }
    }
}

// HF_HUB_OFFLINE as huggingface_hub's _is_true reads it: 1, ON, YES, TRUE in any case.
#[test]
fn every_true_spelling_of_hf_hub_offline_is_offline() {
    let d = tmp();
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(500)).unwrap();
    let home = p(d.path());
    for value in ["1", "True", "true", "YES", "yes", "On", "ON"] {
        let err = eval_ppl(
            "acme/absent",
            &txt,
            &[("HF_HOME", &home), ("HF_HUB_OFFLINE", value)],
        )
        .unwrap_err();
        assert_eq!(err.lines().count(), 1, "{value}: {err}");
        assert!(
            err.contains(&format!("HF_HUB_OFFLINE={value} forbids downloading")),
            "{value}: {err}"
        );
        assert!(!err.contains("127.0.0.1"), "{value}: {err}");
    }
    // Anything else is not offline: the download is tried (and fails on the dead endpoint).
    let err = eval_ppl(
        "acme/absent",
        &txt,
        &[("HF_HOME", &home), ("HF_HUB_OFFLINE", "0")],
    )
    .unwrap_err();
    assert!(!err.contains("forbids downloading"), "{err}");
}

// An incomplete cache says what is missing: the snapshot refs/main names, the blob behind
// a link, a shard the index lists.
#[test]
fn an_incomplete_cache_names_what_is_missing() {
    let d = tmp();
    let model = d.path().join("src");
    write_model_dir(&model, TINY_QWEN3, 4, DType::F32);
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(500)).unwrap();
    let home = d.path().join("hf");
    let root = |repo: &str| home.join("hub").join(format!("models--acme--{repo}"));
    let snap = |repo: &str| root(repo).join("snapshots").join(COMMIT);
    let run = |repo: &str| {
        let h = p(&home);
        let err = eval_ppl(
            &format!("acme/{repo}"),
            &txt,
            &[("HF_HOME", &h), ("HF_HUB_OFFLINE", "1")],
        )
        .unwrap_err();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("not complete in the Hugging Face cache"),
            "{err}"
        );
        err
    };

    fill_cache(&home, "acme/moved", &model);
    std::fs::write(root("moved").join("refs/main"), "fedcba9876543210").unwrap();
    let err = run("moved");
    assert!(
        err.contains("refs/main names snapshot `fedcba9876543210`, which is not in"),
        "{err}"
    );

    fill_cache(&home, "acme/no-blob", &model);
    let blob = format!("blob-{COMMIT}-model.safetensors");
    std::fs::remove_file(root("no-blob").join("blobs").join(&blob)).unwrap();
    let err = run("no-blob");
    assert!(
        err.contains(&format!(
            "{} is a broken link: its blob ../../blobs/{blob} is missing",
            snap("no-blob").join("model.safetensors").display()
        )),
        "{err}"
    );

    // Two shards with an index, the second not in the cache.
    let sharded = d.path().join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.join(f), sharded.join(f)).unwrap();
    }
    let all =
        candle_core::safetensors::load(model.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let mut map = serde_json::Map::new();
    let (mut a, mut b) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    for (name, t) in all {
        let first = name.starts_with("model.embed");
        let file = if first {
            "model-1.safetensors"
        } else {
            "model-2.safetensors"
        };
        map.insert(name.clone(), file.into());
        if first { &mut a } else { &mut b }.insert(name, t);
    }
    candle_core::safetensors::save(&a, sharded.join("model-1.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    fill_cache(&home, "acme/shard-gone", &sharded);
    let err = run("shard-gone");
    assert!(
        err.contains(&format!(
            "model-2.safetensors, listed in model.safetensors.index.json, is not in snapshot {}",
            snap("shard-gone").display()
        )),
        "{err}"
    );
}

const COMMIT_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const COMMIT_C: &str = "cccccccccccccccccccccccccccccccccccccccc";

/// Two models of one shape whose numbers differ: a checkpoint and its next commit.
fn two_models(d: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (d.join("a"), d.join("b"));
    write_model_dir(&a, TINY_QWEN3, 9, DType::F32);
    write_model_dir(&b, TINY_QWEN3, 10, DType::F32);
    (a, b)
}

#[test]
fn a_revision_after_the_id_names_a_ref_or_a_commit_in_the_cache() {
    let d = tmp();
    let (a, b) = two_models(d.path());
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(2500)).unwrap();
    let hub = d.path().join("hub");
    fill_snapshot(&hub, "acme/rev", COMMIT, &["main"], &a);
    fill_snapshot(&hub, "acme/rev", COMMIT_B, &["v1"], &b);
    let h = p(&hub);
    let envs = [("HF_HUB_CACHE", h.as_str()), ("HF_HUB_OFFLINE", "1")];
    let ppl = |m: &str| eval_ppl(m, &txt, &envs).unwrap_or_else(|e| panic!("{m}: {e}"));
    let (ppl_a, ppl_b) = (
        eval_ppl(&p(&a), &txt, &[]).unwrap(),
        eval_ppl(&p(&b), &txt, &[]).unwrap(),
    );
    assert_ne!(ppl_a, ppl_b);
    assert_eq!(ppl("acme/rev"), ppl_a);
    assert_eq!(ppl("acme/rev@main"), ppl_a);
    assert_eq!(ppl("acme/rev@v1"), ppl_b);
    // A commit is a snapshot's name; no ref names it.
    assert_eq!(ppl(&format!("acme/rev@{COMMIT_B}")), ppl_b);

    let o = arborist_clean(
        &[
            "eval",
            "--model",
            "acme/rev@v1",
            "--ppl",
            &p(&txt),
            "--seqlen",
            "64",
            "--json",
        ],
        &envs,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["model"], "acme/rev@v1");
    assert_eq!(
        v["model_commit"], COMMIT_B,
        "the commit the files are a snapshot of"
    );

    let err = eval_ppl("acme/rev@v9", &txt, &envs).unwrap_err();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("revision `v9` is neither a ref in"), "{err}");
    assert!(
        err.contains("HF_HUB_OFFLINE=1 forbids downloading"),
        "{err}"
    );
    for bad in ["acme/rev@", "acme/rev@../main", "acme/rev@v 1"] {
        let err = eval_ppl(bad, &txt, &envs).unwrap_err();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("is not a branch, tag or commit name"),
            "{bad}: {err}"
        );
    }
}

/// `run --headless` of two iterations on `model`, a session at `session`.
fn two_iterations(model: &str, session: &Path, d: &Path, envs: &[(&str, &str)]) {
    let (calib, eval) = (d.join("calib.txt"), d.join("eval.txt"));
    std::fs::write(&calib, text(3000)).unwrap();
    std::fs::write(&eval, text(2500)).unwrap();
    let (s, c, e) = (p(session), p(&calib), p(&eval));
    let mut args = vec![
        "run",
        "--headless",
        "--auto-approve",
        "--model",
        model,
        "--session",
        &s,
        "--calib",
        &c,
        "--eval",
        &e,
        "--max-iters",
        "2",
    ];
    args.extend(SMALL);
    let o = arborist_clean(&args, envs);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn replay_verify(session: &Path, envs: &[(&str, &str)]) -> std::process::Output {
    arborist_clean(&["replay", &p(session), "--verify", "--json"], envs)
}

#[test]
fn a_session_on_a_hub_id_replays_at_its_recorded_commit_after_main_moves() {
    let d = tmp();
    let (a, b) = two_models(d.path());
    let hub = d.path().join("hub");
    fill_snapshot(&hub, "acme/pin", COMMIT, &["main"], &a);
    let (h, cache) = (p(&hub), p(&d.path().join("arborist-cache")));
    let envs = [
        ("HF_HUB_CACHE", h.as_str()),
        ("HF_HUB_OFFLINE", "1"),
        ("ARBORIST_CACHE", cache.as_str()),
    ];
    let session = d.path().join("s.yaml");
    two_iterations("acme/pin", &session, d.path(), &envs);
    let (header, _) = session_docs(&session);
    assert_eq!(header["model"], "acme/pin");
    assert_eq!(header["model_commit"], COMMIT);

    // main moves to other weights: the session's commit is still in the cache.
    fill_snapshot(&hub, "acme/pin", COMMIT_B, &["main"], &b);
    let eval = d.path().join("eval.txt");
    let moved = eval_ppl("acme/pin", &eval, &envs).unwrap();
    assert_ne!(
        moved,
        eval_ppl(&p(&a), &eval, &[]).unwrap(),
        "main names other weights"
    );
    let o = replay_verify(&session, &envs);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    // Recorded here and re-executed here, on the recorded commit: to the bit.
    assert_eq!(v["bit_exact"], true, "{v}");
    // So does a resume: the session cut after its first iteration (a crash) goes on.
    let cut = d.path().join("cut.yaml");
    let text = std::fs::read_to_string(&session).unwrap();
    let (_, entries) = session_docs(&session);
    let second = entries
        .iter()
        .position(|e| e["event"]["iteration"].as_u64() == Some(2))
        .expect("a second iteration");
    std::fs::write(&cut, &text[..doc_starts(&text)[second + 1]]).unwrap();
    let o = arborist_clean(
        &[
            "run",
            "--headless",
            "--auto-approve",
            "--session",
            &p(&cut),
            "--resume",
        ],
        &envs,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, resumed) = session_docs(&cut);
    let evals = |es: &[serde_json::Value]| -> Vec<f64> {
        es.iter()
            .filter(|e| e["event"]["event"] == "evaluated")
            .map(|e| e["event"]["eval"]["ppl"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(evals(&entries).len(), 2);
    assert_eq!(
        evals(&resumed),
        evals(&entries),
        "the resumed run's numbers are the first run's"
    );

    // The session's snapshot is gone, and main is a later commit with the same weights
    // (a README change): the files main names are the recorded weights.
    let root = hub.join("models--acme--pin");
    std::fs::remove_dir_all(root.join("snapshots").join(COMMIT)).unwrap();
    fill_snapshot(&hub, "acme/pin", COMMIT_C, &["main"], &a);
    let o = replay_verify(&session, &envs);
    assert!(o.status.success(), "{}", stderr(&o));

    // Neither: the fingerprint check refuses, and says the commit could not be had.
    std::fs::write(root.join("refs/main"), COMMIT_B).unwrap();
    let o = replay_verify(&session, &envs);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("model acme/pin: the session's commit cannot be had"),
        "{err}"
    );
    assert!(
        err.contains(&format!("revision `{COMMIT}` is neither a ref")),
        "{err}"
    );
    assert!(err.contains("has fingerprint"), "{err}");
    assert!(
        err.contains(&format!(
            "(its files are commit {COMMIT_B}, the session's were {COMMIT})"
        )),
        "{err}"
    );
}
