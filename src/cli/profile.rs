//! `arborist profile`: the per-layer sensitivity profile.

use super::outln;
use anyhow::{bail, Result};
use clap::Args;

use super::{calib::CalibArgs, ModelArgs};
use crate::profile::{GradAverage, GradSpec};

#[derive(Args, Debug)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub calib: CalibArgs,
    /// Windows (the first ones of the calibration set) for the gradient score [default: 4].
    #[arg(long)]
    pub grad_windows: Option<usize>,
    /// G per weight: mean-of-abs (the mean over the windows of |dL/dW|, the paper's) or
    /// abs-of-mean (|mean dL/dW|, Arborist's before 2026-11-30).
    #[arg(long, default_value_t = GradAverage::MeanOfAbs)]
    pub grad_average: GradAverage,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Print the profile as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ProfileArgs) -> Result<()> {
    if a.calib.calib.is_none() {
        bail!("profile needs calibration text: pass --calib FILE");
    }
    super::at_least_one("batch", a.batch, "a forward pass needs at least one window")?;
    super::seqlen_ok(a.calib.seqlen)?;
    a.calib.check()?;
    let grad_windows = a
        .grad_windows
        .unwrap_or(crate::profile::DEFAULT_GRAD_WINDOWS);
    super::at_least_one(
        "grad-windows",
        grad_windows,
        "the gradient score needs at least one window",
    )?;
    let m = a.model.load()?;
    // NaN weights would give a profile of nulls.
    let zeros = m.refuse_non_finite()?;
    m.warn_if_pruned_before(zeros);
    let w = a.calib.windows(&m)?.expect("checked above");
    let name = a.calib.calib.as_ref().unwrap().display().to_string();
    crate::profile::warn_if_fewer_grad_windows(&w, a.grad_windows);
    let grads = GradSpec {
        windows: grad_windows,
        average: a.grad_average,
    };
    let (mut p, _) = crate::profile::compute_with_stats(
        &m.decoder,
        &w,
        grads,
        a.batch,
        &name,
        &mut super::progress,
    )?;
    let (sample, seed) = a.calib.sample_and_seed();
    (p.protocol.calib_sample, p.protocol.seed) = (Some(sample), seed);
    if a.json {
        outln!("{}", serde_json::to_string(&p)?)?;
        return Ok(());
    }
    outln!(
        "{:<36} {:>6} {:>11} {:>11} {:>11} {:>11} {:>7} {:>7}",
        "layer",
        "sparse",
        "s (p10)",
        "s mean",
        "g",
        "mean|G|",
        "z_s",
        "z_g"
    )?;
    for l in &p.layers {
        outln!(
            "{:<36} {:>6.3} {:>11.4e} {:>11.4e} {:>11.4e} {:>11.4e} {:>7.2} {:>7.2}",
            l.name,
            l.sparsity,
            l.s,
            l.s_mean,
            l.g,
            l.g_mean_abs,
            l.z_s,
            l.z_g
        )?;
    }
    // On stdout with the table: a table saved without its protocol says nothing.
    outln!(
        "protocol: {} windows of {} tokens from {} ({}{}; {} for gradients, G {}), {}",
        p.protocol.calib_windows,
        p.protocol.seqlen,
        p.protocol.calib,
        p.protocol.calib_sample.unwrap_or_default(),
        p.protocol
            .seed
            .map(|s| format!(", seed {s}"))
            .unwrap_or_default(),
        p.protocol.grad_windows,
        p.protocol.grad_average,
        p.protocol.dtype
    )?;
    Ok(())
}
