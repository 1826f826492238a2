//! Our decoder against candle-transformers (an independent implementation) on the same
//! weights, plus gradients against finite differences and mask/statistics semantics.

use arborist::eval::ppl::window_loss;
use arborist::model::{
    random::random_tensors, BlockStats, Decoder, LinearId, LinearKind, Mask, ModelConfig,
};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use std::sync::Arc;

const QWEN3: &str = r#"{"model_type":"qwen3","vocab_size":97,"hidden_size":32,"intermediate_size":48,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,
  "attention_bias":false,"max_position_embeddings":128,"sliding_window":null,"max_window_layers":2,
  "tie_word_embeddings":true,"rope_theta":10000.0,"rms_norm_eps":1e-6,"use_sliding_window":false,
  "hidden_act":"silu"}"#;

const QWEN2: &str = r#"{"model_type":"qwen2","vocab_size":97,"hidden_size":32,"intermediate_size":48,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
  "max_position_embeddings":128,"sliding_window":4096,"max_window_layers":2,
  "tie_word_embeddings":false,"rope_theta":10000.0,"rms_norm_eps":1e-6,"use_sliding_window":false,
  "hidden_act":"silu"}"#;

fn ids(b: usize, t: usize, vocab: usize) -> Tensor {
    let v: Vec<u32> = (0..b * t).map(|i| ((i * 37 + 11) % vocab) as u32).collect();
    Tensor::from_vec(v, (b, t), &Device::Cpu).unwrap()
}

fn max_rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    diff / scale
}

#[test]
fn qwen3_logits_match_candle_transformers() {
    let cfg = ModelConfig::from_json(QWEN3).unwrap();
    let t = random_tensors(&cfg, 1, 0.2, DType::F32, &Device::Cpu).unwrap();
    let ours = Decoder::from_tensors(cfg.clone(), t.clone()).unwrap();
    let ref_cfg: candle_transformers::models::qwen3::Config = serde_json::from_str(QWEN3).unwrap();
    let vb = VarBuilder::from_tensors(t.clone(), DType::F32, &Device::Cpu);
    let mut reference = candle_transformers::models::qwen3::Model::new(&ref_cfg, vb).unwrap();
    let x = ids(2, 20, cfg.vocab_size);
    let hidden = reference.forward(&x, 0).unwrap();
    let emb = &t["model.embed_tokens.weight"];
    let want = hidden.broadcast_matmul(&emb.t().unwrap()).unwrap();
    let got = ours.forward(&x, None).unwrap();
    assert_eq!(got.dims(), &[2, 20, 97]);
    let err = max_rel_err(&got, &want);
    assert!(err < 1e-4, "relative error {err}");
}

#[test]
fn qwen2_with_biases_matches_candle_transformers() {
    let cfg = ModelConfig::from_json(QWEN2).unwrap();
    assert!(cfg.qkv_bias);
    let t = random_tensors(&cfg, 2, 0.2, DType::F32, &Device::Cpu).unwrap();
    let ours = Decoder::from_tensors(cfg.clone(), t.clone()).unwrap();
    let ref_cfg: candle_transformers::models::qwen2::Config = serde_json::from_str(QWEN2).unwrap();
    let vb = VarBuilder::from_tensors(t.clone(), DType::F32, &Device::Cpu);
    let mut reference = candle_transformers::models::qwen2::Model::new(&ref_cfg, vb).unwrap();
    let x = ids(1, 24, cfg.vocab_size);
    let hidden = reference.forward(&x, 0, None).unwrap();
    let want = hidden
        .broadcast_matmul(&t["lm_head.weight"].t().unwrap())
        .unwrap();
    let got = ours.forward(&x, None).unwrap();
    let err = max_rel_err(&got, &want);
    assert!(err < 1e-4, "relative error {err}");
}

#[test]
fn forward_keeps_no_state_between_calls() {
    let cfg = ModelConfig::from_json(QWEN3).unwrap();
    let d = Decoder::from_tensors(
        cfg.clone(),
        random_tensors(&cfg, 3, 0.2, DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap();
    let a = d.forward(&ids(1, 16, 97), None).unwrap();
    let _ = d.forward(&ids(3, 9, 97), None).unwrap();
    let b = d.forward(&ids(1, 16, 97), None).unwrap();
    assert_eq!(max_rel_err(&a, &b), 0.0);
}

fn loss_of(d: &Decoder, x: &Tensor) -> f64 {
    let logits = d.forward(x, None).unwrap();
    window_loss(&logits, x)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn gradients_match_finite_differences() {
    let cfg = ModelConfig::from_json(QWEN3).unwrap();
    let t = random_tensors(&cfg, 4, 0.3, DType::F64, &Device::Cpu).unwrap();
    let d = Decoder::from_tensors(cfg.clone(), t.clone()).unwrap();
    let x = ids(2, 12, cfg.vocab_size);
    let (gd, vars) = d.with_grad_vars().unwrap();
    let logits = gd.forward(&x, None).unwrap();
    let loss = window_loss(&logits, &x).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let ids_: Vec<LinearId> = d.linear_ids().collect();
    // Every linear weight receives a gradient.
    assert_eq!(vars.len(), ids_.len());
    assert!(!vars.is_empty());
    for (id, v) in ids_.iter().zip(&vars) {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {}", id.name()));
        let n = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(n > 0.0, "zero gradient for {}", id.name());
    }
    // Central differences on a few weights of several layers.
    let eps = 1e-5;
    for (k, (id, v)) in ids_.iter().zip(&vars).enumerate().step_by(3) {
        let g = grads
            .get(v.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let name = format!("{}.weight", id.name());
        let w = t[&name].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let shape = t[&name].dims().to_vec();
        let j = (k * 131 + 7) % w.len();
        let bumped = |delta: f64| {
            let mut w2 = w.clone();
            w2[j] += delta;
            let mut t2 = t.clone();
            t2.insert(
                name.clone(),
                Tensor::from_vec(w2, shape.clone(), &Device::Cpu).unwrap(),
            );
            loss_of(&Decoder::from_tensors(cfg.clone(), t2).unwrap(), &x)
        };
        let fd = (bumped(eps) - bumped(-eps)) / (2.0 * eps);
        let err = (fd - g[j]).abs() / (fd.abs().max(g[j].abs()).max(1e-6));
        assert!(
            err < 1e-4,
            "{name}[{j}]: finite difference {fd} vs gradient {}",
            g[j]
        );
    }
}

#[test]
fn masking_one_layer_leaves_the_others_untouched() {
    let cfg = ModelConfig::from_json(QWEN3).unwrap();
    let t = random_tensors(&cfg, 5, 0.2, DType::F32, &Device::Cpu).unwrap();
    let mut d = Decoder::from_tensors(cfg.clone(), t.clone()).unwrap();
    let before: Vec<_> = d
        .linear_ids()
        .map(|id| d.linear(id).weight().unwrap().id())
        .collect();
    let target = LinearId {
        block: 1,
        kind: LinearKind::Up,
    };
    let lin = d.linear(target);
    let mut m = Mask::empty(lin.out_features(), lin.in_features());
    for r in 0..m.rows() {
        for c in (r % 3..m.cols()).step_by(3) {
            m.prune(r, c);
        }
    }
    d.set_mask(target, Some(Arc::new(m.clone()))).unwrap();
    for (id, old) in d.linear_ids().zip(before) {
        let same = d.linear(id).weight().unwrap().id() == old;
        assert_eq!(same, id != target, "{}", id.name());
    }
    // The masked model equals one built from weights with those entries zeroed.
    let name = format!("{}.weight", target.name());
    let w = t[&name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let zeroed: Vec<f32> = w
        .iter()
        .zip(m.keep_flags())
        .map(|(a, k)| if k == 1 { *a } else { 0.0 })
        .collect();
    let mut t2 = t.clone();
    t2.insert(
        name,
        Tensor::from_vec(zeroed, (m.rows(), m.cols()), &Device::Cpu).unwrap(),
    );
    let want = Decoder::from_tensors(cfg, t2)
        .unwrap()
        .forward(&ids(1, 10, 97), None)
        .unwrap();
    let got = d.forward(&ids(1, 10, 97), None).unwrap();
    assert_eq!(max_rel_err(&got, &want), 0.0);
}

/// Block 0's q/k/v statistics against an independent computation; every other layer only
/// records the right shape and token count here. Their values are held to the PyTorch
/// Wanda reference end to end by `tests/prune_reference.rs` (its masks use all of them).
#[test]
fn block0_qkv_statistics_are_sums_of_squared_inputs_and_every_layer_records() {
    let cfg = ModelConfig::from_json(QWEN3).unwrap();
    let t = random_tensors(&cfg, 6, 0.2, DType::F32, &Device::Cpu).unwrap();
    let d = Decoder::from_tensors(cfg.clone(), t.clone()).unwrap();
    let x = ids(2, 8, 97);
    let mut stats = vec![BlockStats::default(); cfg.num_layers];
    d.forward(&x, Some(&mut stats)).unwrap();
    // Block 0's q/k/v input is RMSNorm(embeddings) scaled by input_layernorm.
    let e = d.embed(&x).unwrap();
    let var = e.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    let xn = e
        .broadcast_div(&(var + cfg.rms_norm_eps).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(&t["model.layers.0.input_layernorm.weight"])
        .unwrap();
    let want = xn
        .sqr()
        .unwrap()
        .sum((0, 1))
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for kind in [LinearKind::Q, LinearKind::K, LinearKind::V] {
        let s = stats[0].get(kind);
        assert_eq!(s.tokens, 16);
        assert_eq!(s.sumsq.len(), want.len(), "{kind:?}");
        for (a, b) in s.sumsq.iter().zip(&want) {
            assert!((a - *b as f64).abs() <= 1e-4 * b.abs() as f64, "{a} vs {b}");
        }
    }
    for b in &stats {
        for kind in LinearKind::ALL {
            let s = b.get(kind);
            assert_eq!(s.tokens, 16);
            // One sum per input feature (an empty vector passed the check below).
            let inputs = if kind == LinearKind::Down {
                cfg.intermediate_size
            } else if kind == LinearKind::O {
                cfg.num_heads * cfg.head_dim
            } else {
                cfg.hidden_size
            };
            assert_eq!(s.sumsq.len(), inputs, "{kind:?}");
            assert!(s.sumsq.iter().all(|v| *v > 0.0));
        }
    }
}
