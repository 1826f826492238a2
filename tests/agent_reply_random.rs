//! Agent replies drawn at random from fixed seeds: well-formed answers in the wrappings
//! models send them in, then the same answers damaged. A well-formed answer reads back as
//! the proposal it holds; any reply is either a proposal within the step's rules or
//! refused with problems that each fit on one line of the TUI and the log, never a panic.

use arborist::agent::parse::parse_and_validate;
use arborist::agent::{AgentContext, Proposal};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// A proposal the rules allow: 1 to max_layers distinct layers, each raised by at most
/// max_step and to at most the ceiling, written with up to 6 decimals as prompts show them.
fn valid(rng: &mut StdRng, ctx: &AgentContext) -> Proposal {
    let b = &ctx.bounds;
    let n = rng.gen_range(1..=b.max_layers.min(ctx.layers.len()));
    let rows: Vec<_> = ctx.layers.choose_multiple(rng, n).collect();
    let layers = rows
        .iter()
        .map(|r| {
            let top = (r.sparsity + b.max_step).min(b.max_layer_sparsity);
            let to = r.sparsity + (top - r.sparsity) * rng.gen_range(0.01..=1.0);
            arborist::agent::LayerTarget {
                name: r.name.clone(),
                sparsity: ((to * 1e6).floor() / 1e6).max(r.sparsity + 1e-6),
            }
        })
        .collect();
    let words = [
        "low z",
        "spare block 0",
        "«ünïcode» ✓",
        "a \"quoted\" {brace}",
        "",
    ];
    Proposal {
        layers,
        reasoning: words.choose(rng).unwrap().to_string(),
    }
}

/// The proposal as JSON, in one of the ways replies carry it.
fn wrapped(rng: &mut StdRng, p: &Proposal) -> String {
    let layers: Vec<_> = p
        .layers
        .iter()
        .map(|l| serde_json::json!({"name": l.name, "sparsity": l.sparsity}))
        .collect();
    let answer = serde_json::json!({"layers": layers, "reasoning": p.reasoning});
    let json = serde_json::to_string(&answer).unwrap();
    match rng.gen_range(0..5) {
        0 => json,
        1 => format!("```json\n{json}\n```"),
        2 => format!("Here is my proposal:\n{json}\nThat should keep perplexity flat."),
        3 => format!("<think>maybe {{\"layers\": []}} first?</think>\n{json}"),
        _ => format!("  \n{json}\n\n"),
    }
}

/// What a cut-off stream, a confused model or a broken proxy puts into a reply.
const DAMAGE: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "\\",
    "-",
    "1e999",
    "NaN",
    "null",
    "0.",
    "\n",
    "\t",
    "\u{1b}[31m",
    "\u{202e}",
    "\0",
    "é",
    "🌳",
    "<think>",
    "</think>",
    "```",
    "layers",
    // JSON escapes that put a control character into a parsed name or reasoning.
    r"\u001b[31m",
    r"\n",
    r"\u0000",
    r"\u202e",
];

fn damaged(rng: &mut StdRng, text: &str) -> String {
    let mut chars: Vec<String> = text.chars().map(String::from).collect();
    for _ in 0..rng.gen_range(1..=4) {
        let at = rng.gen_range(0..=chars.len());
        let piece = DAMAGE.choose(rng).unwrap().to_string();
        match rng.gen_range(0..4) {
            0 if at < chars.len() => chars[at] = piece,
            1 if at < chars.len() => {
                chars.remove(at);
            }
            2 => chars.truncate(at),
            _ => chars.insert(at, piece),
        }
    }
    chars.concat()
}

/// What the parser returned is a proposal within the rules, checked here against the
/// context, or problems that are each one line with no control character (the names
/// they echo are escaped).
fn check(ctx: &AgentContext, text: &str, got: &Result<Proposal, Vec<String>>) {
    match got {
        Ok(p) => {
            let b = &ctx.bounds;
            assert!(
                !p.layers.is_empty() && p.layers.len() <= b.max_layers,
                "{text:?}"
            );
            let mut names: Vec<&str> = p.layers.iter().map(|l| l.name.as_str()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), p.layers.len(), "a layer twice: {text:?}");
            for l in &p.layers {
                let row = ctx.layers.iter().find(|r| r.name == l.name);
                let row = row.unwrap_or_else(|| panic!("unknown {}: {text:?}", l.name));
                assert!(l.sparsity.is_finite(), "{text:?}");
                assert!(l.sparsity > row.sparsity, "{text:?}");
                assert!(l.sparsity <= row.sparsity + b.max_step + 1e-6, "{text:?}");
                assert!(l.sparsity <= b.max_layer_sparsity + 1e-6, "{text:?}");
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a word: {text:?}");
            for m in problems {
                // Nor one that turns the rest of a terminal line around.
                let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
                assert!(
                    !m.chars().any(|c| c.is_control() || bidi(c)),
                    "a control character in {m:?} for {text:?}"
                );
                assert!(m.chars().count() <= 2000, "{} chars: {m:?}", m.len());
            }
        }
    }
}

#[test]
fn well_formed_replies_read_back_as_the_proposal_they_hold() {
    let ctx = AgentContext::example();
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..500 {
        let p = valid(&mut rng, &ctx);
        let text = wrapped(&mut rng, &p);
        let got = parse_and_validate(&text, &ctx);
        check(&ctx, &text, &got);
        let got = got.unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        assert_eq!(got.layers, p.layers, "{text:?}");
        assert_eq!(got.reasoning, p.reasoning, "{text:?}");
    }
}

#[test]
fn damaged_replies_are_read_within_the_rules_or_refused_in_one_line() {
    let ctx = AgentContext::example();
    let mut rng = StdRng::seed_from_u64(5);
    let (mut read, mut refused) = (0, 0);
    for _ in 0..3000 {
        let p = valid(&mut rng, &ctx);
        let whole = wrapped(&mut rng, &p);
        let text = damaged(&mut rng, &whole);
        let got = parse_and_validate(&text, &ctx);
        check(&ctx, &text, &got);
        match got {
            Ok(_) => read += 1,
            Err(_) => refused += 1,
        }
    }
    // Both outcomes were met often, so neither branch's checks went unexercised.
    assert!(read > 60 && refused > 300, "read {read}, refused {refused}");
}
