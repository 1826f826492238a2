//! What `prune` refuses, the options it records, and an allocation file.

use super::*;

#[test]
fn refusals_are_one_line() {
    let d = tmp();
    let out = d.path().join("o");
    let base = |extra: &[&str]| {
        let mut v = vec![
            "prune",
            "--model",
            &fx("qwen3").leak()[..],
            "--method",
            "wanda",
            "--calib",
        ];
        let e = fx("eval.txt");
        v.push(e.leak());
        v.extend_from_slice(&["--seqlen", "32", "--calib-windows", "2"]);
        v.extend_from_slice(extra);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let args = base(extra);
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        arborist(&refs, &[])
    };
    let o_s = p(&out);
    one_line_error(
        &run(&["--sparsity", "1.0", "--out", &o_s]),
        "--sparsity 1 is outside [0, 1)",
    );
    one_line_error(&run(&["--sparsity=-0.2", "--out", &o_s]), "outside [0, 1)");
    one_line_error(&run(&["--nm", "4:2", "--out", &o_s]), "--nm 4:2");
    // Accepted and recorded in arborist.json, though magnitude pruning reads no activations.
    let mut args = base(&["--sparsity", "0.5", "--dense-activations", "--out", &o_s]);
    let at = args.iter().position(|a| a == "wanda").unwrap();
    args[at] = "magnitude".into();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    one_line_error(
        &arborist(&refs, &[]),
        "--dense-activations chooses the activations Wanda and SparseGPT calibrate on; --method magnitude reads no activations",
    );
    one_line_error(&run(&["--nm", "two:four", "--out", &o_s]), "--nm two:four");
    let yaml = d.path().join("alloc.yaml");
    std::fs::write(&yaml, "model.layers.7.mlp.up_proj: 0.3\n").unwrap();
    one_line_error(
        &run(&[
            "--sparsity",
            "0.5",
            "--allocation",
            &p(&yaml),
            "--out",
            &o_s,
        ]),
        "unknown layer `model.layers.7.mlp.up_proj`",
    );
    std::fs::write(&yaml, "model.layers.0.mlp.up_proj: 1.5\n").unwrap();
    one_line_error(
        &run(&[
            "--sparsity",
            "0.5",
            "--allocation",
            &p(&yaml),
            "--out",
            &o_s,
        ]),
        "outside [0, 1)",
    );
    // A misspelt allocation reads as a missing file: the message names both meanings.
    one_line_error(
        &run(&[
            "--sparsity",
            "0.5",
            "--allocation",
            "unifrom",
            "--out",
            &o_s,
        ]),
        "--allocation unifrom: not uniform, owl or a readable YAML file",
    );
    // Calibration reads text; a parquet file is named as such, not as broken UTF-8.
    let pq = d.path().join("wiki.parquet");
    std::fs::write(&pq, b"PAR1\x15\x04\xff\xfePAR1").unwrap();
    let mut args = base(&["--sparsity", "0.5", "--out", &o_s]);
    let at = args.iter().position(|a| a == "--calib").unwrap() + 1;
    args[at] = p(&pq);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    one_line_error(
        &arborist(&refs, &[]),
        "is a parquet file; this option reads UTF-8 text",
    );
    // A path that names no directory is refused before any pruning (it used to be after).
    let up = p(&out.join(".."));
    let o = run(&["--sparsity", "0.5", "--out", &up, "--force"]);
    one_line_error(&o, "has no directory name");
    assert!(!stderr(&o).contains("pruning blocks"), "{}", stderr(&o));
    // `d/.` failed at the final rename, after the whole prune.
    let dot = format!("{o_s}/.");
    let o = run(&["--sparsity", "0.5", "--out", &dot]);
    one_line_error(&o, "ends in `.`: give the directory itself");
    // An N:M that no layer width fits: the first layer, before any calibration (it was
    // found mid-prune, naming whichever layer failed first).
    let o = run(&["--nm", "2:3", "--out", &o_s]);
    one_line_error(
        &o,
        "--nm 2:3: model.layers.0.self_attn.q_proj has 64 inputs, not a multiple of 3",
    );
    // Structured methods choose their own units: an allocation was ignored, yet recorded.
    let method = |m: &str, extra: &[&str]| {
        let mut args = base(extra);
        let at = args.iter().position(|a| a == "wanda").unwrap();
        args[at] = m.into();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        arborist(&refs, &[])
    };
    for m in ["shortgpt", "width"] {
        one_line_error(
            &method(
                m,
                &["--sparsity", "0.25", "--allocation", "owl", "--out", &o_s],
            ),
            &format!("--method {m} takes --sparsity"),
        );
    }
    one_line_error(
        &method(
            "magnitude",
            &["--nm", "2:4", "--magnitude-layerwide", "--out", &o_s],
        ),
        "--magnitude-layerwide ranks a whole layer at once",
    );
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    one_line_error(
        &run(&["--sparsity", "0.5", "--out", &o_s]),
        "is not empty (pass --force",
    );
    assert!(
        out.join("keep.txt").exists(),
        "a refused run must not touch --out"
    );
    let o = run(&["--sparsity", "0.5", "--out", &o_s, "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.join("keep.txt").exists() && out.join("model.safetensors").exists());
}

/// arborist.json records an option only where it acted: `--batch` with no windows read and
/// SparseGPT's damping under another method are null.
#[test]
fn the_recorded_options_are_the_ones_the_method_used() {
    let d = tmp();
    let options = |method: &str, extra: &[&str]| {
        let out = d.path().join(method);
        let (m, o_s, calib) = (fx("qwen3"), p(&out), fx("eval.txt"));
        let mut args = vec![
            "prune",
            "--model",
            &m,
            "--method",
            method,
            "--sparsity",
            "0.5",
            "--out",
            &o_s,
            "--json",
        ];
        if method != "magnitude" {
            args.extend(["--calib", &calib, "--seqlen", "32", "--calib-windows", "2"]);
        }
        args.extend_from_slice(extra);
        let o = arborist(&args, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let on_disk: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("arborist.json")).unwrap())
                .unwrap();
        assert_eq!(v["result"]["options"], on_disk["options"]);
        on_disk["options"].clone()
    };
    let magnitude = options("magnitude", &["--batch", "2"]);
    assert!(magnitude["batch"].is_null(), "{magnitude}");
    assert!(magnitude["percdamp"].is_null(), "{magnitude}");
    assert_eq!(magnitude["method"], "magnitude");
    let wanda = options("wanda", &["--batch", "2"]);
    assert_eq!(wanda["batch"], 2, "{wanda}");
    assert!(
        wanda["percdamp"].is_null() && wanda["blocksize"].is_null(),
        "{wanda}"
    );
    let sparsegpt = options("sparsegpt", &[]);
    assert_eq!(
        (
            &sparsegpt["batch"],
            &sparsegpt["percdamp"],
            &sparsegpt["blocksize"]
        ),
        (
            &serde_json::json!(4),
            &serde_json::json!(0.01),
            &serde_json::json!(128)
        ),
        "{sparsegpt}"
    );
}

#[test]
fn allocation_file_prunes_only_the_named_layers() {
    let d = tmp();
    let yaml = d.path().join("alloc.yaml");
    std::fs::write(
        &yaml,
        "model.layers.1.mlp.up_proj: 0.3\nmodel.layers.0.self_attn.q_proj: 0.6\n",
    )
    .unwrap();
    std::fs::copy(fx("eval.txt"), d.path().join("calib.txt")).unwrap();
    // Run where the files are, named relative: arborist.json names them absolute, as it
    // does the source and the perplexity's text (they were written as typed).
    let o = arborist_timed(
        &[
            "prune",
            "--model",
            &fx("qwen3"),
            "--method",
            "wanda",
            "--calib",
            "calib.txt",
            "--seqlen",
            "32",
            "--calib-windows",
            "2",
            "--allocation",
            "alloc.yaml",
            "--out",
            "o",
            "--json",
        ],
        &[],
        d.path(),
        LIMIT,
    );
    let v = ok_json(&o);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("o/arborist.json")).unwrap())
            .unwrap();
    let here = std::fs::canonicalize(d.path()).unwrap();
    assert_eq!(meta["allocation"], p(&here.join("alloc.yaml")), "{meta}");
    assert_eq!(
        meta["calibration"]["calib"],
        p(&here.join("calib.txt")),
        "{meta}"
    );
    // Sequential windows: no seed drew them, and none is recorded.
    let cal = &v["result"]["calibration"];
    assert_eq!(cal["sample"], "sequential", "{cal}");
    assert!(cal["seed"].is_null(), "{cal}");
    assert_eq!(cal["windows"], 2, "{cal}");
    let layers = v["result"]["layers"].as_array().unwrap();
    let mut named = 0;
    for l in layers {
        let want = match l["name"].as_str().unwrap() {
            "model.layers.1.mlp.up_proj" | "model.layers.0.self_attn.q_proj" => {
                named += 1;
                if l["name"] == "model.layers.1.mlp.up_proj" {
                    0.3
                } else {
                    0.6
                }
            }
            _ => 0.0,
        };
        assert!((l["sparsity"].as_f64().unwrap() - want).abs() < 0.01, "{l}");
    }
    // Every linear of the fixture's blocks is listed, the two named ones among them.
    assert_eq!(
        (layers.len() % 7, layers.len() >= 14, named),
        (0, true, 2),
        "{v}"
    );
}
