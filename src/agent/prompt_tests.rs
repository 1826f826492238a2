use super::*;
use crate::agent::context::{LayerTarget, Proposal};

fn ctx() -> AgentContext {
    AgentContext::example()
}

#[test]
fn step_prompt_shows_everything_the_agent_needs() {
    let t = Templates::builtin();
    let s = t.step(&ctx()).unwrap();
    for needle in [
        "Iteration 3 on tiny-llama (58 of at most 60 iterations left, this one included)",
        "Global sparsity: 25.0% of the prunable weights (weighted by each layer's params)",
        "target 45.0%",
        "(+8.0%)",
        "| layer | sparsity | max | params | s | g | z_s | z_g | z |",
        "| model.layers.0.self_attn.q_proj | 0.3 | 0.4 | 4096 | 1.000e-2 |",
        "(14 layers, 57344 params,",
        "at most 8 layers, each raised by at most 0.1, none above 0.9",
        "Iteration 2: model.layers.1.self_attn.q_proj 0.2 -> 0.3",
        "ROLLED BACK (rolled back: +7.4% > 5.0%)",
        "(2, 1 rolled back)",
        // Each reflection with the step it was about (they came without one).
        "- Iteration 2, rolled back: Attention projections in block 1 are fragile.",
        "You proposed: model.layers.0.self_attn.q_proj -> 0.4 (Lowest z in block 0.).",
        "Their feedback: Leave the q projections alone for now.",
        "- Iteration 1, on model.layers.0.mlp.up_proj -> 0.3: Go slower on the MLPs.",
        "more than 5.0% over the last accepted checkpoint.",
        r#"{"layers": [{"name": "model.layers.0.self_attn.q_proj", "sparsity": 0.35}]"#,
    ] {
        assert!(s.contains(needle), "missing {needle:?} in:\n{s}");
    }
    // Rows sorted by block then kind, though the context lists block 1 first.
    let order: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with("| model."))
        .map(|l| l.split(" | ").next().unwrap().trim_start_matches("| "))
        .collect();
    assert_eq!(order.len(), 14);
    assert_eq!(order[0], "model.layers.0.self_attn.q_proj");
    assert_eq!(order[6], "model.layers.0.mlp.down_proj");
    assert_eq!(order[7], "model.layers.1.self_attn.q_proj");
    assert!(!s.contains("\n\n\n"), "{s}");
    // Without a ceiling or a probe guard the prompt names neither.
    assert!(
        !s.contains("dense model's (now") && !s.contains("probe"),
        "{s}"
    );
}

/// Every rollback rule in force is stated, in the step and the system prompt.
#[test]
fn ceiling_and_probe_rules_are_stated_when_set() {
    let mut c = ctx();
    c.ceiling = Some(0.2);
    c.probe_max_drop = Some(0.05);
    let t = Templates::builtin();
    for text in [t.step(&c).unwrap(), t.system(&c).unwrap()] {
        assert!(
            text.contains("more than 20.0% above the dense model's"),
            "{text}"
        );
        assert!(text.contains("falls more than 5.0 points below"), "{text}");
    }
}

/// With a probe the agent sees its accuracy now, for the dense model, and per step; the
/// reflection gives the step's before and after.
#[test]
fn probe_accuracy_is_shown_when_the_session_runs_a_probe() {
    let mut c = ctx();
    c.probe_max_drop = Some(0.025);
    c.probe = Some(crate::agent::ProbeView {
        kind: "mmlu".into(),
        items: 40,
        dense: 0.45,
        now: 0.425,
    });
    c.history[1].probe_before = Some(0.425);
    c.history[1].probe_after = Some(0.375);
    let t = Templates::builtin();
    let s = t.step(&c).unwrap();
    for needle in [
        "Knowledge probe (mmlu, 40 questions): accuracy 42.5% now, 45.0% for the dense model.",
        "(+7.4%), probe accuracy 42.5% -> 37.5%; ROLLED BACK",
        "falls more than 2.5 points below",
    ] {
        assert!(s.contains(needle), "missing {needle:?} in:\n{s}");
    }
    // The step without probe scores says nothing of the probe.
    let first = s.lines().find(|l| l.starts_with("- Iteration 1:")).unwrap();
    assert!(!first.contains("probe"), "{first}");
    let p = Proposal {
        layers: vec![],
        reasoning: String::new(),
    };
    let r = t.reflection(&c, &p, &c.history[1]).unwrap();
    let want = "Knowledge probe accuracy: 42.5% -> 37.5% (rolled back when it falls more than 2.5 points).";
    assert!(r.contains(want), "missing {want:?} in:\n{r}");
}

/// A value beside the limit it was judged against gets the decimals that tell them apart:
/// a rollback of +1.04% over a 1% threshold read "+1.0%; rollback threshold 1.0%", and a
/// sparsity just short of its target read as the target.
#[test]
fn percentages_beside_their_limits_tell_them_apart() {
    let mut c = ctx();
    c.threshold = 0.01;
    c.global_sparsity = 0.44996;
    let mut o = c.history[1].clone();
    o.ppl_before = 10.0;
    o.ppl_after = 10.104;
    o.global_sparsity_after = 0.44996;
    c.history[1] = o.clone();
    let t = Templates::builtin();
    let s = t.step(&c).unwrap();
    for needle in [
        "Global sparsity: 44.996% of the prunable weights",
        "target 45.000% (0.004% to go)",
        "global sparsity after: 44.996%.",
        "10.500 -> 10.800 (+2.9%)",
        "10.000 -> 10.104 (+1.04%)",
    ] {
        assert!(s.contains(needle), "missing {needle:?} in:\n{s}");
    }
    let p = Proposal {
        layers: vec![],
        reasoning: String::new(),
    };
    let r = t.reflection(&c, &p, &o).unwrap();
    for needle in [
        "(+1.04%; rollback threshold 1.00%)",
        "global sparsity 44.996% (target 45.000%)",
    ] {
        assert!(r.contains(needle), "missing {needle:?} in:\n{r}");
    }
}

/// The exact current sparsity is shown (not 0.047), and the shown max is accepted.
#[test]
fn sparsities_are_shown_exactly_with_the_largest_allowed_value() {
    let mut c = ctx();
    let name = "model.layers.0.mlp.up_proj";
    for l in &mut c.layers {
        if l.name == name {
            l.sparsity = 0.046875;
        }
    }
    let s = Templates::builtin().step(&c).unwrap();
    let row = format!("| {name} | 0.046875 | 0.146875 | 4096 |");
    assert!(s.contains(&row), "{s}");
    let p = Proposal {
        layers: vec![LayerTarget {
            name: name.into(),
            sparsity: 0.146875,
        }],
        reasoning: String::new(),
    };
    crate::agent::parse::validate(&p, &c).unwrap();
}

#[test]
fn first_step_without_history_reflections_or_feedback() {
    let mut c = ctx();
    c.history.clear();
    c.reflections.clear();
    c.feedback = None;
    c.rejected = None;
    c.earlier_feedback.clear();
    let s = Templates::builtin().step(&c).unwrap();
    assert!(s.contains("None yet: this is the first step."), "{s}");
    assert!(!s.contains("reflections"), "{s}");
    assert!(!s.contains("human reviewer"), "{s}");
}

#[test]
fn system_reflection_and_repair_render() {
    let t = Templates::builtin();
    let c = ctx();
    let sys = t.system(&c).unwrap();
    assert!(
        sys.contains("at most 0.1 (absolute)") && sys.contains("45.0%"),
        "{sys}"
    );
    let p = Proposal {
        layers: vec![LayerTarget {
            name: "model.layers.1.mlp.up_proj".into(),
            sparsity: 0.3,
        }],
        reasoning: "lowest z".into(),
    };
    let mut o = c.history[1].clone();
    o.changes = vec![];
    let r = t.reflection(&c, &p, &o).unwrap();
    for needle in [
        "model.layers.1.mlp.up_proj: 0.2 -> 0.3",
        "Your reasoning: lowest z",
        "10.800 -> 11.600 (+7.4%",
        "ROLLED BACK (rolled back: +7.4% > 5.0%)",
        "short reflection",
    ] {
        assert!(r.contains(needle), "missing {needle:?} in:\n{r}");
    }
    assert!(!r.contains("human reviewer changed"), "{r}");
    // Applied values that differ from the proposal (Wanda's rounding) are no edit.
    o.changes = c.history[0].changes.clone();
    let r = t.reflection(&c, &p, &o).unwrap();
    assert!(!r.contains("human reviewer changed"), "{r}");
    o.edited = true;
    let r = t.reflection(&c, &p, &o).unwrap();
    assert!(
        r.contains("changed it; what was applied:\n- model.layers.0.mlp.up_proj: 0.2 -> 0.3"),
        "{r}"
    );
    let rep = t.repair(&c, &["x: unknown layer name".into()]).unwrap();
    assert!(rep.contains("- x: unknown layer name"), "{rep}");
    // g is described as the run's profile computes it.
    let paper = "G is the mean over the calibration windows of |dL/dW|.";
    assert!(sys.contains(paper), "{sys}");
    let mut t = Templates::builtin();
    t.set_grad_average(crate::profile::grad_average::GradAverage::AbsOfMean);
    let sys = t.system(&c).unwrap();
    assert!(
        sys.contains("G is the magnitude of the mean over the calibration windows of dL/dW.")
            && !sys.contains(paper),
        "{sys}"
    );
}

#[test]
fn user_dir_overrides_and_falls_back_to_the_builtins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("system.j2"),
        "Custom system for {{ model }}.",
    )
    .unwrap();
    let t = Templates::load(Some(dir.path())).unwrap();
    assert_eq!(t.system(&ctx()).unwrap(), "Custom system for tiny-llama.");
    // Reflection still comes from the built-ins.
    assert!(t.origins()[2].1.starts_with("built-in"));
}

/// A misnamed template was passed over without a word (the built-in used instead); a
/// directory with none of the names read nothing at all.
#[test]
fn a_misnamed_template_or_a_dir_without_templates_is_refused() {
    for name in [
        "Step.j2",
        "step.jinja",
        "reflect.jinja2",
        "STEP.J2",
        "system.Jinja",
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("system.j2"), "S").unwrap();
        std::fs::write(dir.path().join(name), "Step {{ iteration }}").unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
        let path = dir.path().join(name).display().to_string();
        assert!(
            e.starts_with(&format!(
                "prompt template {path}: not a name --prompts reads"
            )),
            "{e}"
        );
        assert!(
            e.contains("system.j2, step.j2, reflection.j2, repair.j2"),
            "{e}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a template").unwrap();
    let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
    assert!(e.contains("holds none of system.j2"), "{e}");
    // Other files beside the templates are no concern.
    std::fs::write(dir.path().join("step.j2"), "Step {{ iteration }}").unwrap();
    assert!(Templates::load(Some(dir.path())).is_ok());
}

/// An empty template sent every request with a blank prompt, and a directory named like a
/// template was passed over for the built-in: each refused in one line naming it.
#[test]
fn an_empty_template_or_one_that_is_a_directory_is_refused() {
    for name in BUILTIN.map(|(n, _)| n) {
        for (text, want) in [("", "is empty"), (" \n\t\r\n", "holds only whitespace")] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(name), text).unwrap();
            let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
            let d = dir.path().display();
            assert_eq!(
                e,
                format!("--prompts {d}: {name} {want} (remove it to use the built-in)")
            );
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(name)).unwrap();
        // Beside a good template, so the directory is the only problem.
        let other = if name == STEP { SYSTEM } else { STEP };
        std::fs::write(dir.path().join(other), "Hi {{ model }}").unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
        let d = dir.path().display();
        assert_eq!(
            e,
            format!("--prompts {d}: {name} is a directory, not a template file")
        );
    }
}

/// A template that renders to nothing (comments, a branch not taken) would send a blank
/// prompt too.
#[test]
fn a_template_that_renders_blank_is_refused() {
    for (name, text) in [
        (STEP, "{# to do #}"),
        (REFLECTION, "{% if iteration > 1000 %}later{% endif %}\n"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
        let path = dir.path().join(name).display().to_string();
        assert_eq!(
            e,
            format!("prompt template {path}: renders blank text; nothing would be asked")
        );
    }
}

/// A typo in a variable name fails when the templates load, before any request, in one
/// line naming the file, the line and the variable; also in a branch the first iterations
/// would not take, and in reflection.j2.
#[test]
fn undefined_variables_fail_at_load_naming_file_line_and_variable() {
    for (file, text, want) in [
        (
            "step.j2",
            "Step\n{{ itertion }}",
            "`itertion` is undefined (in step.j2:2)",
        ),
        (
            "reflection.j2",
            "{% if outcome.accepted %}ok{% else %}{{ outcome.ppl_aftr }}{% endif %}",
            "`outcome.ppl_aftr` is undefined (in reflection.j2:1)",
        ),
        (
            "reflection.j2",
            "{% if edited %}{{ proposal_chnages }}{% endif %}",
            "`proposal_chnages` is undefined",
        ),
        (
            "step.j2",
            "{% for r in rows %}{{ r.nme }}{% endfor %}",
            "`r.nme` is undefined",
        ),
        (
            "step.j2",
            "{% if ceilng is not none %}x{% endif %}",
            "`ceilng` is undefined",
        ),
        (
            "step.j2",
            "{% if bounds.max_stp is not none %}x{% endif %}",
            "`bounds.max_stp` is undefined",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), text).unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
        let path = dir.path().join(file).display().to_string();
        assert!(
            e.starts_with(&format!("prompt template {path}: undefined value: ")),
            "{e}"
        );
        assert!(e.contains(want), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

/// `is defined` asks on purpose: a template written for other versions of the variables
/// still loads (the check for misspelled names must not refuse it).
#[test]
fn a_name_asked_about_with_is_defined_is_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{% if probe_note is defined %}{{ probe_note }}{% endif %}{% if outcome.extra is not defined %}-{% endif %}";
    std::fs::write(dir.path().join("reflection.j2"), text).unwrap();
    let t = Templates::load(Some(dir.path())).unwrap();
    let c = ctx();
    let p = Proposal {
        layers: vec![],
        reasoning: String::new(),
    };
    assert_eq!(t.reflection(&c, &p, &c.history[0]).unwrap(), "-");
}

// minijinja reports a missing `{% endif %}` where the input ends; the tag left open is
// named with its line.
#[test]
fn an_unclosed_block_is_named_where_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let step = BUILTIN.iter().find(|(n, _)| *n == "step.j2").unwrap().1;
    let mut lines: Vec<&str> = step.lines().collect();
    lines.insert(3, "{% if history %}forgot the end");
    let ifs = step.matches("{% if ").count();
    std::fs::write(dir.path().join("step.j2"), lines.join("\n")).unwrap();
    let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
    assert!(e.contains("unexpected end of input"), "{e}");
    let want = format!(
        "{} `{{% if %}}` but {ifs} `{{% endif %}}`; by the nesting, the one at line 4 is left open)",
        ifs + 1
    );
    assert!(e.ends_with(&want), "{e}");
}

#[test]
fn syntax_error_is_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("reflection.j2"), "{% for x in %}\noops").unwrap();
    let e = Templates::load(Some(dir.path())).unwrap_err().to_string();
    assert!(
        e.contains("reflection.j2") && e.contains("syntax error"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    // A path that is missing, or a file, is named as what it is.
    let e = Templates::load(Some(&dir.path().join("missing"))).unwrap_err();
    assert!(e.to_string().ends_with("missing: does not exist"), "{e}");
    let e = Templates::load(Some(&dir.path().join("reflection.j2"))).unwrap_err();
    assert!(
        e.to_string().ends_with("reflection.j2: not a directory"),
        "{e}"
    );
}

/// The README's way to bound the history on a deep model: a template slices it.
#[test]
fn a_template_may_show_only_the_latest_steps() {
    let dir = tempfile::tempdir().unwrap();
    let step = BUILTIN.iter().find(|(n, _)| *n == "step.j2").unwrap().1;
    assert!(step.contains("{% for h in history %}"));
    let cut = step.replace("{% for h in history %}", "{% for h in history[-1:] %}");
    std::fs::write(dir.path().join("step.j2"), cut).unwrap();
    let c = ctx();
    let full = Templates::builtin().step(&c).unwrap();
    let s = Templates::load(Some(dir.path())).unwrap().step(&c).unwrap();
    assert!(full.contains("- Iteration 1: ") && full.contains("- Iteration 2: "));
    assert!(
        !s.contains("- Iteration 1: ") && s.contains("- Iteration 2: "),
        "{s}"
    );
    assert!(s.contains("## Earlier steps (2, 1 rolled back)"), "{s}");
}

/// An earlier step's layers are listed in model order, as the profile table is: their
/// names' text order put block 10 before block 2.
#[test]
fn earlier_steps_list_their_layers_in_model_order() {
    let mut c = ctx();
    let change = |name: &str| LayerChange {
        name: name.into(),
        from: 0.1,
        to: 0.2,
    };
    c.history[0].changes = [
        "lm_head",
        "model.layers.10.mlp.down_proj",
        "model.layers.2.mlp.up_proj",
        "model.layers.2.self_attn.k_proj",
    ]
    .map(change)
    .to_vec();
    let s = Templates::builtin().step(&c).unwrap();
    let want = "- Iteration 1: model.layers.2.self_attn.k_proj 0.1 -> 0.2, model.layers.2.mlp.up_proj 0.1 -> 0.2, model.layers.10.mlp.down_proj 0.1 -> 0.2, lm_head 0.1 -> 0.2";
    assert!(s.contains(want), "{s}");
}
