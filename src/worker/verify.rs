//! `replay --verify`: re-execute every compute step of a session file on the recorded
//! agent and human inputs, and compare with what was recorded.

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::Path;

use super::Engine;
use crate::session::consistency::{difference, same_derived};
use crate::session::file::SessionLog;
use crate::session::{Effect, Evaluation, Event, Machine};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub seq: u64,
    pub what: String,
    pub recorded: f64,
    pub recomputed: f64,
    /// Largest relative difference over every number compared for this event.
    pub max_rel_diff: f64,
    pub ok: bool,
}

impl Check {
    /// "what: recorded A, recomputed B", as the error lines quote a check.
    fn numbers(&self) -> String {
        format!(
            "{}: recorded {}, recomputed {}",
            self.what, self.recorded, self.recomputed
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Guard verdicts and the finish, recomputed from the recorded inputs.
    pub derived_checked: usize,
    pub derived_mismatches: Vec<String>,
    pub bit_exact: bool,
    pub ok: bool,
    /// The largest relative difference a check accepted.
    pub tolerance: f64,
}

/// Probe accuracies must agree too (both absent, or equal within `rel`).
/// The knowledge probe's accuracy, recorded and recomputed, and how far apart: a probe
/// over another number of items differs by its items, and one on one side only shows NaN
/// for the other.
fn see_probe(w: &mut Worst, at: &str, a: &Evaluation, b: &Evaluation) {
    let acc = |p: &Option<crate::session::ProbeScore>| p.as_ref().map_or(f64::NAN, |p| p.accuracy);
    match (&a.probe, &b.probe) {
        (None, None) => {}
        (Some(x), Some(y)) if x.items != y.items => {
            let (na, nb) = (x.items as f64, y.items as f64);
            w.see(|| format!("{at} probe items"), na, nb, f64::INFINITY);
        }
        (x, y) => {
            let (pa, pb) = (acc(x), acc(y));
            let d = if x.is_some() && y.is_some() {
                rel(pa, pb)
            } else {
                f64::INFINITY
            };
            w.see(|| format!("{at} probe accuracy"), pa, pb, d);
        }
    }
}

/// The recorded protocol of a perplexity (seqlen, windows, dtype) must be the one the
/// re-execution ran: `export` publishes it beside the number. The dataset path is a label
/// (a relocated session reads a moved copy); its windows are held to the header's hash.
fn see_protocol(w: &mut Worst, at: &str, a: &Evaluation, b: &Evaluation) {
    let differ = |same: bool| if same { 0.0 } else { f64::INFINITY };
    let (sa, sb) = (a.seqlen as f64, b.seqlen as f64);
    w.see(|| format!("{at} seqlen"), sa, sb, differ(sa == sb));
    let (na, nb) = (a.windows as f64, b.windows as f64);
    w.see(|| format!("{at} windows"), na, nb, differ(na == nb));
    if a.dtype != b.dtype {
        let what = || format!("{at} dtype (recorded {}, recomputed {})", a.dtype, b.dtype);
        w.see(what, f64::NAN, f64::NAN, f64::INFINITY);
    }
}

/// The relative difference accepted by default between a recorded number and its
/// re-measure (`replay --verify`, `export`, a resume's check).
pub const DEFAULT_TOLERANCE: f64 = 1e-6;

/// The relative difference of a recorded number and its re-measure, as every check uses it.
pub fn rel(a: f64, b: f64) -> f64 {
    diff_over(a, b, 1e-300)
}

/// A z-score's difference on the scale of 1: z-scores are standardised, and one near zero
/// would turn last-bit drift of the scores behind it into a large relative difference.
fn rel_z(a: f64, b: f64) -> f64 {
    diff_over(a, b, 1.0)
}

/// |a − b| / max(|a|, |b|, floor), 0 when equal (infinities and NaN against NaN included),
/// and infinite when only one is NaN: NaN compares as no difference otherwise.
fn diff_over(a: f64, b: f64, floor: f64) -> f64 {
    if a == b || (a.is_nan() && b.is_nan()) {
        0.0
    } else if a.is_nan() || b.is_nan() {
        f64::INFINITY
    } else {
        (a - b).abs() / a.abs().max(b.abs()).max(floor)
    }
}

/// Re-execute `log` on `engine` (loaded from the same model and options); `progress` hears
/// (events done, events in the file) before each event and once at the end.
pub fn verify(
    log: &SessionLog,
    engine: &mut Engine,
    tol: f64,
    path: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report> {
    let o = &log.header.options;
    let mut m = Machine::new(&o.model, o.loop_opts.clone());
    let mut pending: VecDeque<Effect> = m.start().into();
    let mut derived: VecDeque<Event> = VecDeque::new();
    let mut checks = Vec::new();
    let (mut derived_checked, mut derived_mismatches) = (0, Vec::new());
    let mut none = |_: usize, _: usize| {};
    let total = log.entries.len();
    for (done, e) in log.entries.iter().enumerate() {
        progress(done, total);
        let ev = &e.event;
        if !ev.is_input() {
            derived_checked += 1;
            match derived.pop_front() {
                Some(d) if same_derived(&d, ev) => {}
                Some(d) => derived_mismatches.push(format!(
                    "event {} ({}): {}",
                    e.seq,
                    ev.kind(),
                    difference(ev, &d, "recomputed")
                )),
                None => derived_mismatches.push(format!(
                    "event {}: recorded `{}` was not produced on replay",
                    e.seq,
                    ev.summary()
                )),
            }
            continue;
        }
        if ev.is_compute() {
            let fresh = loop {
                let Some(eff) = pending.pop_front() else {
                    let cause = likely_cause(&checks, &derived_mismatches);
                    bail!(
                        "{}: event {} ({}) was not requested by the loop{cause}",
                        path.display(),
                        e.seq,
                        ev.kind()
                    );
                };
                match eff {
                    Effect::Baseline => break engine.baseline(&mut none)?,
                    Effect::Profile => break engine.profile(m.iteration)?,
                    Effect::Apply(step) => break engine.apply(m.iteration, &step, &mut none)?,
                    Effect::Commit { index } => engine.commit(index),
                    Effect::Restore { index } => engine.restore(index)?,
                    _ => {}
                }
            };
            checks.push(compare(e.seq, ev, &fresh, tol)?);
        }
        let effects = m.handle(ev).map_err(|msg| {
            let cause = likely_cause(&checks, &derived_mismatches);
            anyhow!("{}: event {}: {msg}{cause}", path.display(), e.seq)
        })?;
        for eff in effects {
            match eff {
                Effect::Log(d) => derived.push_back(d),
                other => pending.push_back(other),
            }
        }
    }
    progress(total, total);
    let bit_exact = checks.iter().all(|c| c.max_rel_diff == 0.0);
    let ok = checks.iter().all(|c| c.ok) && derived_mismatches.is_empty();
    Ok(Report {
        checks,
        derived_checked,
        derived_mismatches,
        bit_exact,
        ok,
        tolerance: tol,
    })
}

/// The first number that differs, or else the first verdict, for the one error line (the
/// table above it may be long).
pub fn first_mismatch(r: &Report) -> String {
    match r.checks.iter().find(|c| !c.ok) {
        Some(c) => format!(", first at event {} ({})", c.seq, c.numbers()),
        None => r
            .derived_mismatches
            .first()
            .map(|d| format!(", first at {d}"))
            .unwrap_or_default(),
    }
}

/// Where the loop parts from the recording, a recorded number the re-execution disagreed
/// with (the last one), or else a recorded verdict it did not give (the first), is the
/// likely cause: the recorded value may have led the loop elsewhere.
fn likely_cause(checks: &[Check], derived_mismatches: &[String]) -> String {
    let led = "and the recorded value may have led the loop elsewhere";
    if let Some(c) = checks.iter().rfind(|c| !c.ok) {
        return format!(": event {} did not match ({}), {led}", c.seq, c.numbers());
    }
    derived_mismatches
        .first()
        .map(|d| format!(": {d}, {led}"))
        .unwrap_or_default()
}

/// The number that differs most among those compared for one event, by name.
struct Worst {
    what: String,
    recorded: f64,
    recomputed: f64,
    diff: f64,
}

impl Worst {
    /// Start from the headline number (shown when nothing else differs more).
    fn new(what: String, recorded: f64, recomputed: f64, diff: f64) -> Self {
        Worst {
            what,
            recorded,
            recomputed,
            diff,
        }
    }

    fn see(&mut self, what: impl FnOnce() -> String, a: f64, b: f64, diff: f64) {
        if diff > self.diff {
            *self = Worst {
                what: what(),
                recorded: a,
                recomputed: b,
                diff,
            };
        }
    }
}

fn compare(seq: u64, recorded: &Event, fresh: &Event, tol: f64) -> Result<Check> {
    let nan = f64::NAN;
    let worst = match (recorded, fresh) {
        (
            Event::Baseline {
                layers: la,
                eval: ea,
            },
            Event::Baseline {
                layers: lb,
                eval: eb,
            },
        ) => {
            let mut w = Worst::new("baseline ppl".into(), ea.ppl, eb.ppl, rel(ea.ppl, eb.ppl));
            see_probe(&mut w, "baseline", ea, eb);
            see_protocol(&mut w, "baseline", ea, eb);
            let same_layers = la.len() == lb.len()
                && la
                    .iter()
                    .zip(lb)
                    .all(|(x, y)| x.name == y.name && x.params == y.params);
            if !same_layers {
                w.see(
                    || "baseline layers (names or sizes)".into(),
                    nan,
                    nan,
                    f64::INFINITY,
                );
            }
            w
        }
        (
            Event::Profiled {
                iteration,
                rows: ra,
                ..
            },
            Event::Profiled { rows: rb, .. },
        ) => {
            let s = |r: &[crate::agent::LayerRow]| r.iter().map(|l| l.s).sum::<f64>();
            let it = *iteration;
            // The sum is only a headline: every row's numbers are compared below.
            let mut w = Worst::new(format!("iter {it} profile (sum of s)"), s(ra), s(rb), 0.0);
            if ra.len() != rb.len() {
                let (a, b) = (ra.len() as f64, rb.len() as f64);
                w.see(|| format!("iter {it} profile rows"), a, b, f64::INFINITY);
            }
            for (x, y) in ra.iter().zip(rb) {
                if x.name != y.name {
                    w.see(
                        || format!("iter {it} row {} named", x.name),
                        nan,
                        nan,
                        f64::INFINITY,
                    );
                }
                let fields = [
                    ("s", x.s, y.s, rel(x.s, y.s)),
                    ("g", x.g, y.g, rel(x.g, y.g)),
                    (
                        "sparsity",
                        x.sparsity,
                        y.sparsity,
                        rel(x.sparsity, y.sparsity),
                    ),
                    ("z_s", x.z_s, y.z_s, rel_z(x.z_s, y.z_s)),
                    ("z_g", x.z_g, y.z_g, rel_z(x.z_g, y.z_g)),
                ];
                for (field, a, b, d) in fields {
                    w.see(|| format!("iter {it} {} {field}", x.name), a, b, d);
                }
            }
            w
        }
        (
            Event::Evaluated {
                iteration,
                applied: pa,
                eval: ea,
            },
            Event::Evaluated {
                applied: pb,
                eval: eb,
                ..
            },
        ) => {
            let it = *iteration;
            let mut w = Worst::new(
                format!("iter {it} ppl"),
                ea.ppl,
                eb.ppl,
                rel(ea.ppl, eb.ppl),
            );
            see_probe(&mut w, &format!("iter {it}"), ea, eb);
            see_protocol(&mut w, &format!("iter {it}"), ea, eb);
            if pa.len() != pb.len() {
                let (a, b) = (pa.len() as f64, pb.len() as f64);
                w.see(|| format!("iter {it} applied layers"), a, b, f64::INFINITY);
            }
            for (k, v) in pa {
                let (u, d) = pb
                    .get(k)
                    .map_or((nan, f64::INFINITY), |u| (*u, rel(*v, *u)));
                w.see(|| format!("iter {it} {k} applied sparsity"), *v, u, d);
            }
            w
        }
        _ => bail!(
            "event {seq}: recomputed a `{}` for a recorded `{}`",
            fresh.kind(),
            recorded.kind()
        ),
    };
    Ok(Check {
        seq,
        what: worst.what,
        recorded: worst.recorded,
        recomputed: worst.recomputed,
        max_rel_diff: worst.diff,
        ok: worst.diff <= tol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A z-score near zero that moved by 1e-7 is drift, not a different profile; one of
    // size 2 that moved by 0.1% is not.
    #[test]
    fn z_scores_are_compared_on_the_scale_of_one() {
        assert!((rel(1e-4, 1e-4 + 1e-7) - 1e-3).abs() < 1e-6);
        assert!(rel_z(1e-4, 1e-4 + 1e-7) < 1.1e-7);
        assert!((rel_z(2.0, 2.002) - 0.002 / 2.002).abs() < 1e-12);
        assert_eq!(rel_z(-0.5, -0.5), 0.0);
    }

    // The loop's own error ("invalid proposal", "arrived in phase ...") at a later event
    // carries the recorded number or verdict that sent it there.
    #[test]
    fn the_likely_cause_is_the_last_mismatch_or_the_first_verdict() {
        let check = |seq, ok| Check {
            seq,
            what: format!("iter {seq} ppl"),
            recorded: 2.0,
            recomputed: 3.0,
            max_rel_diff: if ok { 0.0 } else { 0.5 },
            ok,
        };
        let verdicts = vec!["event 9 (guard): accepted: recorded true, recomputed false".into()];
        assert_eq!(likely_cause(&[check(1, true)], &[]), "");
        let c = likely_cause(
            &[check(1, false), check(2, false), check(3, true)],
            &verdicts,
        );
        assert!(
            c.starts_with(": event 2 did not match (iter 2 ppl: recorded 2, recomputed 3)"),
            "{c}"
        );
        let c = likely_cause(&[check(1, true)], &verdicts);
        assert!(c.starts_with(": event 9 (guard): accepted"), "{c}");
        assert!(c.ends_with("may have led the loop elsewhere"), "{c}");
    }
}
