//! The loop's state machine on synthetic events: no model, no IO.

use arborist::agent::{builtin::BuiltinAgent, AgentReply, LayerRow, LayerTarget, Proposal, Usage};
use arborist::model::LinearKind;
use arborist::session::{
    Decision, Effect, Evaluation, Event, LayerInfo, LoopOptions, Machine, Phase, StopReason,
};
use std::collections::BTreeMap;

fn layers(blocks: usize) -> Vec<LayerInfo> {
    (0..blocks)
        .flat_map(|b| {
            LinearKind::ALL.iter().map(move |k| LayerInfo {
                name: format!("model.layers.{b}.{}", k.path()),
                params: if k.short().len() > 1 { 300 } else { 100 },
                sparsity: 0.0,
            })
        })
        .collect()
}

fn eval(ppl: f64) -> Evaluation {
    Evaluation {
        ppl,
        dataset: "synthetic".into(),
        seqlen: 8,
        windows: 1,
        dtype: "f32".into(),
        probe: None,
        seconds: 0.0,
        from_block: None,
    }
}

fn rows(m: &Machine) -> Vec<LayerRow> {
    m.layers
        .iter()
        .enumerate()
        .map(|(i, l)| LayerRow {
            name: l.name.clone(),
            block: i / 7,
            kind: LinearKind::ALL[i % 7].short().into(),
            s: 1.0 + i as f64,
            g: 2.0 + (i % 5) as f64,
            z_s: (i as f64 - 7.0) / 4.0,
            z_g: ((i % 5) as f64 - 2.0) / 2.0,
            sparsity: 0.0,
            params: l.params,
        })
        .collect()
}

fn reply<T>(value: T) -> AgentReply<T> {
    AgentReply {
        value,
        prompt: None,
        raw: None,
        usage: Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            cost: None,
        },
    }
}

/// A machine past baseline and the first profile, waiting for a proposal.
/// The agent proposes model.layers.0.mlp.down_proj at 0.1 in iteration 1.
fn propose_down0(m: &mut Machine, reasoning: &str) {
    let p = Proposal {
        layers: vec![LayerTarget {
            name: DOWN0.into(),
            sparsity: 0.1,
        }],
        reasoning: reasoning.into(),
    };
    m.handle(&Event::Proposed {
        iteration: 1,
        agent: "a".into(),
        reply: reply(p),
    })
    .unwrap();
}

// A dense perplexity that is not a positive finite number is refused at the baseline.
#[test]
fn a_baseline_perplexity_that_is_not_finite_is_refused() {
    for ppl in [f64::NAN, f64::INFINITY, 0.0] {
        let mut m = Machine::new("synthetic", LoopOptions::default());
        m.start();
        let err = m
            .handle(&Event::Baseline {
                layers: layers(2),
                eval: eval(ppl),
            })
            .unwrap_err();
        assert!(err.contains("dense model's perplexity is"), "{err}");
        assert_eq!(m.phase, Phase::Baseline);
    }
}

fn started(opts: LoopOptions) -> Machine {
    let mut m = Machine::new("synthetic", opts);
    assert_eq!(m.start(), vec![Effect::Baseline]);
    let fx = m
        .handle(&Event::Baseline {
            layers: layers(2),
            eval: eval(10.0),
        })
        .unwrap();
    assert_eq!(fx, vec![Effect::Profile]);
    let r = rows(&m);
    let fx = m
        .handle(&Event::Profiled {
            iteration: 1,
            rows: r,
            seconds: 0.0,
            calib_from_block: None,
        })
        .unwrap();
    assert!(matches!(fx[0], Effect::Propose(_)));
    m
}

fn step(m: &mut Machine, targets: &[(&str, f64)], ppl: f64) -> Vec<Effect> {
    let it = approve(m, targets);
    let applied: BTreeMap<String, f64> = targets.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    m.handle(&Event::Evaluated {
        iteration: it,
        applied,
        eval: eval(ppl),
    })
    .unwrap()
}

/// The agent proposes `targets` and the reviewer approves them; returns the iteration.
fn approve(m: &mut Machine, targets: &[(&str, f64)]) -> usize {
    let it = m.iteration;
    let p = Proposal {
        layers: targets
            .iter()
            .map(|(n, s)| LayerTarget {
                name: n.to_string(),
                sparsity: *s,
            })
            .collect(),
        reasoning: "test".into(),
    };
    m.handle(&Event::Proposed {
        iteration: it,
        agent: "test".into(),
        reply: reply(p),
    })
    .unwrap();
    m.handle(&Event::Decided {
        iteration: it,
        by: "test".into(),
        decision: Decision::Approve,
    })
    .unwrap();
    it
}

const DOWN0: &str = "model.layers.0.mlp.down_proj";
const UP1: &str = "model.layers.1.mlp.up_proj";

#[test]
fn accepted_step_commits_a_checkpoint_and_rollback_restores_it() {
    let mut m = started(LoopOptions::default());
    let fx = step(&mut m, &[(DOWN0, 0.1)], 10.4);
    assert!(fx.contains(&Effect::Commit { index: 1 }), "{fx:?}");
    assert_eq!(m.checkpoint().unwrap().sparsity[DOWN0], 0.1);
    m.handle(&Event::Reflected {
        iteration: 1,
        reply: reply("ok".into()),
    })
    .unwrap();
    // The accepted step triggers a fresh profile before the next proposal.
    assert_eq!(m.phase, Phase::Profiling);
    let r = rows(&m);
    m.handle(&Event::Profiled {
        iteration: 2,
        rows: r,
        seconds: 0.0,
        calib_from_block: None,
    })
    .unwrap();
    // +6% over the 10.4 checkpoint > 5%: rolled back to checkpoint 1.
    let fx = step(&mut m, &[(UP1, 0.1)], 10.4 * 1.06);
    assert!(fx.contains(&Effect::Restore { index: 1 }), "{fx:?}");
    assert_eq!(m.rollbacks, 1);
    assert_eq!(m.checkpoints.len(), 2);
    assert!(
        !m.checkpoint().unwrap().sparsity.contains_key(UP1)
            || m.checkpoint().unwrap().sparsity[UP1] == 0.0
    );
    let guard = fx.iter().find_map(|e| match e {
        Effect::Log(Event::Guard {
            accepted,
            ppl_before,
            ..
        }) => Some((*accepted, *ppl_before)),
        _ => None,
    });
    assert_eq!(guard, Some((false, 10.4)));
    // Its line says where the step had taken the model: 300 of 2600 weights' worth more.
    let line = fx
        .iter()
        .find_map(|e| match e {
            Effect::Log(g @ Event::Guard { .. }) => Some(g.summary_at(&[], &m)),
            _ => None,
        })
        .unwrap();
    assert!(
        line.ends_with("global sparsity stays 0.0115 (the step reached 0.0231)"),
        "{line}"
    );
    assert_eq!(m.reached_sparsity(1), Some(0.1 * 300.0 / 2600.0));
    assert_eq!(m.reached_sparsity(3), None);
    m.handle(&Event::Reflected {
        iteration: 2,
        reply: reply("too far".into()),
    })
    .unwrap();
    // After a rollback the profile is still valid: straight to the agent.
    assert_eq!(m.phase, Phase::Proposing);
    let ctx = m.context();
    assert_eq!(ctx.history.len(), 2);
    assert!(!ctx.history[1].accepted);
    assert_eq!(
        ctx.reflections,
        vec!["ok".to_string(), "too far".to_string()]
    );
    // And the steps they are about, for the prompt.
    assert_eq!(ctx.reflection_steps, vec![1, 2]);
    assert_eq!(m.usage.prompt_tokens, 40);
}

#[test]
fn threshold_is_inclusive_and_ceiling_limits_total_degradation() {
    let mut m = started(LoopOptions::default());
    let fx = step(&mut m, &[(DOWN0, 0.1)], 10.0 * 1.05);
    assert!(fx.contains(&Effect::Commit { index: 1 }));
    let mut m = started(LoopOptions {
        ceiling: Some(0.02),
        ..LoopOptions::default()
    });
    let fx = step(&mut m, &[(DOWN0, 0.1)], 10.3);
    assert!(fx.contains(&Effect::Restore { index: 0 }), "{fx:?}");
}

#[test]
fn reject_sends_feedback_to_the_next_prompt_and_is_then_cleared() {
    let mut m = started(LoopOptions::default());
    propose_down0(&mut m, "r");
    let fx = m
        .handle(&Event::Decided {
            iteration: 1,
            by: "human".into(),
            decision: Decision::Reject {
                feedback: "spare the MLPs".into(),
            },
        })
        .unwrap();
    match &fx[0] {
        Effect::Propose(ctx) => assert_eq!(ctx.feedback.as_deref(), Some("spare the MLPs")),
        other => panic!("expected a new proposal request, got {other:?}"),
    }
    assert_eq!(m.iteration, 1, "a rejection does not use up an iteration");
    step_from_proposing(&mut m, 10.1);
    assert_eq!(m.feedback(), None);
}

// A skip ends the iteration: the rejection's feedback is earlier feedback from then on.
// The next iteration's prompt said "rejected your last proposal ... propose again" of the
// re-ask the reviewer had skipped.
#[test]
fn a_skip_after_a_rejection_makes_its_feedback_earlier_feedback() {
    let mut m = started(LoopOptions::default());
    let decide = |m: &mut Machine, decision| {
        let by = "human".into();
        m.handle(&Event::Decided {
            iteration: 1,
            by,
            decision,
        })
        .unwrap();
    };
    propose_down0(&mut m, "r");
    let feedback = "spare the MLPs".into();
    decide(&mut m, Decision::Reject { feedback });
    propose_down0(&mut m, "again");
    decide(&mut m, Decision::Skip);
    assert_eq!((m.iteration, m.feedback()), (2, None));
    let ctx = m.context();
    assert_eq!(ctx.feedback, None);
    assert!(ctx.rejected.is_none(), "{:?}", ctx.rejected);
    assert_eq!(ctx.earlier_feedback.len(), 1);
    assert_eq!(ctx.earlier_feedback[0].feedback, "spare the MLPs");
}

// A reviewer's rollback answers an open rejection: the re-ask named a proposal made
// against the checkpoint the rollback left, so from then on its feedback is earlier
// feedback and the prompt shows no rejected proposal to "propose again" from.
#[test]
fn a_rollback_after_a_rejection_makes_its_feedback_earlier_feedback() {
    let mut m = started(LoopOptions::default());
    step_from_proposing(&mut m, 10.1);
    m.handle(&Event::Reflected {
        iteration: 1,
        reply: reply("r".into()),
    })
    .unwrap();
    let r = rows(&m);
    let profiled = |iteration| Event::Profiled {
        iteration,
        rows: r.clone(),
        seconds: 0.0,
        calib_from_block: None,
    };
    m.handle(&profiled(2)).unwrap();
    let propose = |m: &mut Machine| {
        let p = BuiltinAgent::decide(&m.context()).unwrap();
        let (iteration, agent) = (2, "builtin".into());
        m.handle(&Event::Proposed {
            iteration,
            agent,
            reply: reply(p),
        })
        .unwrap();
    };
    propose(&mut m);
    m.handle(&Event::Decided {
        iteration: 2,
        by: "human".into(),
        decision: Decision::Reject {
            feedback: "spare the MLPs".into(),
        },
    })
    .unwrap();
    propose(&mut m);
    assert_eq!(m.context().feedback.as_deref(), Some("spare the MLPs"));
    let fx = m
        .handle(&Event::RollbackTo {
            checkpoint: 0,
            by: "human".into(),
        })
        .unwrap();
    assert_eq!(fx, vec![Effect::Restore { index: 0 }, Effect::Profile]);
    assert_eq!(m.feedback(), None);
    m.handle(&profiled(2)).unwrap();
    let ctx = m.context();
    assert_eq!((ctx.iteration, ctx.feedback.as_deref()), (2, None));
    assert!(ctx.rejected.is_none(), "{:?}", ctx.rejected);
    assert_eq!(ctx.earlier_feedback.len(), 1);
    assert_eq!(ctx.earlier_feedback[0].feedback, "spare the MLPs");
}

fn step_from_proposing(m: &mut Machine, ppl: f64) {
    let it = m.iteration;
    let ctx = m.context();
    let p = BuiltinAgent::decide(&ctx).unwrap();
    let applied = p
        .layers
        .iter()
        .map(|l| (l.name.clone(), l.sparsity))
        .collect();
    m.handle(&Event::Proposed {
        iteration: it,
        agent: "builtin".into(),
        reply: reply(p),
    })
    .unwrap();
    m.handle(&Event::Decided {
        iteration: it,
        by: "auto".into(),
        decision: Decision::Approve,
    })
    .unwrap();
    m.handle(&Event::Evaluated {
        iteration: it,
        applied,
        eval: eval(ppl),
    })
    .unwrap();
}

#[test]
fn invalid_edits_are_refused_without_changing_state() {
    let mut m = started(LoopOptions::default());
    propose_down0(&mut m, "r");
    for bad in [
        vec![LayerTarget {
            name: "model.layers.9.mlp.up_proj".into(),
            sparsity: 0.1,
        }],
        vec![LayerTarget {
            name: DOWN0.into(),
            sparsity: 0.5,
        }],
    ] {
        let d = Decision::Edit { layers: bad };
        let err = m.check_decision(&d).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(m
            .handle(&Event::Decided {
                iteration: 1,
                by: "human".into(),
                decision: d,
            })
            .is_err());
        assert_eq!(m.phase, Phase::Reviewing);
    }
}

// A recorded proposal outside the rules (a hand-edited session file) is refused as a
// human's edit is, before it can be reviewed or applied.
#[test]
fn invalid_recorded_proposals_are_refused_without_changing_state() {
    let mut m = started(LoopOptions::default());
    for (bad, needle) in [
        (0.97, "max_layer_sparsity"),
        (0.5, "max_step"),
        (-0.1, "[0, 1)"),
    ] {
        let p = Proposal {
            layers: vec![LayerTarget {
                name: DOWN0.into(),
                sparsity: bad,
            }],
            reasoning: "edited by hand".into(),
        };
        let err = m
            .handle(&Event::Proposed {
                iteration: 1,
                agent: "builtin".into(),
                reply: reply(p),
            })
            .unwrap_err();
        assert!(
            err.contains("invalid proposal") && err.contains(needle),
            "{err}"
        );
        assert_eq!(m.phase, Phase::Proposing);
        assert!(m.proposal.is_none());
    }
}

#[test]
fn stops_at_target_max_iterations_user_stop_and_repeated_agent_failure() {
    // 2 blocks hold 2600 params; 0.1 of a 300-param layer is 0.0115 global.
    let mut m = started(LoopOptions {
        target: 0.011,
        ..LoopOptions::default()
    });
    step(&mut m, &[(DOWN0, 0.1)], 10.0);
    let fx = m
        .handle(&Event::Reflected {
            iteration: 1,
            reply: reply("r".into()),
        })
        .unwrap();
    assert!(
        fx.contains(&Effect::Finished(StopReason::TargetReached)),
        "{fx:?}"
    );

    let mut m = started(LoopOptions {
        max_iters: 1,
        ..LoopOptions::default()
    });
    step(&mut m, &[(DOWN0, 0.1)], 10.0);
    let fx = m
        .handle(&Event::Reflected {
            iteration: 1,
            reply: reply("r".into()),
        })
        .unwrap();
    assert!(fx.contains(&Effect::Finished(StopReason::MaxIterations)));

    // A stop during compute waits for the step to finish.
    let mut m = started(LoopOptions::default());
    let it = m.iteration;
    m.handle(&Event::Proposed {
        iteration: it,
        agent: "a".into(),
        reply: reply(Proposal {
            layers: vec![LayerTarget {
                name: DOWN0.into(),
                sparsity: 0.1,
            }],
            reasoning: String::new(),
        }),
    })
    .unwrap();
    m.handle(&Event::Decided {
        iteration: it,
        by: "h".into(),
        decision: Decision::Approve,
    })
    .unwrap();
    assert!(m
        .handle(&Event::StopRequested { by: "h".into() })
        .unwrap()
        .is_empty());
    m.handle(&Event::Evaluated {
        iteration: it,
        applied: [(DOWN0.to_string(), 0.1)].into(),
        eval: eval(10.0),
    })
    .unwrap();
    let fx = m
        .handle(&Event::Reflected {
            iteration: it,
            reply: reply("r".into()),
        })
        .unwrap();
    assert!(fx.contains(&Effect::Finished(StopReason::UserStop)));

    // A failed agent goes to the reviewer with an empty proposal; skipping moves on to
    // the next iteration; three failures in a row end the session.
    let mut m = started(LoopOptions::default());
    let fail = |it| Event::AgentFailed {
        iteration: it,
        error: "x".into(),
        prompt: None,
        raw: None,
        usage: Usage::default(),
    };
    let fx = m.handle(&fail(1)).unwrap();
    assert!(
        matches!(&fx[0], Effect::Review(p) if p.layers.is_empty()),
        "{fx:?}"
    );
    let fx = m
        .handle(&Event::Decided {
            iteration: 1,
            by: "auto".into(),
            decision: Decision::Skip,
        })
        .unwrap();
    assert_eq!(m.iteration, 2);
    assert!(matches!(fx[0], Effect::Propose(_)), "{fx:?}");
    m.handle(&fail(2)).unwrap();
    m.handle(&Event::Decided {
        iteration: 2,
        by: "auto".into(),
        decision: Decision::Approve, // approving nothing is a skip
    })
    .unwrap();
    assert_eq!(m.iteration, 3);
    assert!(m
        .handle(&fail(3))
        .unwrap()
        .contains(&Effect::Finished(StopReason::AgentFailed)));
}

#[test]
fn events_out_of_phase_or_iteration_are_errors() {
    let mut m = started(LoopOptions::default());
    let e = m.handle(&Event::Evaluated {
        iteration: 1,
        applied: BTreeMap::new(),
        eval: eval(1.0),
    });
    assert!(e.unwrap_err().contains("phase"));
    let e = m.handle(&Event::Proposed {
        iteration: 7,
        agent: "a".into(),
        reply: reply(Proposal {
            layers: vec![],
            reasoning: String::new(),
        }),
    });
    assert!(e.unwrap_err().contains("iteration 7"));
}

#[test]
fn rollback_to_an_earlier_checkpoint_truncates_and_reprofiles() {
    let mut m = started(LoopOptions::default());
    for (i, ppl) in [10.1, 10.2].into_iter().enumerate() {
        step_from_proposing(&mut m, ppl);
        m.handle(&Event::Reflected {
            iteration: i + 1,
            reply: reply("r".into()),
        })
        .unwrap();
        let r = rows(&m);
        m.handle(&Event::Profiled {
            iteration: i + 2,
            rows: r,
            seconds: 0.0,
            calib_from_block: None,
        })
        .unwrap();
    }
    assert_eq!(m.checkpoints.len(), 3);
    // Not later, not the latest, and not an index that would wrap around (a hand-edited
    // session once emptied the checkpoints this way and then panicked).
    for checkpoint in [5, 2, usize::MAX] {
        let err = m
            .handle(&Event::RollbackTo {
                checkpoint,
                by: "human".into(),
            })
            .unwrap_err();
        assert!(err.contains("is not an earlier checkpoint"), "{err}");
        assert_eq!(m.checkpoints.len(), 3);
    }
    assert_eq!((m.rollbacks, m.reviewer_rollbacks), (0, 0));
    let fx = m
        .handle(&Event::RollbackTo {
            checkpoint: 1,
            by: "human".into(),
        })
        .unwrap();
    assert_eq!(fx, vec![Effect::Restore { index: 1 }, Effect::Profile]);
    assert_eq!(m.checkpoints.len(), 2);
    // Counted apart from the guard's (the status bar and the summaries add them up).
    assert_eq!((m.rollbacks, m.reviewer_rollbacks), (0, 1));
    assert_eq!(m.checkpoint().unwrap().eval.ppl, 10.1);
    // The step it undid stays in the history, as accepted and undone: the next prompt
    // listed it as ACCEPTED among the steps the model has (code review, 2026-12-05).
    let undone: Vec<_> = m
        .history
        .iter()
        .map(|h| (h.accepted, h.undone_to))
        .collect();
    assert_eq!(undone, [(true, None), (true, Some(1))]);
    let s = arborist::agent::Templates::builtin()
        .step(&m.context())
        .unwrap();
    assert!(
        s.contains("(2, 0 rolled back, 1 undone by the human reviewer)"),
        "{s}"
    );
    assert!(
        s.contains("; later UNDONE: the human reviewer rolled the model back to the checkpoint of iteration 1."),
        "{s}"
    );
    assert_eq!(s.matches("later UNDONE").count(), 1, "{s}");
}

#[test]
fn builtin_agent_halves_its_step_and_avoids_layers_after_a_rollback() {
    let mut m = started(LoopOptions::default());
    let first = BuiltinAgent::decide(&m.context()).unwrap();
    assert!(first.layers.len() <= m.opts.bounds.max_layers);
    assert!(first.layers.iter().all(|l| l.sparsity <= 0.1 + 1e-12));
    step_from_proposing(&mut m, 20.0); // rolled back
    m.handle(&Event::Reflected {
        iteration: 1,
        reply: reply("r".into()),
    })
    .unwrap();
    let second = BuiltinAgent::decide(&m.context()).unwrap();
    assert!(!first.layers.is_empty() && !second.layers.is_empty());
    for l in &second.layers {
        assert!(l.sparsity <= 0.05 + 1e-12, "{l:?} exceeds the halved step");
        assert!(
            !first.layers.iter().any(|f| f.name == l.name),
            "{} caused the rollback and should be avoided",
            l.name
        );
    }
    assert!(
        second.reasoning.contains("halved 1 time"),
        "{}",
        second.reasoning
    );
}

#[test]
fn knowledge_probe_guard_rolls_back_on_an_accuracy_drop() {
    let with_probe = |ppl: f64, acc: f64| Evaluation {
        probe: Some(arborist::session::ProbeScore {
            kind: "freebaseqa".into(),
            accuracy: acc,
            items: 20,
        }),
        ..eval(ppl)
    };
    let mut m = Machine::new(
        "synthetic",
        LoopOptions {
            probe_max_drop: Some(0.05),
            ..LoopOptions::default()
        },
    );
    m.start();
    m.handle(&Event::Baseline {
        layers: layers(2),
        eval: with_probe(10.0, 0.80),
    })
    .unwrap();
    let r = rows(&m);
    m.handle(&Event::Profiled {
        iteration: 1,
        rows: r,
        seconds: 0.0,
        calib_from_block: None,
    })
    .unwrap();
    propose_down0(&mut m, "");
    m.handle(&Event::Decided {
        iteration: 1,
        by: "h".into(),
        decision: Decision::Approve,
    })
    .unwrap();
    // Perplexity is fine (+1%) but the probe loses 10 points > 5.
    let fx = m
        .handle(&Event::Evaluated {
            iteration: 1,
            applied: [(DOWN0.to_string(), 0.1)].into(),
            eval: with_probe(10.1, 0.70),
        })
        .unwrap();
    assert!(fx.contains(&Effect::Restore { index: 0 }), "{fx:?}");
    assert!(m.history[0].note.contains("probe"), "{}", m.history[0].note);
}

/// An override after an agent failure: the reflection is told the agent proposed nothing,
/// not the loop's error text as "Your reasoning" (a reject already did so; code review,
/// 2026-12-05).
#[test]
fn an_override_after_a_failure_gives_the_reflection_no_reasoning_of_the_loops() {
    use arborist::agent::Templates;
    let mut m = started(LoopOptions::default());
    m.handle(&Event::AgentFailed {
        iteration: 1,
        error: "openai: request to http://127.0.0.1:9/v1 failed: Connection refused".into(),
        prompt: None,
        raw: None,
        usage: Default::default(),
    })
    .unwrap();
    m.handle(&Event::Decided {
        iteration: 1,
        by: "human".into(),
        decision: Decision::Override {
            layers: vec![LayerTarget {
                name: DOWN0.into(),
                sparsity: 0.1,
            }],
            reasoning: "mine".into(),
        },
    })
    .unwrap();
    let applied = [(DOWN0.to_string(), 0.09375)].into_iter().collect();
    let fx = m
        .handle(&Event::Evaluated {
            iteration: 1,
            applied,
            eval: eval(10.1),
        })
        .unwrap();
    let job = fx
        .iter()
        .find_map(|e| match e {
            Effect::Reflect(b) => Some((**b).clone()),
            _ => None,
        })
        .expect("a reflection job");
    let (ctx, proposal, outcome) = job;
    assert_eq!(proposal.reasoning, "");
    let text = Templates::builtin()
        .reflection(&ctx, &proposal, &outcome)
        .unwrap();
    assert!(!text.contains("Connection refused"), "{text}");
}

/// The reflection's context is the one the step was proposed in (the "from" of each change
/// is the sparsity before the step), and "edited" comes from the reviewer's decision, not
/// from comparing the target with what Wanda applied (it rounds each row down).
#[test]
fn reflection_sees_the_state_before_the_step_and_edits_only_when_a_human_edited() {
    use arborist::agent::Templates;
    let t = Templates::builtin();
    let reflect = |fx: &[Effect]| {
        fx.iter()
            .find_map(|e| match e {
                Effect::Reflect(b) => Some((**b).clone()),
                _ => None,
            })
            .expect("a reflection job")
    };
    let mut m = started(LoopOptions::default());
    propose_down0(&mut m, "lowest z");
    m.handle(&Event::Decided {
        iteration: 1,
        by: "auto".into(),
        decision: Decision::Approve,
    })
    .unwrap();
    // Wanda applies 0.09375, not the 0.1 target; the step is accepted.
    let fx = m
        .handle(&Event::Evaluated {
            iteration: 1,
            applied: [(DOWN0.to_string(), 0.09375)].into(),
            eval: eval(10.1),
        })
        .unwrap();
    let (ctx, p, o) = reflect(&fx);
    assert_eq!(ctx.layer(DOWN0).unwrap().sparsity, 0.0);
    assert!(o.accepted && !o.edited);
    assert_eq!(
        m.resume_effects(),
        vec![Effect::Reflect(Box::new((
            ctx.clone(),
            p.clone(),
            o.clone()
        )))]
    );
    let text = t.reflection(&ctx, &p, &o).unwrap();
    assert!(text.contains(&format!("- {DOWN0}: 0 -> 0.1\n")), "{text}");
    assert!(!text.contains("human reviewer changed"), "{text}");
    m.handle(&Event::Reflected {
        iteration: 1,
        reply: reply("ok".to_string()),
    })
    .unwrap();

    // Iteration 2: the reviewer edits the agent's proposal.
    let fx = m
        .handle(&Event::Profiled {
            iteration: 2,
            rows: rows(&m),
            seconds: 0.0,
            calib_from_block: None,
        })
        .unwrap();
    assert!(matches!(fx[0], Effect::Propose(_)));
    m.handle(&Event::Proposed {
        iteration: 2,
        agent: "a".into(),
        reply: reply(Proposal {
            layers: vec![LayerTarget {
                name: DOWN0.into(),
                sparsity: 0.15,
            }],
            reasoning: "more".into(),
        }),
    })
    .unwrap();
    m.handle(&Event::Decided {
        iteration: 2,
        by: "human".into(),
        decision: Decision::Edit {
            layers: vec![LayerTarget {
                name: UP1.into(),
                sparsity: 0.05,
            }],
        },
    })
    .unwrap();
    let fx = m
        .handle(&Event::Evaluated {
            iteration: 2,
            applied: [(UP1.to_string(), 0.046875)].into(),
            eval: eval(10.2),
        })
        .unwrap();
    let (ctx, p, o) = reflect(&fx);
    assert!(o.edited);
    assert_eq!(p.layers[0].name, DOWN0, "the agent's own proposal");
    let text = t.reflection(&ctx, &p, &o).unwrap();
    assert!(
        text.contains(&format!("- {DOWN0}: 0.09375 -> 0.15\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "changed it; what was applied:\n- {UP1}: 0 -> 0.046875"
        )),
        "{text}"
    );
}

/// A failed reflection is recorded (and listed) but never shown to the agent.
#[test]
fn a_failed_reflection_stays_out_of_the_prompts() {
    let mut m = started(LoopOptions::default());
    step(&mut m, &[(DOWN0, 0.1)], 10.1);
    m.handle(&Event::Reflected {
        iteration: 1,
        reply: AgentReply {
            value: format!(
                "{}openai: HTTP 400 Bad Request: nope)",
                arborist::agent::NO_REFLECTION
            ),
            prompt: None,
            raw: None,
            usage: Usage::default(),
        },
    })
    .unwrap();
    assert_eq!(m.reflections.len(), 1, "still listed, one per step");
    assert!(m.context().reflections.is_empty());
    m.handle(&Event::Profiled {
        iteration: 2,
        rows: rows(&m),
        seconds: 0.0,
        calib_from_block: None,
    })
    .unwrap();
    step(&mut m, &[(UP1, 0.1)], 10.2);
    m.handle(&Event::Reflected {
        iteration: 2,
        reply: reply("(no reflection needed: fine)".to_string()),
    })
    .unwrap();
    assert_eq!(
        m.context().reflections,
        vec!["(no reflection needed: fine)"]
    );
    // The failed one's step is skipped with it: the one shown is about iteration 2.
    assert_eq!(m.context().reflection_steps, vec![2]);
}

/// The re-ask after a rejection shows the rejected proposal with the feedback, and the
/// feedback stays in later iterations' prompts.
#[test]
fn rejected_proposals_and_feedback_reach_the_re_ask_and_later_prompts() {
    use arborist::agent::Templates;
    let t = Templates::builtin();
    let mut m = started(LoopOptions::default());
    propose_down0(&mut m, "lowest z");
    let fx = m
        .handle(&Event::Decided {
            iteration: 1,
            by: "human".into(),
            decision: Decision::Reject {
                feedback: "spare the MLPs".into(),
            },
        })
        .unwrap();
    let Effect::Propose(ctx) = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(ctx.rejected.as_ref().unwrap().layers[0].name, DOWN0);
    let s = t.step(ctx).unwrap();
    assert!(
        s.contains(&format!("You proposed: {DOWN0} -> 0.1 (lowest z).")),
        "{s}"
    );
    assert!(s.contains("Their feedback: spare the MLPs"), "{s}");
    step(&mut m, &[(UP1, 0.1)], 10.1);
    m.handle(&Event::Reflected {
        iteration: 1,
        reply: reply("ok".to_string()),
    })
    .unwrap();
    let fx = m
        .handle(&Event::Profiled {
            iteration: 2,
            rows: rows(&m),
            seconds: 0.0,
            calib_from_block: None,
        })
        .unwrap();
    let Effect::Propose(ctx) = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(ctx.feedback, None);
    assert_eq!(ctx.earlier_feedback.len(), 1);
    let s = t.step(ctx).unwrap();
    assert!(
        s.contains(&format!("- Iteration 1, on {DOWN0} -> 0.1: spare the MLPs")),
        "{s}"
    );
    assert!(!s.contains("rejected your last proposal"), "{s}");
}

/// An `applied` past its approved target, below where the layer stood, or naming a layer
/// the step did not is refused at its event (it was replayed and exported as recorded
/// unless `--verify` re-ran the step); what Wanda's rounding reaches is taken.
#[test]
fn applied_sparsities_must_follow_the_approved_targets() {
    let mut m = started(LoopOptions::default());
    step(&mut m, &[(DOWN0, 0.1)], 10.0);
    m.handle(&Event::Reflected {
        iteration: 1,
        reply: reply("ok".to_string()),
    })
    .unwrap();
    let it = m.iteration;
    let r = rows(&m);
    if m.phase == Phase::Profiling {
        m.handle(&Event::Profiled {
            iteration: it,
            rows: r,
            seconds: 0.0,
            calib_from_block: None,
        })
        .unwrap();
    }
    assert_eq!(approve(&mut m, &[(DOWN0, 0.15)]), it);
    let applying = m.clone();
    let try_applied = |pairs: &[(&str, f64)]| {
        let mut m = applying.clone();
        m.handle(&Event::Evaluated {
            iteration: it,
            applied: pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
            eval: eval(10.0),
        })
    };
    let e = try_applied(&[(DOWN0, 0.8)]).unwrap_err();
    assert!(
        e.contains("sparsity 0.8, past its approved target 0.15"),
        "{e}"
    );
    let e = try_applied(&[(DOWN0, 0.05)]).unwrap_err();
    assert!(
        e.contains("sparsity 0.05, below the 0.1 it had (masks only grow)"),
        "{e}"
    );
    let e = try_applied(&[(DOWN0, 0.12), (UP1, 0.1)]).unwrap_err();
    assert!(
        e.contains(&format!("{UP1}, which the approved step does not name")),
        "{e}"
    );
    let e = try_applied(&[]).unwrap_err();
    assert!(e.contains("no sparsity for"), "{e}");
    // Rows rounded down, or no row reaching a new weight: taken.
    assert!(try_applied(&[(DOWN0, 0.149)]).is_ok());
    assert!(try_applied(&[(DOWN0, 0.1)]).is_ok());
}
