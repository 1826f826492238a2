//! MMLU: predictions against full forwards, both prompt protocols, context limits, and
//! CSV against parquet.

use super::*;

#[test]
fn mmlu_predictions_equal_full_forward_reference() {
    let d = tmp();
    let (test, dev) = mmlu_items();
    write_csv_tree(&d.path().join("csv"), &test, &dev);
    let variant = qwen3_single_letter_tokens(&d.path().join("qwen3_letters"));
    let styles = [(MmluPrompt::Hendrycks, false), (MmluPrompt::LmEval, true)];
    let mut logprobs_by_style = Vec::new();
    for ((dir, batch), (style, lm_eval)) in [(fixture("qwen3"), 1), (variant, 3)]
        .into_iter()
        .flat_map(|m| styles.map(|s| (m.clone(), s)))
    {
        let model = load(&dir);
        let data = read_mmlu(&d.path().join("csv"), shots(5)).unwrap();
        let opts = MmluOptions {
            shots: 5,
            prompt: style,
            limit: None,
            batch,
            max_context: None,
        };
        let res = evaluate_mmlu(&model, &data, &opts, "csv", |_, _| {}).unwrap();
        assert_eq!(res.prompt, style);
        // Subjects sorted, file order within a subject.
        let mut order: Vec<&Item> = test.iter().collect();
        order.sort_by_key(|i| i.subject);
        assert_eq!(res.items, order.len());
        let mut correct = 0;
        for (it, p) in order.iter().zip(&res.predictions) {
            let devs: Vec<&Item> = dev.iter().filter(|x| x.subject == it.subject).collect();
            let max = model.cfg.max_position_embeddings;
            let (pred, lp, k) = reference_prediction(&model, it, &devs, lm_eval, max);
            assert_eq!(p.subject, it.subject);
            assert_eq!(
                p.predicted, pred,
                "{}: {:?} vs {:?}",
                it.question, p.logprobs, lp
            );
            assert_eq!(p.shots, k, "{}", it.question);
            for j in 0..4 {
                assert!(
                    (p.logprobs[j] - lp[j]).abs() < 1e-4,
                    "{:?} vs {lp:?}",
                    p.logprobs
                );
            }
            correct += usize::from(pred == ["A", "B", "C", "D"][it.answer]);
        }
        assert_eq!(res.correct, correct);
        assert!((res.accuracy - correct as f64 / order.len() as f64).abs() < 1e-12);
        // The long world_religions examples do not fit: Hendrycks drops shots, lm-eval
        // cuts the prompt's start; the short algebra ones fit whole.
        let cut: Vec<&str> = res
            .predictions
            .iter()
            .filter(|p| p.shots < 5 || p.truncated > 0)
            .map(|p| p.subject.as_str())
            .collect();
        let (dropped, truncated) = match lm_eval {
            false => (cut.len(), 0),
            true => (0, cut.len()),
        };
        assert_eq!((res.reduced_shots, res.truncated), (dropped, truncated));
        assert!(
            !cut.is_empty() && cut.iter().all(|s| *s == "world_religions"),
            "{cut:?}"
        );
        logprobs_by_style.push(
            res.predictions
                .iter()
                .map(|p| p.logprobs)
                .collect::<Vec<_>>(),
        );
    }
    // The two spellings are different prompts: every item's scores move.
    for pair in logprobs_by_style.chunks(2) {
        assert!(pair[0].iter().zip(&pair[1]).all(|(a, b)| a != b));
    }
}

/// Hendrycks' code drops shots until the prompt fits 2048 tokens whatever the model's
/// context; lm-eval fits max_position_embeddings and cuts from the left;
/// `--mmlu-max-context` moves either limit within the model's context.
#[test]
fn mmlu_context_is_hendrycks_2048_unless_set() {
    let d = tmp();
    let dir = d.path().join("qwen3_4k");
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("qwen3");
    for f in [
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["max_position_embeddings"] = json!(4096);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let rel = "world_religions";
    let passage = "The heron keeps the stones by the old mill while the light falls on the river. ";
    let dev: Vec<Item> = (0..5)
        .map(|i| {
            item(
                rel,
                &format!("{i}. {}", passage.repeat(12)),
                ["a", "b", "c", "d"],
                i % 4,
            )
        })
        .collect();
    let test = vec![item(
        rel,
        "Where does the heron wait?",
        ["mill", "river", "stone", "light"],
        0,
    )];
    write_csv_tree(&d.path().join("csv"), &test, &dev);
    // The tree holds both subjects; only world_religions is written here.
    std::fs::remove_file(d.path().join("csv/test/abstract_algebra_test.csv")).unwrap();
    std::fs::remove_file(d.path().join("csv/dev/abstract_algebra_dev.csv")).unwrap();
    let model = load(&dir);
    let devs: Vec<&Item> = dev.iter().collect();
    // The setup must put the 5-shot prompt between 2048 and 4096 tokens.
    let (_, _, k_2048) = reference_prediction(&model, &test[0], &devs, false, 2048);
    let (_, lp_4096, k_4096) = reference_prediction(&model, &test[0], &devs, false, 4096);
    assert!(k_2048 < 5 && k_2048 > 0, "{k_2048}");
    assert_eq!(k_4096, 5);
    let data = read_mmlu(&d.path().join("csv"), shots(5)).unwrap();
    let run_as = |prompt, max_context| {
        let opts = MmluOptions {
            shots: 5,
            prompt,
            limit: None,
            batch: 1,
            max_context,
        };
        evaluate_mmlu(&model, &data, &opts, "csv", |_, _| {})
    };
    let run = |max_context| run_as(MmluPrompt::Hendrycks, max_context);
    let default = run(None).unwrap();
    assert_eq!((default.max_context, default.reduced_shots), (2048, 1));
    assert_eq!(default.predictions[0].shots, k_2048);
    let long = run(Some(4096)).unwrap();
    assert_eq!((long.max_context, long.reduced_shots), (4096, 0));
    assert_eq!(long.predictions[0].shots, 5);
    for (got, want) in long.predictions[0].logprobs.iter().zip(lp_4096) {
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
    // lm-eval's rule: its max_length is max_position_embeddings, and a prompt too long
    // for a smaller one keeps every example and loses tokens from its start.
    let lm_eval = |max_context| run_as(MmluPrompt::LmEval, max_context).unwrap();
    let whole = lm_eval(None);
    assert_eq!(
        (whole.max_context, whole.reduced_shots, whole.truncated),
        (4096, 0, 0)
    );
    let cut = lm_eval(Some(2048));
    assert_eq!(
        (cut.max_context, cut.reduced_shots, cut.truncated),
        (2048, 0, 1)
    );
    let one = &cut.predictions[0];
    assert_eq!(one.shots, 5);
    assert!(one.truncated > 0, "{one:?}");
    let (_, lp_cut, _) = reference_prediction(&model, &test[0], &devs, true, 2048);
    for (got, want) in one.logprobs.iter().zip(lp_cut) {
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
    let err = run(Some(4097)).unwrap_err().to_string();
    assert_eq!(
        err,
        "--mmlu-max-context 4097 is above the model's max_position_embeddings 4096"
    );
    // The CLI refuses the flag where it cannot apply, before reading any weights.
    let o = arborist(
        &[
            "eval",
            "--model",
            &p(&dir),
            "--ppl",
            &p(&fixture("eval.txt")),
            "--mmlu-max-context",
            "64",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "--mmlu-max-context tunes an evaluation that was not requested: it needs --mmlu PATH"
        ),
        "{}",
        stderr(&o)
    );
    let (model_dir, csv) = (p(&dir), p(&d.path().join("csv")));
    let eval_mmlu = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", &model_dir, "--mmlu", &csv];
        args.extend(extra);
        args.push("--json");
        eval_json(&args)
    };
    let v = eval_mmlu(&["--mmlu-max-context", "4096"]);
    assert_eq!(v["mmlu"]["max_context"], json!(4096));
    assert_eq!(v["mmlu"]["reduced_shots"], json!(0));
    let v = eval_mmlu(&["--mmlu-prompt", "lm-eval", "--mmlu-max-context", "2048"]);
    assert_eq!(v["mmlu"]["max_context"], json!(2048));
    assert_eq!(v["mmlu"]["truncated"], json!(1));
}

// lm-eval leaves BOS to the tokenizer (its PR #3347): with a tokenizer that puts one
// first, the lm-eval protocol's prompts start with it, Hendrycks' (his evaluate.py sends
// text to an API) and ours elsewhere do not.
#[test]
fn mmlu_lm_eval_prompts_start_with_the_tokenizers_bos() {
    let d = tmp();
    let (test, dev) = mmlu_items();
    write_csv_tree(&d.path().join("csv"), &test, &dev);
    let dir = d.path().join("qwen3_bos");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("qwen3").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(
        fixture("c4_ref/tokenizer_bos.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let model = load(&dir);
    assert_eq!(model.encode_document("x").unwrap()[0], 0, "the BOS is id 0");
    let data = read_mmlu(&d.path().join("csv"), shots(5)).unwrap();
    let mut order: Vec<&Item> = test.iter().collect();
    order.sort_by_key(|i| i.subject);
    for (style, lm_eval) in [(MmluPrompt::Hendrycks, false), (MmluPrompt::LmEval, true)] {
        let opts = MmluOptions {
            shots: 5,
            prompt: style,
            limit: None,
            batch: 2,
            max_context: Some(512),
        };
        let res = evaluate_mmlu(&model, &data, &opts, "csv", |_, _| {}).unwrap();
        let mut moved = 0;
        for (it, p) in order.iter().zip(&res.predictions) {
            let devs: Vec<&Item> = dev.iter().filter(|x| x.subject == it.subject).collect();
            let plain = |t: &str| model.encode(t).unwrap();
            let bos = |t: &str| model.encode_document(t).unwrap();
            let (_, want, _) = match lm_eval {
                true => reference_prediction_by(&model, it, &devs, true, 512, bos),
                false => reference_prediction_by(&model, it, &devs, false, 512, plain),
            };
            let (_, other, _) = match lm_eval {
                true => reference_prediction_by(&model, it, &devs, true, 512, plain),
                false => reference_prediction_by(&model, it, &devs, false, 512, bos),
            };
            for j in 0..4 {
                assert!(
                    (p.logprobs[j] - want[j]).abs() < 1e-4,
                    "{:?} vs {want:?}",
                    p.logprobs
                );
            }
            moved += usize::from((0..4).any(|j| (p.logprobs[j] - other[j]).abs() > 1e-4));
        }
        // The BOS changes the scores (the check above could not pass both ways).
        assert!(moved > 0, "{style:?}");
    }
}

#[test]
fn mmlu_csv_and_parquet_give_identical_results() {
    let d = tmp();
    let (test, dev) = mmlu_items();
    // Parquet rows interleave the subjects (as `test` lists them); CSV files are per subject.
    write_csv_tree(&d.path().join("csv"), &test, &dev);
    let test_file = write_parquet_tree(&d.path().join("pq"), &test, &dev);
    let m = p(&fixture("qwen3"));
    let run = |path: &Path, shots: &str| {
        eval_json(&[
            "eval",
            "--model",
            &m,
            "--mmlu",
            &p(path),
            "--shots",
            shots,
            "--json",
            "--per-item",
        ])
    };
    let key = |v: &Value| -> Vec<(Value, Value, Value, Value)> {
        v["mmlu"]["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["subject"].clone(),
                    x["answer"].clone(),
                    x["predicted"].clone(),
                    x["logprobs"].clone(),
                )
            })
            .collect()
    };
    // The file by its bare name, from its folder: its dev-*.parquet sibling is found there.
    let by_name = |shots: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_arborist"))
            .current_dir(test_file.parent().unwrap())
            .args([
                "eval",
                "--model",
                &m,
                "--json",
                "--per-item",
                "--shots",
                shots,
            ])
            .args(["--mmlu", "test-00000-of-00001.parquet"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    for shots in ["0", "5"] {
        let csv = run(&d.path().join("csv"), shots);
        let pqs = [
            run(&d.path().join("pq"), shots),
            run(&test_file, shots),
            by_name(shots),
        ];
        for pq in pqs {
            assert_eq!(csv["mmlu"]["accuracy"], pq["mmlu"]["accuracy"]);
            assert_eq!(csv["mmlu"]["subjects"], pq["mmlu"]["subjects"]);
            assert_eq!(key(&csv), key(&pq));
        }
        let r = &csv["mmlu"];
        assert_eq!(r["shots"].as_u64().unwrap().to_string(), shots);
        assert_eq!(r["items"], 7);
        assert_eq!(r["split"], "test");
        assert_eq!(r["dtype"], "f32");
        assert_eq!(r["subjects"].as_array().unwrap().len(), 2);
    }
    // --limit takes the first N items of each subject; without --per-item no predictions.
    let v = eval_json(&[
        "eval",
        "--model",
        &m,
        "--mmlu",
        &p(&d.path().join("csv")),
        "--limit",
        "2",
        "--json",
    ]);
    assert_eq!(v["mmlu"]["items"], 4);
    assert_eq!(v["mmlu"]["limit"], 2);
    assert!(v["mmlu"].get("predictions").is_none());
}

/// What the evaluator reads of each item (its file aside), with `--shots 0`.
// Evaluating the dev split itself put each item, answer and all, among its own shots (an
// audit found 5-shot dev accuracy computed so). An item's shots are now the other dev
// items, as lm-eval leaves the document out when the few-shot split is the one evaluated:
// its scores equal those of the same item evaluated as a test item against the others.
#[test]
fn an_evaluated_dev_item_is_not_its_own_example() {
    let d = tmp();
    let (_, dev) = mmlu_items();
    let alg: Vec<Item> = dev
        .into_iter()
        .filter(|i| i.subject == "abstract_algebra")
        .collect();
    let test_file = write_parquet_tree(&d.path().join("a"), &alg[..1], &alg);
    let dev_file = test_file.with_file_name("dev-00000-of-00001.parquet");
    let m = p(&fixture("qwen3"));
    let run = |f: &Path| {
        eval_json(&[
            "eval",
            "--model",
            &m,
            "--mmlu",
            &p(f),
            "--shots",
            "2",
            "--json",
            "--per-item",
        ])
    };
    let v = run(&dev_file);
    assert_eq!(v["mmlu"]["split"], "dev");
    let preds = v["mmlu"]["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), alg.len());
    for (i, x) in alg.iter().enumerate() {
        let others: Vec<Item> = (0..alg.len())
            .filter(|&j| j != i)
            .map(|j| alg[j].clone())
            .collect();
        let t = write_parquet_tree(
            &d.path().join(format!("t{i}")),
            std::slice::from_ref(x),
            &others,
        );
        let want = run(&t);
        assert_eq!(preds[i]["shots"], 2, "item {i}");
        assert_eq!(
            preds[i]["logprobs"], want["mmlu"]["predictions"][0]["logprobs"],
            "item {i}"
        );
    }
    // Five dev examples leave four for each: --shots 5 needs a sixth.
    let o = arborist(
        &[
            "eval",
            "--model",
            &m,
            "--mmlu",
            &p(&dev_file),
            "--shots",
            "5",
        ],
        &[],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("has 5 dev examples, fewer than the 6 --shots 5 needs when the dev split itself is evaluated"),
        "{err}"
    );
}

fn item_keys(path: &Path) -> Vec<(String, String, [String; 4], usize)> {
    let d = read_mmlu(path, shots(0)).unwrap();
    d.test
        .values()
        .flatten()
        .map(|i| {
            (
                i.subject.clone(),
                i.question.clone(),
                i.choices.clone(),
                i.answer,
            )
        })
        .collect()
}

#[test]
fn mmlu_parquet_reads_every_integer_answer_type_and_codec() {
    let d = tmp();
    let (test, _) = mmlu_items();
    let answers: Vec<i64> = test.iter().map(|i| i.answer as i64).collect();
    let base = d.path().join("base.parquet");
    write_mmlu_parquet(&base, &test, &answers);
    let want = item_keys(&base);
    assert_eq!(want.len(), test.len());
    // What pandas/pyarrow write for int8, int16, uint8 ... answers.
    let types = [
        "int32 answer",
        "int32 answer (INTEGER(8,true))",
        "int32 answer (INTEGER(16,true))",
        "int32 answer (INTEGER(8,false))",
        "int32 answer (INTEGER(16,false))",
        "int32 answer (INTEGER(32,false))",
        "int64 answer (INTEGER(64,false))",
    ];
    for (i, ty) in types.iter().enumerate() {
        let f = d.path().join(format!("t{i}.parquet"));
        write_mmlu_parquet_as(&f, &test, &answers, ty, Compression::SNAPPY);
        assert_eq!(item_keys(&f), want, "{ty}");
    }
    for (name, codec) in [
        ("gzip", Compression::GZIP(GzipLevel::default())),
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
    ] {
        let f = d.path().join(format!("{name}.parquet"));
        write_mmlu_parquet_as(&f, &test, &answers, "int64 answer", codec);
        assert_eq!(item_keys(&f), want, "{name}");
    }
}
