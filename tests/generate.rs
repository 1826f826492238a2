//! KV-cache decoding against the stateless full-sequence forward on the Hugging Face
//! fixtures: logits at every step, greedy tokens, batched and continuation scoring.

use arborist::data::read_text;
use arborist::model::generate::{
    continuation_logprobs, forward_cached, generate_greedy, next_token_logprobs_batch, KvCache,
};
use arborist::model::{Decoder, LinearId, LinearKind, LoadedModel, Mask};
use candle_core::{DType, Device, Tensor, D};
use std::path::PathBuf;
use std::sync::Arc;

const MODELS: [&str; 4] = ["qwen3", "llama", "mistral", "qwen2"];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn load(name: &str) -> LoadedModel {
    let dir = fixtures().join(name);
    LoadedModel::load(dir.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap()
}

fn tokens(model: &LoadedModel, n: usize) -> Vec<u32> {
    let text = read_text(&fixtures().join("eval.txt")).unwrap();
    model.encode(&text).unwrap()[..n].to_vec()
}

/// Full-forward logits [seq, vocab] of one sequence.
fn full_logits(d: &Decoder, ids: &[u32]) -> Vec<Vec<f32>> {
    let t = Tensor::new(ids, &d.device).unwrap().unsqueeze(0).unwrap();
    d.forward(&t, None)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec2()
        .unwrap()
}

/// max |a - b| / max(1, max |b|) over all entries.
fn rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().flatten().fold(1f32, |m, x| m.max(x.abs()));
    let diff = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// Cached logits of `ids` fed as a 7-token prefill, one 3-token chunk, then one token at
/// a time.
fn cached_logits(d: &Decoder, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = KvCache::new(d);
    let mut out = Vec::new();
    let mut start = 0;
    for size in [7, 3].into_iter().chain(std::iter::repeat(1)) {
        if start >= ids.len() {
            break;
        }
        let end = (start + size).min(ids.len());
        let t = Tensor::new(&ids[start..end], &d.device)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let l = forward_cached(d, &t, &mut cache).unwrap();
        out.extend(l.get(0).unwrap().to_vec2::<f32>().unwrap());
        start = end;
        assert_eq!(cache.len(), end);
    }
    out
}

#[test]
fn cached_logits_equal_full_forward_at_every_step() {
    for name in MODELS {
        let m = load(name);
        let ids = tokens(&m, 20);
        let diff = rel_diff(
            &cached_logits(&m.decoder, &ids),
            &full_logits(&m.decoder, &ids),
        );
        assert!(diff < 1e-5, "{name}: relative difference {diff}");
    }
}

#[test]
fn sliding_window_is_respected_by_the_cache() {
    // The mistral fixture has no window; give every block one shorter than the sequence.
    let mut m = load("mistral");
    let ids = tokens(&m, 20);
    let dense = full_logits(&m.decoder, &ids);
    for b in m.decoder.blocks.iter_mut() {
        b.window = Some(5);
    }
    let windowed = full_logits(&m.decoder, &ids);
    assert!(
        rel_diff(&windowed, &dense) > 1e-3,
        "the window changes nothing"
    );
    let diff = rel_diff(&cached_logits(&m.decoder, &ids), &windowed);
    assert!(diff < 1e-5, "relative difference {diff}");
}

#[test]
fn masked_weights_are_used_by_the_cache() {
    let mut m = load("qwen3");
    let ids = tokens(&m, 16);
    let dense = full_logits(&m.decoder, &ids);
    for kind in [LinearKind::Q, LinearKind::V, LinearKind::Down] {
        let id = LinearId { block: 0, kind };
        let l = m.decoder.linear(id);
        let (rows, cols) = (l.out_features(), l.in_features());
        let pruned: Vec<usize> = (0..rows * cols).filter(|i| i % 2 == 0).collect();
        let mask = Mask::from_pruned_indices(rows, cols, &pruned).unwrap();
        m.decoder.set_mask(id, Some(Arc::new(mask))).unwrap();
    }
    let masked = full_logits(&m.decoder, &ids);
    assert!(rel_diff(&masked, &dense) > 1e-3, "the masks change nothing");
    let diff = rel_diff(&cached_logits(&m.decoder, &ids), &masked);
    assert!(diff < 1e-5, "relative difference {diff}");
}

fn first_argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding by recomputing the whole sequence at every step.
fn naive_greedy(d: &Decoder, prompt: &[u32], max_new: usize) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    for _ in 0..max_new {
        let logits = full_logits(d, &seq);
        seq.push(first_argmax(logits.last().unwrap()));
    }
    seq[prompt.len()..].to_vec()
}

#[test]
fn greedy_tokens_equal_recomputed_greedy() {
    for name in MODELS {
        let m = load(name);
        let prompt = tokens(&m, 9);
        let naive = naive_greedy(&m.decoder, &prompt, 12);
        let cached = generate_greedy(&m.decoder, &prompt, 12, &[]).unwrap();
        assert_eq!(cached, naive, "{name}");
        // A stop token ends generation before its first occurrence.
        let stop = naive[4];
        let first = naive.iter().position(|&t| t == stop).unwrap();
        let stopped = generate_greedy(&m.decoder, &prompt, 12, &[stop]).unwrap();
        assert_eq!(stopped, naive[..first].to_vec(), "{name}");
    }
}

#[test]
fn batched_next_token_logprobs_equal_single_prompts() {
    let m = load("llama");
    let ids = tokens(&m, 30);
    let prompts = vec![ids[..5].to_vec(), ids[3..30].to_vec(), ids[10..21].to_vec()];
    let batch: Vec<Vec<f32>> = next_token_logprobs_batch(&m.decoder, &prompts)
        .unwrap()
        .to_vec2()
        .unwrap();
    for (p, row) in prompts.iter().zip(&batch) {
        let t = Tensor::new(p.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = m.decoder.forward(&t, None).unwrap();
        let last = logits.get(0).unwrap().get(p.len() - 1).unwrap();
        let want: Vec<f32> = candle_nn::ops::log_softmax(&last, D::Minus1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let diff = rel_diff(std::slice::from_ref(row), &[want]);
        assert!(diff < 1e-5, "relative difference {diff}");
    }
}

#[test]
fn continuation_logprobs_equal_full_forward_sums() {
    let m = load("qwen2");
    let ids = tokens(&m, 24);
    let prompt = &ids[..12];
    let conts = vec![ids[12..13].to_vec(), ids[12..17].to_vec(), vec![5, 9, 200]];
    let got = continuation_logprobs(&m.decoder, prompt, &conts).unwrap();
    for (c, g) in conts.iter().zip(got) {
        let seq: Vec<u32> = prompt.iter().chain(c).copied().collect();
        let t = Tensor::new(seq.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let lp: Vec<Vec<f32>> =
            candle_nn::ops::log_softmax(&m.decoder.forward(&t, None).unwrap(), D::Minus1)
                .unwrap()
                .get(0)
                .unwrap()
                .to_vec2()
                .unwrap();
        let want: f64 = c
            .iter()
            .enumerate()
            .map(|(j, &tok)| lp[prompt.len() - 1 + j][tok as usize] as f64)
            .sum();
        assert!((g - want).abs() < 1e-4, "{g} vs {want}");
    }
}
