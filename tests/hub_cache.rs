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
    let root = hf_home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), COMMIT).unwrap();
    let snap = root.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    for entry in std::fs::read_dir(model_dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let blob = root.join("blobs").join(format!("blob-{name}"));
        std::fs::copy(entry.path(), &blob).unwrap();
        std::os::unix::fs::symlink(
            Path::new("../../blobs").join(format!("blob-{name}")),
            snap.join(&name),
        )
        .unwrap();
    }
}

fn ppl(args_model: &str, txt: &str, envs: &[(&str, &str)]) -> (bool, f64, String) {
    let o = arborist(
        &[
            "eval", "--model", args_model, "--ppl", txt, "--seqlen", "64", "--json",
        ],
        envs,
    );
    let err = stderr(&o);
    if !o.status.success() {
        return (false, f64::NAN, err);
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (true, v["ppl"]["value"].as_f64().unwrap(), err)
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
    let (ok, from_cache, err) = ppl("acme/tiny-qwen3", &p(&txt), &envs);
    assert!(ok, "{err}");
    let (ok, from_dir, err) = ppl(&p(&model), &p(&txt), &[]);
    assert!(ok, "{err}");
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
