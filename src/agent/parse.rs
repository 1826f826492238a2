//! Tolerant reading of an agent's reply and strict validation of the proposal in it.
//!
//! Models wrap JSON in fences or prose, so extraction scans for the first balanced JSON
//! object that has a `layers` field. Validation never clamps: it lists every problem, one
//! line each, so the list can go back to the model for a repair.

use serde_json::{json, Value};

use super::context::{AgentContext, LayerTarget, Proposal};

/// Slack for comparing sparsities that went through decimal text.
const EPS: f64 = 1e-9;

/// Decimals of every sparsity the prompts and problem lines show ([`shown`]).
pub const SHOWN_DIGITS: usize = 6;

/// Half a unit in the last shown decimal: a target computed from the shown (rounded)
/// current sparsity is never refused for the rounding (the check against `max_step` and
/// "no change" allow this much).
pub const SHOWN_TOLERANCE: f64 = 0.5e-6;

/// JSON schema of a proposal, in the shape OpenAI's strict structured outputs accept.
pub fn proposal_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "layers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "sparsity": {"type": "number"}
                    },
                    "required": ["name", "sparsity"],
                    "additionalProperties": false
                }
            },
            "reasoning": {"type": "string"}
        },
        "required": ["layers", "reasoning"],
        "additionalProperties": false
    })
}

/// Reads a proposal out of reply text and checks it against the context. Every problem is
/// listed (a sparsity that is not a number does not hide the others).
pub fn parse_and_validate(text: &str, ctx: &AgentContext) -> Result<Proposal, Vec<String>> {
    let (items, reasoning) = read(text)?;
    let problems = check(&items, ctx);
    proposal_unless(problems, items, reasoning)
}

/// The first JSON object in `text` (bare, fenced or inside prose) that has a `layers`
/// field, after any reasoning block.
pub fn extract_json(text: &str) -> Option<Value> {
    extract(text).ok()
}

/// Like [`extract_json`]; when there is none, the problem: no candidate at all, or the
/// first object that mentions "layers" but is not valid JSON (with serde's reason, e.g. a
/// number out of range).
fn extract(text: &str) -> Result<Value, String> {
    extract_with_text(text).map(|(v, _)| v)
}

/// Where the answer may be, in the order tried. A reply that opens with a reasoning block
/// (`<think>`, `<thinking>`), as reasoning models send through servers without a reasoning
/// parser, is answered after the block's end: a draft proposal inside it is not the
/// answer. One that only ends such a block (the chat template opened it in the prompt) is
/// answered after that end, or else, when nothing there looks like an answer, in the whole
/// text: a JSON answer may mention the tags in its reasoning (until 2026-12-03 a tag
/// anywhere, even inside the JSON's strings, was taken for a block). Err when a block is
/// opened and never closed (the reply was cut off while reasoning).
fn answer_parts(text: &str) -> Result<Vec<&str>, String> {
    const BLOCKS: [(&str, &str); 2] = [("<think>", "</think>"), ("<thinking>", "</thinking>")];
    let body = text.trim_start();
    if let Some((_, close)) = BLOCKS.iter().find(|(open, _)| body.starts_with(open)) {
        return match body.find(close) {
            Some(end) => Ok(vec![&body[end + close.len()..]]),
            None => Err("reply: the reasoning block (<think>) is never closed, so there is no answer after it (cut off at the token limit? see --agent-max-tokens)".into()),
        };
    }
    let first_end = BLOCKS
        .iter()
        .filter_map(|(_, close)| text.find(close).map(|i| i + close.len()))
        .min();
    Ok(match first_end {
        Some(end) => vec![&text[end..], text],
        None => vec![text],
    })
}

/// Bytes the search for the answer may scan in all: from every `{` it scans to that
/// object's end, so a reply of many unclosed `{` (a 4 MiB reply of them held a core for
/// hours) costs its length squared without a bound.
const SCAN_BUDGET: usize = 64 << 20;

/// [`extract`], with the object's own text (to read `layers` again in its written order).
fn extract_with_text(text: &str) -> Result<(Value, std::borrow::Cow<'_, str>), String> {
    let mut budget = SCAN_BUDGET;
    let mut broken = None;
    for part in answer_parts(text)? {
        match find_layers(part, &mut budget) {
            Found::Object(v, t) => return Ok((v, t)),
            // A broken answer where the answer belongs: the whole text's drafts are not
            // tried in its place.
            Found::Broken(e) => {
                broken = Some(e);
                break;
            }
            Found::Nothing if budget == 0 => {
                return Err(format!(
                    "reply: no JSON object with a \"layers\" field found in its first {} MiB scanned (it holds {} `{{` in {} bytes); answer with the JSON format shown",
                    SCAN_BUDGET >> 20,
                    text.matches('{').count(),
                    text.len()
                ))
            }
            Found::Nothing => {}
        }
    }
    Err(match broken {
        Some(e) => format!(
            "reply: the JSON object with a \"layers\" field is not valid JSON: {e}; answer with the JSON format shown"
        ),
        None => {
            "reply: no JSON object with a \"layers\" field found; answer with the JSON format shown"
                .into()
        }
    })
}

enum Found<'a> {
    Object(Value, std::borrow::Cow<'a, str>),
    /// The first object mentioning "layers" is not valid JSON (serde's reason).
    Broken(String),
    Nothing,
}

/// The first balanced `{...}` in `text` that parses and has a `layers` field, scanning no
/// more than `budget` bytes (spent as it goes).
fn find_layers<'a>(text: &'a str, budget: &mut usize) -> Found<'a> {
    let bytes = text.as_bytes();
    let starts = bytes.iter().enumerate().filter(|(_, &c)| c == b'{');
    let mut broken = None;
    for (start, _) in starts {
        let Some(end) = balanced_end(bytes, start, budget) else {
            if *budget == 0 {
                break;
            }
            continue;
        };
        let candidate = &text[start..end];
        match serde_json::from_str::<Value>(candidate) {
            Ok(v) if v.get("layers").is_some() => return Found::Object(v, candidate.into()),
            Ok(_) => {}
            Err(e) if broken.is_none() && candidate.contains("\"layers\"") => {
                // A number JSON cannot hold (1e400) is made a string naming it, so that
                // its layer reports it and the others are still checked.
                let quoted = quote_out_of_range(candidate);
                if let Ok(v) = serde_json::from_str::<Value>(&quoted) {
                    if v.get("layers").is_some() {
                        return Found::Object(v, quoted.into());
                    }
                }
                broken = Some(e.to_string());
            }
            Err(_) => {}
        }
    }
    broken.map_or(Found::Nothing, Found::Broken)
}

/// Whether JSON text is inside a string, byte by byte (escaped quotes stay inside).
#[derive(Default)]
struct InString {
    on: bool,
    escaped: bool,
}

impl InString {
    /// Takes the next byte; true when it belongs to a string, its quotes included.
    fn step(&mut self, c: u8) -> bool {
        if self.on {
            match c {
                _ if self.escaped => self.escaped = false,
                b'\\' => self.escaped = true,
                b'"' => self.on = false,
                _ => {}
            }
            true
        } else {
            self.on = c == b'"';
            self.on
        }
    }
}

/// `json` with every number outside f64's range written as the string "N (out of range)".
fn quote_out_of_range(json: &str) -> String {
    let b = json.as_bytes();
    let (mut out, mut copied) = (String::with_capacity(json.len()), 0);
    let (mut i, mut string) = (0, InString::default());
    while i < b.len() {
        let c = b[i];
        i += 1;
        if string.step(c) || !(c == b'-' || c.is_ascii_digit()) {
            continue;
        }
        let start = i - 1;
        let end = (start..b.len())
            .find(|&j| !matches!(b[j], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(b.len());
        let num = &json[start..end];
        if num.parse::<f64>().is_ok_and(f64::is_infinite) {
            out.push_str(&json[copied..start]);
            out.push_str(&format!("\"{num} (out of range)\""));
            copied = end;
        }
        i = end;
    }
    out.push_str(&json[copied..]);
    out
}

/// End (exclusive) of the bracketed value opening at `start`, skipping brackets in strings;
/// None when it never closes or `budget` (bytes scanned, shared by every start) runs out.
fn balanced_end(b: &[u8], start: usize, budget: &mut usize) -> Option<usize> {
    let (mut depth, mut string) = (0usize, InString::default());
    for (i, &c) in b.iter().enumerate().skip(start) {
        *budget = budget.checked_sub(1)?;
        if string.step(c) {
            continue;
        }
        match c {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// One entry of the reply's `layers`: its name, and its sparsity or what was given instead.
struct Item {
    name: Option<String>,
    sparsity: Result<f64, String>,
}

/// The proposal the entries make, unless problems were found in them.
fn proposal_unless(
    problems: Vec<String>,
    items: Vec<Item>,
    reasoning: String,
) -> Result<Proposal, Vec<String>> {
    if !problems.is_empty() {
        return Err(problems);
    }
    let layers = items
        .into_iter()
        .filter_map(|it| match (it.name, it.sparsity) {
            (Some(name), Ok(sparsity)) => Some(LayerTarget { name, sparsity }),
            _ => None,
        })
        .collect();
    Ok(Proposal { layers, reasoning })
}

/// The entries and reasoning of the first JSON object with a `layers` field; an error
/// only when there is none or `layers` has no usable shape.
fn read(text: &str) -> Result<(Vec<Item>, String), Vec<String>> {
    let (v, written) = extract_with_text(text).map_err(|e| vec![e])?;
    let reasoning = match v.get("reasoning") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let owned: Vec<(String, Value)>;
    let entries: Vec<(Option<String>, Option<&Value>)> = match &v["layers"] {
        Value::Array(a) => a
            .iter()
            .map(|it| {
                let name = it.get("name").or_else(|| it.get("layer"));
                let name = name.and_then(Value::as_str).map(str::to_string);
                (name, it.get("sparsity").or_else(|| it.get("target")))
            })
            .collect(),
        // {"layers": {"model.layers.0.mlp.up_proj": 0.3}} is unambiguous enough to accept.
        // Read again as written: a map keeps one value of a repeated name, silently.
        Value::Object(m) => {
            owned = written_pairs(&written).unwrap_or_else(|| {
                // Not readable as written (a repeated top-level "layers"): as parsed.
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            });
            owned
                .iter()
                .map(|(k, v)| (Some(k.clone()), Some(v)))
                .collect()
        }
        other => {
            return Err(vec![format!(
                "layers: must be a list of {{\"name\", \"sparsity\"}} objects, got {}",
                short(other)
            )])
        }
    };
    let items = entries
        .into_iter()
        .map(|(name, sp)| {
            let sparsity = match sp {
                Some(Value::Number(n)) => n.as_f64(),
                // A number written as a string ("0.35") is read as that number.
                Some(Value::String(s)) => s.trim().parse::<f64>().ok().filter(|v| v.is_finite()),
                _ => None,
            };
            Item {
                name,
                sparsity: sparsity.ok_or_else(|| sp.map_or("nothing".to_string(), short)),
            }
        })
        .collect();
    Ok((items, reasoning))
}

/// The `layers` object of `written` (valid JSON) as its name/value pairs, in written order,
/// repeats included.
fn written_pairs(written: &str) -> Option<Vec<(String, Value)>> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Pairs(Vec<(String, Value)>);
    impl<'de> serde::Deserialize<'de> for Pairs {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Pairs;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a map of layer names to sparsities")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                    let mut out = Vec::new();
                    while let Some(kv) = m.next_entry::<String, Value>()? {
                        out.push(kv);
                    }
                    Ok(Pairs(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    #[derive(serde::Deserialize)]
    struct Outer {
        layers: Pairs,
    }
    serde_json::from_str::<Outer>(written)
        .ok()
        .map(|o| o.layers.0)
}

/// Shape checks only (a name and a numeric sparsity per entry); see [`validate`] for the
/// checks against the profile.
pub fn parse_proposal(text: &str) -> Result<Proposal, Vec<String>> {
    let (items, reasoning) = read(text)?;
    let mut problems = Vec::new();
    for (i, it) in items.iter().enumerate() {
        match (&it.name, &it.sparsity) {
            (None, _) => problems.push(missing_name(i)),
            (Some(n), Err(got)) => problems.push(not_a_number(n, got)),
            _ => {}
        }
    }
    proposal_unless(problems, items, reasoning)
}

fn missing_name(i: usize) -> String {
    format!("layers[{i}]: missing string field \"name\"")
}

fn not_a_number(name: &str, got: &str) -> String {
    // A percentage in a string ("35%") gets the hint a bare 35 gets.
    let percent = (got.trim_matches('"').trim().strip_suffix('%'))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite());
    let hint = percent.map_or_else(String::new, |v| {
        format!(
            " (a fraction in [0, 1): {} for {}%)",
            trimmed(v / 100.0, 6),
            trimmed(v, 6)
        )
    });
    format!(
        "{}: sparsity must be a number, got {got}{hint}",
        shown_name(name)
    )
}

/// The one table name that ends with a name given short (`layers.0.mlp.down_proj` or
/// `0.mlp.down_proj` for `model.layers.0.mlp.down_proj`), as a suggestion.
fn meant(ctx: &AgentContext, name: &str) -> Option<String> {
    let tail = format!(".{}", name.trim_start_matches('.'));
    let mut hits = ctx.layers.iter().filter(|l| l.name.ends_with(&tail));
    match (hits.next(), hits.next()) {
        (Some(l), None) if !name.is_empty() => Some(l.name.clone()),
        _ => None,
    }
}

/// Every way the proposal breaks the rules, one line each, in proposal order.
pub fn validate(p: &Proposal, ctx: &AgentContext) -> Result<(), Vec<String>> {
    let items: Vec<Item> = p
        .layers
        .iter()
        .map(|t| Item {
            name: Some(t.name.clone()),
            sparsity: Ok(t.sparsity),
        })
        .collect();
    let problems = check(&items, ctx);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn check(items: &[Item], ctx: &AgentContext) -> Vec<String> {
    let b = &ctx.bounds;
    let mut problems = Vec::new();
    if items.is_empty() {
        problems.push("layers: empty; propose at least one layer".to_string());
    }
    if items.len() > b.max_layers {
        problems.push(format!(
            "layers: {} entries, more than max_layers {} per step",
            items.len(),
            b.max_layers
        ));
    }
    for (i, it) in items.iter().enumerate() {
        let Some(n) = &it.name else {
            problems.push(missing_name(i));
            continue;
        };
        let same = |o: &Item| o.name.as_ref() == Some(n);
        let count = items.iter().filter(|o| same(o)).count();
        let shown_n = shown_name(n);
        if count > 1 {
            if items[..i].iter().any(same) {
                continue;
            }
            problems.push(format!(
                "{shown_n}: listed {count} times; list each layer once"
            ));
        }
        let row = ctx.layer(n);
        if row.is_none() {
            let guess = meant(ctx, n).map_or_else(String::new, |m| format!(" (did you mean {m}?)"));
            problems.push(format!(
                "{shown_n}: unknown layer name{guess}; use a name from the profile table"
            ));
        }
        let to = match &it.sparsity {
            Ok(to) => *to,
            Err(got) => {
                problems.push(not_a_number(n, got));
                continue;
            }
        };
        let Some(row) = row else { continue };
        let cur = row.sparsity;
        if !to.is_finite() || !(0.0..1.0).contains(&to) {
            problems.push(format!(
                "{shown_n}: sparsity {} is not a fraction in [0, 1) (e.g. 0.35 for 35%)",
                shown(to)
            ));
        } else if to < cur - SHOWN_TOLERANCE {
            problems.push(format!(
                "{shown_n}: sparsity {} is below its current sparsity {} (masks only grow)",
                shown(to),
                shown(cur)
            ));
        } else if to <= cur + SHOWN_TOLERANCE {
            problems.push(format!(
                "{shown_n}: sparsity {} is its current sparsity already (no change); leave the layer out",
                shown(to)
            ));
        } else if to > b.max_layer_sparsity + EPS {
            problems.push(format!(
                "{shown_n}: sparsity {} is above max_layer_sparsity {}",
                shown(to),
                shown(b.max_layer_sparsity)
            ));
        } else if to - cur > b.max_step + SHOWN_TOLERANCE + EPS {
            problems.push(format!(
                "{shown_n}: sparsity {} raises it by {} from {}, more than max_step {} (at most {})",
                shown(to),
                shown(to - cur),
                shown(cur),
                shown(b.max_step),
                shown(max_target(cur, b))
            ));
        }
    }
    problems
}

/// The highest sparsity a layer at `cur` may be given this step.
pub fn max_target(cur: f64, b: &super::context::Bounds) -> f64 {
    (cur + b.max_step).min(b.max_layer_sparsity)
}

/// A sparsity as the prompts show it: [`SHOWN_DIGITS`] decimals, trailing zeros dropped
/// (0.046875, 0.1), so the agent sees the value it is checked against.
pub fn shown(x: f64) -> String {
    trimmed(x, SHOWN_DIGITS)
}

/// A layer name from a reply, fit for a one-line message (control characters escaped,
/// long names cut).
fn shown_name(n: &str) -> String {
    crate::agent::text::one_line(n, 120)
}

/// A sparsity as short decimal text: 0.35, not 0.35000000000000003.
pub fn frac(x: f64) -> String {
    trimmed(x, 4)
}

fn trimmed(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let s = format!("{x:.digits$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" || s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// A JSON value in a problem line: short, one line.
fn short(v: &Value) -> String {
    crate::agent::text::one_line(&v.to_string(), 60)
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
