//! `prune --out`: the exported model evaluates to the reported perplexity, shards as
//! save_pretrained writes them, and a failed or interrupted write leaves nothing behind.

use super::*;

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
