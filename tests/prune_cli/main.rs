//! `arborist prune` and `arborist profile` end to end: export round trip, atomic output,
//! refusals, sequential calibration, gradients against finite differences.

#[path = "../common/mod.rs"]
mod common;
mod export;
mod gradients;
mod masks;
mod options;
mod structured;

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

fn load(name: &str) -> (LoadedModel, Windows) {
    let m = LoadedModel::load(&fx(name), &Device::Cpu, DType::F32).unwrap();
    let ids = m
        .encode(&read_text(std::path::Path::new(&fx("eval.txt"))).unwrap())
        .unwrap();
    let w = Windows::sequential(&ids, 32, Some(4), "eval.txt").unwrap();
    (m, w)
}
