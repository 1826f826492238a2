use super::*;
use crate::agent::context::AgentContext;

const UP0: &str = "model.layers.0.mlp.up_proj";
const DOWN1: &str = "model.layers.1.mlp.down_proj";

fn good_json() -> String {
    format!(
        r#"{{"layers": [{{"name": "{UP0}", "sparsity": 0.35}}, {{"name": "{DOWN1}", "sparsity": 0.3}}], "reasoning": "low z {{braces}} \"quoted\""}}"#
    )
}

fn ok(text: &str) -> Proposal {
    parse_and_validate(text, &AgentContext::example()).unwrap_or_else(|e| panic!("{e:?}"))
}

fn problems(p: Proposal) -> Vec<String> {
    validate(&p, &AgentContext::example()).unwrap_err()
}

fn prop(items: &[(&str, f64)]) -> Proposal {
    Proposal {
        layers: items
            .iter()
            .map(|(n, s)| LayerTarget {
                name: n.to_string(),
                sparsity: *s,
            })
            .collect(),
        reasoning: String::new(),
    }
}

#[test]
fn bare_fenced_and_prose() {
    let j = good_json();
    for text in [
        j.clone(),
        format!("```json\n{j}\n```"),
        format!("```\n{j}\n```"),
        format!("I think {{this}} is right. Here it is:\n\n{j}\n\nLet me know {{}}."),
    ] {
        let p = ok(&text);
        assert_eq!(p.layers.len(), 2, "{text}");
        assert_eq!(p.layers[0].name, UP0);
        assert_eq!(p.layers[0].sparsity, 0.35);
        assert_eq!(p.reasoning, "low z {braces} \"quoted\"");
    }
}

#[test]
fn first_matching_object_wins_and_wrappers_are_seen_through() {
    let text = format!(
        r#"Options: {{"note": "not it"}} then {{"proposal": {}}} and {{"layers": []}}"#,
        good_json()
    );
    assert_eq!(ok(&text).layers.len(), 2);
}

#[test]
fn tolerant_shapes() {
    let p = ok(&format!(
        r#"{{"layers": {{"{UP0}": 0.4}}, "reasoning": "map form"}}"#
    ));
    assert_eq!(p.layers[0].sparsity, 0.4);
    let p = ok(&format!(
        r#"{{"layers": [{{"layer": "{UP0}", "sparsity": "0.4"}}]}}"#
    ));
    assert_eq!(p.layers[0].name, UP0);
    assert_eq!(p.reasoning, "");
}

#[test]
fn no_json_and_bad_fields() {
    let e = parse_proposal("I would prune the MLPs.").unwrap_err();
    assert!(e[0].contains("no JSON object"), "{e:?}");
    let e = parse_proposal(r#"{"layers": [{"sparsity": 0.3}, {"name": "x", "sparsity": "high"}]}"#)
        .unwrap_err();
    assert_eq!(e.len(), 2);
    assert!(e[0].starts_with("layers[0]: missing"), "{e:?}");
    assert!(e[1].starts_with("x: sparsity must be a number"), "{e:?}");
    let e = parse_proposal(r#"{"layers": "all of them"}"#).unwrap_err();
    assert!(e[0].starts_with("layers: must be a list"), "{e:?}");
}

#[test]
fn every_problem_is_listed_once_with_its_layer() {
    let ghost = "model.layers.9.mlp.up_proj";
    let q1 = "model.layers.1.self_attn.q_proj";
    let k1 = "model.layers.1.self_attn.k_proj";
    let v1 = "model.layers.1.self_attn.v_proj";
    let o1 = "model.layers.1.self_attn.o_proj";
    let e = problems(prop(&[
        (ghost, 0.3),
        (UP0, 0.2),   // below current 0.3
        (DOWN1, 0.5), // +0.3 > max_step
        (q1, 1.5),    // out of range
        (k1, 0.2),    // no change
        (v1, 0.25),
        (v1, 0.25),
        (o1, f64::NAN),
    ]));
    let expect = [
        (ghost, "unknown layer"),
        (UP0, "below its current sparsity 0.3"),
        (DOWN1, "more than max_step 0.1 (at most 0.3)"),
        (q1, "not a fraction in [0, 1)"),
        (k1, "no change"),
        (v1, "listed 2 times"),
        (o1, "not a fraction"),
    ];
    assert_eq!(e.len(), expect.len(), "{e:#?}");
    for (line, (name, what)) in e.iter().zip(expect) {
        assert!(line.starts_with(name) && line.contains(what), "{line}");
        assert!(!line.contains('\n'));
    }
}

#[test]
fn count_and_ceiling_bounds() {
    let e = problems(prop(&[]));
    assert_eq!(e, vec!["layers: empty; propose at least one layer"]);
    let mut ctx = AgentContext::example();
    ctx.bounds.max_layers = 1;
    ctx.bounds.max_layer_sparsity = 0.32;
    let e = validate(&prop(&[(UP0, 0.35), (DOWN1, 0.25)]), &ctx).unwrap_err();
    assert!(e[0].contains("2 entries, more than max_layers 1"), "{e:?}");
    assert!(e[1].contains("above max_layer_sparsity 0.32"), "{e:?}");
    assert_eq!(e.len(), 2);
}

#[test]
fn step_at_the_bound_passes() {
    // 0.2 + 0.1 in binary is 0.30000000000000004; the bound must still allow it.
    ok(&format!(
        r#"{{"layers":[{{"name":"{DOWN1}","sparsity":0.30000000000000004}}],"reasoning":""}}"#
    ));
}

#[test]
fn frac_is_short() {
    assert_eq!(frac(0.35000000000000003), "0.35");
    assert_eq!(frac(0.1), "0.1");
    assert_eq!(frac(0.0), "0");
    assert_eq!(frac(1.5), "1.5");
}

/// A sparsity that is not a number does not hide the proposal's other problems.
#[test]
fn a_non_numeric_sparsity_is_reported_with_every_other_problem() {
    let text = format!(
        r#"{{"layers": [{{"name": "{UP0}", "sparsity": "abc"}}, {{"name": "model.layers.9.mlp.up_proj", "sparsity": 0.3}}, {{"name": "{DOWN1}", "sparsity": 0.9}}, {{"name": "ghost", "sparsity": null}}], "reasoning": ""}}"#
    );
    let e = parse_and_validate(&text, &AgentContext::example()).unwrap_err();
    let expect = [
        (UP0, "sparsity must be a number, got \"abc\""),
        ("model.layers.9.mlp.up_proj", "unknown layer name"),
        (DOWN1, "more than max_step"),
        ("ghost", "unknown layer name"),
        ("ghost", "sparsity must be a number, got null"),
    ];
    assert_eq!(e.len(), expect.len(), "{e:#?}");
    for (line, (name, what)) in e.iter().zip(expect) {
        assert!(line.starts_with(name) && line.contains(what), "{line}");
    }
}

/// serde_json cannot hold 1e400: its layer says so, and the other layers are still
/// checked (the whole reply was "not valid JSON", hiding them).
#[test]
fn a_number_out_of_range_is_named_at_its_layer() {
    let text = format!(
        r#"{{"layers": [{{"name": "{UP0}", "sparsity": 1e400}}, {{"name": "ghost", "sparsity": 0.05}}], "reasoning": "é → 1e999 in a string stays"}}"#
    );
    let e = parse_and_validate(&text, &AgentContext::example()).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains(UP0.trim_start_matches("model."))
            && e[0].contains("\"1e400 (out of range)\""),
        "{e:?}"
    );
    assert!(e[1].starts_with("ghost"), "{e:?}");
    assert!(!e.iter().any(|l| l.contains("no JSON object")), "{e:?}");
    // Text in strings is untouched, non-ASCII included.
    assert_eq!(
        quote_out_of_range(r#"{"a": "é 1e999", "b": -2e308, "c": 1.5}"#),
        r#"{"a": "é 1e999", "b": "-2e308 (out of range)", "c": 1.5}"#
    );
}

/// Wanda reaches 0.046875 for a 0.05 target; the prompt shows it to 6 decimals. The shown
/// value plus max_step is allowed, within half a unit of the last shown decimal, and the
/// problem lines show values the same way.
#[test]
fn targets_computed_from_the_shown_sparsity_are_not_refused_for_rounding() {
    let mut ctx = AgentContext::example();
    let set = |ctx: &mut AgentContext, v: f64| {
        ctx.layers
            .iter_mut()
            .find(|l| l.name == UP0)
            .unwrap()
            .sparsity = v;
    };
    set(&mut ctx, 0.046875);
    assert_eq!(shown(0.046875), "0.046875");
    validate(&prop(&[(UP0, 0.146875)]), &ctx).unwrap();
    // Current 1/3 is shown as 0.333333; 0.433333 is allowed, 0.433334 too (rounding).
    set(&mut ctx, 1.0 / 3.0);
    validate(&prop(&[(UP0, 0.433333)]), &ctx).unwrap();
    validate(&prop(&[(UP0, 0.4333335)]), &ctx).unwrap();
    let e = validate(&prop(&[(UP0, 0.4334)]), &ctx).unwrap_err();
    assert!(
        e[0].contains(
            "raises it by 0.100067 from 0.333333, more than max_step 0.1 (at most 0.433333)"
        ),
        "{e:?}"
    );
    // The shown current value itself is "no change", not a raise of 3e-7.
    let e = validate(&prop(&[(UP0, 0.333333)]), &ctx).unwrap_err();
    assert!(e[0].contains("no change"), "{e:?}");
}

/// Layer names from a reply are escaped in problem lines.
#[test]
fn names_with_control_characters_are_escaped() {
    let e = validate(
        &prop(&[("evil\n\u{1b}[2Jname", 0.3)]),
        &AgentContext::example(),
    )
    .unwrap_err();
    assert!(
        e[0].starts_with("evil\\n\\u{1b}[2Jname: unknown layer name"),
        "{e:?}"
    );
}

#[test]
fn a_draft_inside_the_reasoning_is_not_the_answer() {
    let draft =
        format!(r#"{{"layers": [{{"name": "{DOWN1}", "sparsity": 0.09}}], "reasoning": "draft"}}"#);
    let j = good_json();
    for text in [
        format!("<think>A first idea: {draft} but wait…</think>\n{j}"),
        format!("<thinking>{draft}</thinking>{j}"),
        // The chat template opened the block in the prompt; only its end is in the reply.
        format!("reasoning {draft} more\n</think>\n\n{j}"),
    ] {
        let p = ok(&text);
        assert_eq!(
            (p.layers.len(), p.layers[0].name.as_str()),
            (2, UP0),
            "{text}"
        );
    }
    let cut = format!("<think>I will propose {draft} and then");
    let e = parse_and_validate(&cut, &AgentContext::example()).unwrap_err();
    assert!(e[0].contains("never closed"), "{e:?}");
}

#[test]
fn a_layer_repeated_in_the_object_form_is_reported() {
    let text = format!(r#"{{"layers": {{"{UP0}": 0.05, "{DOWN1}": 0.3, "{UP0}": 0.09}}}}"#);
    let e = parse_and_validate(&text, &AgentContext::example()).unwrap_err();
    assert!(
        e.iter()
            .any(|p| p.contains(UP0) && p.contains("listed 2 times")),
        "{e:?}"
    );
    // Written order is kept.
    let text = format!(r#"{{"layers": {{"{DOWN1}": 0.3, "{UP0}": 0.35}}}}"#);
    let names: Vec<String> = ok(&text).layers.into_iter().map(|l| l.name).collect();
    assert_eq!(names, [DOWN1, UP0]);
}

// The tags inside the answer's own strings are words, not a reasoning block (until
// 2026-12-03 such an answer was refused as a block never closed, or cut at the `</think>`).
#[test]
fn reasoning_tags_inside_the_answer_are_text() {
    for words in [
        "no <think> block needed",
        "after </think> comes the answer",
        "<think>",
    ] {
        let text = format!(
            r#"{{"layers": [{{"name": "{UP0}", "sparsity": 0.35}}], "reasoning": "{words}"}}"#
        );
        assert_eq!(ok(&text).reasoning, words, "{text}");
        // Reasoning first: the text after the `</think>` holds no answer of its own.
        let text = format!(
            r#"{{"reasoning": "{words}", "layers": [{{"name": "{UP0}", "sparsity": 0.35}}]}}"#
        );
        assert_eq!(ok(&text).layers[0].name, UP0, "{text}");
    }
    // A block that the reply opens still hides its draft, and one never closed is said.
    let e = parse_and_validate("  <think>{\"layers\": []} and", &AgentContext::example());
    assert!(e.unwrap_err()[0].contains("never closed"));
}

// A reply of many unclosed `{` is searched within a bound (it cost its length squared:
// hours for 4 MiB), and the error says where the search stopped.
#[test]
fn a_reply_of_unclosed_braces_is_given_up_on() {
    let text = format!("{}{}", "{".repeat(2_000_000), good_json());
    let e = parse_and_validate(&text, &AgentContext::example()).unwrap_err();
    let said = format!(
        "found in its first 64 MiB scanned (it holds {} `{{` in {} bytes)",
        text.matches('{').count(),
        text.len()
    );
    assert!(e[0].contains(&said), "{e:?}");
    // Fewer of them are searched past, to the answer.
    let text = format!("{}{}", "{".repeat(20), good_json());
    assert_eq!(ok(&text).layers.len(), 2);
}

/// A percentage in a string gets the hint a bare percentage gets, and a layer named short
/// the table's one name that ends with it (an agent audit: both were bare refusals).
#[test]
fn a_quoted_percentage_and_a_short_name_get_hints() {
    let text = format!(
        r#"{{"layers": [{{"name": "{UP0}", "sparsity": "5 %"}}, {{"name": "layers.1.mlp.down_proj", "sparsity": 0.05}}, {{"name": "mlp.down_proj", "sparsity": 0.05}}], "reasoning": ""}}"#
    );
    let e = parse_and_validate(&text, &AgentContext::example()).unwrap_err();
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].ends_with(
            "sparsity must be a number, got \"5 %\" (a fraction in [0, 1): 0.05 for 5%)"
        ),
        "{}",
        e[0]
    );
    assert_eq!(
        e[1],
        format!("layers.1.mlp.down_proj: unknown layer name (did you mean {DOWN1}?); use a name from the profile table")
    );
    // Two blocks have an mlp.down_proj: no guess.
    assert_eq!(
        e[2],
        "mlp.down_proj: unknown layer name; use a name from the profile table"
    );
}
