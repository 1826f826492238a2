//! The bundled model: embedded files, `bundled --out`, and that it knows its world.

mod common;
use common::*;

fn eval_json(model: &str, data: &str, extra: &[&str], cache: &str) -> serde_json::Value {
    let mut args = vec!["eval", "--model", model, "--json"];
    args.extend_from_slice(extra);
    let o = arborist(&args, &[("ARBORIST_CACHE", cache)]);
    assert!(o.status.success(), "{} ({data})", stderr(&o));
    json_exact(&String::from_utf8_lossy(&o.stdout))
}

#[test]
fn bundled_out_writes_an_ordinary_model_dir_that_evaluates_identically() {
    let t = tmp();
    let cache = p(&t.path().join("cache"));
    let out = t.path().join("b");
    let o = arborist(
        &["bundled", "--out", &p(&out)],
        &[("ARBORIST_CACHE", &cache)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
        "CARD.md",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let eval = p(&out.join("data/eval.txt"));
    let args = [
        "--ppl",
        eval.as_str(),
        "--seqlen",
        "128",
        "--max-windows",
        "8",
    ];
    let a = eval_json(&p(&out), &eval, &args, &cache);
    let b = eval_json("bundled", &eval, &args, &cache);
    assert_eq!(a["ppl"]["value"], b["ppl"]["value"]);
    // A second --out into the same non-empty directory needs --force.
    let again = arborist(
        &["bundled", "--out", &p(&out)],
        &[("ARBORIST_CACHE", &cache)],
    );
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
}

/// The committed model must know much of its world (far above the ~0% of guessing a name
/// or year), and lose it under heavy pruning. Its full benchmark figures are in the README.
#[test]
fn the_bundled_model_knows_its_facts_and_heavy_pruning_costs_them() {
    let t = tmp();
    let cache = p(&t.path().join("cache"));
    let out = t.path().join("b");
    assert!(arborist(
        &["bundled", "--out", &p(&out)],
        &[("ARBORIST_CACHE", &cache)]
    )
    .status
    .success());
    let d = out.join("data");
    let (ppl_file, qa) = (p(&d.join("eval.txt")), p(&d.join("freebaseqa.json")));
    let args = [
        "--ppl",
        ppl_file.as_str(),
        "--seqlen",
        "256",
        "--freebaseqa",
        qa.as_str(),
        "--limit",
        "60",
    ];
    let dense = eval_json(&p(&out), &qa, &args, &cache);
    let vocab = 1024.0;
    let ppl = dense["ppl"]["value"].as_f64().unwrap();
    let acc = dense["freebaseqa"]["accuracy"].as_f64().unwrap();
    assert!(ppl < vocab / 20.0, "dense ppl {ppl}");
    assert!(acc >= 0.8, "dense FreebaseQA accuracy {acc}");

    let pruned = t.path().join("w70");
    let calib = p(&d.join("calib.txt"));
    let o = arborist(
        &[
            "prune",
            "--model",
            &p(&out),
            "--method",
            "wanda",
            "--sparsity",
            "0.7",
            "--calib",
            &calib,
            "--seqlen",
            "256",
            "--calib-windows",
            "16",
            "--out",
            &p(&pruned),
        ],
        &[("ARBORIST_CACHE", &cache)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let heavy = eval_json(&p(&pruned), &qa, &args, &cache);
    let acc70 = heavy["freebaseqa"]["accuracy"].as_f64().unwrap();
    let ppl70 = heavy["ppl"]["value"].as_f64().unwrap();
    assert!(acc70 < acc - 0.1, "Wanda 70%: accuracy {acc} -> {acc70}");
    assert!(ppl70 > ppl * 1.02, "Wanda 70%: ppl {ppl} -> {ppl70}");
}

/// The committed example session replays and re-executes on a fresh clone, and so does
/// one recorded before `grad_average` existed (its header reads as abs-of-mean).
#[test]
fn the_example_sessions_verify() {
    let t = tmp();
    let cache = p(&t.path().join("cache"));
    // Every compute event re-executed and every derived event re-derived: a replay that
    // skipped some passed with ">= 5" checks. Held within the default tolerance (1e-6),
    // not to the bit: on another CPU gemm may take another kernel and move the last bit
    // (the README's "bit-exact" is this development machine's measurement).
    for (s, checks, derived) in [
        ("sessions/example.yaml", 91, 47),
        ("tests/fixtures/sessions/legacy-abs-of-mean.yaml", 76, 40),
    ] {
        let o = arborist(
            &["replay", s, "--verify", "--json"],
            &[("ARBORIST_CACHE", &cache)],
        );
        assert!(o.status.success(), "{s}: {}", stderr(&o));
        let r = json_exact(&String::from_utf8_lossy(&o.stdout));
        assert_eq!(r["ok"], true, "{s}: {r}");
        assert_eq!(r["checks"].as_array().unwrap().len(), checks, "{s}: {r}");
        assert_eq!(r["derived_checked"], derived, "{s}: {r}");
        assert!(
            (r["checks"].as_array().unwrap().iter())
                .all(|c| c["ok"] == true && c["max_rel_diff"].as_f64().unwrap() <= 1e-6),
            "{s}: {r}"
        );
    }
}
