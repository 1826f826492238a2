//! `arborist prune` and `arborist profile` end to end: export round trip, atomic output,
//! refusals, sequential calibration, gradients against finite differences.

mod common;
use arborist::data::{read_text, Windows};
use arborist::eval::ppl::window_loss;
use arborist::model::{LinearId, LinearKind, LoadedModel};
use arborist::profile::{mean_abs_gradients, mean_gradients, GradAverage, GradSpec};
use arborist::prune::alloc::uniform;
use arborist::prune::oneshot::{prune_layer, prune_sequential, Method, OneShotOptions};
use arborist::prune::select::Pattern;
use candle_core::{DType, Device, Tensor};
use common::*;

fn one_line_error(o: &std::process::Output, needle: &str) {
    let e = stderr(o);
    assert!(!o.status.success(), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(lines[0].contains(needle), "`{needle}` not in {e}");
    assert!(!e.contains("panicked"), "{e}");
}

/// `arborist eval --ppl eval.txt --seqlen 32` of a model directory.
fn eval_ppl(model: &std::path::Path) -> f64 {
    let (m, text) = (p(model), fx("eval.txt"));
    let args = [
        "eval", "--model", &m, "--ppl", &text, "--seqlen", "32", "--json",
    ];
    let o = arborist(&args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["ppl"]["value"].as_f64().unwrap()
}

#[test]
fn exported_model_evaluates_to_exactly_the_reported_perplexity() {
    let d = tmp();
    let out = d.path().join("pruned");
    // The tokenizer's side files travel with the weights (the chat template among them).
    let model = d.path().join("llama");
    std::fs::create_dir(&model).unwrap();
    for e in std::fs::read_dir(fx("llama")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    let side = [
        (
            "chat_template.jinja",
            "{% for m in messages %}{{ m.content }}{% endfor %}",
        ),
        ("added_tokens.json", "{\"<tool>\": 512}"),
        ("tokenizer_config.json", "{\"model_max_length\": 256}"),
        (
            "additional_chat_templates/tool_use.jinja",
            "{% for m in messages %}[{{ m.role }}]{% endfor %}",
        ),
    ];
    std::fs::create_dir(model.join("additional_chat_templates")).unwrap();
    for (f, text) in side {
        std::fs::write(model.join(f), text).unwrap();
    }
    // A hub cache's blobs are read-only; the copies take the directory's mode instead.
    use std::os::unix::fs::PermissionsExt;
    let read_only = std::fs::Permissions::from_mode(0o444);
    std::fs::set_permissions(model.join("chat_template.jinja"), read_only).unwrap();
    let o = arborist(
        &[
            "prune",
            "--model",
            &p(&model),
            "--method",
            "wanda",
            "--sparsity",
            "0.5",
            "--calib",
            &fx("eval.txt"),
            "--seqlen",
            "32",
            "--calib-windows",
            "4",
            "--eval",
            &fx("eval.txt"),
            "--out",
            &p(&out),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let reported = v["result"]["ppl"]["value"].as_f64().unwrap();
    assert_eq!(v["result"]["global_sparsity"].as_f64().unwrap(), 0.5);
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "arborist.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let mode = |f: &str| std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
    for (f, text) in side {
        assert_eq!(std::fs::read_to_string(out.join(f)).unwrap(), text);
        assert_eq!(mode(f), mode("config.json"), "{f}");
    }
    assert_eq!(mode("tokenizer.json"), mode("config.json"));
    // No block was removed: the config is the source's, keys and values, but for the dtype.
    let config = |d: &std::path::Path| -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("torch_dtype");
        v
    };
    assert_eq!(config(&out), config(&model));
    // transformers before 4.48 refuses a safetensors file without {"format": "pt"}.
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let format = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("format").cloned());
    assert_eq!(format.as_deref(), Some("pt"));
    assert_eq!(eval_ppl(&out), reported);
    // Pruned weights are stored as +0.0, the bytes `W[mask] = 0` writes in Wanda's code
    // (not −0.0, which a product with 0 leaves where the weight was negative): half of
    // every linear layer.
    let t = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    let w = t["model.layers.1.mlp.down_proj.weight"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let zero_bits = w.iter().filter(|x| x.to_bits() == 0).count();
    assert_eq!(zero_bits, w.len() / 2);
    assert_eq!(w.iter().filter(|x| **x == 0.0).count(), zero_bits);
}

// tests/fixtures/hf/save_pretrained holds the index transformers 5.24's `save_pretrained`
// writes for a fixture it loaded (make_shard_indices.py): a dense export at the same
// `max_shard_size` puts every tensor in the same shard, byte for byte the same index.
#[test]
fn a_sharded_export_writes_the_files_save_pretrained_writes() {
    let d = tmp();
    let index = "model.safetensors.index.json";
    let prune = |model: &str, out: &std::path::Path, extra: &[&str]| {
        let (m, o_s) = (fx(model), p(out));
        let mut args = vec!["prune", "--model", &m, "--out", &o_s];
        args.extend_from_slice(extra);
        arborist(&args, &[])
    };
    for (model, size) in [("llama", "200KB"), ("qwen2", "60KB"), ("qwen3", "60KB")] {
        let dense = d.path().join(format!("{model}-dense"));
        let args = ["--method", "magnitude", "--sparsity", "0"];
        let o = prune(
            model,
            &dense,
            &[&args[..], &["--max-shard-size", size]].concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let theirs = fx(&format!("save_pretrained/{model}-{size}.index.json"));
        let ours = std::fs::read_to_string(dense.join(index)).unwrap();
        assert_eq!(ours, std::fs::read_to_string(theirs).unwrap(), "{model}");
        assert!(!dense.join("model.safetensors").exists());
    }
    // Pruned, in shards or in one file (the default: under 50 GB), the same model.
    let wanda = [
        "--method",
        "wanda",
        "--sparsity",
        "0.5",
        "--calib",
        &fx("eval.txt"),
    ];
    let wanda = [&wanda[..], &["--seqlen", "32", "--calib-windows", "2"]].concat();
    let (one, split) = (d.path().join("one"), d.path().join("split"));
    assert!(prune("llama", &one, &wanda).status.success());
    let o = prune(
        "llama",
        &split,
        &[&wanda[..], &["--max-shard-size", "100000"]].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let whole =
        candle_core::safetensors::load(one.join("model.safetensors"), &Device::Cpu).unwrap();
    let map: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(split.join(index)).unwrap()).unwrap();
    let map = map["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), whole.len());
    let mut files: Vec<&str> = map.values().map(|v| v.as_str().unwrap()).collect();
    files.sort();
    files.dedup();
    assert!(files.len() > 4, "{files:?}");
    for f in files {
        assert!(
            std::fs::metadata(split.join(f)).unwrap().len() <= 100_000 + 1024,
            "{f}"
        );
        for (name, t) in candle_core::safetensors::load(split.join(f), &Device::Cpu).unwrap() {
            assert_eq!(map[&name], f, "{name}");
            let w = &whole[&name];
            let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(bits(&t) == bits(w), "{name} differs between the exports");
        }
    }
    assert_eq!(eval_ppl(&split), eval_ppl(&one));
    // A size transformers would not read is refused before anything is pruned.
    let bad = d.path().join("bad");
    let o = prune(
        "llama",
        &bad,
        &[&wanda[..], &["--max-shard-size", "5GiB"]].concat(),
    );
    one_line_error(&o, "--max-shard-size 5GiB: expected a size such as 5GB");
    assert!(!stderr(&o).contains("pruning blocks") && !bad.exists());
}

#[test]
fn a_failed_run_leaves_nothing_behind() {
    let d = tmp();
    let out = d.path().join("never");
    let short = d.path().join("short.txt");
    std::fs::write(&short, "too short").unwrap();
    let o = arborist(
        &[
            "prune",
            "--model",
            &fx("qwen3"),
            "--method",
            "wanda",
            "--sparsity",
            "0.5",
            "--calib",
            &p(&short),
            "--seqlen",
            "32",
            "--out",
            &p(&out),
        ],
        &[],
    );
    one_line_error(&o, "too short for one window");
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "only short.txt may remain"
    );
}

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
    let out = d.path().join("o");
    let o = arborist(
        &[
            "prune",
            "--model",
            &fx("qwen3"),
            "--method",
            "wanda",
            "--calib",
            &fx("eval.txt"),
            "--seqlen",
            "32",
            "--calib-windows",
            "2",
            "--allocation",
            &p(&yaml),
            "--out",
            &p(&out),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
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

fn load(name: &str) -> (LoadedModel, Windows) {
    let m = LoadedModel::load(&fx(name), &Device::Cpu, DType::F32).unwrap();
    let ids = m
        .encode(&read_text(std::path::Path::new(&fx("eval.txt"))).unwrap())
        .unwrap();
    let w = Windows::sequential(&ids, 32, Some(4), "eval.txt").unwrap();
    (m, w)
}

#[test]
fn calibration_is_sequential_unless_dense_activations_is_asked() {
    let (mut seq, w) = load("qwen3");
    let (mut dense, _) = load("qwen3");
    let plan = uniform(&seq.decoder, Pattern::Unstructured(0.5));
    let mut opts = OneShotOptions::new(Method::Wanda);
    prune_sequential(&mut seq.decoder, Some(&w), &plan, &opts, |_, _| {}).unwrap();
    opts.dense_activations = true;
    prune_sequential(&mut dense.decoder, Some(&w), &plan, &opts, |_, _| {}).unwrap();
    let differ = |b: usize| {
        LinearKind::ALL.iter().any(|&kind| {
            let id = LinearId { block: b, kind };
            seq.decoder.linear(id).mask() != dense.decoder.linear(id).mask()
        })
    };
    // Block 0 sees the same inputs either way; later blocks see pruned vs dense activations.
    assert!(!differ(0));
    assert!(differ(1) && differ(2));
}

#[test]
fn masks_only_grow_across_steps() {
    let (mut m, w) = load("qwen3");
    let opts = OneShotOptions::new(Method::Wanda);
    let stats = arborist::profile::input_stats(&m.decoder, &w, 4).unwrap();
    let id = LinearId {
        block: 1,
        kind: LinearKind::Gate,
    };
    prune_layer(
        &mut m.decoder,
        id,
        Pattern::Unstructured(0.2),
        &opts,
        Some(&stats[1]),
    )
    .unwrap();
    let first = m.decoder.linear(id).mask().unwrap().clone();
    // Statistics change after pruning elsewhere; the earlier choice must survive.
    prune_layer(
        &mut m.decoder,
        LinearId {
            block: 0,
            kind: LinearKind::Up,
        },
        Pattern::Unstructured(0.5),
        &opts,
        Some(&stats[0]),
    )
    .unwrap();
    let stats2 = arborist::profile::input_stats(&m.decoder, &w, 4).unwrap();
    prune_layer(
        &mut m.decoder,
        id,
        Pattern::Unstructured(0.45),
        &opts,
        Some(&stats2[1]),
    )
    .unwrap();
    let second = m.decoder.linear(id).mask().unwrap();
    assert!(first.is_subset_of(second));
    let k = (second.cols() as f64 * 0.45) as usize;
    assert!((0..second.rows()).all(|r| second.pruned_in_row(r) == k));
}

#[test]
fn gradient_scores_match_finite_differences() {
    let cfg = arborist::model::ModelConfig::from_json(TINY_QWEN3).unwrap();
    let t =
        arborist::model::random::random_tensors(&cfg, 11, 0.3, DType::F64, &Device::Cpu).unwrap();
    let d = arborist::model::Decoder::from_tensors(cfg.clone(), t.clone()).unwrap();
    let windows: Vec<Vec<u32>> = (0..3)
        .map(|k| (0..10).map(|i| ((i * 13 + k * 7) % 250) as u32).collect())
        .collect();
    let grads = mean_gradients(&d, &windows).unwrap();
    let mean_loss = |dd: &arborist::model::Decoder| -> f64 {
        let flat: Vec<u32> = windows.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (3, 10), &Device::Cpu).unwrap();
        window_loss(&dd.forward(&ids, None).unwrap(), &ids)
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let ids: Vec<LinearId> = d.linear_ids().collect();
    for (k, id) in ids.iter().enumerate().step_by(4) {
        let name = format!("{}.weight", id.name());
        let w = t[&name].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let g = grads[k].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let j = (k * 97 + 3) % w.len();
        let at = |delta: f64| {
            let mut w2 = w.clone();
            w2[j] += delta;
            let mut t2 = t.clone();
            t2.insert(
                name.clone(),
                Tensor::from_vec(w2, t[&name].dims(), &Device::Cpu).unwrap(),
            );
            mean_loss(&arborist::model::Decoder::from_tensors(cfg.clone(), t2).unwrap())
        };
        let fd = (at(1e-5) - at(-1e-5)) / 2e-5;
        assert!(
            (fd - g[j]).abs() <= 1e-5 * fd.abs().max(1e-3),
            "{name}[{j}]: {fd} vs {}",
            g[j]
        );
    }
}

/// The paper's G is the mean over the gradient windows of each window's |dL/dW|, not the
/// magnitude of the mean gradient; the profile's g is the mean of |W| · G over the layer.
/// The reference takes each window's gradient alone (its own loss) and averages here.
#[test]
fn the_profile_averages_absolute_gradients_over_windows() {
    let cfg = arborist::model::ModelConfig::from_json(TINY_QWEN3).unwrap();
    let t =
        arborist::model::random::random_tensors(&cfg, 7, 0.3, DType::F64, &Device::Cpu).unwrap();
    let d = arborist::model::Decoder::from_tensors(cfg.clone(), t.clone()).unwrap();
    let windows: Vec<Vec<u32>> = (0..3)
        .map(|k| {
            (0..12)
                .map(|i| ((i * 17 + k * 5 + 1) % 250) as u32)
                .collect()
        })
        .collect();
    let per_window: Vec<Vec<Tensor>> = windows
        .iter()
        .map(|w| mean_gradients(&d, std::slice::from_ref(w)).unwrap())
        .collect();
    let flat = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let got = mean_abs_gradients(&d, &windows).unwrap();
    let signed = mean_gradients(&d, &windows).unwrap();
    let (mut cancelled, mut total) = (0usize, 0usize);
    let mut reference: Vec<Vec<f64>> = Vec::new();
    for (k, g) in got.iter().enumerate() {
        let mut want = vec![0f64; g.elem_count()];
        for pw in &per_window {
            for (r, v) in want.iter_mut().zip(flat(&pw[k])) {
                *r += v.abs() / 3.0;
            }
        }
        let scale = want.iter().fold(0f64, |m, v| m.max(*v));
        assert!(scale > 0.0, "layer {k}: zero gradient");
        for ((a, b), s) in flat(g).iter().zip(&want).zip(flat(&signed[k])) {
            assert!((a - b).abs() <= 1e-12 * scale, "layer {k}: {a} vs {b}");
            cancelled += usize::from(*b > s.abs() * (1.0 + 1e-6) + 1e-12 * scale);
            total += 1;
        }
        reference.push(want);
    }
    // The windows' gradients disagree in sign on many weights, so the two averages differ.
    assert!(cancelled * 5 > total, "{cancelled} of {total}");

    let all: Vec<u32> = windows.iter().flatten().copied().collect();
    let calib = Windows::sequential(&all, 12, None, "synthetic").unwrap();
    for average in [GradAverage::MeanOfAbs, GradAverage::AbsOfMean] {
        let spec = GradSpec {
            windows: 3,
            average,
        };
        let p = arborist::profile::compute(&d, &calib, spec, 1, "synthetic").unwrap();
        assert_eq!(p.protocol.grad_average, average);
        assert_eq!(p.layers.len(), d.linear_ids().count());
        assert_eq!(reference.len(), p.layers.len());
        for (k, (l, id)) in p.layers.iter().zip(d.linear_ids()).enumerate() {
            let w = flat(&t[&format!("{}.weight", id.name())]);
            let g: Vec<f64> = match average {
                GradAverage::MeanOfAbs => reference[k].clone(),
                GradAverage::AbsOfMean => flat(&signed[k]),
            };
            let want = w.iter().zip(&g).map(|(w, g)| (w * g).abs()).sum::<f64>() / w.len() as f64;
            assert!(
                (l.g - want).abs() <= 1e-5 * want,
                "{}: g {} vs {want}",
                l.name,
                l.g
            );
        }
    }
}

/// The block-at-a-time gradient pass against back-propagation through the whole model's
/// graph at once, in f32 with a pruned layer: the same gradients up to float rounding.
#[test]
fn blockwise_gradients_equal_the_whole_graph_backward() {
    let cfg = arborist::model::ModelConfig::from_json(TINY_QWEN3).unwrap();
    let t =
        arborist::model::random::random_tensors(&cfg, 5, 0.3, DType::F32, &Device::Cpu).unwrap();
    let mut d = arborist::model::Decoder::from_tensors(cfg.clone(), t).unwrap();
    let windows: Vec<Vec<u32>> = (0..3)
        .map(|k| (0..16).map(|i| ((i * 29 + k * 11) % 250) as u32).collect())
        .collect();
    let flat: Vec<u32> = windows.iter().flatten().copied().collect();
    let calib = Windows::sequential(&flat, 16, None, "synthetic").unwrap();
    let stats = arborist::profile::input_stats(&d, &calib, 3).unwrap();
    let id = LinearId {
        block: 1,
        kind: LinearKind::Down,
    };
    prune_layer(
        &mut d,
        id,
        Pattern::Unstructured(0.5),
        &OneShotOptions::new(Method::Wanda),
        Some(&stats[1]),
    )
    .unwrap();
    let blockwise = mean_gradients(&d, &windows).unwrap();

    let (gd, vars) = d.with_grad_vars().unwrap();
    let ids = Tensor::from_vec(flat, (3, 16), &Device::Cpu).unwrap();
    let loss = window_loss(&gd.forward(&ids, None).unwrap(), &ids)
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    assert_eq!(blockwise.len(), vars.len());
    for (k, (b, v)) in blockwise.iter().zip(&vars).enumerate() {
        let whole = grads.get(v.as_tensor()).unwrap();
        let x = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let y = whole.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = y.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "layer {k}: zero gradient");
        let worst = x
            .iter()
            .zip(&y)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 2e-5 * scale,
            "layer {k}: max diff {worst} of {scale}"
        );
    }
}

#[test]
fn profile_reports_every_layer_with_z_scores() {
    let (model, text) = (fx("qwen3"), fx("eval.txt"));
    let args = [
        "profile",
        "--model",
        &model,
        "--calib",
        &text,
        "--seqlen",
        "32",
        "--calib-windows",
        "4",
        "--grad-windows",
        "2",
    ];
    let o = arborist(&[&args[..], &["--json"]].concat(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Its progress goes to stderr (in a log: the end of each pass, and a line every 30 s).
    let err = stderr(&o);
    assert!(
        err.contains("profile: calibration windows 4/4\nprofile: gradient blocks 3/3\n"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3 * 7);
    assert_eq!(layers[6]["name"], "model.layers.0.mlp.down_proj");
    let zs: Vec<f64> = layers.iter().map(|l| l["z_s"].as_f64().unwrap()).collect();
    assert!(zs.iter().sum::<f64>().abs() < 1e-6);
    assert!(layers
        .iter()
        .all(|l| l["g"].as_f64().unwrap() > 0.0 && l["s"].as_f64().unwrap() > 0.0));
    assert_eq!(v["protocol"]["seqlen"], 32);
    assert_eq!(v["protocol"]["grad_windows"], 2);
    // The table on stdout ends with its protocol.
    let o = arborist(&args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let last = out.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("protocol: 4 windows of 32 tokens from ")
            && last.contains("2 for gradients"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1 + 3 * 7 + 1, "{out}");
}

/// `prune --method METHOD --sparsity 0.3` of `model` on the fixture text (seqlen 32, 4
/// calibration windows) into `out`, then `eval` of the export with the same protocol: the
/// prune summary and the export's evaluation.
fn structured_prune_and_eval(
    model: &str,
    method: &str,
    out: &std::path::Path,
) -> (serde_json::Value, serde_json::Value) {
    let text = fx("eval.txt");
    let o = arborist(
        &[
            "prune",
            "--model",
            model,
            "--method",
            method,
            "--sparsity",
            "0.3",
            "--calib",
            &text,
            "--seqlen",
            "32",
            "--calib-windows",
            "4",
            "--eval",
            &text,
            "--out",
            &p(out),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{method}: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = arborist(
        &[
            "eval",
            "--model",
            &p(out),
            "--ppl",
            &text,
            "--seqlen",
            "32",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    (v, serde_json::from_slice(&o.stdout).unwrap())
}

#[test]
fn structured_baselines_export_loadable_models() {
    for (method, layers) in [("shortgpt", 2), ("width", 3)] {
        let d = tmp();
        let out = d.path().join(method);
        let (v, e) = structured_prune_and_eval(&fx("llama"), method, &out);
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["num_hidden_layers"], layers, "{method}");
        // Removed blocks count as pruned: one of three equal blocks is a third of the weights.
        let global = v["result"]["global_sparsity"].as_f64().unwrap();
        if method == "shortgpt" {
            assert_eq!(global, 1.0 / 3.0, "{method}");
        } else {
            assert!(global > 0.0 && global <= 0.3, "{method}: {global}");
        }
        assert_eq!(e["ppl"]["value"], v["result"]["ppl"]["value"], "{method}");
        // No mask pattern: `structured` says what went.
        assert_eq!(v["result"]["pattern"], serde_json::Value::Null, "{method}");
        assert!(v["result"]["structured"].is_object(), "{method}: {v}");
    }
}

/// Zero the output projections (o_proj, down_proj) of `blocks` in the weights file `w`:
/// each such block passes its input through unchanged, its Block Influence 0.
fn make_identities(w: &std::path::Path, blocks: std::ops::Range<usize>) {
    let edited: std::collections::HashMap<String, Tensor> =
        candle_core::safetensors::load(w, &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let identity = blocks.clone().any(|b| {
                    k == format!("model.layers.{b}.self_attn.o_proj.weight")
                        || k == format!("model.layers.{b}.mlp.down_proj.weight")
                });
                let v = if identity { v.zeros_like().unwrap() } else { v };
                (k, v)
            })
            .collect();
    candle_core::safetensors::save(&edited, w).unwrap();
}

// A Qwen3 whose sliding blocks are set by `max_window_layers` (no `layer_types`): after
// ShortGPT removes a block, the export still evaluates to the perplexity prune reported,
// so each remaining block keeps its attention window.
#[test]
fn shortgpt_export_keeps_each_blocks_sliding_window() {
    for mwl in [1, 2] {
        let d = tmp();
        let src = d.path().join("swa");
        std::fs::create_dir_all(&src).unwrap();
        for e in std::fs::read_dir(fx("qwen3")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), src.join(e.file_name())).unwrap();
        }
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        let obj = cfg.as_object_mut().unwrap();
        obj.remove("layer_types");
        obj.insert("use_sliding_window".into(), true.into());
        obj.insert("sliding_window".into(), 4.into());
        obj.insert("max_window_layers".into(), mwl.into());
        std::fs::write(src.join("config.json"), cfg.to_string()).unwrap();
        // Block 0 made an identity: the block of least influence, so ShortGPT removes it
        // and the sliding blocks after it move down.
        make_identities(&src.join("model.safetensors"), 0..1);
        let out = d.path().join("out");
        let (v, e) = structured_prune_and_eval(&p(&src), "shortgpt", &out);
        let removed = v["result"]["structured"]["removed_blocks"].clone();
        assert_eq!(removed, serde_json::json!([0]), "block 0 is the identity");
        // Blocks at or past max_window_layers slide (transformers' rule); each moved down
        // one, so the boundary moves with them.
        let exported: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(exported["max_window_layers"], mwl - 1, "{exported}");
        assert_eq!(
            e["ppl"]["value"], v["result"]["ppl"]["value"],
            "max_window_layers {mwl}, removed {removed}"
        );
    }
}

#[test]
fn sparsegpt_prunes_to_target_and_updates_kept_weights() {
    let (mut m, w) = load("llama");
    let dense = m.decoder.clone();
    let plan = uniform(&m.decoder, Pattern::Unstructured(0.5));
    prune_sequential(
        &mut m.decoder,
        Some(&w),
        &plan,
        &OneShotOptions::new(Method::Sparsegpt),
        |_, _| {},
    )
    .unwrap();
    assert!(
        (m.decoder.global_sparsity() - 0.5).abs() < 1e-3,
        "{}",
        m.decoder.global_sparsity()
    );
    // Kept weights change (the OBS update); pruned ones are exactly zero.
    let id = LinearId {
        block: 1,
        kind: LinearKind::Down,
    };
    let before = dense
        .linear(id)
        .weight()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let after = m
        .decoder
        .linear(id)
        .weight()
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mask = m.decoder.linear(id).mask().unwrap();
    let cols = m.decoder.linear(id).in_features();
    let mut changed = 0;
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        if mask.is_pruned(i / cols, i % cols) {
            assert_eq!(*b, 0.0);
        } else if a != b {
            changed += 1;
        }
    }
    assert!(
        changed > before.len() / 4,
        "only {changed} kept weights were updated"
    );
}

// On CPU, batches of windows run on several threads at once (calibration, evaluation, the
// gradient pass); every sum is taken in batch order, so the thread count changes no bit.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let d = tmp();
    let (model, text) = (fx("llama"), fx("eval.txt"));
    let run = |threads: &str, args: &[&str]| -> Vec<u8> {
        let mut all = vec!["--threads", threads];
        all.extend_from_slice(args);
        let o = arborist(&all, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        o.stdout
    };
    let common = [
        "--model",
        &model,
        "--calib",
        &text,
        "--seqlen",
        "32",
        "--calib-windows",
        "7",
        "--batch",
        "2",
        "--json",
    ];
    let mut profile = vec!["profile", "--grad-windows", "3"];
    profile.extend_from_slice(&common);
    let one = run("1", &profile);
    assert!(String::from_utf8_lossy(&one).contains("down_proj"));
    assert_eq!(one, run("3", &profile), "profile --json differs");

    let mut weights = Vec::new();
    for (threads, dir) in [("1", "t1"), ("3", "t3")] {
        let out = p(&d.path().join(dir));
        let mut prune = vec![
            "prune",
            "--method",
            "wanda",
            "--sparsity",
            "0.5",
            "--eval",
            &text,
            "--eval-windows",
            "5",
            "--out",
            &out,
        ];
        prune.extend_from_slice(&common);
        let v: serde_json::Value = serde_json::from_slice(&run(threads, &prune)).unwrap();
        weights.push((
            v["result"]["ppl"]["value"].as_f64().unwrap(),
            std::fs::read(d.path().join(dir).join("model.safetensors")).unwrap(),
        ));
    }
    assert_eq!(weights[0].0, weights[1].0, "perplexity differs");
    assert!(weights[0].1 == weights[1].1, "pruned weights differ");
}

// The same without `max_window_layers` in the config: transformers' default (28) applies,
// so in a 30-block model blocks 28 and 29 slide. ShortGPT removes nine blocks before
// them, and the export must write the boundary they moved to, not leave the default.
#[test]
fn shortgpt_export_writes_the_moved_default_window_boundary() {
    let d = tmp();
    let src = d.path().join("deep");
    let config = TINY_QWEN3
        .replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":30")
        .replace(
            "\"rms_norm_eps\":1e-6}",
            "\"rms_norm_eps\":1e-6,\"use_sliding_window\":true,\"sliding_window\":4}",
        );
    write_model_dir(&src, &config, 11, DType::F32);
    // Blocks 0-8 made identities: the least influence.
    make_identities(&src.join("model.safetensors"), 0..9);
    let out = d.path().join("out");
    let (v, e) = structured_prune_and_eval(&p(&src), "shortgpt", &out);
    let removed = v["result"]["structured"]["removed_blocks"].clone();
    assert_eq!(removed, serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7, 8]));
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(exported["max_window_layers"], 19, "{exported}");
    assert_eq!(e["ppl"]["value"], v["result"]["ppl"]["value"]);
}

// Pruning an earlier pruned output reported the new masks' sparsity with no word that the
// weights already held more zeros (an audit: 0.2975 reported, every layer 50% zeros).
#[test]
fn a_source_that_is_already_sparse_is_said_to_be() {
    let d = tmp();
    let prune = |model: &str, out: &str| {
        let out = p(&d.path().join(out));
        let o = arborist(
            &[
                "prune",
                "--model",
                model,
                "--method",
                "magnitude",
                "--sparsity",
                "0.5",
                "--out",
                &out,
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        (out, stderr(&o))
    };
    let (first, dense) = prune(&fx("qwen3"), "a");
    assert!(!dense.contains("already zero"), "{dense}");
    let (_, again) = prune(&first, "b");
    assert!(
        again.contains("50.0% of its linear weights are already zero (a pruned model?)"),
        "{again}"
    );
}

// SIGINT, SIGTERM or SIGHUP while --out is written: the temporary and the parent
// directories the run made go, one line says nothing was written, and the process ends as
// the signal would. (They were left until a later write of the same --out.) A shard per
// tensor, each synced to disk, makes the write last; one that ends before the signal
// arrives is tried again.
#[test]
fn an_interrupted_write_leaves_nothing_behind() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};
    let d = tmp();
    let model = d.path().join("m");
    let config = TINY_QWEN3.replace("\"num_hidden_layers\":2", "\"num_hidden_layers\":64");
    write_model_dir(&model, &config, 3, DType::F32);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let interrupted = (0..5).any(|attempt| {
            let pk = d.path().join(format!("pk-{sig}-{attempt}"));
            std::fs::create_dir(&pk).unwrap();
            let out = pk.join("a/b/new");
            let args = ["prune", "--model", &p(&model), "--method", "magnitude"];
            let mut c = Command::new(env!("CARGO_BIN_EXE_arborist"));
            c.args(args)
                .args([
                    "--sparsity",
                    "0.5",
                    "--max-shard-size",
                    "1",
                    "--out",
                    &p(&out),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            // A signal ignored here (a test run under nohup, or as a `&` job) would stay
            // ignored in the child.
            // SAFETY: only signal(2), async-signal-safe, between fork and exec.
            unsafe {
                c.pre_exec(move || {
                    libc::signal(sig, libc::SIG_DFL);
                    Ok(())
                });
            }
            let mut child = c.spawn().unwrap();
            let partial = |e: &std::fs::DirEntry| {
                e.file_name().to_string_lossy().starts_with(".new.partial-")
            };
            let writing = || {
                std::fs::read_dir(pk.join("a/b")).is_ok_and(|mut r| r.any(|e| partial(&e.unwrap())))
            };
            while !writing() && child.try_wait().unwrap().is_none() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            // SAFETY: a signal to the child this test started.
            unsafe { libc::kill(child.id() as i32, sig) };
            let o = child.wait_with_output().unwrap();
            if out.exists() {
                return false;
            }
            let e = stderr(&o);
            assert_eq!(o.status.signal(), Some(sig), "{e}");
            let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(
                lines,
                [format!(
                    "error: interrupted: nothing was written to {}",
                    p(&out)
                )],
                "{e}"
            );
            let left: Vec<_> = std::fs::read_dir(&pk).unwrap().collect();
            assert!(left.is_empty(), "signal {sig} left {left:?}");
            true
        });
        assert!(interrupted, "every write ended before signal {sig} came");
    }
}
