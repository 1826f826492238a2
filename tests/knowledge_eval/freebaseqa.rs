//! FreebaseQA (LLM-KICK protocol): scoring rules and greedy continuations.

use super::*;

#[test]
fn freebaseqa_scoring_rules() {
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(is_correct(" It is New York City.", &a(&["new york"])));
    assert!(is_correct("NEWYORK", &a(&["New  York"])));
    assert!(is_correct(
        "the answer: new\tyork",
        &a(&["Boston", "NEW YORK"])
    ));
    assert!(!is_correct("Boston", &a(&["New York"])));
    assert!(
        !is_correct("anything", &a(&["", "  "])),
        "an empty alias matches nothing"
    );
    // The answer starts at the first non-whitespace character and ends at the next newline.
    assert_eq!(first_line("\n\n Paris\nQuestion: x"), "Paris");
    assert_eq!(first_line(" Paris, France"), "Paris, France");
    assert_eq!(first_line("\n \n"), "");
    assert!(is_correct(first_line("\nParis\nLondon"), &a(&["paris"])));
    assert!(!is_correct(first_line("\nParis\nLondon"), &a(&["london"])));
}

/// Greedy continuation by full forwards: stop at EOS (id 0) or a newline, cut there.
fn reference_continuation(model: &LoadedModel, question: &str, max_new: usize) -> String {
    let prompt = format!("Please give answer to this question: {question}\nThe answer is ");
    let mut seq = model.encode(&prompt).unwrap();
    let start = seq.len();
    for _ in 0..max_new {
        let rows = log_softmax_rows(model, &seq);
        let last = rows.last().unwrap();
        let next = (0..last.len()).fold(0, |b, j| if last[j] > last[b] { j } else { b }) as u32;
        if next == 0 {
            break;
        }
        seq.push(next);
        if model
            .tokenizer
            .decode(&seq[start..], true)
            .unwrap()
            .contains('\n')
        {
            break;
        }
    }
    let text = model.tokenizer.decode(&seq[start..], true).unwrap();
    text.split('\n').next().unwrap().to_string()
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

#[test]
fn freebaseqa_scores_the_continuation_only() {
    let model = load(&fixture("qwen3"));
    let candidates = [
        "who keeps the stones",
        "where does the heron wait",
        "what falls on the water",
        "which mill is old",
    ];
    let (q1, c1) = candidates
        .iter()
        .map(|q| (q.to_string(), reference_continuation(&model, q, 24)))
        .find(|(_, c)| squash(c).chars().count() >= 3)
        .expect("a question with a non-trivial continuation");
    // An alias taken from the continuation, upper-cased and spaced out: right.
    let alias: String = squash(&c1)
        .chars()
        .take(3)
        .map(|c| format!("{} ", c.to_ascii_uppercase()))
        .collect();
    // An alias that is in the question (so in the prompt) but not in the answer: wrong.
    let q2 = "which zebra drinks at the river".to_string();
    let c2 = reference_continuation(&model, &q2, 24);
    assert!(!squash(&c2).contains("zebra"), "{c2}");
    let d = tmp();
    let f = d.path().join("FreebaseQA-eval.json");
    write_freebaseqa(
        &f,
        vec![
            freebase_question("FreebaseQA-eval-0", &q1, &["no such thing", &alias]),
            freebase_question("FreebaseQA-eval-1", &q2, &["zebra"]),
        ],
    );
    let m = p(&fixture("qwen3"));
    let v = eval_json(&[
        "eval",
        "--model",
        &m,
        "--freebaseqa",
        &p(&f),
        "--json",
        "--per-item",
    ]);
    let r = &v["freebaseqa"];
    assert_eq!(r["items"], 2);
    assert_eq!(r["max_new_tokens"], 24);
    assert_eq!(r["stop_ids"], json!([0]));
    let rec = r["records"].as_array().unwrap();
    assert_eq!(rec[0]["generated"], c1);
    assert_eq!(rec[1]["generated"], c2);
    assert_eq!(rec[0]["correct"], true, "alias `{alias}` vs `{c1}`");
    assert_eq!(rec[1]["correct"], false);
    assert_eq!(r["accuracy"], 0.5);
    let v = eval_json(&[
        "eval",
        "--model",
        &m,
        "--freebaseqa",
        &p(&f),
        "--limit",
        "1",
        "--json",
    ]);
    assert_eq!(v["freebaseqa"]["items"], 1);
    assert_eq!(v["freebaseqa"]["limit"], 1);
}
