//! Everything that happens in a session, as plain data. Inputs drive the state machine;
//! derived events (guard verdicts, the finish) are what it concluded. The session file is
//! this stream, so replaying the inputs rebuilds every state exactly.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::agent::{AgentReply, LayerRow, LayerTarget, Proposal};
use crate::session::Machine;

/// A linear layer as the session sees it: HF module path, weight count, current sparsity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub name: String,
    pub params: u64,
    pub sparsity: f64,
}

/// Accuracy on the optional knowledge probe (a small FreebaseQA or MMLU set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeScore {
    pub kind: String,
    pub accuracy: f64,
    pub items: usize,
}

/// One perplexity pass with its protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub ppl: f64,
    pub dataset: String,
    pub seqlen: usize,
    pub windows: usize,
    pub dtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeScore>,
    /// Wall time; informative only, never compared on verify.
    pub seconds: f64,
    /// The block the perplexity pass started from (earlier blocks came from the cache);
    /// informative only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_block: Option<usize>,
}

impl Evaluation {
    /// What the perplexity was measured on: `eval.txt, seqlen 512, 16 windows, f32`.
    pub fn protocol(&self) -> String {
        format!(
            "{}, seqlen {}, {} windows, {}",
            self.dataset, self.seqlen, self.windows, self.dtype
        )
    }
}

/// What the reviewer (human, script or auto-approve) decided about a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    Approve,
    /// The agent's proposal with the human's changes: the full new layer list.
    Edit {
        layers: Vec<LayerTarget>,
    },
    /// A proposal written from scratch by the human.
    Override {
        layers: Vec<LayerTarget>,
        reasoning: String,
    },
    /// Sent back to the agent with feedback for its next prompt.
    Reject {
        feedback: String,
    },
    /// Nothing is pruned this iteration (e.g. the agent failed and nobody overrode it).
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    TargetReached,
    MaxIterations,
    UserStop,
    AgentFailed,
}

impl StopReason {
    /// The reason in words, for every place that shows it (log lines, the TUI, stderr).
    pub fn words(&self) -> &'static str {
        match self {
            StopReason::TargetReached => "target reached",
            StopReason::MaxIterations => "max iterations",
            StopReason::UserStop => "stopped by you",
            StopReason::AgentFailed => "the agent failed three times in a row",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    // ---- inputs ----
    /// The dense (or starting) model: its layers and evaluation.
    Baseline {
        layers: Vec<LayerInfo>,
        eval: Evaluation,
    },
    /// A fresh sensitivity profile of the current checkpoint.
    Profiled {
        iteration: usize,
        rows: Vec<LayerRow>,
        seconds: f64,
        /// The block the calibration statistics were recomputed from (0: all; older
        /// sessions: absent); informative only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        calib_from_block: Option<usize>,
    },
    Proposed {
        iteration: usize,
        agent: String,
        reply: AgentReply<Proposal>,
    },
    /// The agent gave no valid proposal (after its repair round) or could not be reached.
    AgentFailed {
        iteration: usize,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        raw: Option<String>,
        #[serde(default)]
        usage: crate::agent::Usage,
    },
    Decided {
        iteration: usize,
        /// human, script or auto.
        by: String,
        decision: Decision,
    },
    /// Masks applied (actual per-layer sparsities) and the model evaluated.
    Evaluated {
        iteration: usize,
        applied: BTreeMap<String, f64>,
        eval: Evaluation,
    },
    Reflected {
        iteration: usize,
        reply: AgentReply<String>,
    },
    /// The user asked to stop (takes effect at the next safe point).
    StopRequested { by: String },
    /// The user restored an earlier checkpoint.
    RollbackTo { checkpoint: usize, by: String },
    /// `--resume` of a session that the agent's failures ended: an outage is not a verdict,
    /// so the session asks the agent again from where it stopped answering.
    Continued { iteration: usize },
    // ---- derived ----
    Guard {
        iteration: usize,
        ppl_before: f64,
        ppl_after: f64,
        delta: f64,
        accepted: bool,
        global_sparsity: f64,
        note: String,
    },
    Finished {
        reason: StopReason,
        iteration: usize,
        global_sparsity: f64,
        ppl: f64,
    },
}

impl Event {
    /// Inputs are replayed; derived events are recomputed and compared.
    pub fn is_input(&self) -> bool {
        !matches!(self, Event::Guard { .. } | Event::Finished { .. })
    }

    /// Inputs that come from compute (re-executed by `replay --verify`).
    pub fn is_compute(&self) -> bool {
        matches!(
            self,
            Event::Baseline { .. } | Event::Profiled { .. } | Event::Evaluated { .. }
        )
    }

    /// The iteration the event belongs to, if it names one (the baseline's is 0).
    pub fn iteration(&self) -> Option<usize> {
        match self {
            Event::Profiled { iteration, .. }
            | Event::Proposed { iteration, .. }
            | Event::AgentFailed { iteration, .. }
            | Event::Decided { iteration, .. }
            | Event::Evaluated { iteration, .. }
            | Event::Reflected { iteration, .. }
            | Event::Guard { iteration, .. }
            | Event::Continued { iteration }
            | Event::Finished { iteration, .. } => Some(*iteration),
            Event::Baseline { .. } => Some(0),
            Event::StopRequested { .. } | Event::RollbackTo { .. } => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Event::Baseline { .. } => "baseline",
            Event::Profiled { .. } => "profiled",
            Event::Proposed { .. } => "proposed",
            Event::AgentFailed { .. } => "agent_failed",
            Event::Decided { .. } => "decided",
            Event::Evaluated { .. } => "evaluated",
            Event::Reflected { .. } => "reflected",
            Event::StopRequested { .. } => "stop_requested",
            Event::RollbackTo { .. } => "rollback_to",
            Event::Continued { .. } => "continued",
            Event::Guard { .. } => "guard",
            Event::Finished { .. } => "finished",
        }
    }
}

/// Text that came from an agent, a server or a reviewer, as one bounded line.
fn line(s: &str) -> String {
    crate::agent::text::one_line(s, crate::agent::text::MAX_SHOWN)
}

/// `NAME→0.1, NAME→0.2`.
fn targets(layers: &[LayerTarget]) -> String {
    layers
        .iter()
        .map(|l| {
            format!(
                "{}→{}",
                crate::agent::text::one_line(&l.name, 120),
                crate::agent::parse::frac(l.sparsity)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a reviewer's edit differs from the agent's proposal, a layer each: `NAME A→B`,
/// `NAME added →B`, `NAME dropped (A)`, in the order of the edit, dropped ones last.
pub fn edit_changes(proposed: &[LayerTarget], edited: &[LayerTarget]) -> Vec<String> {
    use crate::agent::parse::frac;
    let name = |n: &str| crate::agent::text::one_line(n, 120);
    let was = |n: &str| proposed.iter().find(|l| l.name == n).map(|l| l.sparsity);
    let mut out: Vec<String> = edited
        .iter()
        .filter_map(|l| match was(&l.name) {
            Some(a) if a == l.sparsity => None,
            Some(a) => Some(format!(
                "{} {}→{}",
                name(&l.name),
                frac(a),
                frac(l.sparsity)
            )),
            None => Some(format!("{} added →{}", name(&l.name), frac(l.sparsity))),
        })
        .collect();
    out.extend(
        (proposed.iter())
            .filter(|p| !edited.iter().any(|l| l.name == p.name))
            .map(|p| format!("{} dropped ({})", name(&p.name), frac(p.sparsity))),
    );
    out
}

/// What an edit changed, against the proposal it edited: `1 of 8 layer(s) changed: NAME
/// 0.1→0.05` (or `no layer changed`).
pub fn edit_detail(proposed: &[LayerTarget], edited: &[LayerTarget]) -> String {
    let changes = edit_changes(proposed, edited);
    match changes.len() {
        0 => format!("no layer changed ({} layers)", edited.len()),
        n => format!(
            "{n} of {} layer(s) changed: {}",
            proposed.len()
                + edited
                    .iter()
                    .filter(|l| !proposed.iter().any(|p| p.name == l.name))
                    .count(),
            changes.join(", ")
        ),
    }
}

/// The agent's latest proposal for `iteration` among `before` (the events so far).
pub fn proposal_of(before: &[Event], iteration: usize) -> Option<&[LayerTarget]> {
    before.iter().rev().find_map(|e| match e {
        Event::Proposed {
            iteration: i,
            reply,
            ..
        } if *i == iteration => Some(&reply.value.layers[..]),
        _ => None,
    })
}

impl Event {
    /// `summary`, with a reviewer's edit told against the agent's proposal among `before`
    /// (the events preceding this one): which layers changed, and from what.
    pub fn summary_in(&self, before: &[Event]) -> String {
        match self {
            // The finish's perplexity with its protocol, which the baseline's event holds.
            Event::Finished { .. } => match before.iter().find_map(|e| match e {
                Event::Baseline { eval, .. } => Some(eval.protocol()),
                _ => None,
            }) {
                Some(p) => format!("{} ({p})", self.summary()),
                None => self.summary(),
            },
            Event::Decided {
                iteration,
                by,
                decision: Decision::Edit { layers },
            } => match proposal_of(before, *iteration) {
                Some(p) => format!(
                    "iter {iteration}: edited by {by}: {}",
                    edit_detail(p, layers)
                ),
                None => self.summary(),
            },
            _ => self.summary(),
        }
    }

    /// The runner's own decision on `p` (`by: auto`, auto-approve and headless): approved,
    /// or skipped when it is empty because the agent gave no valid proposal.
    pub fn auto_decided(iteration: usize, p: &Proposal) -> Event {
        Event::Decided {
            iteration,
            by: "auto".into(),
            decision: if p.layers.is_empty() {
                Decision::Skip
            } else {
                Decision::Approve
            },
        }
    }

    /// `summary_in`, with what machine `m` (fed at least up to this event) knows besides:
    /// the sparsity a rolled-back step reached, which its guard's line does not record.
    pub fn summary_at(&self, before: &[Event], m: &Machine) -> String {
        let line = self.summary_in(before);
        match self {
            Event::Guard {
                iteration,
                accepted: false,
                ..
            } => match m.reached_sparsity(*iteration) {
                Some(s) => format!("{line} (the step reached {s:.4})"),
                None => line,
            },
            _ => line,
        }
    }

    /// The iteration was skipped because the agent gave no valid proposal (recorded by
    /// the runner, `by: auto`).
    pub fn skipped_for_the_agent(&self) -> bool {
        matches!(self, Event::Decided { by, decision: Decision::Skip, .. } if by == "auto")
    }

    /// A warning when the server's token count says it did not read this exchange's
    /// prompt whole (`agent::unread`); None for other events.
    pub fn unread_prompt(&self) -> Option<String> {
        let (iteration, what, prompt, usage) = match self {
            Event::Proposed {
                iteration, reply, ..
            } => (iteration, "proposal", reply.prompt.as_ref()?, &reply.usage),
            Event::AgentFailed {
                iteration,
                prompt,
                usage,
                ..
            } => (iteration, "failed proposal", prompt.as_ref()?, usage),
            Event::Reflected { iteration, reply } => (
                iteration,
                "reflection",
                reply.prompt.as_ref()?,
                &reply.usage,
            ),
            _ => return None,
        };
        let why = crate::agent::unread::unread_prompt(prompt, usage.prompt_tokens)?;
        Some(format!("iter {iteration}, the agent's {what}: {why}"))
    }

    /// The reasoning behind a proposal or an override, on one line (for a printed
    /// timeline, under the event's summary); None where there is none.
    pub fn reasoning(&self) -> Option<String> {
        let r = match self {
            Event::Proposed { reply, .. } => &reply.value.reasoning,
            Event::Decided {
                decision: Decision::Override { reasoning, .. },
                ..
            } => reasoning,
            _ => return None,
        };
        (!r.trim().is_empty()).then(|| line(r))
    }

    /// One line for logs and the headless runner: text from outside (agent replies, server
    /// errors, layer names, feedback) has its control characters escaped and is cut short.
    pub fn summary(&self) -> String {
        match self {
            Event::Baseline { layers, eval } => format!(
                "baseline: {} linear layers, ppl {:.4} ({})",
                layers.len(),
                eval.ppl,
                eval.protocol()
            ),
            Event::Profiled {
                iteration, seconds, ..
            } => format!("iter {iteration}: profiled in {seconds:.1} s"),
            Event::Proposed {
                iteration,
                agent,
                reply,
            } => format!(
                "iter {iteration}: {agent} proposes {} layer(s): {}",
                reply.value.layers.len(),
                targets(&reply.value.layers)
            ),
            Event::AgentFailed {
                iteration, error, ..
            } => {
                format!("iter {iteration}: agent failed: {}", line(error))
            }
            Event::Decided {
                iteration,
                by,
                decision,
            } => {
                let what = match decision {
                    Decision::Approve => "approved".to_string(),
                    Decision::Edit { layers } => format!("edited ({} layers)", layers.len()),
                    Decision::Override { layers, .. } => {
                        return format!(
                            "iter {iteration}: overridden by {by}: {}",
                            targets(layers)
                        );
                    }
                    Decision::Reject { feedback } => format!("rejected: \"{}\"", line(feedback)),
                    Decision::Skip => "skipped".to_string(),
                };
                format!("iter {iteration}: {what} by {by}")
            }
            Event::Evaluated {
                iteration, eval, ..
            } => format!(
                "iter {iteration}: evaluated ppl {:.4}{} in {:.1} s",
                eval.ppl,
                eval.probe.as_ref().map_or(String::new(), |p| format!(
                    ", {} {:.1}% of {}",
                    p.kind,
                    100.0 * p.accuracy,
                    p.items
                )),
                eval.seconds
            ),
            Event::Reflected { iteration, reply } => {
                format!("iter {iteration}: reflection: {}", line(&reply.value))
            }
            Event::StopRequested { by } => format!("stop requested by {by}"),
            Event::RollbackTo { checkpoint, by } => {
                format!("rolled back to checkpoint {checkpoint} by {by}")
            }
            Event::Continued { iteration } => {
                format!("iter {iteration}: continued after the agent's failures")
            }
            // A rollback's sparsity is the restored checkpoint's, not the step's.
            Event::Guard {
                iteration,
                global_sparsity,
                note,
                accepted,
                ..
            } => format!(
                "iter {iteration}: {}; global sparsity {}{global_sparsity:.4}",
                line(note),
                if *accepted { "" } else { "stays " }
            ),
            Event::Finished {
                reason,
                global_sparsity,
                ppl,
                ..
            } => {
                format!(
                    "finished ({}): global sparsity {global_sparsity:.4}, ppl {ppl:.4}",
                    reason.words()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Usage;

    fn reply<T>(value: T) -> AgentReply<T> {
        AgentReply {
            value,
            prompt: None,
            raw: None,
            usage: Usage::default(),
        }
    }

    /// An edit is told against the agent's proposal of its iteration: changed, added and
    /// dropped layers with their values ("edited (8 layers)" hid that one of 8 changed).
    #[test]
    fn an_edit_names_what_it_changed() {
        let t = |name: &str, sparsity| LayerTarget {
            name: name.into(),
            sparsity,
        };
        let proposal = |iteration, layers: Vec<LayerTarget>| Event::Proposed {
            iteration,
            agent: "builtin".into(),
            reply: reply(Proposal {
                layers,
                reasoning: String::new(),
            }),
        };
        let edit = |layers| Event::Decided {
            iteration: 2,
            by: "human".into(),
            decision: Decision::Edit { layers },
        };
        let before = [
            proposal(1, vec![t("a", 0.3)]),
            proposal(2, vec![t("a", 0.1), t("b", 0.1), t("c", 0.2)]),
        ];
        let e = edit(vec![t("a", 0.1), t("b", 0.05), t("d", 0.07)]);
        assert_eq!(
            e.summary_in(&before),
            "iter 2: edited by human: 3 of 4 layer(s) changed: b 0.1→0.05, d added →0.07, c dropped (0.2)"
        );
        // The latest proposal of the iteration counts (one after a rejection).
        let again = [
            before[1].clone(),
            proposal(2, vec![t("b", 0.05), t("d", 0.07)]),
        ];
        assert_eq!(
            edit(vec![t("b", 0.05), t("d", 0.07)]).summary_in(&again),
            "iter 2: edited by human: no layer changed (2 layers)"
        );
        // Without the proposal (another iteration's only) the count alone, as before.
        assert_eq!(
            e.summary_in(&before[..1]),
            "iter 2: edited (3 layers) by human"
        );
        assert_eq!(e.summary(), "iter 2: edited (3 layers) by human");
    }

    // A probe's score is in the evaluation's log line, not only in the summary and file.
    #[test]
    fn an_evaluation_line_shows_its_probe() {
        let mut eval = Evaluation {
            ppl: 3.25,
            dataset: "eval.txt".into(),
            seqlen: 64,
            windows: 2,
            dtype: "f32".into(),
            probe: None,
            seconds: 0.5,
            from_block: None,
        };
        let line = |eval: &Evaluation| {
            Event::Evaluated {
                iteration: 4,
                applied: BTreeMap::new(),
                eval: eval.clone(),
            }
            .summary()
        };
        assert_eq!(line(&eval), "iter 4: evaluated ppl 3.2500 in 0.5 s");
        eval.probe = Some(ProbeScore {
            kind: "mmlu".into(),
            accuracy: 0.9375,
            items: 16,
        });
        assert_eq!(
            line(&eval),
            "iter 4: evaluated ppl 3.2500, mmlu 93.8% of 16 in 0.5 s"
        );
    }

    // Text from an agent, a server or a reviewer cannot break a log line or send terminal
    // escapes: every summary is one line, its control characters escaped, long text cut.
    #[test]
    fn summaries_of_outside_text_are_one_escaped_line() {
        let nasty = "first\nsecond\u{1b}[2J\r";
        let layer = LayerTarget {
            name: format!("model.layers.0.mlp.up_proj\n{}", "x".repeat(300)),
            sparsity: 0.25,
        };
        let events = [
            Event::Reflected {
                iteration: 3,
                reply: reply(format!("{nasty}{}", "y".repeat(600))),
            },
            Event::Proposed {
                iteration: 3,
                agent: "openai".into(),
                reply: reply(Proposal {
                    layers: vec![layer],
                    reasoning: nasty.into(),
                }),
            },
            Event::AgentFailed {
                iteration: 3,
                error: nasty.into(),
                prompt: None,
                raw: None,
                usage: Usage::default(),
            },
            Event::Decided {
                iteration: 3,
                by: "human".into(),
                decision: Decision::Reject {
                    feedback: nasty.into(),
                },
            },
        ];
        for ev in &events {
            let s = ev.summary();
            assert!(!s.chars().any(char::is_control), "{s:?}");
            assert!(s.chars().count() < 700, "{} chars: {s}", s.chars().count());
        }
        let reflected = events[0].summary();
        assert!(
            reflected.contains("first\\nsecond\\u{1b}[2J\\r"),
            "{reflected}"
        );
        assert!(reflected.ends_with("…(+117 chars)"), "{reflected}");
        let proposed = events[1].summary();
        assert!(proposed.contains("up_proj\\nxxx"), "{proposed}");
        assert!(proposed.contains("…(+207 chars)→0.25"), "{proposed}");
        let reasoning = events[1].reasoning().unwrap();
        assert!(!reasoning.chars().any(char::is_control), "{reasoning:?}");
        assert!(reasoning.contains("first\\nsecond"), "{reasoning}");
        assert_eq!(events[0].reasoning(), None);
    }

    // The finish's perplexity says what it was measured on, from the baseline's event.
    #[test]
    fn the_finish_names_its_perplexitys_protocol() {
        let eval = Evaluation {
            ppl: 3.1,
            dataset: "synthetic".into(),
            seqlen: 128,
            windows: 8,
            dtype: "f32".into(),
            probe: None,
            seconds: 0.1,
            from_block: None,
        };
        let baseline = Event::Baseline {
            layers: vec![],
            eval,
        };
        let done = Event::Finished {
            reason: StopReason::MaxIterations,
            iteration: 2,
            global_sparsity: 0.25,
            ppl: 3.2,
        };
        assert_eq!(
            done.summary_in(&[baseline]),
            "finished (max iterations): global sparsity 0.2500, ppl 3.2000 (synthetic, seqlen 128, 8 windows, f32)"
        );
        assert_eq!(
            done.summary_in(&[]),
            "finished (max iterations): global sparsity 0.2500, ppl 3.2000"
        );
        // A rollback's global sparsity is the restored checkpoint's: said as staying (it
        // read as the cost of the step that was undone).
        let guard = |accepted| Event::Guard {
            iteration: 13,
            ppl_before: 3.0,
            ppl_after: 3.02,
            delta: 0.0074,
            accepted,
            global_sparsity: 0.2116,
            note: "rolled back: +0.7% > 0.3%".into(),
        };
        assert_eq!(
            guard(false).summary(),
            "iter 13: rolled back: +0.7% > 0.3%; global sparsity stays 0.2116"
        );
        assert!(guard(true).summary().ends_with("; global sparsity 0.2116"));
    }

    // An override is told with its layers (it said only how many), its reasoning apart.
    #[test]
    fn an_override_names_its_layers_and_keeps_its_reasoning() {
        let t = |n: &str, s: f64| LayerTarget {
            name: n.into(),
            sparsity: s,
        };
        let decided = |reasoning: &str| Event::Decided {
            iteration: 4,
            by: "human".into(),
            decision: Decision::Override {
                layers: vec![t("a", 0.1), t("b", 0.25)],
                reasoning: reasoning.into(),
            },
        };
        let e = decided("keep attention whole");
        assert_eq!(e.summary(), "iter 4: overridden by human: a→0.1, b→0.25");
        assert_eq!(e.reasoning().as_deref(), Some("keep attention whole"));
        assert_eq!(decided("  ").reasoning(), None);
    }
}
