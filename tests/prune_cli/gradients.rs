//! `profile`: gradient scores against finite differences and the whole-graph backward,
//! their average over windows, and every layer's z-scores.

use super::*;

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
