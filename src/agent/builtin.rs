//! The built-in policy: offline and deterministic. It prunes the layers the profile calls
//! least sensitive, shrinks its step after rollbacks and avoids the layers that caused them;
//! a layer's own step stays halved for every rollback it took part in, so a failed step is
//! never proposed again unchanged once the avoidance ends.
//! Its reasoning and reflections are generated from the numbers it used.

use anyhow::{bail, Result};

use super::{
    context::LayerChange, parse::frac, Agent, AgentContext, AgentReply, LayerRow, LayerTarget,
    Proposal, StepOutcome, Usage,
};

/// How many recent iterations a rollback keeps shrinking the step and blocking its layers.
const MEMORY: usize = 3;
const MIN_STEP: f64 = 0.0125;
/// Smallest increase when trimming towards the target: masks move in whole weights per
/// row, so a smaller one could change nothing and stall the session below its target.
const MIN_TRIM: f64 = 0.02;
/// No layer goes further than this above the target: the profile ranks layers, but a
/// tiny model loses more from a few very sparse layers than it gains (measured on the
/// bundled model: capped at 0.9, the session lost to uniform Wanda).
const SPREAD: f64 = 0.15;

#[derive(Debug, Default, Clone)]
pub struct BuiltinAgent;

fn combined(r: &LayerRow) -> f64 {
    r.z_s + r.z_g
}

/// Round down to 4 decimals so the proposal reads well and never exceeds its bound.
fn floor4(x: f64) -> f64 {
    (x * 1e4 + 1e-9).floor() / 1e4
}

fn ceil4(x: f64) -> f64 {
    (x * 1e4 - 1e-9).ceil() / 1e4
}

/// A step that prunes at least one more weight in every row, from the sparsities a layer's
/// mask has had: each is a whole number of weights over the row's width, so the smallest
/// width that makes all of them whole is the width or a divisor of it (exact once the
/// values pin it). None before the mask first moves, or for rows wider than 2^16 (where
/// every step the policy takes moves whole weights).
fn granule(seen: &[f64]) -> Option<f64> {
    let seen: Vec<f64> = seen.iter().copied().filter(|v| *v > 1e-12).collect();
    let whole = |c: u32| {
        (seen.iter()).all(|v| (v * f64::from(c) - (v * f64::from(c)).round()).abs() < 1e-6)
    };
    match seen.is_empty() {
        true => None,
        false => (1..=1u32 << 16)
            .find(|&c| whole(c))
            .map(|c| 1.0 / f64::from(c)),
    }
}

struct Plan {
    step: f64,
    /// Rolled-back steps each layer took part in, over the whole session.
    rollbacks_of: std::collections::HashMap<String, i32>,
    /// Steps in which each layer's mask did not move: its step was under one weight per
    /// row (a narrow layer whose step rollbacks halved). Each doubles its step.
    stuck_of: std::collections::HashMap<String, i32>,
    /// The last accepted step changed no sparsity (increase too small for whole weights).
    stalled: bool,
    recent_rollbacks: usize,
    avoided: Vec<String>,
}

fn plan(ctx: &AgentContext) -> Plan {
    let recent: Vec<&StepOutcome> = ctx
        .history
        .iter()
        .filter(|o| !o.accepted && o.iteration + MEMORY > ctx.iteration)
        .collect();
    let step = (ctx.bounds.max_step * 0.5f64.powi(recent.len() as i32)).max(MIN_STEP);
    // A layer whose mask did not move in a rolled-back step did not cause it.
    let moved = |c: &&LayerChange| c.to > c.from + 1e-12;
    let mut avoided: Vec<String> = (recent.iter().flat_map(|o| &o.changes))
        .filter(moved)
        .map(|c| c.name.clone())
        .collect();
    avoided.sort();
    avoided.dedup();
    let stalled = ctx
        .history
        .last()
        .is_some_and(|o| o.accepted && o.changes.iter().all(|c| c.to <= c.from + 1e-12));
    let mut rollbacks_of = std::collections::HashMap::new();
    for c in ctx
        .history
        .iter()
        .filter(|o| !o.accepted)
        .flat_map(|o| &o.changes)
        .filter(moved)
    {
        *rollbacks_of.entry(c.name.clone()).or_insert(0) += 1;
    }
    let mut stuck_of = std::collections::HashMap::new();
    // A reviewer's edit may have asked for the small step itself.
    let proposed = ctx.history.iter().filter(|o| !o.edited);
    for c in (proposed.flat_map(|o| &o.changes)).filter(|c| !moved(c)) {
        *stuck_of.entry(c.name.clone()).or_insert(0) += 1;
    }
    Plan {
        stalled,
        rollbacks_of,
        stuck_of,
        step: step.min(ctx.bounds.max_step),
        recent_rollbacks: recent.len(),
        avoided,
    }
}

impl BuiltinAgent {
    pub fn decide(ctx: &AgentContext) -> Result<Proposal> {
        let p = plan(ctx);
        let b = &ctx.bounds;
        let cap = b.max_layer_sparsity.min(ctx.target + SPREAD);
        let total: f64 = ctx.layers.iter().map(|l| l.params as f64).sum();
        let mut need = (ctx.target - ctx.global_sparsity).max(0.0) * total;
        let mut rows: Vec<&LayerRow> = ctx
            .layers
            .iter()
            // Layers with less room than a meaningful step are done.
            .filter(|l| l.sparsity + MIN_TRIM <= cap && !p.avoided.contains(&l.name))
            .collect();
        rows.sort_by(|a, b| {
            combined(a)
                .total_cmp(&combined(b))
                .then(a.name.cmp(&b.name))
        });
        let mut layers = Vec::new();
        let mut used = Vec::new();
        let (mut backed_off, mut retired, mut narrow) = (0usize, Vec::new(), Vec::new());
        // A --max-step below our smallest step is the smallest (every layer was retired at
        // 0.01, and the session failed with "no headroom" while every layer was dense).
        let smallest = MIN_STEP.min(b.max_step);
        for r in rows {
            if layers.len() >= b.max_layers || need <= 0.0 {
                break;
            }
            // A layer whose own step would fall below the smallest one is left alone: it
            // took part in rollbacks even at the smallest step.
            let count =
                |m: &std::collections::HashMap<String, i32>| m.get(&r.name).copied().unwrap_or(0);
            let stuck = count(&p.stuck_of);
            // A layer whose mask did not move in an earlier step (its rows narrower than
            // 1 / step: it was proposed unchanged every iteration until --max-iters) takes
            // at least one weight per row from then on, once a move shows its rows' width;
            // until then its step doubles for each step it did not move.
            let granule = (stuck > 0)
                .then(|| {
                    // The sparsities its mask has had in the steps so far, and has now.
                    let changes = ctx.history.iter().flat_map(|o| &o.changes);
                    let seen: Vec<f64> = (changes.filter(|c| c.name == r.name))
                        .flat_map(|c| [c.from, c.to])
                        .chain([r.sparsity])
                        .collect();
                    granule(&seen)
                })
                .flatten();
            let grow = match granule {
                None => 2f64.powi(stuck),
                Some(_) => 1.0,
            };
            let own = p.step * 0.5f64.powi(count(&p.rollbacks_of)) * grow;
            // Its last step that did not move was (about) half of this one.
            if grow > 1.0 && own / 2.0 >= b.max_step - 1e-12 {
                narrow.push(r.name.as_str());
                continue;
            }
            if own < smallest - 1e-12 {
                retired.push(r.name.as_str());
                continue;
            }
            let own = own.min(b.max_step);
            backed_off += usize::from(own < p.step);
            let room = (cap - r.sparsity).min(own);
            // Do not overshoot the target by more than the layer's rounding.
            let trimmed = (need / r.params as f64 + 1e-4).max(MIN_TRIM);
            // A layer once stuck takes its whole step: trimmed, it could stick again.
            let inc = if p.stalled || stuck > 0 {
                room
            } else {
                room.min(trimmed)
            };
            let mut to = floor4(r.sparsity + inc);
            if let Some(g) = granule {
                let next = ((r.sparsity / g).round() + 1.0) * g;
                if to < next - 1e-9 {
                    let up = ceil4(next);
                    if up - r.sparsity > b.max_step + 1e-9 || up > cap + 1e-9 {
                        narrow.push(r.name.as_str());
                        continue;
                    }
                    to = up;
                }
            }
            if to <= r.sparsity + 1e-6 {
                continue;
            }
            need -= (to - r.sparsity) * r.params as f64;
            used.push((r, to));
            layers.push(LayerTarget {
                name: r.name.clone(),
                sparsity: to,
            });
        }
        if layers.is_empty() {
            // Why each layer was passed over (it read "no headroom" when rollbacks had
            // retired them all).
            let full = (ctx.layers.iter())
                .filter(|l| l.sparsity + MIN_TRIM > cap && !p.avoided.contains(&l.name))
                .count();
            let parts = [
                (
                    full,
                    format!("within {MIN_TRIM} of the ceiling {}", frac(cap)),
                ),
                (p.avoided.len(), "avoided after the last rollbacks".into()),
                (retired.len(), "left alone after too many rollbacks".into()),
                (
                    narrow.len(),
                    format!(
                        "unable to move a whole weight per row within max_step {}",
                        frac(b.max_step)
                    ),
                ),
            ];
            let why: Vec<String> = (parts.iter())
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
            bail!("builtin: no layer can take a step ({})", why.join("; "));
        }
        let after = ctx.global_sparsity
            + used
                .iter()
                .map(|(r, to)| (to - r.sparsity) * r.params as f64)
                .sum::<f64>()
                / total.max(1.0);
        let zs: Vec<f64> = used.iter().map(|(r, _)| combined(r)).collect();
        let (first, last) = (zs.first().copied(), zs.last().copied());
        let (first, last) = (first.unwrap_or(0.0), last.unwrap_or(0.0));
        // One layer has one score: "the 1 layer ... (from 0.03 to 0.03) that have" read badly.
        let chosen = match layers.len() {
            1 => format!("1 layer with the lowest combined sensitivity z_s + z_g ({first:.2}) that has"),
            n => format!(
                "{n} layers with the lowest combined sensitivity z_s + z_g (from {first:.2} to {last:.2}) that have"
            ),
        };
        let mut reasoning = format!(
            "Chose the {chosen} headroom below {} (target + {SPREAD}); step up to +{} per layer",
            frac(cap),
            frac(floor4(p.step)),
        );
        if p.recent_rollbacks > 0 {
            reasoning += &format!(
                " (halved {} time(s) after rollbacks in the last {MEMORY} iterations; avoiding {})",
                p.recent_rollbacks,
                p.avoided.join(", ")
            );
        }
        if backed_off > 0 || !retired.is_empty() {
            reasoning += &format!(
                "; {backed_off} chosen layer(s) take steps halved once per earlier rollback they were in"
            );
            if !retired.is_empty() {
                reasoning += &format!(
                    ", and these are left alone after too many rollbacks: {}",
                    retired.join(", ")
                );
            }
        }
        if !narrow.is_empty() {
            reasoning += &format!(
                "; left alone as their masks did not move even at the largest step (under one weight per row): {}",
                narrow.join(", ")
            );
        }
        reasoning += &format!(
            ". Expected global sparsity {} -> {} of target {}.",
            frac(floor4(ctx.global_sparsity)),
            frac(floor4(after)),
            frac(ctx.target)
        );
        if let Some(f) = &ctx.feedback {
            reasoning += &format!(
                " Reviewer feedback noted: \"{f}\" (the built-in policy cannot act on free text)."
            );
        }
        Ok(Proposal { layers, reasoning })
    }

    pub fn reflection(ctx: &AgentContext, o: &StepOutcome) -> String {
        let n = o.changes.len().max(1) as f64;
        let mean_inc = o.changes.iter().map(|c| c.to - c.from).sum::<f64>() / n;
        let delta = o.delta();
        // Four decimals: a change of 0.001% read "3.114 -> 3.113" at three.
        let mut s = format!(
            "Iteration {}: pruned {} layer{} by +{:.3} on average; perplexity {:.4} -> {:.4} ({}%), {}. Global sparsity {:.3} of target {}.",
            o.iteration,
            o.changes.len(),
            if o.changes.len() == 1 { "" } else { "s" },
            mean_inc,
            o.ppl_before,
            o.ppl_after,
            super::percent::percent(delta, Some(ctx.threshold), true),
            if o.accepted { "accepted" } else { "rolled back" },
            o.global_sparsity_after,
            frac(ctx.target),
        );
        if !o.accepted {
            s += " Next I halve the step and leave these layers alone for a few iterations; their own steps stay halved after that.";
        } else if delta > ctx.threshold / 2.0 {
            s += " The cost used more than half the threshold, so the next steps stay cautious.";
        } else {
            s += " The cost was well inside the threshold; the low-sensitivity layers still have headroom.";
        }
        s
    }
}

impl Agent for BuiltinAgent {
    fn propose(&mut self, ctx: &AgentContext) -> Result<AgentReply<Proposal>> {
        Ok(AgentReply {
            value: BuiltinAgent::decide(ctx)?,
            prompt: None,
            raw: None,
            usage: Usage::default(),
        })
    }

    fn reflect(
        &mut self,
        ctx: &AgentContext,
        _proposal: &Proposal,
        outcome: &StepOutcome,
    ) -> Result<AgentReply<String>> {
        Ok(AgentReply {
            value: BuiltinAgent::reflection(ctx, outcome),
            prompt: None,
            raw: None,
            usage: Usage::default(),
        })
    }

    fn name(&self) -> String {
        "builtin".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::context::LayerChange;

    fn rollback(iteration: usize, names: &[&str]) -> StepOutcome {
        StepOutcome {
            iteration,
            changes: names
                .iter()
                .map(|n| LayerChange {
                    name: n.to_string(),
                    from: 0.3,
                    to: 0.4,
                })
                .collect(),
            ppl_before: 10.0,
            ppl_after: 11.0,
            accepted: false,
            global_sparsity_after: 0.25,
            note: "rolled back: +10.0% > 5.0%".into(),
            edited: false,
            probe_before: None,
            probe_after: None,
            undone_to: None,
        }
    }

    /// Long after its rollbacks a layer's own step stays halved once per rollback, and a
    /// layer whose step would fall below the smallest is left alone; the rest take the
    /// full step.
    #[test]
    fn a_layer_keeps_its_backoff_after_the_memory_expires() {
        let (q, k, v) = (
            "model.layers.0.self_attn.q_proj",
            "model.layers.0.self_attn.k_proj",
            "model.layers.0.self_attn.v_proj",
        );
        let mut ctx = AgentContext::example();
        ctx.iteration = 20;
        ctx.history = vec![
            rollback(2, &[q, k]),
            rollback(4, &[k]),
            rollback(6, &[k]),
            rollback(8, &[k]),
        ];
        let to =
            |p: &Proposal, name: &str| p.layers.iter().find(|l| l.name == name).map(|l| l.sparsity);
        let p = BuiltinAgent::decide(&ctx).unwrap();
        assert!((to(&p, q).unwrap() - 0.35).abs() < 1e-9, "{p:?}");
        assert_eq!(to(&p, k), None, "{p:?}");
        assert!((to(&p, v).unwrap() - 0.4).abs() < 1e-9, "{p:?}");
        assert!(
            p.reasoning.contains("1 chosen layer(s) take steps halved")
                && p.reasoning
                    .contains(&format!("left alone after too many rollbacks: {k}")),
            "{}",
            p.reasoning
        );
        // Without those rollbacks both take the full step.
        ctx.history.clear();
        let p = BuiltinAgent::decide(&ctx).unwrap();
        assert!((to(&p, q).unwrap() - 0.4).abs() < 1e-9, "{p:?}");
        assert!((to(&p, k).unwrap() - 0.4).abs() < 1e-9, "{p:?}");
    }

    /// A max step below the smallest step the policy backs off to is the step: every layer
    /// takes it (all were left alone, and the agent failed with "no layer has headroom").
    #[test]
    fn a_max_step_below_the_smallest_step_is_taken() {
        let mut ctx = AgentContext::example();
        ctx.bounds.max_step = 0.01;
        let p = BuiltinAgent::decide(&ctx).unwrap();
        assert!(!p.layers.is_empty(), "{p:?}");
        for l in &p.layers {
            let from = ctx
                .layers
                .iter()
                .find(|r| r.name == l.name)
                .unwrap()
                .sparsity;
            assert!((l.sparsity - from - 0.01).abs() < 1e-9, "{l:?} from {from}");
        }
        assert!(!p.reasoning.contains("left alone"), "{}", p.reasoning);
    }

    /// The policy against Wanda's rounding on rows of `cols` weights (`floor(t * cols)`
    /// per row, never fewer than before), with the steps of `rolled_back` rolled back:
    /// (steps whose masks all stayed put, global sparsity at the end, the last error).
    fn simulate(cols: f64, rolled_back: &[usize], iters: usize) -> (usize, f64, String) {
        let mut ctx = AgentContext::example();
        ctx.history.clear();
        for l in &mut ctx.layers {
            l.sparsity = 0.0;
        }
        ctx.global_sparsity = 0.0;
        let (mut still, mut failures) = (0, 0);
        for it in 1..=iters {
            ctx.iteration = it;
            // As the session's loop: a failure skips the iteration, three in a row end it.
            let p = match BuiltinAgent::decide(&ctx) {
                Ok(p) => p,
                Err(e) if failures == 2 => return (still, ctx.global_sparsity, e.to_string()),
                Err(_) => {
                    failures += 1;
                    continue;
                }
            };
            failures = 0;
            let changes: Vec<LayerChange> = (p.layers.iter())
                .map(|t| {
                    let from = ctx.layer(&t.name).unwrap().sparsity;
                    let to = ((t.sparsity * cols + 1e-9).floor() / cols).max(from);
                    LayerChange {
                        name: t.name.clone(),
                        from,
                        to,
                    }
                })
                .collect();
            still += usize::from(changes.iter().all(|c| c.to == c.from));
            let accepted = !rolled_back.contains(&it);
            if accepted {
                for c in &changes {
                    ctx.layers
                        .iter_mut()
                        .find(|l| l.name == c.name)
                        .unwrap()
                        .sparsity = c.to;
                }
                let n = ctx.layers.len() as f64;
                ctx.global_sparsity = ctx.layers.iter().map(|l| l.sparsity).sum::<f64>() / n;
            }
            let mut o = rollback(it, &[]);
            o.changes = changes;
            o.accepted = accepted;
            ctx.history.push(o);
            if ctx.global_sparsity >= ctx.target {
                return (still, ctx.global_sparsity, String::new());
            }
        }
        (still, ctx.global_sparsity, "max iterations".into())
    }

    // Rows of 32 weights move by 0.03125 at least. Once rollbacks had halved the steps
    // below that, the policy proposed the same targets every iteration and the guard
    // accepted the empty steps until --max-iters (found by tests/user_files_random).
    #[test]
    fn steps_narrower_than_one_weight_per_row_do_not_repeat() {
        // Three rollbacks in a row halve the step to 0.0125.
        let rolled_back = [2, 3, 4];
        let (still, reached, end) = simulate(32.0, &rolled_back, 400);
        assert!(still <= 14, "{still} steps moved nothing ({end})");
        assert!(reached >= 0.45, "{reached} ({end}), {still} still steps");
        // Rows as wide as the bundled model's never stall.
        assert_eq!(simulate(128.0, &rolled_back, 400).0, 0);
        // Rows narrower than 1 / max_step cannot move at all: the policy says so and stops.
        let (still, reached, end) = simulate(5.0, &rolled_back, 400);
        assert!(still <= 2 * 14 && reached == 0.0, "{still} {reached}");
        assert!(
            end.contains("unable to move a whole weight per row"),
            "{end}"
        );
    }

    // One layer is "1 layer" (it read "Chose the 1 layers"), with one score, that "has".
    #[test]
    fn the_reasoning_counts_its_layers_in_words() {
        let mut ctx = AgentContext::example();
        for (n, want, agrees) in [
            (1, "Chose the 1 layer with", ") that has headroom"),
            (2, "Chose the 2 layers with", ") that have headroom"),
        ] {
            ctx.bounds.max_layers = n;
            let p = BuiltinAgent::decide(&ctx).unwrap();
            assert_eq!(p.layers.len(), n, "{p:?}");
            assert!(p.reasoning.starts_with(want), "{}", p.reasoning);
            assert!(p.reasoning.contains(agrees), "{}", p.reasoning);
            // One layer has one score, not a range "from 0.03 to 0.03".
            assert_eq!(p.reasoning.contains("(from "), n > 1, "{}", p.reasoning);
        }
    }
}
