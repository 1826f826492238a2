//! Whether a session's bounds can reach its target at all. A step raises at most
//! `max_layers` layers by `max_step`, so on a model of many layers (Qwen3-8B: 252) the
//! default bounds add well under 1% a step, and 60 iterations end short of 45% however
//! well the agent chooses.

use super::Machine;

/// What the session's bounds can add at best, when that falls short of the target in the
/// iterations left and would in the default number of iterations too: said before the run
/// spends them. None when the target is within reach, when only a short `--max-iters`
/// keeps it out (a trial), or before the baseline names the layers.
pub fn shortfall(m: &Machine) -> Option<String> {
    let total: f64 = m.layers.iter().map(|l| l.params as f64).sum();
    if total <= 0.0 {
        return None;
    }
    let o = &m.opts;
    let b = &o.bounds;
    let mut sizes: Vec<u64> = m.layers.iter().map(|l| l.params).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let largest: f64 = sizes.iter().take(b.max_layers).map(|&p| p as f64).sum();
    let per_step = largest * b.max_step / total;
    let now = m.global_sparsity();
    let need = o.target - now;
    let left = (o.max_iters + 1).saturating_sub(m.iteration.max(1));
    let best = (now + per_step * left as f64).min(b.max_layer_sparsity);
    // A short trial (`--max-iters 2`) is not the bounds' fault: only bounds that fall short
    // even in the default number of iterations are.
    let horizon = left.max(super::LoopOptions::default().max_iters);
    let bounds_allow = (now + per_step * horizon as f64).min(b.max_layer_sparsity);
    if need <= 0.0 || bounds_allow + 1e-9 >= o.target {
        return None;
    }
    // One decimal, or the few more a value needs to read right (0.25% per iteration read
    // 0.2%, beside 2 iterations reaching 0.5%).
    let pct = |x: f64| format!("{}%", crate::agent::percent::percent(x, None, false));
    let needed = match per_step > 0.0 && o.target <= b.max_layer_sparsity {
        true => format!(
            "; reaching it takes at least {} iterations, or more layers or a larger step per iteration",
            (need / per_step).ceil() as u64
        ),
        false => format!(
            "; no layer may pass loop.bounds.max_layer_sparsity {}",
            b.max_layer_sparsity
        ),
    };
    Some(format!(
        "the target sparsity {} is out of reach: an iteration raises at most {} layers by {} (--max-layers, --max-step), {} of the prunable weights even on the largest layers, so the {left} iteration(s) left of --max-iters {} reach at most {} from {}{needed}",
        pct(o.target),
        b.max_layers,
        b.max_step,
        pct(per_step),
        o.max_iters,
        pct(best),
        pct(now),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Event, LayerInfo, LoopOptions};

    fn machine(blocks: usize, opts: LoopOptions) -> Machine {
        let mut m = Machine::new("m", opts);
        let mut layers = Vec::new();
        for b in 0..blocks {
            for (k, params) in [
                ("q", 16u64),
                ("k", 4),
                ("v", 4),
                ("o", 16),
                ("gate", 48),
                ("up", 48),
                ("down", 48),
            ] {
                layers.push(LayerInfo {
                    name: format!("model.layers.{b}.{k}"),
                    params,
                    sparsity: 0.0,
                });
            }
        }
        let eval = crate::session::Evaluation {
            ppl: 3.0,
            dataset: "d".into(),
            seqlen: 8,
            windows: 1,
            dtype: "f32".into(),
            probe: None,
            seconds: 0.1,
            from_block: None,
        };
        m.start();
        m.handle(&Event::Baseline { layers, eval }).unwrap();
        m
    }

    #[test]
    fn many_layers_and_the_default_bounds_fall_short() {
        // Qwen3-8B's proportions (q and o 4x k and v, the MLP's 3x q), 36 blocks of 184
        // params: the 8 largest (48 each) raised by 0.1 add
        // 38.4 / 6624 = 0.58% a step, 34.8% in 60 iterations.
        let m = machine(36, LoopOptions::default());
        let said = shortfall(&m).expect("out of reach");
        assert!(said.starts_with("the target sparsity 45.0% is out of reach: an iteration raises at most 8 layers by 0.1"), "{said}");
        assert!(said.contains("0.6% of the prunable weights"), "{said}");
        assert!(
            said.contains(
                "the 60 iteration(s) left of --max-iters 60 reach at most 34.8% from 0.0%"
            ),
            "{said}"
        );
        assert!(
            said.ends_with(
                "takes at least 78 iterations, or more layers or a larger step per iteration"
            ),
            "{said}"
        );
        // Eight blocks of these shapes reach it: 2.6% a step.
        assert_eq!(shortfall(&machine(8, LoopOptions::default())), None);
        // A short trial is not warned about where the bounds would reach it in 60.
        let o = LoopOptions {
            max_iters: 2,
            ..Default::default()
        };
        assert_eq!(shortfall(&machine(8, o.clone())), None);
        // But the 36-block model is, with this run's own numbers.
        let said = shortfall(&machine(36, o)).expect("out of reach");
        assert!(
            said.contains("the 2 iteration(s) left of --max-iters 2 reach at most 1.2%"),
            "{said}"
        );
        // A target above the per-layer ceiling is out of reach however long it runs.
        let mut o = LoopOptions {
            max_iters: 1000,
            ..Default::default()
        };
        o.bounds.max_layer_sparsity = 0.4;
        let said = shortfall(&machine(8, o)).expect("above the ceiling");
        assert!(
            said.ends_with("reach at most 40.0% from 0.0%; no layer may pass loop.bounds.max_layer_sparsity 0.4"),
            "{said}"
        );
        // A step of 0.25% reads as such (it read 0.2%, beside 2 steps reaching 0.5%).
        let mut o = LoopOptions {
            max_iters: 2,
            ..Default::default()
        };
        o.bounds.max_step = 0.0025;
        let said = shortfall(&machine(1, o)).expect("out of reach");
        assert!(
            said.contains("0.25% of the prunable weights")
                && said.contains("reach at most 0.5% from 0.0%"),
            "{said}"
        );
        // The 36-block model reaches it with enough iterations.
        let o = LoopOptions {
            max_iters: 78,
            ..Default::default()
        };
        assert_eq!(shortfall(&machine(36, o)), None);
    }
}
